"""The :class:`Bundle` a reader works with, and :func:`load_bundle`, which opens and validates one.

Arrays are memory-mapped, so bundles larger than memory open instantly; the on-disk layout is in
``cakd_viz.bundle`` (and docs/architecture.md).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import numpy as np

from cakd_viz.bundle.read import FORMAT, read_bundle_dir
from cakd_viz.validate import BundleError, iter_row_chunks

__all__ = ["Bundle", "load_bundle"]


class Bundle:
    """Read-only view of a logit bundle. Arrays are numpy memmaps (plain arrays when built in memory).

    Attributes: ``path``, ``meta`` (dict from meta.json), ``teacher`` (N, C), ``students``
    (name -> (N, C), in meta order), ``labels`` (N,) or None, ``inputs`` (N, ...) or None,
    ``class_names`` (C strings).

    One Bundle may be shared by many threads (the app caches one per bundle for every session): its
    only lazily filled state, the predictions cache, is computed outside a lock and published whole
    under it, so a reader never sees a half-filled entry.
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
        self._lock = threading.Lock()

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
        """Total size of the bundle's files on disk (0 for a bundle without a path); links not followed."""
        if self.path is None:
            return 0
        total = 0
        for folder, _, files in os.walk(self.path):
            for name in files:
                try:
                    total += os.lstat(os.path.join(folder, name)).st_size
                except OSError:
                    continue
        return total

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
        """Top-1 predicted class (N,) int64 of "teacher" or a student, computed chunk-wise and cached.

        Thread-safe: two threads asking at once may both compute it (same values), and the first
        published array is the one every caller gets; the returned array is read-only.
        """
        with self._lock:
            cached = self._predictions.get(who)
        if cached is not None:
            return cached
        logits = self._logits(who)
        pred = np.empty(self.num_samples, dtype=np.int64)
        for rows in iter_row_chunks(self.num_samples, self.num_classes):
            chunk = logits[rows]
            if chunk.dtype == np.float16:  # numpy's float16 argmax is slow; float32 is exact for it
                chunk = chunk.astype(np.float32)
            pred[rows] = np.argmax(chunk, axis=1)
        pred.flags.writeable = False  # shared by every caller: nobody may change it in place
        with self._lock:
            return self._predictions.setdefault(who, pred)

    def remember_predictions(self, who: str, pred: np.ndarray) -> None:
        """Publish top-1 predictions (N,) of "teacher" or a student computed elsewhere (e.g. read back
        from a cache), so that ``predictions``, ``accuracy`` and ``summary`` need not recompute them.
        The array is kept read-only; an entry already there is kept."""
        self._logits(who)  # an unknown student is refused here
        pred = np.asarray(pred)
        if pred.shape != (self.num_samples,) or pred.dtype.kind not in "iu":
            raise BundleError(
                f"predictions of {who} must be ({self.num_samples},) integers, got {pred.dtype} {pred.shape}"
            )
        if pred.flags.writeable:
            pred = pred.view()
            pred.flags.writeable = False
        with self._lock:
            self._predictions.setdefault(who, pred)

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
