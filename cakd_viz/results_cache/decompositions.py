"""Decompositions kept on disk: computed once per (teacher, student, labels, grouping, T), then read back.

A :class:`~cakd_viz.decomposition.Decomposition` is stored as one cache entry of (N,) arrays (about
90 bytes a sample: 113 MB for 1.28M samples) and comes back memory-mapped and read-only, so a page that
shows it costs page cache, not process memory. The key is made of the arrays' identities
(``identity.array_identity``), the grouping spec, the temperature, the class-correlation matrix used by
``corr:R`` groupings (by content) and a fingerprint of the decomposition code: results computed by an
older engine are not reused.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from cakd_viz.decomposition import Decomposition, decompose
from cakd_viz.decomposition.result import PER_SAMPLE
from cakd_viz.grouping import parse_grouping
from cakd_viz.results_cache.identity import array_identity, code_fingerprint, content_digest
from cakd_viz.results_cache.store import Entry, ResultsCache, make_key
from cakd_viz.validate import check_temperature

__all__ = ["cached_decompose", "decomposition_key", "from_entry", "load_decomposition", "save_decomposition"]

KIND = "decomposition/1"
ARRAYS = PER_SAMPLE  # what an entry holds
# The code a decomposition comes from: the engine, every grouping rule (rules.h, the kernels' rule codes,
# included) and the kernel builder.
ENGINE_CODE = ("decomposition", "grouping", "native.py")


def engine_fingerprint() -> str:
    """Changes whenever the code that computes a decomposition changes."""
    return code_fingerprint(*ENGINE_CODE)


def decomposition_key(
    student, teacher, labels=None, *, grouping, temperature: float, correlation: np.ndarray | None = None
) -> str:
    """The cache key of ``decompose(student, teacher, labels, grouping=..., temperature=...)``.

    ``correlation`` (C, C) is part of the key for ``corr:R`` groupings only (it is ignored otherwise).
    """
    g = parse_grouping(grouping)
    corr = None
    if g.needs_correlation:
        if correlation is None:
            raise ValueError(f"grouping {g} needs the class-correlation matrix for its cache key")
        corr = content_digest(np.ascontiguousarray(correlation, dtype=np.float64))
    return make_key(
        KIND,
        engine_fingerprint(),
        {
            "teacher": array_identity(teacher),
            "student": array_identity(student),
            "labels": None if labels is None else array_identity(labels),
            "grouping": str(g),
            "temperature": float(check_temperature(temperature)),
            "correlation": corr,
        },
    )


def save_decomposition(cache: ResultsCache, key: str, d: Decomposition) -> Entry:
    """Store ``d`` under ``key``; returns the stored entry."""
    return cache.put(key, _arrays(d), _info(d))


def load_decomposition(cache: ResultsCache, key: str) -> Decomposition | None:
    """The decomposition stored under ``key`` (arrays memory-mapped, read-only), or None."""
    entry = cache.get(key)
    return None if entry is None else from_entry(entry)


def from_entry(entry: Entry) -> Decomposition:
    """The :class:`Decomposition` an entry holds; ValueError when the entry is not one."""
    info = entry.info
    if info.get("kind") != KIND:
        raise ValueError("this cache entry is not a decomposition")
    arrays = entry.arrays
    n = {int(arrays[name].shape[0]) for name in ARRAYS}
    if len(n) != 1:
        raise ValueError("this cached decomposition's arrays differ in length")
    return Decomposition(
        **{name: _read_only(arrays[name]) for name in ARRAYS},
        labels=_read_only(arrays["labels"]) if "labels" in arrays else None,
        grouping=str(info["grouping"]),
        temperature=float(info["temperature"]),
    )


def cached_decompose(
    cache: ResultsCache,
    student,
    teacher,
    labels=None,
    *,
    grouping,
    temperature: float,
    device="auto",
    correlation: np.ndarray | None = None,
    progress: Callable[[int, int], None] | None = None,
    waiting: Callable[[int, int], None] | None = None,
    cancelled: Callable[[], bool] | None = None,
) -> Decomposition:
    """``decompose(...)`` through the cache: read back when stored, else computed (once, even when other
    threads or processes ask at the same time) and stored. ``progress(done, N)`` follows the
    computation here; ``waiting(done, N)`` another process's that this one waits for (default:
    ``progress``); ``cancelled()`` true stops it (``store.Cancelled``).
    For ``corr:R`` pass the correlation matrix to use (it is part of the key)."""
    key = decomposition_key(
        student, teacher, labels, grouping=grouping, temperature=temperature, correlation=correlation
    )

    def compute(report):
        d = decompose(
            student,
            teacher,
            labels,
            grouping=grouping,
            temperature=temperature,
            device=device,
            correlation=correlation,
            progress=report,
        )
        return _arrays(d), _info(d)

    entry = cache.compute_once(key, compute, progress=progress, waiting=waiting, cancelled=cancelled)
    return from_entry(entry)


def _arrays(d: Decomposition) -> dict[str, np.ndarray]:
    out = {name: getattr(d, name) for name in ARRAYS}
    if d.labels is not None:
        out["labels"] = d.labels
    return out


def _info(d: Decomposition) -> dict:
    return {"kind": KIND, "grouping": d.grouping, "temperature": d.temperature, "num_samples": len(d)}


def _read_only(arr: np.ndarray) -> np.ndarray:
    if arr.flags.writeable:
        arr = arr.view()
        arr.flags.writeable = False
    return arr
