"""Classes through training: which classes a run's student learns when, and which term falls first.

    from cakd_viz.runs.trajectory import read_trajectory
    t = read_trajectory("runs/20260101-000000-cakd-x")   # every kept epoch decomposed once
    t.term("bcd_mean")                                    # (C, E) mean BCD per class and epoch (nats)
    t.table(class_names)                                  # class, name, family, epoch, count, terms...
    t.changes(1, 5)                                       # samples that became right or wrong

Each kept epoch (``runs.epoch_files``) is decomposed once, under what index.json records, into small
results (docs/architecture.md §6, "Classes through training"); a ``corr:R`` run of the Tune page used
its training rows' correlation, which the folder does not keep, so ``notes`` says the evaluation
split's stands in.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from cakd_viz.decomposition import Decomposition, decompose_many
from cakd_viz.families import cluster_classes
from cakd_viz.grouping import class_correlation, parse_grouping
from cakd_viz.runs.epoch_files import read_epochs
from cakd_viz.standardize import setting

COLUMNS = (
    "kl_mean",  # mean KL (nats)
    "bcd_mean",  # mean BCD
    "scd_mean",  # mean p_S·SCD (the weighted part)
    "wcd_mean",  # mean p_W·WCD (the weighted part); the three parts add up to kl_mean
    "scd_raw_mean",  # mean raw SCD
    "wcd_raw_mean",  # mean raw WCD
    "accuracy",  # student prediction == true class (NaN without labels)
    "agreement",  # student prediction == teacher prediction
)
BY = {"label": "true class", "teacher_pred": "teacher's class"}


def class_means(d: Decomposition, key: np.ndarray, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """(means (C, len(COLUMNS)) float64, counts (C,) int64) of a decomposition's samples grouped by
    ``key`` (N,) class indices; a class without samples has NaN means."""
    key = np.asarray(key, dtype=np.int64)
    counts = np.bincount(key, minlength=num_classes)
    right = None if d.labels is None else d.student_pred == d.labels
    values = (d.kl, d.bcd, d.scd_contribution, d.wcd_contribution, d.scd, d.wcd, right)  # in COLUMNS order
    out = np.full((num_classes, len(COLUMNS)), np.nan)
    seen = counts > 0
    for j, value in enumerate((*values, d.student_pred == d.teacher_pred)):
        if value is not None:
            sums = np.bincount(key, weights=np.asarray(value, dtype=np.float64), minlength=num_classes)
            out[seen, j] = sums[seen] / counts[seen]
    return out, counts.astype(np.int64)


@dataclass(frozen=True, eq=False)
class Trajectory:
    """Per class and kept epoch, a run's held-out means (see the module); arrays are read-only."""

    epochs: tuple[int, ...]  # the kept epochs, increasing
    means: np.ndarray  # (C, E, len(COLUMNS)) float64
    counts: np.ndarray  # (C,) samples per class
    overall: np.ndarray  # (E, len(COLUMNS)) means over every sample (the run's val_* numbers)
    order: np.ndarray  # (C,) classes with their families together
    family: np.ndarray  # (C,) family id per class, numbered 0, 1, ... down ``order``
    truth: np.ndarray  # (N,) what "right" means: the label, or the teacher's class without labels
    by: str  # "label" or "teacher_pred" (a key of BY)
    pred: np.ndarray  # (E, N) the student's predicted class after each kept epoch
    kl: np.ndarray  # (E, N) each sample's KL (nats) after each kept epoch
    rows: np.ndarray | None  # (N,) row of the training split of each sample (validation split only)
    split: str  # "validation" or "test"
    grouping: str
    temperature: float
    notes: tuple[str, ...] = ()
    standardize: bool = False  # the terms are of the standardized logits (an LS run's, as it trained)

    @property
    def setting(self) -> str:
        """The run's grouping, T and LS as captions state them: "topk:3, T = 2" or "topk:3, T = 2, standardized"."""
        return f"{self.grouping}, {setting(self.temperature, self.standardize)}"

    @property
    def num_classes(self) -> int:
        return int(self.means.shape[0])

    @property
    def num_samples(self) -> int:
        return int(self.truth.shape[0])

    def term(self, column: str) -> np.ndarray:
        """(C, E): ``column`` (one of COLUMNS) per class (class index order) and kept epoch."""
        if column not in COLUMNS:
            raise ValueError(f"unknown column {column!r}; one of: {', '.join(COLUMNS)}")
        return self.means[:, :, COLUMNS.index(column)]

    def table(self, class_names=None) -> pd.DataFrame:
        """The per-class trajectory, one row per (class, kept epoch), classes in ``order``: class, name,
        family, epoch, count and every COLUMNS mean (weighted parts and KL in nats, rates as fractions)."""
        names = _names(class_names, self.num_classes)
        c, e = self.num_classes, len(self.epochs)
        cls = np.repeat(self.order, e)
        frame = pd.DataFrame(
            {
                "class": cls,
                "name": [names[i] for i in cls],
                "family": self.family[cls],
                "epoch": np.tile(np.asarray(self.epochs, dtype=np.int64), c),
                "count": self.counts[cls],
            }
        )
        values = self.means[self.order].reshape(c * e, len(COLUMNS))
        return pd.concat([frame, pd.DataFrame(values, columns=list(COLUMNS))], axis=1)

    def changes(self, before: int, after: int, class_names=None) -> pd.DataFrame:
        """The samples right after epoch ``before`` and wrong after ``after``, or the other way round
        ("right": the student predicts ``truth``): index (in the evaluation split), row (of the training
        split, <NA> on the test split), true class, predictions and KL after each epoch, and the change.
        Became right first, then became wrong, each by index."""
        i, j = self._at(before), self._at(after)
        right_a, right_b = self.pred[i] == self.truth, self.pred[j] == self.truth
        moved = np.flatnonzero(right_a != right_b)
        names = _names(class_names, self.num_classes)
        change = np.where(right_b[moved], "became right", "became wrong")
        rows = self.rows[moved] if self.rows is not None else [pd.NA] * len(moved)
        frame = pd.DataFrame(
            {
                "index": moved.astype(np.int64),
                "row": pd.array(rows, dtype="Int64"),
                "true": self.truth[moved],
                "true_name": [names[k] for k in self.truth[moved]],
                "before": self.pred[i, moved].astype(np.int64),
                "before_name": [names[k] for k in self.pred[i, moved]],
                "after": self.pred[j, moved].astype(np.int64),
                "after_name": [names[k] for k in self.pred[j, moved]],
                "kl_before": self.kl[i, moved].astype(np.float64),
                "kl_after": self.kl[j, moved].astype(np.float64),
                "change": change,
            }
        )
        order = np.lexsort((frame["index"].to_numpy(), change != "became right"))
        return frame.iloc[order].reset_index(drop=True)

    def _at(self, epoch: int) -> int:
        if epoch not in self.epochs:
            raise ValueError(f"epoch {epoch} is not kept (kept: {', '.join(map(str, self.epochs))})")
        return self.epochs.index(epoch)


