"""The :class:`Bundle` a reader works with, and :func:`load_bundle`, which opens and validates one,
memory-mapped (what it checks, links confined to the directory included: docs/architecture.md §5)."""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cakd_viz.bundle.npy import open_npy
from cakd_viz.validate import (
    BundleError,
    check_class_names,
    check_inputs,
    check_labels,
    check_logits,
    check_student_name,
    iter_row_chunks,
)

__all__ = ["FORMAT", "Bundle", "load_bundle"]

FORMAT = "cakd-bundle/1"
LOGIT_DTYPES = ("float16", "float32", "float64")  # what teacher.npy and students/*.npy may hold
MAX_META_BYTES = 16 * 2**20  # meta.json is a few KB (class names included); bounded memory to parse it


@dataclass(kw_only=True, repr=False, eq=False)
class Bundle:
    """Read-only view of a logit bundle. Arrays are numpy memmaps (plain arrays when built in memory).

    Attributes: ``path``, ``meta`` (dict from meta.json), ``teacher`` (N, C), ``students``
    (name -> (N, C), in meta order), ``labels`` (N,) or None, ``inputs`` (N, ...) or None,
    ``class_names`` (C strings).

    One Bundle may be shared by many threads (the app caches one per bundle for every session): its
    only lazily filled state, the predictions cache, is computed outside a lock and published whole
    under it, so a reader never sees a half-filled entry.
    """

    path: Path | None
    meta: dict
    teacher: np.ndarray
    students: dict[str, np.ndarray]
    labels: np.ndarray | None = None
    inputs: np.ndarray | None = None
    class_names: list[str] | None = None  # None: "0".."C-1"
    _predictions: dict[str, np.ndarray] = field(default_factory=dict, init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)

    def __post_init__(self) -> None:
        if self.class_names is None:
            self.class_names = [str(i) for i in range(self.teacher.shape[1])]

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

    def known_predictions(self) -> dict[str, np.ndarray]:
        """The predictions worked out so far (read-only arrays), by "teacher" or student name."""
        with self._lock:
            return dict(self._predictions)

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
    root = Path(path)
    if not root.exists():
        raise BundleError(f"{root}: no such bundle directory")
    if not root.is_dir():
        raise BundleError(f"{root} is a file, not a bundle directory (import files with `cakd-viz import`)")
    _check_links(root)
    meta = _read_meta(root)
    teacher = open_npy(root / "teacher.npy", "teacher.npy")
    check_float(teacher.dtype, "teacher.npy")
    check_logits(teacher, "teacher.npy", check_values=check_values)
    n, c = teacher.shape
    for key, actual, what in (("num_samples", n, "rows"), ("num_classes", c, "classes")):
        if meta[key] != actual:
            raise BundleError(f"meta.json says {key}={meta[key]}, but teacher.npy has {actual} {what}")
    class_names = meta.get("class_names")
    if class_names is not None:
        class_names = check_class_names(class_names, "meta.json class_names", num_classes=c)
    students = _open_students(root, meta, teacher, check_values)
    labels = _open_optional(root, meta, "labels")
    if labels is not None:
        check_labels(labels, "labels.npy", num_samples=n, num_classes=c, reference="teacher.npy")
    inputs = _open_optional(root, meta, "inputs")
    if inputs is not None:
        check_inputs(inputs, "inputs.npy", num_samples=n, reference="teacher.npy")
    return Bundle(
        path=root,
        meta=meta,
        teacher=teacher,
        students=students,
        labels=labels,
        inputs=inputs,
        class_names=class_names,
    )


