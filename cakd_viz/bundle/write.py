"""Writing a whole in-memory bundle at once (:func:`write_bundle`), through the streaming writer."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from cakd_viz.bundle.writer import BundleWriter, check_fits, check_rows
from cakd_viz.validate import BundleError, check_class_names, check_student_name, iter_row_chunks

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
    if not isinstance(students, Mapping) or not students:
        raise BundleError("students: a bundle needs at least one student, given as {name: (N, C) logits}")
    for name in students:
        check_student_name(name)
    teacher, arrays, labels, inputs = check_rows(teacher, students, labels, inputs)
    n, c = teacher.shape
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
        check_fits(teacher, arrays, writer.dtype)
        for rows in iter_row_chunks(n, c):
            writer._put(
                rows.start,
                teacher[rows],
                {k: v[rows] for k, v in arrays.items()},
                None if labels is None else labels[rows],
                None if inputs is None else inputs[rows],
            )
        return writer.commit(check_values=False)  # values were checked above
