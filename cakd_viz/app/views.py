"""The bundle a page works on: the open bundle, or a read-only view of it with finished runs' students.

A link may add runs' students to the open bundle with ``runs=RUNID,RUNID``: each id must name a finished
run folder under the runs directory (a name, never a path) whose own bundle holds the same samples,
labels and teacher (``cakd_viz.bundle.compose``). Nothing is written anywhere; every refused id gets
one line saying why. A view's identity for caches is ``key``: ``(path, stamp)`` for a plain bundle,
``(path, stamp, ((run id, run bundle path, its stamp), ...))`` with runs added; a stamp changes whenever
one of the bundle's files does (``bundles.files_stamp``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import streamlit as st

from cakd_viz.app import bundles
from cakd_viz.app.bundles import Correlation
from cakd_viz.bundle import Bundle
from cakd_viz.bundle.compose import check_same_teacher, compose_students
from cakd_viz.runs import results, store

MAX_RUNS = 6  # run students one link may add
RUN_PREFIX = "run:"  # a run's student is named "run:<run id>" in the view


def parse_runs(raw: str) -> list[str]:
    """The run ids of a ``runs=`` URL value (comma-separated, duplicates dropped, order kept)."""
    return list(dict.fromkeys(p.strip() for p in str(raw).split(",") if p.strip()))


def run_source(run_id: str) -> tuple[str, str, str]:
    """(run id, its bundle path, the stamp of its files) of a finished run; ValueError (one line) otherwise."""
    path = results.run_folder(None, run_id)  # a malformed id or a missing folder is refused here
    info = results.read_run(path)
    if info.state != "done" or info.bundle_path is None:
        why = f"{info.state}" + (f" ({info.error})" if info.error else "")
        raise ValueError(f"run {run_id} is {why}, not a finished run with a bundle")
    bundle = info.bundle_path
    root = store.runs_dir().resolve()
    if not bundle.resolve().is_relative_to(root) or any(p.is_symlink() for p in bundle.rglob("*")):
        raise ValueError(f"run {run_id}: its bundle links outside the runs directory")
    return run_id, str(bundle), bundles.files_stamp(bundle)


@st.cache_data(max_entries=32, show_spinner="Checking that the run used the same data and teacher…")
def _check(base_path: str, base_stamp: str, run: tuple[str, str, str]) -> str | None:
    """None when the run's bundle matches the open bundle, else why not (one line)."""
    try:
        check_same_teacher(bundles.load(base_path, base_stamp), _open(run[1]), name=f"run {run[0]}")
    except ValueError as exc:
        return str(exc)
    return None


def add_runs(key: tuple, run_ids: list[str]) -> tuple[tuple, list[str], list[str]]:
    """(the view's key, the run ids added, one line per refused id) for the plain bundle ``key`` plus runs."""
    added, refused, runs = [], [], []
    if len(run_ids) > MAX_RUNS:
        refused.append(f"only the first {MAX_RUNS} of {len(run_ids)} runs are added")
        run_ids = run_ids[:MAX_RUNS]
    for run_id in run_ids:
        try:
            run = run_source(run_id)
            why = _check(key[0], key[1], run)
        except (ValueError, OSError) as exc:
            why = str(exc)
        if why:
            refused.append(why)
        else:
            runs.append(run)
            added.append(run_id)
    return ((key[0], key[1], tuple(runs)) if runs else tuple(key[:2])), added, refused


@st.cache_resource(max_entries=4, show_spinner="Adding the runs' students…")
def _composed(base_path: str, base_stamp: str, runs: tuple) -> Bundle:
    base = bundles.load(base_path, base_stamp)
    extra = {}
    for run_id, path, _ in runs:
        other = _open(path)
        extra[RUN_PREFIX + run_id] = (other, other.student_names[0])
    return compose_students(base, extra)


def load(key: tuple) -> Bundle:
    """The bundle (or composed view) a key names."""
    if len(key) > 2 and key[2]:
        return _composed(key[0], key[1], key[2])
    return bundles.load(key[0], key[1])


def correlation(key: tuple, standardize: bool = False) -> np.ndarray:
    """The teacher's (C, C) class-correlation matrix, read-only (a composed view shares its base's teacher);
    of the standardized teacher with ``standardize``."""
    return bundles.correlation(key[0], key[1], standardize).matrix


def correlation_info(key: tuple, standardize: bool = False) -> Correlation:
    """The correlation with the number of samples it covers (``Correlation.describe``)."""
    return bundles.correlation(key[0], key[1], standardize)


def _open(path: str) -> Bundle:
    """A run's bundle, validated (one scan per logit file, taking its predictions on the way)."""
    return bundles.open_checked(path)


def run_bundles(key: tuple) -> dict[str, str]:
    """Student name in the view -> the run bundle it comes from (empty for a plain bundle)."""
    return {RUN_PREFIX + r[0]: r[1] for r in (key[2] if len(key) > 2 else ())}


def short_path(path: str) -> str:
    """A run bundle's path as shown to people: relative to the runs directory's parent."""
    root = store.runs_dir().resolve()
    p = Path(path).resolve()
    return str(Path(root.name) / p.relative_to(root)) if p.is_relative_to(root) else p.name
