"""The bundle a page works on: the open bundle, or a read-only view of it with the students of finished
runs (``runs=RUNID,...``: ids of run folders, never paths) whose bundles hold the same samples, labels
and teacher (docs/architecture.md §3, "Run students"). A view's key for caches: ``(path, stamp)``, and
``((run id, run bundle path, its stamp, its name), ...)`` third with runs added.
"""

from __future__ import annotations

import numpy as np
import streamlit as st

from cakd_viz.app import bundles
from cakd_viz.bundle import Bundle
from cakd_viz.bundle.compose import check_same_teacher, compose_students
from cakd_viz.grouping import parse_grouping
from cakd_viz.runs import results, store

MAX_RUNS = 6  # run students one link may add
RUN_PREFIX = "run:"  # a run's student is named "run:<run name>" in the view
NAME_CHARS = 40  # a run's name in a student name is cut to this many characters


def parse_runs(raw: str) -> list[str]:
    """The run ids of a ``runs=`` URL value (comma-separated, duplicates dropped, order kept)."""
    return list(dict.fromkeys(p.strip() for p in str(raw).split(",") if p.strip()))


def run_source(run_id: str) -> tuple[str, str, str, str]:
    """(run id, its bundle path, the stamp of its files, its name) of a finished run; ValueError (one line)
    otherwise."""
    path = results.run_folder(None, run_id)  # a malformed id or a missing folder is refused here
    info = results.read_run(path)
    if info.state != "done" or info.bundle_path is None:
        why = f"{info.state}" + (f" ({info.error})" if info.error else "")
        raise ValueError(f"run {run_id} is {why}, not a finished run with a bundle")
    bundle = info.bundle_path
    root = store.runs_dir().resolve()
    if not bundle.resolve().is_relative_to(root) or any(p.is_symlink() for p in bundle.rglob("*")):
        raise ValueError(f"run {run_id}: its bundle links outside the runs directory")
    return run_id, str(bundle), bundles.files_stamp(bundle), _plain_name(info.label)


def _plain_name(label: str) -> str:
    """A run's label with only letters, digits, spaces and ``._=,+-:()`` kept (others become "-"), cut to
    NAME_CHARS: nothing in it can become Markdown, markup or LaTeX wherever a page writes it."""
    kept = "".join(ch if ch.isalnum() or ch in " ._=,+-:()" else "-" for ch in str(label)).strip()
    return kept[:NAME_CHARS].strip() or "run"


def student_names(runs, taken=()) -> dict[str, str]:
    """Run id -> the name its student gets in the view: "run:NAME" from the run's name; a name that two of
    ``runs`` ((id, path, stamp, name) tuples) share, or that is in ``taken`` (the bundle's students), gets
    the end of the run's id ("run:tuned (a1b2)"), or the whole id where that is still not unique."""
    runs = list(runs)
    first = {r[0]: f"{RUN_PREFIX}{r[3]}" for r in runs}
    counts = {n: list(first.values()).count(n) for n in first.values()}
    out = {}
    for r in runs:
        name = first[r[0]]
        if counts[name] > 1 or name in taken:
            name = f"{name} ({r[0].rsplit('-', 1)[-1][:8]})"
        if name in out.values() or name in taken:
            name = f"{RUN_PREFIX}{r[0]}"
        out[r[0]] = name
    return out


@st.cache_data(max_entries=32, show_spinner="Checking that the run used the same data and teacher…")
def _check(base_path: str, base_stamp: str, run: tuple[str, str, str]) -> str | None:
    """None when the run's bundle matches the open bundle, else why not (one line)."""
    try:
        check_same_teacher(
            bundles.load(base_path, base_stamp), bundles.open_checked(run[1]), name=f"run {run[0]}"
        )
    except ValueError as exc:
        return str(exc)
    return None


def add_runs(key: tuple, run_ids: list[str]) -> tuple[tuple, list[str], list[str]]:
    """(the view's key, the run ids added, one line per refused id) for the plain bundle ``key`` plus runs."""
    refused, runs = [], []
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
    return ((key[0], key[1], tuple(runs)) if runs else tuple(key[:2])), [r[0] for r in runs], refused


@st.cache_resource(max_entries=4, show_spinner="Adding the runs' students…")
def _composed(base_path: str, base_stamp: str, runs: tuple) -> Bundle:
    base = bundles.load(base_path, base_stamp)
    names = student_names(runs, taken=base.student_names)
    extra = {}
    for run_id, path, *_ in runs:
        other = bundles.open_checked(path)  # validated: one scan per logit file
        extra[names[run_id]] = (other, other.student_names[0])
    return compose_students(base, extra)


def load(key: tuple) -> Bundle:
    """The bundle (or composed view) a key names."""
    if len(key) > 2 and key[2]:
        return _composed(key[0], key[1], key[2])
    return bundles.load(key[0], key[1])


def correlation(key: tuple, standardize: bool = False, grouping: str | None = None) -> np.ndarray | None:
    """The teacher's (C, C) class-correlation matrix, read-only (a composed view shares its base's teacher);
    of the standardized teacher with ``standardize``. Given a ``grouping``, None unless it needs the
    matrix (``corr:R``)."""
    if grouping is not None and not parse_grouping(grouping).needs_correlation:
        return None
    return bundles.correlation(key[0], key[1], standardize)


def run_names(key: tuple) -> dict[str, str]:
    """Run id -> its student's name in the view ``key`` (empty for a plain bundle)."""
    runs = key[2] if len(key) > 2 else ()
    return student_names(runs, taken=bundles.load(key[0], key[1]).student_names) if runs else {}


def renamed(key: tuple, value: str | None) -> str | None:
    """A student as a link or the Tune page names it, in the view ``key``: "run:RUN_ID" (the older form)
    becomes that run's student name; anything else is returned as it is."""
    ids = {f"{RUN_PREFIX}{run_id}": name for run_id, name in run_names(key).items()}
    return ids.get(value, value) if isinstance(value, str) else value
