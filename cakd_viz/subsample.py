"""Fixed subsamples of a bundle's rows: what a preview or a stated-subsample computation looks at.

``stratified_rows`` keeps every class in proportion to its share of the data (so a preview's per-class
numbers cover every class that is common enough to get a row); ``uniform_rows`` is a plain seeded random
pick. ``preview_rows`` chooses between them and says in words what it did, for the caption a preview
carries. Row indices are always sorted (memory-mapped arrays are read front to back) and depend only on
the sizes, the labels and the seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Subsample", "preview_rows", "stratified_rows", "uniform_rows"]


@dataclass(frozen=True)
class Subsample:
    """Rows picked from ``total`` samples, and how (one phrase, e.g. "stratified by true class")."""

    rows: np.ndarray  # (n,) sorted int64 row indices into the bundle
    total: int  # N, the bundle's number of samples
    how: str  # "stratified by true class" | "uniformly at random" | "all samples"

    @property
    def size(self) -> int:
        return int(self.rows.shape[0])

    @property
    def complete(self) -> bool:
        """True when the subsample is every row (nothing is left out)."""
        return self.size == self.total

    def describe(self) -> str:
        """E.g. "25,000 of 1,280,000 samples, stratified by true class"."""
        if self.complete:
            return f"all {self.total:,} samples"
        return f"{self.size:,} of {self.total:,} samples, {self.how}"


def uniform_rows(n: int, size: int | None, seed: int = 0) -> np.ndarray:
    """Sorted indices of a reproducible random subset of ``size`` of ``n`` rows (all rows when size >= n)."""
    if size is None or size >= n:
        return np.arange(n, dtype=np.int64)
    return np.sort(np.random.default_rng(seed).choice(n, size=size, replace=False)).astype(np.int64)


def stratified_rows(labels, size: int, seed: int = 0) -> np.ndarray:
    """Sorted indices of ``size`` rows with every class in proportion to its count in ``labels`` (N,).

    Class c gets floor(size * count_c / N) rows, and the rows left over go to the classes with the
    largest remainders (ties to the lower class); within a class the rows are a seeded random pick.
    All rows when size >= N.
    """
    y = np.asarray(labels).astype(np.int64, copy=False)
    n = int(y.shape[0])
    if size >= n:
        return np.arange(n, dtype=np.int64)
    counts = np.bincount(y)
    exact = counts * (size / n)
    take = np.floor(exact).astype(np.int64)
    short = size - int(take.sum())
    if short > 0:
        order = np.lexsort((np.arange(len(counts)), -(exact - take)))  # largest remainder first
        take[order[:short]] += 1
    rng = np.random.default_rng(seed)
    perm = rng.permutation(n)  # a random order of all rows ...
    by_class = perm[np.argsort(y[perm], kind="stable")]  # ... grouped by class, random within each
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    cls = y[by_class]
    rank = np.arange(n) - starts[cls]  # position of each row inside its class's random order
    return np.sort(by_class[rank < take[cls]]).astype(np.int64)


def preview_rows(n: int, labels, size: int, seed: int = 0) -> Subsample:
    """The fixed preview subsample of ``n`` rows: stratified by true class when there are labels,
    uniformly at random otherwise; every row when ``size >= n``."""
    if size >= n:
        return Subsample(np.arange(n, dtype=np.int64), n, "all samples")
    if labels is not None:
        return Subsample(stratified_rows(labels, size, seed), n, "stratified by true class")
    return Subsample(uniform_rows(n, size, seed), n, "uniformly at random")
