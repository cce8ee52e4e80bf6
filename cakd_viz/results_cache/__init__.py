"""Per-sample results kept on disk, so that a big bundle is decomposed once per setting, not once per view.

    from cakd_viz.results_cache import default_cache, cached_decompose
    cache = default_cache()          # $CAKD_VIZ_CACHE_DIR/results, at most $CAKD_VIZ_CACHE_MAX_GB
    d = cached_decompose(cache, b.student("kd"), b.teacher, b.labels, grouping="topk:5", temperature=4)

``store`` is the folder (content keys, atomic entries, one computation per key across processes,
least-recently-used eviction beyond a size bound); ``identity`` says what identifies an array's values;
``decompositions`` stores and reads back :class:`~cakd_viz.decomposition.Decomposition` results;
``bundles`` remembers a bundle's NaN/inf scan, its predictions and its class correlation.
"""

from __future__ import annotations

import os
from pathlib import Path

from cakd_viz.results_cache.bundles import Correlation, cached_correlation, cached_predictions, open_checked
from cakd_viz.results_cache.decompositions import (
    cached_decompose,
    decomposition_key,
    load_decomposition,
    save_decomposition,
)
from cakd_viz.results_cache.identity import array_identity
from cakd_viz.results_cache.store import Cancelled, Entry, ResultsCache, make_key

__all__ = [
    "CACHE_DIR_ENV",
    "CACHE_MAX_ENV",
    "DEFAULT_MAX_GB",
    "Cancelled",
    "Correlation",
    "Entry",
    "ResultsCache",
    "array_identity",
    "cache_dir",
    "cache_max_bytes",
    "cached_correlation",
    "cached_decompose",
    "cached_predictions",
    "decomposition_key",
    "default_cache",
    "load_decomposition",
    "make_key",
    "open_checked",
    "save_decomposition",
]

CACHE_DIR_ENV = "CAKD_VIZ_CACHE_DIR"
CACHE_MAX_ENV = "CAKD_VIZ_CACHE_MAX_GB"
DEFAULT_MAX_GB = 10.0  # about 90 decompositions of 1.28M samples


def cache_dir() -> Path:
    """``$CAKD_VIZ_CACHE_DIR/results``, else ``~/.cache/cakd-viz/results`` (the folder cakd-viz keeps its
    caches in: built C kernels go to ``native/`` beside it, ``cakd_viz.native``)."""
    raw = os.environ.get(CACHE_DIR_ENV, "").strip()
    return (Path(raw).expanduser() if raw else Path.home() / ".cache" / "cakd-viz") / "results"


def cache_max_bytes() -> int:
    """``$CAKD_VIZ_CACHE_MAX_GB`` (GB of 2^30 bytes, default 10) in bytes; ValueError when it is not a
    number >= 0."""
    raw = os.environ.get(CACHE_MAX_ENV, "").strip()
    try:
        gb = float(raw) if raw else DEFAULT_MAX_GB
    except ValueError:
        gb = float("nan")
    if not gb >= 0 or gb == float("inf"):
        raise ValueError(f"{CACHE_MAX_ENV}={raw[:40]!r} is not a number of GB (>= 0)")
    return int(gb * 2**30)


def default_cache() -> ResultsCache:
    """The cache folder of this user (``cache_dir()``, bounded by ``cache_max_bytes()``); ValueError (one
    line) when it cannot be used."""
    return ResultsCache(cache_dir(), cache_max_bytes())
