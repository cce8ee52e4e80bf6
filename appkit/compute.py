"""Cached library calls that pages share (small results in `st.cache_data`, keyed on the bundle identity).

Each wrapper takes the `Selection` (for the bundle and settings) and display-free arguments, calls one
`cakd_viz` function, and caches the small result; pages never compute themselves.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from appkit import views
from appkit.state import Selection
from cakd_viz import aggregates, compare, diagnose, families, scans
from cakd_viz.grouping import parse_grouping

SCAN_SAMPLE = 3000  # scans decompose a fixed random subset of this many samples per setting
COMEMBERSHIP_SAMPLE = 20000  # pair counts over at most this many samples


def shares_by_student(sel: Selection, grouping: str | None = None) -> pd.DataFrame:
    """One row per student: its dataset summary (shares, mean terms, accuracies) under the selection."""
    spec = str(parse_grouping(grouping or sel.grouping))
    rows = [
        {"student": name, **_summary(sel.key, name, spec, float(sel.temperature), sel.device)}
        for name in sel.students
    ]
    return pd.DataFrame(rows)


@st.cache_data(max_entries=64, show_spinner=False)
def _summary(key, student, grouping, temperature, device) -> dict:
    from appkit.state import _decompose

    return aggregates.dataset_summary(_decompose(key, student, grouping, temperature, device))


@st.cache_data(max_entries=32, show_spinner=False)
def histograms(key, student: str, grouping: str, temperature: float, device: str) -> dict[str, pd.DataFrame]:
    """Pre-binned log10 distributions of KL and each contribution."""
    from appkit.state import _decompose

    return aggregates.term_histograms(_decompose(key, student, grouping, temperature, device))


@st.cache_data(max_entries=32, show_spinner=False)
def breakdown(
    key, student: str, grouping: str, temperature: float, device: str, by: str, names: tuple[str, ...]
) -> pd.DataFrame:
    """Per-class summary, sorted by total KL (``names``: the classes' display names)."""
    from appkit.state import _decompose

    d = _decompose(key, student, grouping, temperature, device)
    return aggregates.class_breakdown(d, by=by, num_classes=len(names), class_names=list(names))


def _pair(key, a: str, b: str, grouping: str, temperature: float, device: str):
    from appkit.state import _decompose

    return (
        _decompose(key, a, grouping, temperature, device),
        _decompose(key, b, grouping, temperature, device),
    )


@st.cache_data(max_entries=32, show_spinner=False)
def compare_summary(key, a: str, b: str, grouping: str, temperature: float, device: str) -> pd.DataFrame:
    """`compare.summary` of students A and B (measure, a, b, delta)."""
    return compare.summary(*_pair(key, a, b, grouping, temperature, device))


@st.cache_data(max_entries=32, show_spinner=False)
def compare_classes(
    key, a: str, b: str, grouping: str, temperature: float, device: str, by: str, names: tuple[str, ...]
) -> pd.DataFrame:
    """`compare.class_deltas` of A and B per class of ``by``."""
    da, db = _pair(key, a, b, grouping, temperature, device)
    return compare.class_deltas(da, db, by=by, num_classes=len(names), class_names=list(names))


@st.cache_data(max_entries=16, show_spinner=False)
def compare_set(
    key,
    a: str,
    b: str,
    grouping: str,
    temperature: float,
    device: str,
    which: str,
    names: tuple[str, ...],
    limit: int,
) -> tuple[int, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(size, `compare.set_summary`, the first ``limit`` rows of `compare.changes`, every row) of the
    samples "fixed" or "broken" by B."""
    da, db = _pair(key, a, b, grouping, temperature, device)
    mask = compare.set_mask(da, db, which)
    every = compare.changes(da, db, mask, class_names=list(names))
    return int(mask.sum()), compare.set_summary(da, db, mask), every.head(limit), every


@st.cache_data(max_entries=32, show_spinner="Scanning the temperature on a subset…")
def temperature_scan(
    key, students: tuple[str, ...], grouping: str, temperatures: tuple[float, ...], device: str
):
    """Shares vs T for each student on a fixed random subset (`SCAN_SAMPLE` samples)."""
    b = views.load(key)
    frames = []
    for name in students:
        f = scans.temperature_scan(
            b.student(name),
            b.teacher,
            b.labels,
            temperatures=temperatures,
            grouping=grouping,
            sample=SCAN_SAMPLE,
            device=device,
            correlation=_corr_for(key, grouping),
        )
        frames.append(f.assign(student=name))
    return pd.concat(frames, ignore_index=True)


@st.cache_data(max_entries=32, show_spinner="Scanning the grouping on a subset…")
def grouping_scan(
    key,
    students: tuple[str, ...],
    groupings: tuple[str, ...],
    values: tuple[float, ...],
    temperature: float,
    device: str,
):
    """Shares vs grouping spec for each student on a fixed random subset (`SCAN_SAMPLE` samples);
    column "param" holds the swept parameter value of each spec (`values`, in the order of `groupings`)."""
    b = views.load(key)
    frames = []
    corr = views.correlation(key) if any(parse_grouping(g).needs_correlation for g in groupings) else None
    for name in students:
        f = scans.grouping_scan(
            b.student(name),
            b.teacher,
            b.labels,
            groupings=groupings,
            temperature=temperature,
            sample=SCAN_SAMPLE,
            device=device,
            correlation=corr,
        )
        frames.append(f.assign(student=name, param=list(values)))
    return pd.concat(frames, ignore_index=True)


def correlation(key) -> np.ndarray:
    """The teacher's (C, C) class-correlation matrix."""
    return views.correlation(key)


@st.cache_data(max_entries=16, show_spinner=False)
def clusters(key, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """(order, family) of the classes: hierarchical clustering of the teacher's correlations."""
    return families.cluster_classes(views.correlation(key), threshold=threshold)


@st.cache_data(max_entries=16, show_spinner="Counting which classes share a strong set…")
def comembership(key, grouping: str, temperature: float) -> tuple[np.ndarray, int]:
    """((C, C) pair counts, number of samples counted), over at most `COMEMBERSHIP_SAMPLE` samples."""
    b = views.load(key)
    rows = scans.subset_rows(b.num_samples, COMEMBERSHIP_SAMPLE)
    teacher = b.teacher if len(rows) == b.num_samples else np.asarray(b.teacher[rows])
    labels = None if b.labels is None else np.asarray(b.labels)[rows]
    corr = _corr_for(key, grouping)
    counts = families.comembership(
        teacher, labels, grouping=grouping, temperature=temperature, correlation=corr
    )
    return counts, len(rows)


def _corr_for(key, grouping: str):
    return views.correlation(key) if parse_grouping(grouping).needs_correlation else None


@st.cache_data(max_entries=8, show_spinner="Reading the bundle's summary…")
def bundle_summary(key) -> dict:
    """`Bundle.summary()`: shapes, dtype, students with accuracy and agreement, size on disk."""
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


@st.cache_data(max_entries=16, show_spinner="Checking which predictions fall in the strong set…")
def in_strong(
    _d, key, student: str, grouping: str, temperature: float, device: str, which: str
) -> np.ndarray:
    """Per sample of failure set ``which``: the student's prediction lies in its strong set S.

    ``_d`` is the view's decomposition (not hashed: the other arguments identify it).
    """
    rows = np.flatnonzero(diagnose.failure_mask(_d, which))
    return diagnose.prediction_in_strong(
        _d, views.load(key).teacher, rows, correlation=_corr_for(key, grouping)
    )
