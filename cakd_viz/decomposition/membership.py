"""Whether given classes lie in given samples' strong sets: what Diagnose's "in S" rates count.

    inside = in_strong_set(d.student_pred[rows], teacher, labels, rows, grouping="mass:0.9", temperature=4)

S is the teacher's (it does not depend on a student), decided by the decomposition kernel's own
selection on the CPU for float16/float32 teachers (``native_path.kernel_strong_mask``, the sets every
implementation agrees on: tests/test_strong_sets.py), else by ``grouping.strong_mask``; rows in chunks,
so memory stays bounded (a chunk's (m, C) mask).
"""

from __future__ import annotations

import numpy as np
import torch

from cakd_viz.decomposition import native_path
from cakd_viz.decomposition.threads import default_threads
from cakd_viz.grouping import correlated_classes, parse_grouping, strong_mask

CHUNK_ROWS = 4096


def in_strong_set(
    classes,
    teacher_logits,
    labels=None,
    rows=None,
    *,
    grouping,
    temperature: float,
    correlation: np.ndarray | None = None,
) -> np.ndarray:
    """(len(rows),) bool: whether class ``classes[i]`` lies in the strong set of sample ``rows[i]`` under
    ``grouping`` at ``temperature``. teacher_logits: (N, C) (only ``rows`` are read; a memmap is fine);
    labels: (N,) or None; rows: (m,) sample indices (None: every sample); classes: (m,) class indices;
    correlation: the (C, C) class correlation, for ``corr:R``."""
    g = parse_grouping(grouping)
    rows = np.arange(teacher_logits.shape[0]) if rows is None else np.asarray(rows, dtype=np.int64)
    classes = np.asarray(classes, dtype=np.int64)
    if classes.shape != rows.shape:
        raise ValueError(f"classes has shape {classes.shape}, rows {rows.shape}: one class per row")
    if g.needs_correlation and correlation is None:
        raise ValueError(f"grouping {g} needs the class-correlation matrix of the teacher's logits")
    correlated = correlated_classes(correlation, float(g.param)) if g.needs_correlation else None
    kern = (
        native_path.kernel() if native_path.kernel_dtype(teacher_logits) and native_path.selects(g) else None
    )
    out = np.zeros(len(rows), dtype=bool)
    for start in range(0, len(rows), CHUNK_ROWS):
        part = slice(start, start + CHUNK_ROWS)
        z = np.asarray(teacher_logits[rows[part]])
        y = None if labels is None else np.asarray(labels)[rows[part]]
        if kern is not None:
            corr = None if correlated is None else correlated.numpy()
            rule = native_path.Rule.of(g, temperature, y, corr)
            mask = native_path.kernel_strong_mask(
                kern, z, rule, threads=default_threads(torch.get_num_threads())
            )
        else:
            yt = None if y is None else torch.from_numpy(np.asarray(y, dtype=np.int64))
            zt = torch.from_numpy(np.asarray(z, dtype=np.float32))
            mask = strong_mask(g, zt, yt, temperature=temperature, correlated=correlated).numpy()
        out[part] = mask[np.arange(len(z)), classes[part]]
    return out
