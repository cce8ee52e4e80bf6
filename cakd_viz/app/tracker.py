"""The Tune page's runs tracker, without layout: which columns show, filtering, sorting, run labels, and
where a run's student can be compared with the bundle it was trained against."""

from __future__ import annotations

import pandas as pd

from cakd_viz.app import config as app_config
from cakd_viz.runs.results import RunInfo

# tracker_table column -> (heading, what it is, width in pixels, number format); the table is compact so
# that the default columns fit beside the sidebar, and every heading explains itself on hover.
COLUMNS = {
    "run": ("run", "The run's name; a sweep trial's is the values it varies.", 200, None),
    "state": ("state", "queued, running, done, failed, cancelled, or corrupt (unreadable files).", 72, None),
    "loss": ("loss", "ce, kd, dkd or cakd.", 50, None),
    "grouping": ("grouping", "The strong set S (CAKD; DKD splits at S = {label}).", 84, None),
    "T": ("T", "Temperature.", 42, "%g"),
    "w_b": ("w_b", "Weight of BCD (CAKD).", 46, "%g"),
    "alpha": ("α", "alpha: weight of SCD (CAKD) or TCKD (DKD).", 42, "%g"),
    "beta": ("β", "beta: weight of WCD (CAKD) or NCKD (DKD).", 42, "%g"),
    "warmup": ("warm-up", "Epochs of linear warm-up of the distillation weights.", 66, "%g"),
    "lr": ("lr", "Peak learning rate.", 52, "%g"),
    "seed": ("seed", "Seed of the student's initialisation and the data order.", 46, "%d"),
    "best_acc": ("best acc", "Best held-out accuracy over the epochs.", 74, "percent"),
    "last_acc": ("last acc", "Held-out accuracy after the last epoch.", 74, "percent"),
    "note": ("note", "Your note on the run (pick the run below to edit it).", 160, None),
    "epochs": ("epochs", "Epochs the run was configured for.", 58, "%d"),
    "epochs_done": ("done", "Epochs finished.", 50, "%d"),
    "duration_s": ("duration (s)", "Wall-clock seconds from start to end (or now).", 90, "%.0f"),
    "created": ("created (UTC)", "When the run was queued.", 140, None),
    "batch": ("batch", "Batch size.", 56, "%d"),
    "student": ("student", "Architecture or model spec of the student.", 90, None),
    "data": ("data", "Training data spec.", 110, None),
    "held_out_terms": (
        "terms",
        "Whether the epochs record the held-out decomposition (val_kl, ...).",
        56,
        None,
    ),
    "sweep": ("sweep", "The sweep the run belongs to.", 200, None),
    "id": ("run id", "The run's folder name.", 250, None),
}
HEADINGS = {k: v[0] for k, v in COLUMNS.items()}
DEFAULT_COLUMNS = list(COLUMNS)[:14]


def column_config(columns: list[str]) -> dict:
    """st.column_config for the tracker's ``columns`` (keyed by heading), compact and with hover help."""
    import streamlit as st

    config = {}
    for col in columns:
        head, what, width, fmt = COLUMNS[col]
        if col == "created":
            config[head] = st.column_config.DatetimeColumn(
                head, help=what, width=width, format="YYYY-MM-DD HH:mm"
            )
        elif col == "held_out_terms":
            config[head] = st.column_config.CheckboxColumn(head, help=what, width=width)
        elif fmt is None:
            config[head] = st.column_config.TextColumn(head, help=what, width=width)
        else:
            config[head] = st.column_config.NumberColumn(head, help=what, width=width, format=fmt)
    return config


SORTS = {
    "newest first": ("created", False),
    "oldest first": ("created", True),
    "best held-out accuracy": ("best_acc", False),
    "last held-out accuracy": ("last_acc", False),
    "name": ("run", True),
    "state": ("state", True),
}


def filtered(table: pd.DataFrame, *, states=(), losses=(), text: str = "") -> pd.DataFrame:
    """Rows whose state is in ``states`` and loss in ``losses`` (empty: any), and whose run label, id,
    sweep or note contains ``text`` (case-insensitive)."""
    keep = pd.Series(True, index=table.index)
    if states:
        keep &= table["state"].isin(states)
    if losses:
        keep &= table["loss"].isin(losses)
    text = str(text).strip().lower()
    if text:
        hay = (
            table["run"].astype(str) + " " + table["id"] + " " + table["sweep"] + " " + table["note"]
        ).str.lower()
        keep &= hay.str.contains(text, regex=False)
    return table[keep]


def sorted_table(table: pd.DataFrame, sort: str) -> pd.DataFrame:
    column, ascending = SORTS.get(sort, SORTS["newest first"])
    return table.sort_values(column, ascending=ascending, na_position="last", kind="stable")


def run_label(row) -> str:
    """How a run is named in selectors: its label and id."""
    return f"{row['run']} ({row['id']})"


def compare_source(run: RunInfo, open_source: str) -> str:
    """The bundle a finished run's student is compared with: the shipped sample its data names
    ("sample:glyphs"), else the bundle open now (the app then checks that they match)."""
    data = str(run.config.get("data") or "")
    kind, _, name = data.partition(":")
    if kind == "sample" and name in app_config.SAMPLES and not run.config.get("test_data"):
        return f"sample:{name}"
    return open_source
