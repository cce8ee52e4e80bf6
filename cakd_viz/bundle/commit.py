"""Helpers of :class:`~cakd_viz.bundle.writer.BundleWriter`: meta.json assembly, row bookkeeping,
publishing the finished temp directory, and removing what killed writers left behind."""

from __future__ import annotations

import json
import shutil
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from cakd_viz import atomic, processes
from cakd_viz.bundle.read import FORMAT
from cakd_viz.validate import BundleError

__all__ = [
    "LAYOUT",
    "as_dtype",
    "base_meta",
    "check_target",
    "first_gap",
    "merge_meta",
    "merge_ranges",
    "publish",
    "remove_abandoned",
]

LAYOUT = ".writer.json"  # inside a partial directory: the writer's layout and its owner process


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
    check_target(path, overwrite)
    atomic.publish_dir(
        tmp, path
    )  # a writer killed between its renames leaves PATH.old-* for remove_abandoned


def remove_abandoned(path: Path) -> list[Path]:
    """Remove the ``<path>.partial-*`` and ``<path>.old-*`` directories that killed writers left; returns them.

    A partial directory names its owner in ``.writer.json`` ({"owner": {"pid", "pid_start", "host"}});
    it is removed when that process is gone (``processes.abandoned``), never while it still writes. One
    without an owner on record (killed between creating it and writing the layout) goes after a
    minute. An ``.old-*`` directory is a replaced bundle that its publisher was deleting: always garbage.
    """
    removed = []
    try:
        entries = list(path.parent.iterdir())
    except OSError:
        return removed
    for entry in entries:
        partial = entry.name.startswith(f"{path.name}.partial-")
        if not (partial or entry.name.startswith(f"{path.name}.old-")):
            continue
        try:
            if entry.is_symlink() or not entry.is_dir():
                continue
            if partial and not processes.abandoned(_owner(entry), time.time() - entry.stat().st_mtime):
                continue
        except OSError:
            continue
        shutil.rmtree(entry, ignore_errors=True)
        if not entry.exists():
            removed.append(entry)
    return removed


def _owner(partial_dir: Path) -> dict | None:
    """The owner a partial directory's layout file records, or None (missing or unreadable)."""
    try:
        with open(partial_dir / LAYOUT, "rb") as handle:
            owner = json.loads(handle.read(1 << 20)).get("owner")
    except (OSError, ValueError, AttributeError, RecursionError):
        return None
    return owner if isinstance(owner, dict) else None
