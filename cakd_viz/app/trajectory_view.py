"""The Tune page's "Classes through training", without layout: cached trajectories, their captions, tables
and checks (docs/architecture.md §6, "Classes through training"). Always under the run's own grouping, T
and LS, never the sidebar's; a caption says when they differ."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import streamlit as st

from cakd_viz.app import bundles, progressive, state, tracker, views
from cakd_viz.app import config as app_config
from cakd_viz.app.config import plain
from cakd_viz.classnames import readable_names
from cakd_viz.figures.trajectory import TRAJECTORY_TERMS
from cakd_viz.runs.dynamics import EPOCHS_DIR
from cakd_viz.runs.epoch_files import read_epochs
from cakd_viz.runs.results import RunInfo
from cakd_viz.runs.trajectory import BY, COLUMNS, Trajectory, class_means, difference, read_trajectory
from cakd_viz.standardize import setting

MAX_FILES = 10_000  # entries of an epochs/ folder looked at for its identity
MAX_STUDENTS = 4  # the bundle's students set beside a run
MAX_PANELS = 4  # runs set side by side
PICK_LIMIT = 500  # changed samples offered in the "open" selector
BESIDE_HELP = (
    "The students of the bundle the run was trained against (same data and teacher) and the run's final "
    "student, per class, under the run's grouping, T and LS, as extra columns right of the epochs."
)


def identity(run: RunInfo) -> tuple:
    """(run folder, its inode, (name, size, mtime) of each file in its epochs/): what the cached trajectory
    is for. A file being written (a running run's ".NAME.tmp-..." until it is renamed) is no part of it."""
    folder = run.path / EPOCHS_DIR
    entries = sorted(itertools.islice(folder.iterdir(), MAX_FILES)) if folder.is_dir() else []
    stats = [(e.name, e.lstat()) for e in entries if not e.name.startswith(".")]
    files = tuple((name, info.st_size, info.st_mtime_ns) for name, info in stats)
    return str(run.path.resolve()), run.path.stat().st_ino, files


def of(run: RunInfo) -> Trajectory:
    """The run's trajectory (computed once per identity); ValueError, one line without a server path,
    when its epochs/ is missing or damaged."""
    ident = identity(run)
    if not ident[2]:
        raise ValueError(
            f"{run.id} keeps no per-epoch logits (made before runs kept them, or still starting)"
        )
    try:
        return _computed(*ident)
    except ValueError as exc:
        raise ValueError(app_config.one_line(app_config.scrub(str(exc)))) from None


@st.cache_resource(max_entries=16, show_spinner="Decomposing the run's kept epochs…")
def _computed(path: str, inode: int, files: tuple) -> Trajectory:
    return read_trajectory(path)


def class_names(run: RunInfo, num_classes: int) -> list[str]:
    """Display names of the run's classes: its bundle's, else its shipped sample's, else the indices."""
    data = str(run.config.get("data") or "")
    bundle = None if run.bundle_path is None else f"path:{run.bundle_path}"
    for token in filter(
        None, [bundle, data if data.startswith("sample:") and data.count(":") == 1 else None]
    ):
        try:
            names = bundles.open_source(token).bundle.class_names
        except ValueError:
            continue
        if len(names) == num_classes:
            return readable_names(names)
    return [str(i) for i in range(num_classes)]


def settings_line(t: Trajectory, grouping: str, temperature: float, standardize: bool = False) -> str | None:
    """One line when the sidebar's grouping, T or LS differ from the run's (None when they agree)."""
    if (grouping, float(temperature), bool(standardize)) == (t.grouping, t.temperature, t.standardize):
        return None
    return (
        f"These per-class numbers use the run's own grouping {t.setting} (what its held-out terms used), "
        f"not the sidebar's {grouping}, {setting(temperature, standardize)}."
    )


def scope(t: Trajectory) -> str:
    """Over which samples and epochs: "the run's validation split (1,860 samples) after epochs 1-5"."""
    listed = ", ".join(map(str, t.epochs))
    return (
        f"the run's {t.split} split ({t.num_samples:,} samples, rows by {BY[t.by]}) after "
        f"epoch{'s' if len(t.epochs) != 1 else ''} {listed}, under {t.setting}"
    )


def heatmap_caption(t: Trajectory, column: str) -> str:
    """What the heatmap shows, over which samples and epochs, and its units."""
    what, unit = (
        f"Mean {TRAJECTORY_TERMS[column]}",
        "nats, the parts BCD + p_S·SCD + p_W·WCD add up to the KL",
    )
    if column == "accuracy":
        no_labels = "Agreement with the teacher (no labels: accuracy is not defined)"
        what, unit = no_labels if t.by == "teacher_pred" else "Accuracy", "%"
    return (
        f"{what} per class ({unit}) on {scope(t)}; classes of one teacher family (correlation of the "
        "run's teacher logits) are together, lines between families. From the float16 logits the run keeps"
        + ("." if not t.notes else "; " + "; ".join(t.notes) + ".")
    )


def column_for(t: Trajectory, column: str) -> str:
    """The Trajectory column drawn for a choice: accuracy becomes agreement without labels."""
    return "agreement" if column == "accuracy" and t.by == "teacher_pred" else column


def epoch_context(run: RunInfo, t: Trajectory) -> dict:
    """The export context of a run's per-class tables (never the sidebar's bundle or settings)."""
    settings = {"grouping": t.grouping, "T": t.temperature, "standardize": t.standardize}
    return {"run": run.id, "student": f"run:{run.id}", "split": t.split, "samples": t.num_samples} | settings


def sample_token(run: RunInfo, t: Trajectory) -> tuple[str | None, str]:
    """(bundle token, "") when the run's bundle holds its evaluation samples in order, so a sample opens
    on the Sample page; else (None, why not)."""
    if run.bundle_path is None:
        why = "a recorded run keeps no bundle" if run.config.get("recorded") else "the run has no bundle yet"
        return None, f"{why}: the samples cannot be opened on the Sample page"
    try:
        token = bundles.path_source(str(run.bundle_path))
        opened = bundles.open_source(token)
    except ValueError as exc:
        return None, f"the run's bundle cannot be opened ({app_config.one_line(app_config.scrub(str(exc)))})"
    if not same_samples(("bundle", opened.key), identity(run)):
        split = run.summary.get("bundle_split") or "another split"
        return None, (
            f"the run's bundle holds the {split} split, not the {t.split} split its epochs were evaluated "
            "on (the training rows are listed)"
        )
    return token, ""


def pick_label(row) -> str:
    """How a changed sample is offered: "#12 (training row 345): O → 0, became right"."""
    where = "" if "row" not in row or pd.isna(row["row"]) else f" (training row {row['row']})"
    return f"#{row['index']}{where}: {row['before_name']} → {row['after_name']}, {row['change']}"


def changes_view(frame: pd.DataFrame, t: Trajectory, first: int, last: int) -> tuple[pd.DataFrame, dict]:
    """The changed samples as shown (sample, training row of a validation split, classes by name, KL, the
    change) and their headings."""
    headings = {
        "index": "sample",
        "row": "training row",
        "true_name": BY[t.by],
        "before_name": f"epoch {first} says",
        "after_name": f"epoch {last} says",
        "kl_before": f"KL after epoch {first} (nats)",
        "kl_after": f"KL after epoch {last} (nats)",
    }
    return frame[[c for c in [*headings, "change"] if c != "row" or t.rows is not None]], headings


def changes_caption(frame: pd.DataFrame, t: Trajectory, first: int, last: int) -> str:
    """How many samples became right and wrong, over which samples, and what "right" means."""
    right = int((frame["change"] == "became right").sum())
    wrong = len(frame) - right
    sample = "the sample's index in the split" + (
        ", and its row of the training split" if t.rows is not None else ""
    )
    return (
        f"{right:,} sample{'s' if right != 1 else ''} became right and {wrong:,} wrong between epoch {first} "
        f"and epoch {last}, on {scope(t)}; right: the student predicts the {BY[t.by]}. 'sample' is {sample}."
    )


def beside_bundle(run: RunInfo, t: Trajectory, column: str) -> tuple[dict[str, np.ndarray], str] | str:
    """({label: (C,) per-class means of ``column``}, caption) of the bundle the run was trained against (its
    students, up to MAX_STUDENTS, and the run's final student, 'final run'), under the run's grouping, T
    and LS, on that bundle's samples: the heatmap's extra columns; or why not (one line)."""
    if run.bundle_path is None:
        return "it needs the run's finished bundle (same data and teacher), and " + (
            "a recorded run keeps none" if run.config.get("recorded") else "this run has none yet"
        )
    sel = state.selection(required=False)
    if not (source := tracker.compare_source(run, sel.source)):
        return "no bundle is open to compare with; open the one the run was trained on first"
    try:
        opened = bundles.open_source(source)
        key, added, refused = views.add_runs(opened.key, [run.id])
    except ValueError as exc:
        return app_config.one_line(app_config.scrub(str(exc)))
    if refused:
        return app_config.one_line(app_config.scrub(refused[0]))
    if opened.bundle.num_classes != t.num_classes:
        return f"the bundle has {opened.bundle.num_classes} classes, the run {t.num_classes}"
    final = views.renamed(key, views.RUN_PREFIX + run.id)  # the run's student as the view names it
    students = [*opened.bundle.student_names[:MAX_STUDENTS], final]
    res = progressive.results(
        key, students, t.grouping, t.temperature, sel.device or "cpu", standardize=t.standardize
    )
    labels = opened.bundle.labels
    means, j = {}, COLUMNS.index(column)
    for name, r in res.items():
        truth = r.d.teacher_pred if labels is None or t.by == "teacher_pred" else labels
        who = "final run" if name == final else name
        means[who] = _means(r.d, np.asarray(truth, np.int64), r.ident, t.by, t.num_classes)[:, j]
    same = same_samples(("bundle", opened.key), identity(run))
    first = next(iter(res.values()))
    samples = "the same samples as the epochs" if same else f"other samples than the run's {t.split} split"
    return (
        means,
        f"Right of the gap: the bundle {opened.label}'s students and the run's final student ('final run') "
        f"on {first.scope()} of that bundle ({samples}), under the run's {t.setting}.",
    )


@st.cache_data(max_entries=32, show_spinner=False)
def _means(_d, _truth: np.ndarray, ident: tuple, by: str, num_classes: int) -> np.ndarray:
    return class_means(_d, _truth, num_classes)[0]


def compared(runs: list[RunInfo], labels: dict[str, str]) -> tuple[dict, list[str]]:
    """(run label -> Trajectory for up to ``MAX_PANELS`` runs with the first one's classes, one line per run left
    out and why)."""
    panels, left = {}, []
    for r in runs:
        if len(panels) == MAX_PANELS:
            left.append(f"{r.label}: only {MAX_PANELS} runs are set side by side")
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


@st.cache_data(max_entries=64, show_spinner=False)
def same_samples(a: tuple, b: tuple) -> bool:
    """Whether two sets of samples, each a run's epochs (``identity``) or a bundle (``("bundle", key)``), are
    the same: equal shapes and labels, teacher logits equal within 1e-3 (absolute and relative)."""
    (ta, la), (tb, lb) = (_samples(x) for x in (a, b))
    if ta.shape != tb.shape or (la is None) != (lb is None):
        return False
    if la is not None and not np.array_equal(la, lb):
        return False
    return bool(np.allclose(np.asarray(ta, np.float64), np.asarray(tb, np.float64), rtol=1e-3, atol=1e-3))


def _samples(of: tuple) -> tuple:
    found = bundles.load(*of[1][:2]) if of[0] == "bundle" else read_epochs(of[0])
    return found.teacher, found.labels


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
