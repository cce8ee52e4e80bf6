"""Scans: how the split moves with the temperature T and with the grouping's parameter (K, P or R).

A scan decomposes a fixed random subset (default 5,000 samples) once per setting, so it stays fast on
large bundles; the subset's size is reported with the result (column ``n``) so charts can say so.
These are views of one bundle, not training runs: hyperparameter sweeps of runs live in
`cakd_viz.runs.sweep`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from cakd_viz.aggregates import dataset_summary
from cakd_viz.decomposition import decompose


def subset_rows(n: int, size: int | None, seed: int = 0) -> np.ndarray:
    """Sorted indices of a reproducible random subset of `size` rows (all rows when size >= n)."""
    if size is None or size >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=size, replace=False))


def _take(arr, rows: np.ndarray) -> np.ndarray:
    return np.asarray(arr[rows]) if len(rows) < arr.shape[0] else np.asarray(arr)


def temperature_scan(
    student, teacher, labels=None, *, temperatures, grouping="topk:5", sample: int | None = 5000, seed=0, **kw
) -> pd.DataFrame:
    """Shares and mean terms for each temperature: one row of `aggregates.dataset_summary` per T, plus n."""
    return _scan(student, teacher, labels, [(grouping, T) for T in temperatures], sample, seed, kw)


def grouping_scan(
    student, teacher, labels=None, *, groupings, temperature=1.0, sample: int | None = 5000, seed=0, **kw
) -> pd.DataFrame:
    """Shares and mean terms for each grouping spec (e.g. topk:1..10). Columns as temperature_scan."""
    return _scan(student, teacher, labels, [(g, temperature) for g in groupings], sample, seed, kw)


def _scan(student, teacher, labels, settings, sample: int | None, seed, kw: dict) -> pd.DataFrame:
    """One row per (grouping, T) of ``settings``, each decomposing the same subset of rows."""
    rows = subset_rows(teacher.shape[0], sample, seed)
    s, t = _take(student, rows), _take(teacher, rows)
    y = None if labels is None else np.asarray(labels)[rows]
    decompositions = (decompose(s, t, y, grouping=g, temperature=T, **kw) for g, T in settings)
    return pd.DataFrame([{**dataset_summary(d), "n": len(d)} for d in decompositions])