def trajectory(
    students: Mapping[int, object],
    teacher,
    labels=None,
    *,
    grouping: str,
    temperature: float,
    standardize: bool = False,
    rows: np.ndarray | None = None,
    split: str = "validation",
    notes: tuple[str, ...] = (),
) -> Trajectory:
    """The trajectory of ``students`` {epoch: (N, C) logits} against ``teacher`` (N, C) with ``labels``
    (N,) or None, each epoch decomposed once on the CPU under ``grouping`` and ``temperature``, of the
    standardized logits with ``standardize`` (a ``corr:R`` grouping uses the (C, C) class correlation of
    ``teacher``, of its standardized logits with ``standardize``, as a recorded run's terms did)."""
    epochs = tuple(sorted(int(e) for e in students))
    n, c = np.shape(teacher)
    teacher_corr = class_correlation(teacher)
    order, family = _families(teacher_corr)
    correlation = None
    if parse_grouping(grouping).needs_correlation:
        correlation = class_correlation(teacher, standardize=True) if standardize else teacher_corr
    if labels is not None:
        truth, by = np.asarray(labels, np.int64), "label"
    else:  # the teacher's class stands in for the label (what "right" means, whose samples a class has)
        truth, by = np.asarray(np.argmax(teacher, axis=1), np.int64), "teacher_pred"
    counts = np.bincount(truth, minlength=c).astype(np.int64)
    means = np.full((c, len(epochs), len(COLUMNS)), np.nan)
    overall = np.full((len(epochs), len(COLUMNS)), np.nan)
    pred, kl = np.empty((len(epochs), n), np.int32), np.empty((len(epochs), n), np.float32)
    every = decompose_many(  # every epoch against the one teacher, in one pass over its rows
        [students[epoch] for epoch in epochs],
        teacher,
        labels,
        grouping=grouping,
        temperature=temperature,
        device="cpu",
        correlation=correlation,
        standardize=standardize,
    )
    for e, d in enumerate(every):
        means[:, e] = class_means(d, truth, c)[0]
        overall[e] = class_means(d, np.zeros(n, np.int64), 1)[0][0]
        pred[e], kl[e] = d.student_pred, d.kl
    arrays = [means, counts, overall, order, family, truth, pred, kl]
    for a in arrays + ([] if rows is None else [rows]):
        a.setflags(write=False)
    setting = str(parse_grouping(grouping)), float(temperature), tuple(notes), bool(standardize)
    return Trajectory(
        epochs, means, counts, overall, order, family, truth, by, pred, kl, rows, split, *setting
    )


