"""Finding samples: which samples pass a set of filters, in which order, and their rows as a table.

Everything works from computed decompositions (student A, and optionally B of the same bundle under the
same setting) with numpy masks over their per-sample arrays, so a 1,280,000-sample bundle filters in
milliseconds; no per-sample Python object is built except for the rows asked for (`sample_table`).

A sample's **reference class** is its true class when the bundle has labels, else the teacher's top
class: it is the class a confusion pair starts from and the class whose family a sample belongs to.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
import pandas as pd

from cakd_viz import compare, diagnose
from cakd_viz.decomposition import TERMS, Decomposition

ANY_FAILURE = "Student wrong"
"""A failure set beside `diagnose.FAILURE_SETS`: the student does not predict the true class (whatever
the teacher does): the union of "Student wrong, teacher right" and "Both wrong"."""

FAILURES = {
    ANY_FAILURE: "the student does not predict the true class",
    **{name: fs.description for name, fs in diagnose.FAILURE_SETS.items()},
}
"""Every failure set a filter can name -> its description."""

SORT_KEYS = {**diagnose.RANK_KEYS, "sample index": "index"}
"""Display name -> what samples are sorted by: a column of `sample_table`, or the bundle's order."""


@dataclass(frozen=True)
class Filters:
    """What a sample must satisfy (None: no condition). Class filters hold class indices.

    true: its label; teacher: the teacher's top class; pred / pred_b: student A's / B's top class;
    pair: (reference class, A's top class), a confusion when the two differ;
    failure: a key of `FAILURES` (about A); change: "fixed" or "broken" by B (`compare.SETS`);
    term: its largest part of the KL ("bcd", "scd" for p_S·SCD, "wcd" for p_W·WCD);
    family: the family of its reference class (ids as `families.cluster_classes` gives them).
    """

    true: int | None = None
    teacher: int | None = None
    pred: int | None = None
    pred_b: int | None = None
    pair: tuple[int, int] | None = None
    failure: str | None = None
    change: str | None = None
    term: str | None = None
    family: int | None = None

    def active(self) -> dict[str, object]:
        """The conditions that are set, by field name (plain Python values)."""
        out = {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}
        return {k: tuple(int(x) for x in v) if k == "pair" else _plain(v) for k, v in out.items()}


def _plain(value):
    return int(value) if isinstance(value, np.integer) else value


def reference(d: Decomposition) -> np.ndarray:
    """(N,) each sample's reference class: its label, or the teacher's top class without labels."""
    return d.labels if d.labels is not None else d.teacher_pred


def failure_mask(d: Decomposition, which: str) -> np.ndarray:
    """(N,) bool: the samples of failure set ``which`` (a key of `FAILURES`)."""
    if which == ANY_FAILURE:
        if d.labels is None:
            raise ValueError(f"failure set {which!r} needs labels, and this decomposition has none")
        return d.student_pred != d.labels
    return diagnose.failure_mask(d, which)


def match(
    d: Decomposition, d_b: Decomposition | None = None, *, filters: Filters, family: np.ndarray | None = None
) -> np.ndarray:
    """(N,) bool: the samples of ``d`` (student A) that pass every condition of ``filters``.

    ``d_b``: student B's decomposition (needed by ``pred_b`` and ``change``); ``family``: (C,) family id
    per class (needed by ``family``). A condition that needs what is missing is a ValueError."""
    f = filters
    if f.true is not None and d.labels is None:
        raise ValueError("a filter on the true class needs labels, and this decomposition has none")
    if (f.pred_b is not None or f.change is not None) and d_b is None:
        raise ValueError("a filter on student B needs B's decomposition")
    mask = np.ones(len(d), dtype=bool)
    ref, pred = f.pair or (None, None)
    b_pred = None if d_b is None else d_b.student_pred
    classes = [(d.labels, f.true), (d.teacher_pred, f.teacher), (d.student_pred, f.pred), (b_pred, f.pred_b)]
    for values, wanted in [*classes, (reference(d), ref), (d.student_pred, pred)]:
        if wanted is not None:
            mask &= values == wanted
    if f.change is not None:
        mask &= compare.set_mask(d, d_b, f.change)
    if f.failure is not None:
        mask &= failure_mask(d, f.failure)
    if f.term is not None:
        if f.term not in TERMS:
            raise ValueError(f"unknown term {f.term!r}; choose one of: {', '.join(TERMS)}")
        mask &= diagnose.per_sample_dominant(d) == TERMS.index(f.term)
    if f.family is not None:
        if family is None:
            raise ValueError("a filter on the family needs the classes' families")
        mask &= np.asarray(family)[reference(d)] == f.family
    return mask


def filter_samples(
    d: Decomposition,
    d_b: Decomposition | None = None,
    *,
    filters: Filters = Filters(),
    family: np.ndarray | None = None,
    by: str = "kl",
    descending: bool = True,
) -> np.ndarray:
    """(M,) int64 indices of the samples that pass ``filters`` (see `match`), sorted by ``by`` (a value of
    `SORT_KEYS`: "kl", "bcd", "scd_contribution", ..., or "index" for the bundle's order), largest first
    with ``descending``; equal values keep the bundle's order."""
    rows = np.flatnonzero(match(d, d_b, filters=filters, family=family))
    if by != "index" and by not in SORT_KEYS.values():
        raise ValueError(f"cannot sort by {by!r}; choose one of: {', '.join(SORT_KEYS.values())}")
    if by == "index":
        return rows[::-1] if descending else rows
    key = getattr(d, by)[rows]
    return rows[np.argsort(-key if descending else key, kind="stable")]


