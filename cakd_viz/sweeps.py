"""How the split moves with the temperature and with the grouping, and which classes travel together.

Sweeps decompose a fixed random subset (default 5,000 samples) once per setting, so they stay fast on
large bundles; the subset is reported with the result so charts can say so.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from scipy.cluster.hierarchy import fcluster, leaves_list, linkage
from scipy.spatial.distance import squareform

from cakd_viz.decompose import decompose
from cakd_viz.grouping import correlated_classes, parse_grouping, strong_mask


def subset_rows(n: int, size: int | None, seed: int = 0) -> np.ndarray:
    """Sorted indices of a reproducible random subset of `size` rows (all rows when size >= n)."""
    if size is None or size >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=size, replace=False))


def _take(arr, rows: np.ndarray) -> np.ndarray:
    return np.asarray(arr[rows]) if len(rows) < arr.shape[0] else np.asarray(arr)


def temperature_sweep(
    student, teacher, labels=None, *, temperatures, grouping="topk:5", sample: int | None = 5000, seed=0, **kw
) -> pd.DataFrame:
    """Shares and mean terms for each temperature. Columns: temperature, kl_mean, share_*, *_mean, n."""
    rows = subset_rows(teacher.shape[0], sample, seed)
    s, t = _take(student, rows), _take(teacher, rows)
    y = None if labels is None else np.asarray(labels)[rows]
    return pd.DataFrame(
        [_summary(decompose(s, t, y, grouping=grouping, temperature=T, **kw)) for T in temperatures]
    )


def grouping_sweep(
    student, teacher, labels=None, *, groupings, temperature=1.0, sample: int | None = 5000, seed=0, **kw
) -> pd.DataFrame:
    """Shares and mean terms for each grouping spec (e.g. topk:1..10). Columns as temperature_sweep, plus grouping."""
    rows = subset_rows(teacher.shape[0], sample, seed)
    s, t = _take(student, rows), _take(teacher, rows)
    y = None if labels is None else np.asarray(labels)[rows]
    return pd.DataFrame(
        [_summary(decompose(s, t, y, grouping=g, temperature=temperature, **kw)) for g in groupings]
    )


def _summary(d) -> dict:
    shares = d.shares()
    out = {"grouping": d.grouping, "temperature": d.temperature, "n": len(d), "kl_mean": float(d.kl.mean())}
    for name, values in d.contributions().items():
        out[f"{name}_mean"] = float(values.mean())
        out[f"share_{name}"] = shares[name]
    out["strong_size_mean"] = float(d.strong_size.mean())
    return out


def comembership(
    teacher, labels=None, *, grouping="topk:5", temperature=1.0, correlation=None, chunk_rows=8192
) -> np.ndarray:
    """How often each pair of classes falls in the same strong set: (C, C) counts (diagonal: class in S).

    Streams over rows; the product of the (n, C) strong masks with themselves accumulates the counts.
    """
    g = parse_grouping(grouping)
    n, c = teacher.shape
    correlated = None if correlation is None else correlated_classes(correlation, float(g.param or 0))
    counts = torch.zeros((c, c), dtype=torch.float64)
    y = None if labels is None else torch.as_tensor(np.asarray(labels), dtype=torch.int64)
    for start in range(0, n, chunk_rows):
        z = torch.as_tensor(np.asarray(teacher[start : start + chunk_rows]), dtype=torch.float32)
        yy = None if y is None else y[start : start + chunk_rows]
        m = strong_mask(g, z, yy, temperature=temperature, correlated=correlated).float()  # (n, C)
        counts += (m.T @ m).double()
    return counts.numpy()


def cluster_classes(correlation: np.ndarray, *, threshold: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Order classes by average-linkage hierarchical clustering on 1 - correlation, and cut families.

    Returns (order (C,) permutation for heatmap axes, family (C,) integer family id per class, where
    classes whose average correlation is at least `threshold` share a family).
    """
    corr = np.nan_to_num(np.asarray(correlation, dtype=np.float64), nan=0.0)
    dist = np.clip(1.0 - corr, 0.0, 2.0)
    np.fill_diagonal(dist, 0.0)
    dist = (dist + dist.T) / 2.0
    tree = linkage(squareform(dist, checks=False), method="average")
    order = leaves_list(tree)
    family = fcluster(tree, t=1.0 - threshold, criterion="distance")
    return order, family - 1
