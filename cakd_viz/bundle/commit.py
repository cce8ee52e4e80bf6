"""Helpers of :class:`~cakd_viz.bundle.writer.BundleWriter`: meta.json assembly, row bookkeeping,
and publishing the finished temp directory."""

from __future__ import annotations

import shutil
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from cakd_viz.bundle.read import FORMAT
from cakd_viz.validate import BundleError

__all__ = ["as_dtype", "base_meta", "check_target", "first_gap", "merge_meta", "merge_ranges", "publish"]


def as_dtype(dtype: Any) -> np.dtype | None:
    """``np.dtype(dtype)``, or None when it names no dtype."""
    try:
        return np.dtype(dtype)
    except TypeError:
        return None


def merge_ranges(rows: list[tuple[int, int]]) -> list[list[int]]:
    """Merge overlapping or touching [start, stop) ranges."""
    merged: list[list[int]] = []
    for start, stop in sorted(rows):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], stop)
        else:
            merged.append([start, stop])
    return merged


def first_gap(rows: list[tuple[int, int]], num_rows: int) -> tuple[int, int] | None:
    """The first range [start, stop) of ``0..num_rows`` that ``rows`` do not cover, or None."""
    covered = 0
    for start, stop in merge_ranges(rows):
        if start > covered:
            return covered, min(start, num_rows)
        covered = max(covered, stop)
    return None if covered >= num_rows else (covered, num_rows)


def base_meta(meta: dict | None, layout: dict, class_names: list[str] | None) -> dict:
    """meta.json as the writer knows it at the start; the caller's ``meta`` merged in."""
    user = dict(meta or {})
    n, c, dtype = layout["num_samples"], layout["num_classes"], layout["dtype"]
    teacher = user.pop("teacher", None) or {}
    user_students = user.pop("students", None) or {}
    if not isinstance(teacher, dict) or not isinstance(user_students, dict):
        raise BundleError("meta: 'teacher' must be an object and 'students' an object {NAME: {...}}")
    teacher = {"file": "teacher.npy", "dtype": dtype, **teacher}
    students = {
        s: {"file": f"students/{s}.npy", "dtype": dtype, **(user_students.get(s) or {})}
        for s in layout["student_names"]
    }
    shape = layout["inputs_shape"]
    base = {
        "format": FORMAT,
        "num_samples": n,
        "num_classes": c,
        "class_names": class_names if class_names is not None else [str(i) for i in range(c)],
        "labels": layout["with_labels"],
        "inputs": None if shape is None else {"shape": [n, *shape], "dtype": layout["inputs_dtype"]},
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    return {**user, **base, "teacher": teacher, "students": students}


def merge_meta(meta: dict, update: dict) -> dict:
    """``meta`` updated by ``update``; "teacher"/"students" merged per key, array-derived keys kept."""
    out = {**meta, **{k: v for k, v in update.items() if k not in ("teacher", "students")}}
    out["teacher"] = {**meta["teacher"], **(update.get("teacher") or {})}
    extra = update.get("students") or {}
    out["students"] = {n: {**m, **extra.get(n, {})} for n, m in meta["students"].items()}
    for key in ("format", "num_samples", "num_classes", "labels", "inputs"):
        out[key] = meta[key]  # fixed by the arrays, not by the caller
    return out


def check_target(path: Path, overwrite: bool) -> None:
    """Refuse an existing ``path`` unless ``overwrite``, and never replace something that is not a bundle."""
    if not path.exists():
        return
    if not overwrite:
        raise BundleError(f"{path} already exists; pass overwrite=True (--overwrite) to replace it")
    if path.is_file() or (any(path.iterdir()) and not (path / "meta.json").is_file()):
        raise BundleError(f"{path} exists and is not a cakd bundle; refusing to replace it")


def publish(tmp: Path, path: Path, overwrite: bool) -> None:
    """Rename the finished temp dir to ``path``, replacing an old bundle only when allowed."""
    if not path.exists():
        tmp.rename(path)
        return
    check_target(path, overwrite)
    old = path.with_name(f"{path.name}.old-{uuid.uuid4().hex[:12]}")
    path.rename(old)
    tmp.rename(path)
    shutil.rmtree(old)
