"""Logit bundles: a directory of plain ``.npy`` files plus ``meta.json`` (DESIGN.md section 3).

    BUNDLE/
      meta.json          {"format": "cakd-bundle/1", "num_samples": N, "num_classes": C,
                          "class_names": [...], "teacher": {...}, "students": {"NAME": {...}}, ...}
      teacher.npy        (N, C) float16 or float32
      labels.npy         (N,) integer, optional
      students/NAME.npy  (N, C), one per student, at least one
      inputs.npy         (N, ...) optional

:func:`load_bundle` validates everything once and returns a read-only :class:`Bundle` whose arrays
are memory-mapped, so bundles larger than memory open instantly; :func:`write_bundle` validates,
then writes through :class:`~cakd_viz.bundle_writer.BundleWriter` (temp dir, renamed at the end).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .bundle_read import FORMAT, read_bundle_dir
from .validate import (
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

__all__ = ["FORMAT", "Bundle", "BundleError", "load_bundle", "write_bundle"]


class Bundle:
    """Read-only view of a logit bundle. Arrays are numpy memmaps (plain arrays when built in memory).

    Attributes: ``path``, ``meta`` (dict from meta.json), ``teacher`` (N, C), ``students``
    (name -> (N, C), in meta order), ``labels`` (N,) or None, ``inputs`` (N, ...) or None,
    ``class_names`` (C strings).
    """

    def __init__(
        self,
        *,
        path: Path | None,
        meta: dict,
        teacher: np.ndarray,
        students: dict[str, np.ndarray],
        labels: np.ndarray | None = None,
        inputs: np.ndarray | None = None,
        class_names: list[str] | None = None,
    ) -> None:
        self.path = path
        self.meta = meta
        self.teacher = teacher
        self.students = students
        self.labels = labels
        self.inputs = inputs
        self.class_names = (
            class_names if class_names is not None else [str(i) for i in range(teacher.shape[1])]
        )
        self._predictions: dict[str, np.ndarray] = {}

    @property
    def num_samples(self) -> int:
        return int(self.teacher.shape[0])

    @property
    def num_classes(self) -> int:
        return int(self.teacher.shape[1])

    @property
    def student_names(self) -> list[str]:
        return list(self.students)

    @property
    def dtype(self) -> str:
        """The teacher's dtype as a string, e.g. "float16"."""
        return str(self.teacher.dtype)

    @property
    def size_bytes(self) -> int:
        """Total size of the bundle's files on disk (0 for a bundle without a path)."""
        if self.path is None:
            return 0
        return sum(f.stat().st_size for f in self.path.rglob("*") if f.is_file())

    def __repr__(self) -> str:
        return (
            f"Bundle({str(self.path)!r}, N={self.num_samples}, C={self.num_classes}, dtype={self.dtype}, "
            f"students={self.student_names}, labels={self.labels is not None})"
        )

    def student(self, name: str | None = None) -> np.ndarray:
        """Logits (N, C) of student ``name`` (None: the first student)."""
        if name is None:
            return self.students[self.student_names[0]]
        if name not in self.students:
            raise BundleError(f"unknown student {name!r}; this bundle has: {', '.join(self.student_names)}")
        return self.students[name]

    def _logits(self, who: str) -> np.ndarray:
        return self.teacher if who == "teacher" else self.student(who)

    def predictions(self, who: str = "teacher") -> np.ndarray:
        """Top-1 predicted class (N,) int64 of "teacher" or a student, computed chunk-wise and cached."""
        if who not in self._predictions:
            logits = self._logits(who)
            pred = np.empty(self.num_samples, dtype=np.int64)
            for rows in iter_row_chunks(self.num_samples, self.num_classes):
                chunk = logits[rows]
                if chunk.dtype == np.float16:  # numpy's float16 argmax is slow; float32 is exact for it
                    chunk = chunk.astype(np.float32)
                pred[rows] = np.argmax(chunk, axis=1)
            self._predictions[who] = pred
        return self._predictions[who]

    def accuracy(self, who: str = "teacher") -> float | None:
        """Top-1 accuracy of "teacher" or a student against the labels; None without labels."""
        if self.labels is None:
            return None
        pred = self.predictions(who)
        return float(np.mean(pred == np.asarray(self.labels)))

    def agreement(self, name: str) -> float:
        """Fraction of samples where student ``name`` predicts the teacher's top-1 class."""
        return float(np.mean(self.predictions(name) == self.predictions("teacher")))

    def summary(self) -> dict[str, Any]:
        """Everything ``cakd-viz info`` shows: shapes, dtypes, students, accuracies, agreement, size."""
        students = {
            name: {
                "shape": list(arr.shape),
                "dtype": str(arr.dtype),
                "accuracy": self.accuracy(name),
                "agreement": self.agreement(name),
            }
            for name, arr in self.students.items()
        }
        return {
            "path": str(self.path) if self.path is not None else None,
            "format": self.meta.get("format", FORMAT),
            "num_samples": self.num_samples,
            "num_classes": self.num_classes,
            "dtype": self.dtype,
            "teacher": {"shape": list(self.teacher.shape), "dtype": self.dtype, "accuracy": self.accuracy()},
            "students": students,
            "has_labels": self.labels is not None,
            "inputs": None
            if self.inputs is None
            else {"shape": list(self.inputs.shape), "dtype": str(self.inputs.dtype)},
            "class_names_preview": self.class_names[:10],
            "size_bytes": self.size_bytes,
        }


def load_bundle(path: str | Path, *, check_values: bool = True) -> Bundle:
    """Open and validate the bundle directory at ``path``; arrays come back memory-mapped.

    Checks meta.json (format string, num_samples/num_classes/class_names/students agree with the
    arrays), every .npy header and size, N/C agreement, labels, and NaN/inf (chunk-wise) unless
    ``check_values`` is False. Any problem raises :class:`BundleError` naming the file.
    """
    return Bundle(**read_bundle_dir(Path(path), check_values=check_values))


def _resolve_dtype(dtype: str | np.dtype | None, source: np.dtype) -> np.dtype:
    if dtype is None:
        return source if source in (np.float16, np.float32) else np.dtype(np.float32)
    try:
        resolved = np.dtype(dtype)
    except TypeError:
        resolved = None
    if resolved not in (np.float16, np.float32):
        raise BundleError(f"dtype must be 'float16' or 'float32', got {dtype!r}")
    return resolved


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
    from .bundle_writer import BundleWriter  # the writer validates through load_bundle (import cycle)

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
    writer = BundleWriter(
        path, num_samples=n, num_classes=c, student_names=list(arrays), dtype=_resolve_dtype(dtype, teacher.dtype),
        class_names=class_names, with_labels=labels is not None,
        inputs_shape=None if inputs is None else inputs.shape[1:],
        inputs_dtype=None if inputs is None else inputs.dtype, meta=meta, overwrite=overwrite,
    )  # fmt: skip
    with writer:
        for name, arr in {"teacher": teacher, **{f"student {k!r}": v for k, v in arrays.items()}}.items():
            check_fits_dtype(arr, name, writer.dtype)
        for rows in iter_row_chunks(n, c):
            writer._put(
                rows.start, teacher[rows], {k: v[rows] for k, v in arrays.items()},
                None if labels is None else labels[rows], None if inputs is None else inputs[rows],
            )  # fmt: skip
        return writer.commit(check_values=False)  # values were checked above
