"""Cached library calls that pages share, each one `cakd_viz` call with its small result in `st.cache_data`:
keyed by a ``progressive.Result``'s identity (``Result.ident``: view, settings, student) for what is
derived from a decomposition, else by the view's key (``cakd_viz.app.views``) and the settings, logit
standardization (``standardize``) included wherever it applies.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from cakd_viz import aggregates, compare, diagnose, dominance, embedding, explore, families, scans
from cakd_viz.app import views
from cakd_viz.app.progressive import Result
from cakd_viz.decomposition import membership
from cakd_viz.decomposition.membership import in_strong_set
from cakd_viz.grouping import parse_grouping

SCAN_ALL_UP_TO = 20000  # scans decompose every sample of a bundle of at most this many samples ...
SCAN_SAMPLE = 3000  # ... and beyond it a fixed random subset (seed 0) of this many per setting
SCAN_SEED = 0
COMEMBERSHIP_SAMPLE = 20000  # pair counts over at most this many samples
FAMILY_THRESHOLD = 0.5  # classes whose average teacher-logit correlation reaches this share a family


def scan_sample(num_samples: int) -> int | None:
    """How many samples a scan of a bundle of ``num_samples`` decomposes per setting (None: all)."""
    return None if num_samples <= SCAN_ALL_UP_TO else SCAN_SAMPLE


def scan_scope(used: int, num_samples: int) -> str:
    """Which samples a scan covered, in words: "over all 3,100 samples", or "on 3,000 of 1,280,000
    samples, drawn at random with seed 0"."""
    if used >= num_samples:
        return f"over all {num_samples:,} samples"
    return f"on {used:,} of {num_samples:,} samples, drawn at random with seed {SCAN_SEED}"


# A Result is hashed by its identity (``Result.ident``), never by its arrays.
_BY_IDENT = {Result: lambda r: r.ident}


def shares_by_student(res: dict[str, Result]) -> pd.DataFrame:
    """One row per student: its dataset summary (shares, mean terms, accuracies) from ``res`` (student ->
    ``progressive.Result``, as ``state.results`` gives them)."""
    return pd.DataFrame([{"student": name, **_summary(r)} for name, r in res.items()])


@st.cache_data(max_entries=64, show_spinner=False, hash_funcs=_BY_IDENT)
def _summary(r: Result) -> dict:
    return aggregates.dataset_summary(r.d)


@st.cache_data(max_entries=32, show_spinner=False, hash_funcs=_BY_IDENT)
def histograms(r: Result) -> dict[str, pd.DataFrame]:
    """Pre-binned log10 distributions of KL and each contribution."""
    return aggregates.term_histograms(r.d)


@st.cache_data(max_entries=32, show_spinner=False, hash_funcs=_BY_IDENT)
def breakdown(r: Result, by: str, names: tuple[str, ...]) -> pd.DataFrame:
    """Per-class summary, sorted by total KL (``names``: the classes' display names)."""
    return aggregates.class_breakdown(r.d, by=by, num_classes=len(names), class_names=list(names))


@st.cache_data(max_entries=32, show_spinner=False, hash_funcs=_BY_IDENT)
def compare_summary(a: Result, b: Result) -> pd.DataFrame:
    """`compare.summary` of students A and B (measure, a, b, delta)."""
    return compare.summary(a.d, b.d)


@st.cache_data(max_entries=32, show_spinner=False, hash_funcs=_BY_IDENT)
def compare_classes(a: Result, b: Result, by: str, names: tuple[str, ...]) -> pd.DataFrame:
    """`compare.class_deltas` of A and B per class of ``by``."""
    return compare.class_deltas(a.d, b.d, by=by, num_classes=len(names), class_names=list(names))


@st.cache_data(max_entries=16, show_spinner=False, hash_funcs=_BY_IDENT)
def compare_set(
    a: Result, b: Result, which: str, names: tuple[str, ...], limit: int
) -> tuple[int, pd.DataFrame, pd.DataFrame]:
    """(size, `compare.set_summary`, the first ``limit`` rows of `compare.changes`) of the samples "fixed"
    or "broken" by B; the "index" column holds the bundle's sample indices (row i of a Result is sample i)."""
    mask = compare.set_mask(a.d, b.d, which)
    rows = compare.changes(a.d, b.d, mask, limit=limit, class_names=list(names))
    return int(mask.sum()), compare.set_summary(a.d, b.d, mask), rows


@st.cache_data(max_entries=16, show_spinner=False, hash_funcs=_BY_IDENT)
def ls_students(plain: dict[str, Result], standardized: dict[str, Result]) -> pd.DataFrame:
    """`dominance.students_table`: every student's shares without and with LS."""
    return dominance.students_table(
        {s: r.d for s, r in plain.items()}, {s: r.d for s, r in standardized.items()}
    )


