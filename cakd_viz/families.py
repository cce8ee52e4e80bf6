"""Correlation families: which classes travel together in the teacher's logits and in strong sets.

`cluster_classes` orders classes by hierarchical clustering of the teacher's class correlation
(`grouping.class_correlation`) and cuts it into families; `comembership` counts how often two classes
share a strong set S under a grouping rule.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.cluster.hierarchy import fcluster, leaves_list, linkage
from scipy.spatial.distance import squareform

from cakd_viz.decomposition.membership import strong_sets


def comembership(
    teacher,
    labels=None,
    *,
    grouping="topk:5",
    temperature=1.0,
    correlation=None,
    chunk_rows=8192,
    standardize: bool = False,
) -> np.ndarray:
    """How often each pair of classes falls in the same strong set: (C, C) counts (diagonal: class in S).

    Streams over rows (``strong_sets``: the decomposition kernel's selection where it applies); the
    product of the (n, C) strong masks with themselves accumulates the counts.
    standardize: the standardized teacher's sets (logit standardization; ``correlation`` then the
    standardized teacher's too, for corr:R).
    """
    c = teacher.shape[1]
    counts = torch.zeros((c, c), dtype=torch.float64)
    options = dict(
        grouping=grouping, temperature=temperature, correlation=correlation, standardize=standardize
    )
    for _, mask in strong_sets(teacher, labels, chunk_rows=chunk_rows, **options):
        m = torch.from_numpy(mask).float()  # (n, C)
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
