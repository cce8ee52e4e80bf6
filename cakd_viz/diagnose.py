"""Where and why a student fails: failure sets, ranked failures, per-class dominant terms, confusion pairs.

Everything works from a computed `Decomposition`, returns small pandas tables, and never sends an
N-sized payload anywhere: a ranking is cut to `limit` rows, classes and pairs are aggregated with
`np.bincount`.

The dominant term of a sample is its largest contribution among BCD, p_S*SCD and p_W*WCD; the dominant
term of a group of samples is the one with the largest summed contribution (each sample weighted by its
own KL, as in `cakd_viz.aggregates`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from cakd_viz.decomposition import TERMS, Decomposition
from cakd_viz.terms import PART, RAW


@dataclass(frozen=True)
class FailureSet:
    """A named set of samples. `reference` is the class a failure is "about" (its row in per-class views)."""

    description: str
    needs_labels: bool
    reference: str  # "label" or "teacher_pred"
    select: Callable[[Decomposition], np.ndarray]


FAILURE_SETS: dict[str, FailureSet] = {
    "Student wrong, teacher right": FailureSet(
        "the teacher predicts the true class and the student does not",
        True,
        "label",
        lambda d: (d.teacher_pred == d.labels) & (d.student_pred != d.labels),
    ),
    "Both wrong": FailureSet(
        "neither the teacher nor the student predicts the true class",
        True,
        "label",
        lambda d: (d.teacher_pred != d.labels) & (d.student_pred != d.labels),
    ),
    "Student disagrees with teacher": FailureSet(
        "the student's top class differs from the teacher's (needs no labels)",
        False,
        "teacher_pred",
        lambda d: d.teacher_pred != d.student_pred,
    ),
}

RANK_KEYS = {
    PART["kl"]: "kl",
    PART["bcd"]: "bcd",
    PART["scd"]: "scd_contribution",
    PART["wcd"]: "wcd_contribution",
    RAW["scd"]: "scd",
    RAW["wcd"]: "wcd",
}
"""Display name -> column of `failure_table` to rank by (largest first)."""


def available_sets(d: Decomposition) -> list[str]:
    """The failure sets this decomposition supports (those needing labels only when it has them)."""
    return [name for name, fs in FAILURE_SETS.items() if d.labels is not None or not fs.needs_labels]


def failure_mask(d: Decomposition, which: str) -> np.ndarray:
    """Boolean (N,) mask of the samples in failure set `which` (a key of FAILURE_SETS)."""
    if which not in FAILURE_SETS:
        raise ValueError(f"unknown failure set {which!r}; choose one of: {', '.join(FAILURE_SETS)}")
    fs = FAILURE_SETS[which]
    if fs.needs_labels and d.labels is None:
        raise ValueError(f"failure set {which!r} needs labels, and this decomposition has none")
    return np.asarray(fs.select(d), dtype=bool)


def class_labels(class_names, idx: np.ndarray) -> list[str]:
    """The names of classes ``idx`` (their indices as text without ``class_names``)."""
    if class_names is None:
        return [str(int(i)) for i in idx]
    return [str(class_names[int(i)]) for i in idx]


def per_sample_dominant(d: Decomposition) -> np.ndarray:
    """(N,) int index into TERMS of each sample's largest contribution."""
    parts = d.contributions()
    return np.stack([parts[t] for t in TERMS], axis=1).argmax(1)  # (N, 3) -> (N,)


def failure_table(
    d: Decomposition, mask: np.ndarray, *, by: str = "kl", limit: int | None = None, class_names=None
) -> pd.DataFrame:
    """The samples in `mask`, ranked by column `by` (largest first; ties by index), at most `limit` rows:
    `sample_frame`'s columns."""
    if by not in RANK_KEYS.values():
        raise ValueError(f"cannot rank by {by!r}; choose one of: {', '.join(RANK_KEYS.values())}")
    rows = np.flatnonzero(mask)
    order = np.argsort(-getattr(d, by)[rows], kind="stable")
    return sample_frame(d, rows[order[:limit] if limit is not None else order], class_names=class_names)


def sample_frame(d: Decomposition, rows: np.ndarray, *, class_names=None, students=None) -> pd.DataFrame:
    """One row per sample of ``rows`` (sample indices, in that order): its classes, predictions and terms.

    Columns: index, [label, label_name] (with labels), teacher_pred, teacher_name, the students'
    predictions, kl, bcd, scd_contribution, wcd_contribution, scd, wcd, dominant (a term name),
    teacher_strong_mass, student_strong_mass, strong_size (the terms are ``d``'s). ``students``: the
    predictions' columns, {class column: (name column, decomposition)}; by default student_pred and
    student_name of ``d``.
    """
    rows = np.asarray(rows, dtype=np.int64)
    students = {"student_pred": ("student_name", d)} if students is None else students
    classes = {"label": ("label_name", d.labels), "teacher_pred": ("teacher_name", d.teacher_pred)}
    classes |= {column: (name, x.student_pred) for column, (name, x) in students.items()}
    frame = pd.DataFrame({"index": rows})
    for column, (name, values) in classes.items():
        if values is not None:
            frame[column] = values[rows]
            frame[name] = class_labels(class_names, values[rows])
    sub = d.subset(rows)
    parts = sub.contributions()
    terms = {"kl": sub.kl, "bcd": sub.bcd, "scd_contribution": parts["scd"], "wcd_contribution": parts["wcd"]}
    masses = {k: getattr(sub, k) for k in ("teacher_strong_mass", "student_strong_mass", "strong_size")}
    dominant = np.array(TERMS)[per_sample_dominant(sub)]
    return frame.assign(**terms, scd=sub.scd, wcd=sub.wcd, dominant=dominant, **masses)


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_csv(frame: pd.DataFrame) -> str:
    """`frame` as CSV text in which no text cell can run as a spreadsheet formula.

    Class names come from users' files; a name such as "=HYPERLINK(...)" would execute when the CSV
    is opened in a spreadsheet. Text cells starting with = + - @, a tab or a carriage return get a
    leading apostrophe (shown by spreadsheets as plain text); numbers are written unchanged.
    """
    safe = frame.copy()
    for col in safe.columns:
        if safe[col].dtype == object or pd.api.types.is_string_dtype(safe[col]):
            safe[col] = [
                f"'{v}" if isinstance(v, str) and v.startswith(_FORMULA_START) else v for v in safe[col]
            ]
    return safe.to_csv(index=False)