def _check_links(root: Path) -> None:
    """Refuse a bundle with a link (at the top or in students/) that resolves outside the directory."""
    try:
        base = root.resolve(strict=True)
    except (OSError, RuntimeError) as exc:
        raise BundleError(f"{root}: cannot resolve the bundle directory ({exc})") from None
    for folder, prefix in ((root, ""), (root / "students", "students/")):
        try:
            entries = list(os.scandir(folder))
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise BundleError(
                f"{prefix or root}: cannot list this directory ({exc.strerror or exc})"
            ) from None
        for entry in entries:
            if not entry.is_symlink():
                continue
            rel = prefix + entry.name
            try:
                target = Path(entry.path).resolve(strict=False)
            except (OSError, RuntimeError):
                raise BundleError(f"{rel} is a link that cannot be resolved (a loop?); refusing it") from None
            if target != base and base not in target.parents:
                what = "folder" if target.is_dir() else "file"
                raise BundleError(f"{rel} is a link to a {what} outside the bundle; refusing it")


def check_float(dtype: np.dtype, rel: str, kinds: str = "fiu") -> None:
    """Refuse logits of a dtype of ``kinds`` other than float16/32/64 (integers; non-numeric ones are
    check_logits')."""
    if dtype.kind in kinds and dtype.name not in LOGIT_DTYPES:
        raise BundleError(
            f"{rel} holds {dtype.name} values; logits must be {', '.join(LOGIT_DTYPES[:-1])} or {LOGIT_DTYPES[-1]}"
        )


def _read_meta(root: Path) -> dict:
    meta_file = root / "meta.json"
    if not meta_file.is_file():
        raise BundleError(f"{root}: meta.json is missing, so this is not a cakd bundle (format {FORMAT!r})")
    try:
        with open(meta_file, "rb") as handle:
            raw = handle.read(MAX_META_BYTES + 1)
    except OSError as exc:
        raise BundleError(f"meta.json cannot be read ({exc.strerror or exc})") from None
    if len(raw) > MAX_META_BYTES:
        raise BundleError(f"meta.json is larger than {MAX_META_BYTES // 2**20} MiB; not a bundle's meta.json")
    try:
        meta = json.loads(raw.decode("utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:  # JSONDecodeError is a ValueError
        raise BundleError(f"meta.json is not valid JSON ({' '.join(str(exc).split())[:200]})") from None
    if not isinstance(meta, dict):
        raise BundleError(f"meta.json must hold a JSON object, found {type(meta).__name__}")
    if meta.get("format") != FORMAT:
        raise BundleError(f"meta.json: format is {meta.get('format')!r}, expected {FORMAT!r}")
    for key in ("num_samples", "num_classes"):
        value = meta.get(key)
        if not isinstance(value, int) or isinstance(value, bool):
            raise BundleError(f"meta.json: {key} must be an integer, found {value!r}")
    students = meta.get("students")
    if not isinstance(students, dict) or not students:
        raise BundleError("meta.json: 'students' must be a non-empty object {NAME: {...}}")
    return meta


def _open_students(root: Path, meta: dict, teacher: np.ndarray, check_values: bool) -> dict[str, np.ndarray]:
    students, n, c = {}, *teacher.shape
    for name in meta["students"]:
        try:
            check_student_name(name)
        except BundleError as exc:
            raise BundleError(f"meta.json: {exc}") from None
        rel = f"students/{name}.npy"
        if not (root / rel).is_file():
            raise BundleError(f"{rel} is missing (meta.json lists student {name!r})")
        arr = open_npy(root / rel, rel)
        check_float(arr.dtype, rel)
        check_logits(
            arr, rel, num_samples=n, num_classes=c, check_values=check_values, reference="teacher.npy"
        )
        students[name] = arr
    extra = sorted(f.name for f in (root / "students").glob("*.npy") if f.stem not in students)
    if extra:
        raise BundleError(
            f"students/{extra[0]} is not listed in meta.json 'students' ({len(extra)} unlisted)"
        )
    return students


def _open_optional(root: Path, meta: dict, key: str) -> np.ndarray | None:
    """labels.npy / inputs.npy; meta may say whether it should be there ("labels": bool, "inputs": obj)."""
    file = root / f"{key}.npy"
    if not file.is_file():
        if meta.get(key):
            raise BundleError(f"{key}.npy is missing, but meta.json says the bundle has {key}")
        return None
    if key in meta and not meta[key]:
        raise BundleError(f"meta.json says the bundle has no {key}, but {key}.npy is present")
    return open_npy(file, f"{key}.npy")
