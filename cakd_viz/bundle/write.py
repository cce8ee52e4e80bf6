"""Writing a whole in-memory bundle at once (:func:`write_bundle`), through the streaming writer."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from cakd_viz.bundle.writer import BundleWriter
from cakd_viz.validate import (
    BundleError,
    as_numpy,
    check_class_names,
    check_fits_dtype,
    check_inputs,
    check_labels,
    check_logits,
    check_student_name,
    iter_row_chunks,
)

__all__ = ["write_bundle"]


def write_bundle(
    path: str | Path,
    *,
    teacher: Any,
    students: Mapping[str, Any],
    labels: Any = None,
    class_names: Any = None,
    inputs: Any = None,
    meta: dict | None = None,
    dtype: str | None = None,
    overwrite: bool = False,
) -> Path:
    """Validate and write a bundle; returns its path.

    ``teacher`` (N, C) and each of ``students`` (name -> (N, C)) are numpy arrays or torch tensors,
    ``labels`` (N,), ``inputs`` (N, ...), ``class_names`` C strings (default "0".."C-1").
    ``dtype`` "float16"/"float32" for all logits (default: the teacher's if float16/float32, else
    float32). ``meta`` is merged into meta.json (its "teacher"/"students" entries too). The bundle is
    written into ``<path>.partial-<id>`` and renamed at the end, so a crash never leaves a
    complete-looking bundle; an existing bundle at ``path`` is replaced only with ``overwrite``.
    """
    teacher = as_numpy(teacher, "teacher")
    check_logits(teacher, "teacher")
    n, c = teacher.shape
    if not isinstance(students, Mapping) or not students:
        raise BundleError("students: a bundle needs at least one student, given as {name: (N, C) logits}")
    arrays = {}
    for name, arr in students.items():
        check_student_name(name)
        arrays[name] = as_numpy(arr, f"student {name!r}")
        check_logits(arrays[name], f"student {name!r}", num_samples=n, num_classes=c, reference="teacher")
    if labels is not None:
        labels = as_numpy(labels, "labels")
        check_labels(labels, "labels", num_samples=n, num_classes=c, reference="teacher")
    if inputs is not None:
        inputs = as_numpy(inputs, "inputs")
        check_inputs(inputs, "inputs", num_samples=n, reference="teacher")
    if class_names is not None:
        class_names = check_class_names(class_names, "class_names", num_classes=c)
    if dtype is None:  # the teacher's float16/float32, else float32; the writer refuses any other dtype
        dtype = teacher.dtype if teacher.dtype in (np.float16, np.float32) else "float32"
    writer = BundleWriter(
        path,
        num_samples=n,
        num_classes=c,
        student_names=list(arrays),
        dtype=dtype,
        class_names=class_names,
        with_labels=labels is not None,
        inputs_shape=None if inputs is None else inputs.shape[1:],
        inputs_dtype=None if inputs is None else inputs.dtype,
        meta=meta,
        overwrite=overwrite,
    )
    with writer:
        for name, arr in {"teacher": teacher, **{f"student {k!r}": v for k, v in arrays.items()}}.items():
            check_fits_dtype(arr, name, writer.dtype)
        for rows in iter_row_chunks(n, c):
            writer._put(
                rows.start,
                teacher[rows],
                {k: v[rows] for k, v in arrays.items()},
                None if labels is None else labels[rows],
                None if inputs is None else inputs[rows],
            )
        return writer.commit(check_values=False)  # values were checked above
