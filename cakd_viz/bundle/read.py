"""Reading and validating a bundle directory's files (used by :func:`cakd_viz.bundle.load_bundle`).

Every file is confined to the bundle directory: a link (in the directory or in ``students/``) that
resolves outside it is refused before anything is read, so a bundle cannot make a reader open a file
elsewhere on the machine. Logits must be float16, float32 or float64 (integer logits are refused when
the bundle opens, naming the file); big-endian arrays are read in native byte order (``npy``).
"""

from __future__ import annotations

import json
import os
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
)

__all__ = ["FORMAT", "read_bundle_dir"]

FORMAT = "cakd-bundle/1"
LOGIT_DTYPES = ("float16", "float32", "float64")  # what teacher.npy and students/*.npy may hold
MAX_META_BYTES = 16 * 2**20  # meta.json is a few KB (class names included); bounded memory to parse it


def read_bundle_dir(root: Path, *, check_values: bool = True) -> dict[str, Any]:
    """Open every file of the bundle at ``root`` memory-mapped and check that they agree.

    Returns the keyword arguments of :class:`~cakd_viz.bundle.Bundle`: path, meta, teacher (N, C),
    students {name: (N, C)}, labels (N,) or None, inputs (N, ...) or None, class_names or None.
    """
    if not root.exists():
        raise BundleError(f"{root}: no such bundle directory")
    if not root.is_dir():
        raise BundleError(f"{root} is a file, not a bundle directory (import files with `cakd-viz import`)")
    _check_links(root)
    meta = _read_meta(root)
    teacher = open_npy(root / "teacher.npy", "teacher.npy")
    _check_float(teacher, "teacher.npy")
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
    return {
        "path": root,
        "meta": meta,
        "teacher": teacher,
        "students": students,
        "labels": labels,
        "inputs": inputs,
        "class_names": class_names,
    }


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


def _check_float(arr: np.ndarray, rel: str) -> None:
    """Refuse integer (and other non-float16/32/64 numeric) logits; non-numeric ones are check_logits'."""
    if arr.dtype.kind in "fiu" and arr.dtype.name not in LOGIT_DTYPES:
        raise BundleError(
            f"{rel} holds {arr.dtype.name} values; logits must be {', '.join(LOGIT_DTYPES[:-1])} "
            f"or {LOGIT_DTYPES[-1]}"
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
    students = {}
    for name in meta["students"]:
        try:
            check_student_name(name)
        except BundleError as exc:
            raise BundleError(f"meta.json: {exc}") from None
        rel = f"students/{name}.npy"
        if not (root / rel).is_file():
            raise BundleError(f"{rel} is missing (meta.json lists student {name!r})")
        arr = open_npy(root / rel, rel)
        _check_float(arr, rel)
        check_logits(
            arr,
            rel,
            num_samples=teacher.shape[0],
            num_classes=teacher.shape[1],
            check_values=check_values,
            reference="teacher.npy",
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