@st.cache_data(max_entries=16, show_spinner=False, hash_funcs=_BY_IDENT)
def ls_classes(plain: Result, standardized: Result, by: str, names: tuple[str, ...]) -> pd.DataFrame:
    """`dominance.classes_table` of one student: per class, its shares without and with LS."""
    return dominance.classes_table(
        plain.d, standardized.d, by=by, num_classes=len(names), class_names=list(names)
    )


def _scan_students(scan, key, students: tuple[str, ...], **settings) -> pd.DataFrame:
    """``scan`` (a ``cakd_viz.scans`` sweep) of each student of view ``key`` over the samples
    ``scan_sample`` picks (seed ``SCAN_SEED``), one frame with a "student" column."""
    b = views.load(key)
    settings |= {"sample": scan_sample(b.num_samples), "seed": SCAN_SEED}
    frames = (scan(b.student(s), b.teacher, b.labels, **settings).assign(student=s) for s in students)
    return pd.concat(frames, ignore_index=True)


@st.cache_data(max_entries=32, show_spinner="Scanning the temperature…")
def temperature_scan(
    key,
    students: tuple[str, ...],
    grouping: str,
    temperatures: tuple[float, ...],
    device: str,
    standardize: bool = False,
):
    """Shares vs T for each student over every sample, or beyond `SCAN_ALL_UP_TO` samples a fixed random
    subset (`scan_sample`); column "n" holds how many samples were decomposed."""
    corr = views.correlation(key, standardize, grouping)
    return _scan_students(
        scans.temperature_scan,
        key,
        students,
        temperatures=temperatures,
        grouping=grouping,
        device=device,
        correlation=corr,
        standardize=standardize,
    )


@st.cache_data(max_entries=32, show_spinner="Scanning the grouping…")
def grouping_scan(
    key,
    students: tuple[str, ...],
    groupings: tuple[str, ...],
    values: tuple[float, ...],
    temperature: float,
    device: str,
    standardize: bool = False,
):
    """Shares vs grouping spec for each student, over the samples `temperature_scan` takes; column "param"
    holds the swept parameter value of each spec (`values`, in the order of `groupings`)."""
    needs = any(parse_grouping(g).needs_correlation for g in groupings)
    corr = views.correlation(key, standardize) if needs else None
    frame = _scan_students(
        scans.grouping_scan,
        key,
        students,
        groupings=groupings,
        temperature=temperature,
        device=device,
        correlation=corr,
        standardize=standardize,
    )
    return frame.assign(param=list(values) * len(students))


