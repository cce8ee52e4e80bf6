"""Whether given classes lie in given samples' strong sets: what Diagnose's "in S" rates count.

    inside = in_strong_set(d.student_pred[rows], teacher, labels, rows, grouping="mass:0.9", temperature=4)

S is the teacher's (the standardized teacher's under LS), decided by the decomposition kernel's own
selection for float16/float32 teachers, else by ``grouping.strong_mask`` (the same sets:
tests/test_strong_sets.py), in row chunks. ``strong_sets`` yields the chunks' masks (``families.
comembership``), ``strong_sizes`` every sample's |S| without writing the masks.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from cakd_viz.decomposition import native_path
from cakd_viz.decomposition.threads import default_threads
from cakd_viz.grouping import parse_grouping, strong_mask
from cakd_viz.standardize import for_strong_sets
from cakd_viz.validate import check_labels

CHUNK_ROWS = 4096
SIZE_CHUNK_ROWS = 65536  # strong_sizes' rows per kernel call (no masks: only their sizes come back)


def strong_sets(
    teacher_logits,
    labels=None,
    rows=None,
    *,
    grouping,
    temperature: float,
    correlation: np.ndarray | None = None,
    standardize: bool = False,
    chunk_rows: int = CHUNK_ROWS,
) -> Iterator[tuple[slice, np.ndarray]]:
    """The strong sets of samples ``rows`` (None: every sample), a chunk at a time: (the chunk's positions
    in ``rows``, its (m, C) bool mask). teacher_logits: (N, C) (only ``rows`` are read; a memmap is fine);
    labels: (N,) or None; correlation: the (C, C) class correlation, for ``corr:R`` (the standardized
    teacher's under LS); standardize: the sets of the standardized teacher (logit standardization)."""
    return _chunks(teacher_logits, labels, rows, grouping, temperature, correlation, standardize, chunk_rows)


def strong_sizes(
    teacher_logits,
    labels=None,
    *,
    grouping,
    temperature: float,
    correlation: np.ndarray | None = None,
    standardize: bool = False,
) -> np.ndarray:
    """(N,) int64: the size |S| of every sample's strong set; arguments as `strong_sets`'. The kernel's
    selection without its (N, C) masks where it applies, else `strong_sets`' masks counted."""
    sizes = np.zeros(teacher_logits.shape[0], dtype=np.int64)
    for part, chunk in _chunks(teacher_logits, labels, None, grouping, temperature, correlation, standardize):
        sizes[part] = chunk
    return sizes


def _chunks(teacher_logits, labels, rows, grouping, temperature, correlation, standardize, chunk_rows=None):
    """`strong_sets`' chunks; without ``chunk_rows``, `strong_sizes`': each chunk's (m,) set sizes."""
    g = parse_grouping(grouping)
    n, c = teacher_logits.shape
    labels = None if labels is None else check_labels(labels, "labels", num_samples=n, num_classes=c)
    g.check_inputs(labels, correlation)
    if g.needs_correlation and np.shape(correlation) != (c, c):  # the kernel reads C x C of it
        raise ValueError(f"correlation has shape {np.shape(correlation)}, expected ({c}, {c})")
    correlated = g.correlated(correlation)
    use_kernel = native_path.kernel_dtype(teacher_logits) and native_path.selects(g)
    kern = native_path.kernel() if use_kernel else None
    sizes = chunk_rows is None
    if sizes:
        chunk_rows = CHUNK_ROWS if kern is None else SIZE_CHUNK_ROWS
    count = n if rows is None else len(rows)
    for start in range(0, count, chunk_rows):
        part = slice(start, min(count, start + chunk_rows))
        picked = part if rows is None else rows[part]
        z = np.asarray(teacher_logits[picked])
        y = None if labels is None else labels[picked]
        if kern is not None:
            rule = native_path.Rule.of(g, temperature, y, correlated, standardize=standardize)
            threads = default_threads(torch.get_num_threads(), new_pass=start == 0)
            yield part, native_path.kernel_strong_mask(kern, z, rule, sizes=sizes, threads=threads)
            continue
        yt = None if y is None else torch.from_numpy(np.asarray(y, dtype=np.int64))
        wide = z.dtype.itemsize > 4  # float64 stays float64, as decompose decides its sets
        zt = torch.from_numpy(np.asarray(z, dtype=np.float64 if wide else np.float32))
        zt = for_strong_sets(zt) if standardize else zt
        mask = strong_mask(g, zt, yt, temperature=temperature, correlated=correlated).numpy()
        yield part, mask.sum(axis=1) if sizes else mask


def in_strong_set(classes, teacher_logits, labels=None, rows=None, **options) -> np.ndarray:
    """(len(rows),) bool: whether class ``classes[i]`` lies in the strong set of sample ``rows[i]``;
    ``options`` as `strong_sets`' (grouping, temperature, correlation, standardize)."""
    rows = np.arange(teacher_logits.shape[0]) if rows is None else np.asarray(rows, dtype=np.int64)
    classes = np.asarray(classes, dtype=np.int64)
    if classes.shape != rows.shape:
        raise ValueError(f"classes has shape {classes.shape}, rows {rows.shape}: one class per row")
    c = teacher_logits.shape[1]
    outside = (classes < 0) | (classes >= c)  # -1 would silently read class C - 1
    if outside.any():
        raise ValueError(f"classes must lie in 0..{c - 1}; got {int(classes[outside][0])}")
    out = np.zeros(len(rows), dtype=bool)
    for part, mask in strong_sets(teacher_logits, labels, rows, **options):
        out[part] = mask[np.arange(len(mask)), classes[part]]
    return out
