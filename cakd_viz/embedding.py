"""A 2-D map of the samples: each sample placed from the teacher's probabilities at a temperature T.

`teacher_map` projects softmax(teacher / T) with PCA (scikit-learn, the default: a linear view, seconds
at any size) or t-SNE (neighbourhoods kept, slow: at most `LIMITS["tsne"]` samples), on every sample or,
beyond the method's limit, on a fixed random subsample (`scans.subset_rows`, seeded). The same inputs
and seed give the same map, bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cakd_viz.scans import subset_rows

METHODS = {"pca": "PCA", "tsne": "t-SNE"}
"""Method -> its name in words."""

LIMITS = {"pca": 20_000, "tsne": 5_000}
"""The most samples each method places; beyond it, a fixed random subsample of that many."""

TSNE_INPUT_DIMS = 50  # t-SNE runs on the first principal components of the probabilities beyond this
# t-SNE runs on one thread: scikit-learn's gradient step meets an OpenMP barrier every iteration, which on
# a machine whose cores are busy costs more than the second thread saves (measured: 2,000 samples, 500
# iterations, 13 s on one thread against 37 s on two, on 2 cores shared with other work).


@dataclass(frozen=True)
class SampleMap:
    """Where each sample lies: ``xy`` (n, 2) for the bundle's samples ``rows`` (n,), increasing."""

    xy: np.ndarray
    rows: np.ndarray
    total: int  # samples in the bundle
    method: str
    temperature: float
    seed: int

    def scope(self) -> str:
        """Which samples the map shows, in words."""
        if len(self.rows) == self.total:
            return f"all {self.total:,} samples"
        return f"{len(self.rows):,} of {self.total:,} samples, drawn at random with seed {self.seed}"


def probabilities(teacher, rows: np.ndarray, temperature: float) -> np.ndarray:
    """(n, C) float64 softmax(teacher[rows] / T) (teacher: (N, C), a memory map is fine)."""
    z = np.asarray(teacher[rows], dtype=np.float64) / float(temperature)
    z -= z.max(axis=1, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=1, keepdims=True)
    return z


def teacher_map(
    teacher, *, temperature: float, method: str = "pca", limit: int | None = None, seed: int = 0
) -> SampleMap:
    """Place the samples of ``teacher`` (N, C logits) in 2-D from their probabilities at ``temperature``.

    ``method``: "pca" or "tsne"; ``limit``: the most samples placed (default `LIMITS[method]`), a fixed
    random subsample of that many (drawn with ``seed``) beyond it."""
    if method not in METHODS:
        raise ValueError(f"unknown map method {method!r}; choose one of: {', '.join(METHODS)}")
    if not float(temperature) > 0:
        raise ValueError(f"temperature must be > 0, got {temperature!r}")
    n = int(teacher.shape[0])
    rows = subset_rows(n, LIMITS[method] if limit is None else int(limit), seed)
    p = probabilities(teacher, rows, temperature)
    xy = _pca(p, 2, seed) if method == "pca" else _tsne(p, seed)
    return SampleMap(np.ascontiguousarray(xy, dtype=np.float64), rows, n, method, float(temperature), seed)


def _pca(x: np.ndarray, dims: int, seed: int) -> np.ndarray:
    """The first ``dims`` principal components of ``x`` (n, C); fewer samples or classes pad with 0, and
    samples all alike (one sample, too) are all at 0."""
    from sklearn.decomposition import PCA

    k = min(dims, x.shape[0], x.shape[1])
    out = np.zeros((x.shape[0], dims))
    if k > 0 and np.ptp(x, axis=0).any():
        out[:, :k] = PCA(n_components=k, svd_solver="randomized", random_state=seed).fit_transform(x)
    return out


def _tsne(x: np.ndarray, seed: int) -> np.ndarray:
    """t-SNE of ``x`` (n, C) to 2-D (perplexity 30, or less for few samples), initialised by PCA; samples
    all alike are all at 0 (`_pca`'s)."""
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits

    n = x.shape[0]
    if n < 4 or not np.ptp(x, axis=0).any():  # alike: the PCA start's spread is 0, and t-SNE crashes on it
        return _pca(x, 2, seed)
    if x.shape[1] > TSNE_INPUT_DIMS:
        x = _pca(x, TSNE_INPUT_DIMS, seed)
    perplexity = float(min(30.0, (n - 1) / 3))
    tsne = TSNE(n_components=2, init="pca", perplexity=perplexity, random_state=seed)
    with threadpool_limits(limits=1, user_api="openmp"):  # one thread: see the note under TSNE_INPUT_DIMS
        return tsne.fit_transform(x)