@st.cache_data(max_entries=16, show_spinner=False)
def clusters(key, threshold: float, standardize: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(order, family) of the classes: hierarchical clustering of the teacher's correlations."""
    return families.cluster_classes(views.correlation(key, standardize), threshold=threshold)


@st.cache_data(max_entries=16, show_spinner="Counting which classes share a strong set…")
def comembership(key, grouping: str, temperature: float, standardize: bool = False) -> tuple[np.ndarray, int]:
    """((C, C) pair counts, number of samples counted), over at most `COMEMBERSHIP_SAMPLE` samples."""
    b = views.load(key)
    rows = scans.subset_rows(b.num_samples, COMEMBERSHIP_SAMPLE)
    teacher = b.teacher if len(rows) == b.num_samples else np.asarray(b.teacher[rows])
    labels = None if b.labels is None else np.asarray(b.labels)[rows]
    corr = views.correlation(key, standardize, grouping)
    counts = families.comembership(
        teacher, labels, grouping=grouping, temperature=temperature, correlation=corr, standardize=standardize
    )
    return counts, len(rows)


@st.cache_data(max_entries=16, show_spinner="Counting the strong sets' sizes…")
def strong_sizes(key, grouping: str, temperature: float, standardize: bool = False) -> np.ndarray:
    """(N,) |S| of every sample of the bundle under ``grouping`` at ``temperature`` (`membership.strong_sizes`:
    the kernel's selection without a decomposition)."""
    b = views.load(key)
    corr = views.correlation(key, standardize, grouping)
    return membership.strong_sizes(
        b.teacher,
        b.labels,
        grouping=grouping,
        temperature=temperature,
        correlation=corr,
        standardize=standardize,
    )


@st.cache_data(max_entries=8, show_spinner=False)
def bundle_summary(key) -> dict:
    """`Bundle.summary()`: shapes, dtype, students with accuracy and agreement, size on disk (each model's
    predictions were taken when the bundle was opened, ``bundles.open_checked``)."""
    return views.load(key).summary()


@st.cache_data(max_entries=8, show_spinner=False)
def class_table(key, names: tuple[str, ...]) -> pd.DataFrame:
    """One row per class: index, name as shown, the bundle's own name, and how many samples carry it
    as their label (when labelled)."""
    b = views.load(key)
    frame = pd.DataFrame(
        {"class": np.arange(b.num_classes), "name": list(names), "raw_name": [str(n) for n in b.class_names]}
    )
    if b.labels is not None:
        frame["samples"] = np.bincount(np.asarray(b.labels), minlength=b.num_classes)
    return frame


@st.cache_data(max_entries=8, show_spinner=False)
def example_inputs(key, names: tuple[str, ...], count: int = 24, seed: int = 0):
    """(indices, (k, H, W, 3) uint8 images, captions) for a seeded random pick of samples, or None."""
    from cakd_viz.figures.data import as_images

    b = views.load(key)
    if b.inputs is None:
        return None
    idx = scans.subset_rows(b.num_samples, count, seed)
    images = as_images(np.asarray(b.inputs[idx]))
    if images is None:
        return None
    captions = [f"#{i} {names[int(b.labels[i])]}" if b.labels is not None else f"#{i}" for i in idx]
    return idx, images, captions


@st.cache_data(
    max_entries=16, show_spinner="Checking which predictions fall in the strong set…", hash_funcs=_BY_IDENT
)
def in_strong(r: Result, key: tuple, which: str) -> np.ndarray:
    """Per sample of ``r.d``: whether the student's prediction lies in its strong set S, for the samples
    of failure set ``which`` (the others False); S rebuilt from the teacher's rows of those samples by the
    kernel's own selection (``decomposition.membership``)."""
    d = r.d
    rows = np.flatnonzero(diagnose.failure_mask(d, which))
    out = np.zeros(len(d), dtype=bool)
    out[rows] = in_strong_set(
        d.student_pred[rows],
        views.load(key).teacher,
        d.labels,
        rows,
        grouping=d.grouping,
        temperature=d.temperature,
        correlation=views.correlation(key, d.standardize, d.grouping),
        standardize=d.standardize,
    )
    return out


# -- the samples explorer -----------------------------------------------------------------------------


def families_of_classes(
    key, names: tuple[str, ...], standardize: bool = False
) -> tuple[np.ndarray, dict[int, str]]:
    """((C,) family id of each class, {family id: its members' names, "O (upper o) · o (lower o)"}) from the
    teacher's class correlation (`clusters` at `FAMILY_THRESHOLD`; with ``standardize``, the standardized
    teacher's, as the Correlation and Diagnose pages cut them under LS), in the order of their first class."""
    _, family = clusters(key, FAMILY_THRESHOLD, standardize)
    words: dict[int, str] = {}
    for f in dict.fromkeys(int(x) for x in family):  # first appearance order
        members = [names[c] for c in np.flatnonzero(family == f)]
        words[f] = " · ".join(members[:4]) + (f" and {len(members) - 4} more" if len(members) > 4 else "")
    return family, words


@st.cache_data(max_entries=16, show_spinner=False)
def thumbnails(key, rows: tuple[int, ...], tile: int = 72) -> np.ndarray | None:
    """(k, h, w, 3) uint8 images of the bundle's inputs of ``rows``, enlarged to about ``tile`` pixels;
    None when the bundle has no inputs or they are not images."""
    from cakd_viz.figures.data import as_images, enlarge

    b = views.load(key)
    if b.inputs is None or not rows:
        return None
    images = as_images(np.asarray(b.inputs[np.asarray(rows, dtype=np.int64)]))
    return None if images is None else enlarge(images, tile)


@st.cache_data(max_entries=8, show_spinner=False)
def sample_map(key, temperature: float, method: str) -> embedding.SampleMap:
    """`embedding.teacher_map` of the bundle's teacher at ``temperature`` (seed 0)."""
    return embedding.teacher_map(views.load(key).teacher, temperature=temperature, method=method, seed=0)


def confusions_here(
    a: Result, b: Result | None, filters: explore.Filters, *, family: np.ndarray | None
) -> pd.DataFrame:
    """Every confusion pair of A (`explore.top_confusions`) among the samples that pass ``filters`` but
    its pair, most frequent first: the choices of the pair filter (picking one still lists the others)."""
    loose = explore.Filters(**{**filters.active(), "pair": None})
    mask = explore.match(a.d, None if b is None else b.d, filters=loose, family=family)
    return explore.top_confusions(a.d, mask, limit=None)


def map_points(
    a: Result,
    m: embedding.SampleMap,
    color: str,
    family: np.ndarray,
    family_words: dict[int, str],
    names: tuple[str, ...],
    rows: np.ndarray,
) -> dict:
    """What `figures.explore.map_figure` needs besides the map: each point's group under ``color``
    ("family", "class" or "term"), the groups' names, hover texts, KL of A and whether it is in ``rows``."""
    d = a.d.subset(m.rows)
    ref, says = explore.reference(d), d.student_pred
    if color == "family":
        groups, words = np.asarray(family)[ref], [family_words.get(i, str(i)) for i in range(len(names))]
    elif color == "class":
        groups, words = ref, list(names)
    else:
        groups, words = diagnose.per_sample_dominant(d), []
    hover = [f"{names[r]}; {a.student} says {names[s]}" for r, s in zip(ref, says, strict=True)]
    return {
        "groups": np.asarray(groups),
        "group_names": words,
        "by": color,
        "hover": hover,
        "kl": d.kl,
        "matched": np.isin(m.rows, rows),
    }
