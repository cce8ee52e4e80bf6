"""The Tune page's runs tracker, without layout: its columns (one per declared loss parameter), filters,
sorts and run labels. A run without a validation split says so in "epochs on" and in its label, so its
test-split numbers are never mixed silently with validation numbers."""

from __future__ import annotations

from collections import namedtuple

import pandas as pd

from cakd_viz.app import config as app_config
from cakd_viz.losses import LOSSES
from cakd_viz.losses.params import BOOL, CHOICE, GROUPING, INT, by_name
from cakd_viz.runs.results import RunInfo, loss_columns

ACC_FORMAT = "%.2f"  # accuracies are shown in percent (the heading says so), always with two decimals
ACCURACY = ("best_acc", "last_acc", "test_acc")
NO_VALIDATION = "test: no validation"  # how "epochs on" shows a run without a validation split


# A tracker column: heading, hover help, width (pixels) and format: a number format, "datetime", "bool",
# or None (text).
Column = namedtuple("Column", "heading help width format", defaults=[None])

_LEAD = {
    "run": Column("run", "The run's name; a sweep trial's is the values it varies.", 200),
    "state": Column("state", "queued, running, done, failed, cancelled, or corrupt (unreadable files).", 72),
    "loss": Column("loss", "The loss the run trained with (its name in the run config).", 60),
}
_TAIL = {
    "lr": Column("lr", "Peak learning rate.", 52, "%g"),
    "seed": Column("seed", "Seed of the student's initialisation and the data order.", 46, "%d"),
    "best_acc": Column(
        "best acc (%)",
        "Best accuracy over the epochs on the validation split: what weights are picked on. "
        "On the test split for a run without validation (see 'epochs on').",
        84,
        ACC_FORMAT,
    ),
    "last_acc": Column("last acc (%)", "Accuracy after the last epoch, on the same split.", 84, ACC_FORMAT),
    "eval_split": Column(
        "epochs on",
        f"The split every epoch was evaluated on: validation, or '{NO_VALIDATION}' for a run without a "
        "validation split (its best and last acc are test accuracy).",
        120,
    ),
    "test_acc": Column(
        "test acc (%)", "The final student on the test split, evaluated once at the end.", 84, ACC_FORMAT
    ),
    "note": Column("note", "Your note on the run (pick the run below to edit it).", 160),
    "epochs": Column("epochs", "Epochs the run was configured for.", 58, "%d"),
    "epochs_done": Column("done", "Epochs finished.", 50, "%d"),
    "duration_s": Column("duration (s)", "Wall-clock seconds from start to end (or now).", 90, "%.0f"),
    "created": Column("created (UTC)", "When the run was queued.", 140, "datetime"),
    "batch": Column("batch", "Batch size.", 56, "%d"),
    "student": Column("student", "Architecture or model spec of the student.", 90),
    "data": Column("data", "Training data spec.", 110),
    "held_out_terms": Column(
        "terms", "Whether the epochs record the held-out decomposition (val_kl, ...).", 56, "bool"
    ),
    "sweep": Column("sweep", "The sweep the run belongs to.", 200),
    "id": Column("run id", "The run's folder name.", 250),
}
_HIDDEN = ("epochs", "epochs_done", "duration_s", "created", "batch", "student", "data", "held_out_terms")
_HIDDEN_LOSS = ("warmup_schedule", "ce_weight")  # loss columns shown only with "All columns"


def columns() -> dict[str, Column]:
    """Every tracker column by ``results.tracker_table`` key: the leading ones, one per loss setting
    (``results.loss_columns``: heading its declared label, help what each loss that takes it says), then
    the run's. Built from the registry as it is now."""
    loss = {}
    for name, p in loss_columns().items():
        fmt = None if p.kind in (CHOICE, GROUPING, BOOL) else "%d" if p.kind == INT else "%g"
        loss[name] = Column(p.label, _loss_help(name, p.help), 84 if fmt is None else 52, fmt)
    return _LEAD | loss | _TAIL


def _loss_help(key: str, own: str) -> str:
    """What each registered loss that takes ``key`` says it is ("DKD: Weight of TCKD. CAKD: ...")."""
    said = [
        f"{cls.title or name}: {by_name(cls.params())[key].help}"
        for name, cls in LOSSES.items()
        if key in by_name(cls.params())
    ]
    return (" ".join(said) + " Empty for a loss without it.") if said else own


