"""The Tune page's sweep section without layout: which values a sweep varied, the heatmap's trials
(validation accuracy only; a sweep without a validation split is said to be on the test split), its
default axes and its caption."""

from __future__ import annotations

from collections.abc import MutableMapping

import pandas as pd

from cakd_viz.figures import runs as fig
from cakd_viz.runs.results import SweepInfo

AVERAGED = "(averaged)"
X, Y, FOR = "tune_hx", "tune_hy", "_tune_axes_for"  # session keys: the axes and the sweep they are for


def swept(s: SweepInfo, frame: pd.DataFrame) -> list[str]:
    """The sweep's varied keys that its trials' table holds ("case" first when it has cases)."""
    cases = ["case"] if s.config.get("cases") else []  # e.g. one case per loss, crossed with seeds
    keys = (s.config.get("grid") or {}) | (s.config.get("random") or {})
    return cases + [k for k in keys if k in frame]


def heatmap_trials(frame: pd.DataFrame) -> tuple[pd.DataFrame, str, str]:
    """(trials, split, note): the trials the heatmap averages and the split their accuracy is on. Trials
    with a validation split are never mixed with trials without one: with both, the latter are left out
    (the note says how many); without any validation trial, the accuracy is the test split's, and the
    note says so."""
    if "eval_split" not in frame or frame.empty:
        return frame, "validation", ""
    val = frame[frame["eval_split"] == "validation"]
    if len(val) == len(frame):
        return frame, "validation", ""
    if val.empty:
        note = (
            " These trials have no validation split: their accuracy is on the test split, a number for "
            "reporting, not for picking weights."
        )
        return frame, "test", note
    left = len(frame) - len(val)
    note = f" {left} trial{'s' if left != 1 else ''} without a validation split (accuracy on the test split) left out."
    return val, "validation", note


def axes(form: MutableMapping, sweep_id: str, frame: pd.DataFrame, keys: list[str]) -> None:
    """A newly picked sweep starts on its default axes; a "down" axis equal to "across" is reset."""
    if form.get(FOR) != sweep_id:
        across, down = fig.default_axes(frame, keys)
        form[FOR] = sweep_id
        form[X], form[Y] = across or keys[0], down or AVERAGED


def down_options(keys: list[str], x: str, form: MutableMapping) -> list[str]:
    """The "Down" choices once "Across" is ``x`` (its current value reset when no longer one)."""
    options = [AVERAGED, *(k for k in keys if k != x)]
    if form.get(Y) not in options:
        form[Y] = AVERAGED
    return options


def caption(frame: pd.DataFrame, x: str, y: str | None, keys: list[str], split: str, note: str) -> str:
    """What the heatmap shows: mean best accuracy on ``split`` per cell, what is averaged, the colours."""
    averaged = [k for k in fig.varied_columns(frame, keys) if k not in (x, y)]
    cells = fig.cell_table(frame, [x] if y is None else [y, x])
    lo, hi, why = fig.colour_range(cells)
    word = "validation" if split == "validation" else "test-split"
    return (
        f"Mean best {word} accuracy per cell, ± the standard deviation of the trials it averages "
        f"({', '.join(averaged) or 'nothing'} averaged)."
        + (f" Colours span {lo:.1f}–{hi:.1f}%: {why}." if y is not None else "")
        + note
    )
