"""The results cache folder the app uses (``cakd_viz.results_cache``), opened once per setting.

``$CAKD_VIZ_CACHE_DIR/results`` (default ``~/.cache/cakd-viz/results``) bounded by ``$CAKD_VIZ_CACHE_MAX_GB``
(default 10).
When the folder cannot be used (another user's, not writable, a bad size setting), ``cache()`` is None,
``problem()`` says why in one line, and the app keeps exact results in memory only (the sidebar says so).
"""

from __future__ import annotations

import threading

from cakd_viz.results_cache import ResultsCache, cache_dir, cache_max_bytes, default_cache

_OPEN: dict[tuple, ResultsCache] = {}
_LOCK = threading.Lock()


def cache() -> ResultsCache | None:
    """The results cache, or None when it cannot be used (``problem`` says why)."""
    try:
        return _open()
    except ValueError:
        return None


def problem() -> str | None:
    """Why the results cache cannot be used (one line, no server path), or None."""
    try:
        _open()
    except ValueError as exc:
        from cakd_viz.app.config import scrub

        return scrub(str(exc))
    return None


def _open() -> ResultsCache:
    where = (str(cache_dir()), cache_max_bytes())
    with _LOCK:
        if where not in _OPEN:
            _OPEN[where] = default_cache()
        return _OPEN[where]