def default_columns() -> list[str]:
    """The columns shown without "All columns": the run, its loss's settings, lr, seed and the accuracies."""
    return [k for k in columns() if k not in _HIDDEN + _HIDDEN_LOSS + ("sweep", "id")]


def view(table: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """The shown table: ``keys`` of ``results.tracker_table`` under their headings, accuracies in percent
    points, the evaluation split in words."""
    shown = table[keys].copy()
    for k in [k for k in ACCURACY if k in shown]:
        shown[k] = shown[k].astype(float) * 100
    if "eval_split" in shown:
        shown["eval_split"] = shown["eval_split"].where(shown["eval_split"] == "validation", NO_VALIDATION)
    every = columns()
    return shown.rename(columns={k: every[k].heading for k in keys})


def trials_view(frame: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """A sweep's trials (``results.sweep_frame``) as ``view`` shows runs, and the tracker keys shown."""
    trials = frame.rename(columns={"case": "run"})
    keys = [k for k in columns() if k in trials]
    return view(trials, keys), keys


def column_config(keys: list[str]) -> dict:
    """st.column_config for the tracker's ``keys`` (by heading), compact and with hover help."""
    from cakd_viz.app.formats import column  # it imports Streamlit, which only drawing the table needs

    every = columns()
    return {
        c.heading: column(c.format, c.heading, help=c.help, width=c.width) for c in (every[k] for k in keys)
    }


SORTS = {
    "newest first": ("created", False),
    "oldest first": ("created", True),
    "best validation accuracy": ("best_acc", False),
    "last validation accuracy": ("last_acc", False),
    "test accuracy": ("test_acc", False),
    "name": ("run", True),
    "state": ("state", True),
}
"""Sorts by accuracy on the validation split put the runs without one after every run with one."""


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
    """``table`` in the order ``sort`` names (one of ``SORTS``; unknown: newest first)."""
    column, ascending = SORTS.get(sort, SORTS["newest first"])
    if column in ("best_acc", "last_acc"):  # validation numbers first: never ranked among test numbers
        order = table.assign(_val=table["eval_split"] == "validation")
        order = order.sort_values(
            ["_val", column], ascending=[False, ascending], na_position="last", kind="stable"
        )
        return order.drop(columns="_val")
    return table.sort_values(column, ascending=ascending, na_position="last", kind="stable")


def run_labels(table: pd.DataFrame) -> dict[str, str]:
    """How each run (by id) is named in selectors and legends: its label and id, marked when it has no
    validation split ("my_kd (ID) · no validation: test split")."""
    mark = {"validation": ""}
    rows = zip(table["id"], table["run"], table["eval_split"], strict=True)
    return {i: f"{run} ({i}){mark.get(split, ' · no validation: test split')}" for i, run, split in rows}


def newest_first(table: pd.DataFrame) -> list[str]:
    """Run ids, newest first (runs without a creation time last)."""
    return list(table.sort_values("created", ascending=False, na_position="last")["id"])


def settings_line(table: pd.DataFrame, run_id: str) -> str:
    """The run's loss settings and budget in one line ("loss kd · T 2 · lr 0.05 · epochs 3 · seed 0")."""
    row, every = table.set_index("id").loc[run_id], columns()
    values = {k: row.get(k) for k in ["loss", *loss_columns(), "lr", "epochs", "seed"]}
    return " · ".join(
        f"{every[k].heading} {v:g}" if isinstance(v, float) else f"{every[k].heading} {v}"
        for k, v in values.items()
        if pd.notna(v)  # a setting the run's loss does not take is empty
    )


def held_out_note(run: RunInfo) -> str:
    """The held-out curves' caption, saying whether the run's held-out split is of standardized logits."""
    from cakd_viz.figures.runs import HELD_OUT_NOTE

    split = run.config.get("decomposition")  # a recorded run's held-out split; a launched run's is its loss's
    split = split if isinstance(split, dict) else run.config.get("loss")
    ls = isinstance(split, dict) and split.get("standardize") is True
    said = " This run's split is of the logits standardized per sample (LS), as it trains on them."
    return HELD_OUT_NOTE + (said if ls else " This run's split is of its logits as they are (no LS).")


def compare_source(run: RunInfo, open_source: str) -> str:
    """The bundle a finished run's student is compared with: the shipped sample its data names
    ("sample:glyphs"), else the bundle open now (the app then checks that they match)."""
    data = str(run.config.get("data") or "")
    kind, _, name = data.partition(":")
    if kind == "sample" and name in app_config.SAMPLES and not run.config.get("test_data"):
        return f"sample:{name}"
    return open_source
