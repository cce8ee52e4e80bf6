"""What a bundle costs to open and summarise, remembered on disk per file identity.

- ``open_checked``: ``load_bundle`` whose NaN/inf scan of each logit file runs once per file identity
  (a record in the cache says the file passed); a file nobody has checked is always scanned.
- ``cached_predictions``: each model's top-1 predictions (N,), for accuracies and agreement.
- ``cached_correlation``: the teacher's class-correlation matrix over all samples, or over a stated
  fixed random subsample when the bundle has more rows than ``max_rows``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cakd_viz.bundle import Bundle, load_bundle
from cakd_viz.grouping import class_correlation
from cakd_viz.results_cache.identity import array_identity
from cakd_viz.results_cache.store import ResultsCache, make_key
from cakd_viz.subsample import uniform_rows
from cakd_viz.validate import check_logits

__all__ = ["Correlation", "cached_correlation", "cached_predictions", "open_checked"]

CHECK_KIND = "finite-check/1"
PREDICTIONS_KIND = "predictions/1"
CORRELATION_KIND = "correlation/1"


def open_checked(path: str | Path, cache: ResultsCache | None) -> tuple[Bundle, list[str]]:
    """(the bundle at ``path``, the logit files whose values were scanned now).

    Every check ``load_bundle`` makes is made; the NaN/inf scan of a logit file is skipped only when the
    cache records that this very file (``identity.array_identity``) passed it before. Without a cache,
    or for arrays held in memory, every file is scanned. A file that fails raises ``BundleError`` with
    ``load_bundle``'s message; failures are never recorded.
    """
    bundle = load_bundle(path, check_values=False)
    scanned = []
    for rel, arr in [("teacher.npy", bundle.teacher)] + [
        (f"students/{name}.npy", arr) for name, arr in bundle.students.items()
    ]:
        ident = array_identity(arr) if isinstance(arr, np.memmap) else None
        key = None if ident is None or "file" not in ident else make_key(CHECK_KIND, ident)
        if cache is not None and key is not None and cache.contains(key):
            continue
        check_logits(arr, rel)
        scanned.append(rel)
        if cache is not None and key is not None:
            try:
                cache.put(key, {}, {"kind": CHECK_KIND, "file": rel, "finite": True})
            except OSError:
                pass  # not recorded: the next open scans again
    return bundle, scanned


def cached_predictions(cache: ResultsCache, bundle: Bundle, who: str = "teacher") -> np.ndarray:
    """Top-1 predictions (N,) int64 of "teacher" or a student, computed once per file and kept; also
    published into ``bundle``'s own predictions cache (so its accuracies and summary are instant)."""
    logits = bundle.teacher if who == "teacher" else bundle.student(who)
    key = make_key(PREDICTIONS_KIND, array_identity(logits))

    def compute(report):
        pred = bundle.predictions(who)
        return {"pred": pred}, {"kind": PREDICTIONS_KIND}

    pred = cache.compute_once(key, compute).arrays["pred"]
    if pred.shape != (bundle.num_samples,):
        raise ValueError("cached predictions do not fit this bundle")
    bundle.remember_predictions(who, pred)
    return pred


@dataclass(frozen=True)
class Correlation:
    """The teacher's (C, C) Pearson correlation between classes, and over how many samples."""

    matrix: np.ndarray  # (C, C) float64
    rows: int  # samples it was computed over
    total: int  # samples in the bundle

    @property
    def complete(self) -> bool:
        return self.rows == self.total

    def describe(self) -> str:
        """E.g. "over all 50,000 samples" or "over a fixed random subsample of 100,000 of 1,280,000 samples"."""
        if self.complete:
            return f"over all {self.total:,} samples"
        return f"over a fixed random subsample of {self.rows:,} of {self.total:,} samples"


def cached_correlation(
    cache: ResultsCache | None, teacher, *, max_rows: int | None = None, seed: int = 0
) -> Correlation:
    """``grouping.class_correlation`` of ``teacher`` (N, C), over all rows or, when N > ``max_rows``,
    over ``subsample.uniform_rows(N, max_rows, seed)``; kept in the cache per teacher file."""
    n = int(teacher.shape[0])
    rows = None if max_rows is None or n <= max_rows else uniform_rows(n, max_rows, seed)
    used = n if rows is None else len(rows)

    def compute(report=None):
        data = teacher if rows is None else np.asarray(teacher[rows])
        return {"matrix": class_correlation(data)}, {"kind": CORRELATION_KIND, "rows": used}

    if cache is None:
        matrix = compute()[0]["matrix"]
    else:
        key = make_key(CORRELATION_KIND, array_identity(teacher), {"rows": used, "seed": seed})
        matrix = np.asarray(cache.compute_once(key, compute).arrays["matrix"])
    matrix = matrix.view()
    matrix.flags.writeable = False  # one matrix serves every caller
    return Correlation(matrix, used, n)
