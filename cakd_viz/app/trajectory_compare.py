"""The Tune page's "Compare runs" per-class view, without layout: which compared runs' trajectories can be
set side by side (up to ``MAX_PANELS``, the same classes), whether two were evaluated on the same samples,
their per-class difference, the tables and the captions."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from cakd_viz.app.config import plain
from cakd_viz.app.trajectory_view import equal_samples, identity, of
from cakd_viz.figures.trajectory import TRAJECTORY_TERMS
from cakd_viz.runs.epoch_files import read_epochs
from cakd_viz.runs.results import RunInfo
from cakd_viz.runs.trajectory import Trajectory, difference

MAX_PANELS = 4  # runs set side by side


def compared(runs: list[RunInfo], labels: dict[str, str], most: int = MAX_PANELS) -> tuple[dict, list[str]]:
    """(run label -> Trajectory for up to ``most`` runs with the first one's classes, one line per run left
    out and why)."""
    panels, left = {}, []
    for r in runs:
        if len(panels) == most:
            left.append(f"{r.label}: only {most} runs are set side by side")
            continue
        try:
            t = of(r)
        except ValueError as exc:
            left.append(f"{r.label}: {exc}")
            continue
        if not t.epochs:
            left.append(f"{r.label}: no epoch kept")
            continue
        first = next(iter(panels.values()), t)
        if t.num_classes != first.num_classes:
            left.append(f"{r.label}: {t.num_classes} classes, the first run {first.num_classes}")
            continue
        panels[labels[r.id]] = t
    return panels, left


def settings_note(panels: dict) -> str:
    """One line when the runs' terms were split under different groupings, T or LS (else "")."""
    if len({t.setting for t in panels.values()}) < 2:
        return ""
    words = "; ".join(f"{plain(label)}: {t.setting}" for label, t in panels.items())
    return f"The runs' terms use different groupings, T or LS, each its own ({words})."


def same_samples(a: RunInfo, b: RunInfo) -> bool:
    """Whether two runs' epochs were evaluated on the same samples (teacher logits and labels equal)."""
    return _same(identity(a), identity(b))


@st.cache_data(max_entries=64, show_spinner=False)
def _same(a: tuple, b: tuple) -> bool:
    fa, fb = read_epochs(a[0]), read_epochs(b[0])
    return equal_samples(fa.teacher, fa.labels, fb.teacher, fb.labels)


def difference_table(a: Trajectory, b: Trajectory, column: str, names: list[str]) -> pd.DataFrame:
    """Per class (A's families order) and common epoch: ``column`` of A, of B, and B − A."""
    epochs, delta = difference(a, b, column)
    rows = []
    for cls in a.order:
        for k, e in enumerate(epochs):
            va = a.term(column)[cls, a.epochs.index(e)]
            vb = b.term(column)[cls, b.epochs.index(e)]
            rows.append((int(cls), names[cls], int(a.family[cls]), e, va, vb, delta[cls, k]))
    head = ["class", "name", "family", "epoch", f"{column}_a", f"{column}_b", f"{column}_delta"]
    return pd.DataFrame(rows, columns=head)


def side_by_side_table(panels: dict, names: list[str]) -> pd.DataFrame:
    """Every compared run's per-class table, one after the other, with the run's label first."""
    frames = [t.table(names).assign(run=label) for label, t in panels.items()]
    frame = pd.concat(frames, ignore_index=True)
    return frame[["run", *(c for c in frame.columns if c != "run")]]


def context(panels: dict, column: str | None = None) -> dict:
    """The export context of the compared runs' tables: the runs, their grouping, T and LS (never the
    sidebar's)."""
    out = {"runs": " vs ".join(panels)}
    used = {(t.grouping, t.temperature, t.standardize) for t in panels.values()}
    if len(used) == 1:
        out["grouping"], out["T"], out["standardize"] = next(iter(used))
    return out | ({"term": column} if column else {})


def side_caption(panels: dict, column: str) -> str:
    """Over which samples and epochs the side-by-side panels are."""
    each = "; ".join(
        f"{plain(label)}: {t.split} split, {t.num_samples:,} samples, epochs {', '.join(map(str, t.epochs))}"
        for label, t in panels.items()
    )
    return (
        f"{_what(column)} per class and kept epoch of each run, one colour scale, rows in the first run's "
        f"families order (its teacher's correlation), each run under its own grouping, T and LS ({each})."
    )


def difference_caption(a: Trajectory, la: str, lb: str, epochs, column: str, same: bool) -> str:
    """What the difference heatmap shows: B − A per class at the epochs both runs kept, on which samples."""
    samples = (
        f"the same {a.num_samples:,} samples"
        if same
        else "different samples (another split or validation seed): per-class means of different samples"
    )
    return (
        f"{_what(column)}, B − A, per class at the epochs both runs kept ({', '.join(map(str, epochs))}); "
        f"A = {plain(la)}, B = {plain(lb)}; {samples}; red: B higher, blue: B lower; rows in A's families order."
    )


def _what(column: str) -> str:
    label = TRAJECTORY_TERMS.get(column, column)
    return "Accuracy (%)" if column == "accuracy" else f"Mean {label} (nats)"