def read_trajectory(run_dir: str | Path) -> Trajectory:
    """The trajectory of a run folder's kept epochs (``epochs/``, checked: ValueError naming a missing
    or damaged file), under the grouping and T its index.json records."""
    from cakd_viz.runs import store
    from cakd_viz.runs.recorded import is_recorded

    files = read_epochs(run_dir)
    notes = []
    if parse_grouping(files.grouping).needs_correlation:
        try:
            recorded = is_recorded(store.read_json(Path(run_dir) / store.CONFIG))
        except ValueError:
            recorded = False
        if not recorded:
            notes.append(
                f"{files.grouping} uses the teacher's correlation over the {files.split} split's "
                f"{files.num_samples:,} samples; the run's own terms used its training rows' (not kept), "
                "so these numbers may differ slightly from its curves"
            )
    if files.not_kept:
        notes.append(
            f"epochs {', '.join(map(str, files.not_kept))} were not kept (over the runs' size cap or float16's range)"
        )
    students = {e: files.student(e) for e in files.epochs}
    settings = {k: getattr(files, k) for k in ("grouping", "temperature", "standardize", "rows", "split")}
    return trajectory(students, files.teacher, files.labels, **settings, notes=tuple(notes))


def difference(a: Trajectory, b: Trajectory, column: str) -> tuple[tuple[int, ...], np.ndarray]:
    """(epochs kept by both, (C, E) ``column`` of ``b`` minus ``a``) per class and common epoch;
    ValueError when the runs differ in classes or share no kept epoch."""
    if a.num_classes != b.num_classes:
        raise ValueError(
            f"the runs have {a.num_classes} and {b.num_classes} classes: no per-class difference"
        )
    common = tuple(e for e in a.epochs if e in b.epochs)
    if not common:
        raise ValueError("the two runs keep no epoch in common")
    pick = [a.epochs.index(e) for e in common], [b.epochs.index(e) for e in common]
    return common, b.term(column)[:, pick[1]] - a.term(column)[:, pick[0]]


def _families(correlation: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(order, family) with family ids renumbered 0, 1, ... as they first appear down ``order``."""
    order, family = cluster_classes(correlation)
    first = {}
    for cls in order:
        first.setdefault(int(family[cls]), len(first))
    return np.asarray(order, np.int64), np.array([first[int(f)] for f in family], np.int64)


def _names(class_names, num_classes: int) -> list[str]:
    if class_names is None:
        return [str(i) for i in range(num_classes)]
    names = [str(x) for x in class_names]
    if len(names) != num_classes:
        raise ValueError(f"{len(names)} class names for {num_classes} classes")
    return names