def class_failures(
    d: Decomposition, mask: np.ndarray, *, by: str = "label", num_classes: int, class_names=None
) -> pd.DataFrame:
    """Per class (of `by`: "label" or "teacher_pred"), which term dominates its failures.

    Columns: class, name, samples (all samples of the class), failures, failure_rate, kl_total and
    {term}_total (summed over the failures, nats), share_{term}, dominant (largest summed
    contribution), dominant_count_{term} (failures where that term is the sample's largest).
    Classes without failures are left out; sorted by failures, then kl_total, largest first.
    """
    key_all = d.labels if by == "label" else getattr(d, by)
    if key_all is None:
        raise ValueError("a breakdown by true class needs labels, and this decomposition has none")
    c = int(num_classes)
    key = key_all[mask]
    parts = {t: v[mask] for t, v in d.contributions().items()}
    totals = {t: np.bincount(key, weights=v, minlength=c) for t, v in parts.items()}
    kl_total = np.bincount(key, weights=d.kl[mask], minlength=c)
    failures = np.bincount(key, minlength=c)
    samples = np.bincount(key_all, minlength=c)
    dom = per_sample_dominant(d.subset(mask))  # (failures,), empty for none
    with np.errstate(divide="ignore", invalid="ignore"):
        frame = pd.DataFrame(
            {
                "class": np.arange(c),
                "name": class_labels(class_names, np.arange(c)),
                "samples": samples,
                "failures": failures,
                "failure_rate": failures / samples,
                "kl_total": kl_total,
                **{f"{t}_total": totals[t] for t in TERMS},
                **{f"share_{t}": totals[t] / kl_total for t in TERMS},
            }
        )
    stacked = np.stack([totals[t] for t in TERMS], axis=1)  # (C, 3)
    frame["dominant"] = np.array(TERMS)[stacked.argmax(1)]
    for j, t in enumerate(TERMS):
        frame[f"dominant_count_{t}"] = np.bincount(key[dom == j], minlength=c)
    frame = frame[failures > 0].sort_values(["failures", "kl_total"], ascending=False, kind="stable")
    return frame.reset_index(drop=True)


def confusion_pairs(
    d: Decomposition,
    mask: np.ndarray,
    *,
    by: str = "label",
    class_names=None,
    family: np.ndarray | None = None,
    in_strong: np.ndarray | None = None,
    limit: int | None = None,
) -> pd.DataFrame:
    """Counts of (reference class -> student prediction) over the failures, most frequent first.

    by: the reference class ("label" or "teacher_pred"). family: (C,) correlation family per class
    (from `cakd_viz.families.cluster_classes`) adds `same_family`. in_strong: (N,) bool, the student's
    prediction lies in the sample's strong set S (see `cakd_viz.decomposition.membership.in_strong_set`),
    adds `in_strong_rate`.
    Columns: true, predicted, names, count, share (of the failures), kl_mean, dominant, and those two.
    """
    ref_all = d.labels if by == "label" else getattr(d, by)
    if ref_all is None:
        raise ValueError("confusion pairs by true class need labels, and this decomposition has none")
    rows = np.flatnonzero(mask)
    ref, pred = ref_all[rows], d.student_pred[rows]
    pairs, inverse, counts = np.unique(  # no failures: pairs is (0, 2), every column empty
        np.stack([ref, pred], axis=1), axis=0, return_inverse=True, return_counts=True
    )
    inverse = inverse.reshape(-1)
    m = len(pairs)
    kl_sum = np.bincount(inverse, weights=d.kl[rows], minlength=m)
    parts = d.contributions()
    stacked = np.stack([np.bincount(inverse, weights=parts[t][rows], minlength=m) for t in TERMS], axis=1)
    frame = pd.DataFrame(
        {
            "true": pairs[:, 0],
            "predicted": pairs[:, 1],
            "true_name": class_labels(class_names, pairs[:, 0]),
            "predicted_name": class_labels(class_names, pairs[:, 1]),
            "count": counts,
            "share": counts / max(len(rows), 1),
            "kl_mean": kl_sum / np.maximum(counts, 1),
            "dominant": np.array(TERMS)[stacked.argmax(1)],
        }
    )
    if family is not None:
        family = np.asarray(family)
        frame["same_family"] = family[frame["true"].to_numpy()] == family[frame["predicted"].to_numpy()]
    if in_strong is not None:
        hits = np.bincount(inverse, weights=np.asarray(in_strong)[rows].astype(np.float64), minlength=m)
        frame["in_strong_rate"] = hits / np.maximum(counts, 1)
    frame = frame.sort_values(["count", "kl_mean"], ascending=False, kind="stable").reset_index(drop=True)
    return frame if limit is None else frame.head(limit)