def top_confusions(
    d: Decomposition, mask: np.ndarray | None = None, *, limit: int | None = 10
) -> pd.DataFrame:
    """The most frequent (reference class -> student's class) pairs among the samples of ``mask`` (default
    all) where the two differ, at most ``limit`` (None: every pair that occurs). Columns: true, predicted,
    count; most frequent first, ties by class."""
    ref, pred = reference(d), d.student_pred
    wrong = ref != pred if mask is None else (ref != pred) & mask
    c = int(max(ref.max(initial=0), pred.max(initial=0))) + 1
    counts = np.bincount(ref[wrong].astype(np.int64) * c + pred[wrong], minlength=c * c)
    best = np.flatnonzero(counts)
    best = best[np.argsort(-counts[best], kind="stable")][:limit]
    return pd.DataFrame({"true": best // c, "predicted": best % c, "count": counts[best]})


def sample_table(
    d: Decomposition, rows: np.ndarray, *, d_b: Decomposition | None = None, class_names=None
) -> pd.DataFrame:
    """One row per sample of ``rows`` (in that order): its classes, predictions and terms.

    Columns: index, [label, label_name], teacher_pred, teacher_name, a_pred, a_says, [b_pred, b_says],
    kl, bcd, scd_contribution, wcd_contribution, scd, wcd, dominant (a term name), teacher_strong_mass,
    student_strong_mass, strong_size, [kl_b] (the bracketed ones with labels, and with ``d_b``)."""
    students = {"a_pred": ("a_says", d)} | ({"b_pred": ("b_says", d_b)} if d_b is not None else {})
    frame = diagnose.sample_frame(d, rows, class_names=class_names, students=students)
    if d_b is not None:
        frame["kl_b"] = d_b.kl[np.asarray(rows, dtype=np.int64)]
    return frame


def page_count(matches: int, per_page: int) -> int:
    """How many pages of ``per_page`` the matches fill (at least 1, an empty page when none match)."""
    return max(1, -(-int(matches) // int(per_page)))


def page_rows(rows: np.ndarray, page: int, per_page: int) -> np.ndarray:
    """The rows on page ``page`` (counted from 1) of ``per_page`` each."""
    start = (int(page) - 1) * int(per_page)
    return np.asarray(rows)[start : start + int(per_page)]


CLASS_COLUMNS = ("label", "teacher_pred", "a_pred", "b_pred")
"""`sample_table`'s class indices: in downloads, not in the table a page shows (it shows the names)."""


def snippet_lines(
    student: str,
    student_b: str | None,
    filters: Filters,
    *,
    by: str,
    descending: bool,
    class_names=None,
    family_threshold: float = 0.5,
    correlation_rows: int = 100_000,
) -> list[str]:
    """The body of a "reproduce in Python" snippet that prints the matching rows as CSV (after the
    preamble of `cakd_viz.export.python_snippet`, which defines ``bundle``, ``names``, ``readable`` and
    ``terms(student)``). Families are cut from the teacher's class correlation as the app does: over all
    samples or a fixed random ``correlation_rows`` of them (seed 0), of the logits standardized per sample
    when the preamble's ``STANDARDIZE`` says so (LS). Every value is written with repr."""
    lines = ["import sys", "", "from cakd_viz import explore", "from cakd_viz.terms import PART", ""]
    lines += [f"d = terms({student!r})", f"d_b = terms({student_b!r})" if student_b else "d_b = None"]
    if filters.family is not None:
        lines += [
            "from cakd_viz.families import cluster_classes",
            "from cakd_viz.scans import subset_rows",
            "",
            f"picked = subset_rows(bundle.num_samples, {int(correlation_rows)!r})  # the app's rows (seed 0)",
            "teacher = bundle.teacher if len(picked) == bundle.num_samples else bundle.teacher[picked]",
            "correlation = class_correlation(teacher, standardize=STANDARDIZE)",
            f"family = cluster_classes(correlation, threshold={float(family_threshold)!r})[1]",
        ]
    else:
        lines.append("family = None")
    for name, value in filters.active().items():
        if name in ("true", "teacher", "pred", "pred_b") and class_names is not None:
            lines.append(f"# {name} = {value!r}: class {str(class_names[int(value)])!r}")
        elif name == "pair" and class_names is not None:
            words = " -> ".join(repr(str(class_names[int(c)])) for c in value)
            lines.append(f"# pair = {value!r}: {words}")
    lines += [
        f"filters = explore.Filters(**{filters.active()!r})",
        f"rows = explore.filter_samples(d, d_b, filters=filters, family=family, by={by!r}, "
        f"descending={bool(descending)!r})",
        "table = explore.sample_table(d, rows, d_b=d_b, class_names=names)",
        f"table = table.drop(columns={list(CLASS_COLUMNS)!r}, errors='ignore')",
        "table['dominant'] = table['dominant'].map(PART)",
        "print(f'{len(rows):,} of {len(d):,} samples match', file=sys.stderr)",
        f"print(readable(table, a={student!r}, b={student_b or 'B'!r}).to_csv(index=False))",
    ]
    return lines
