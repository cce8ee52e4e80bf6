"""One pass over a model's logits: every value finite, and each sample's top-1 class.

    pred = scan_logits(bundle.teacher, "teacher.npy")   # (N,) int64; ValueError at a NaN or infinity

What opening a big bundle needs, read once: through pass 1 of the decomposition kernel (the very
argmaxes ``decompose`` reports), else by numpy in row chunks; the lowest index wins among equal maxima.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from cakd_viz.decomposition import native_path
from cakd_viz.decomposition.inputs import Logits
from cakd_viz.decomposition.threads import default_threads

CHUNK_ELEMENTS = 1 << 24  # per kernel call: a progress step


def scan_logits(
    logits: np.ndarray, name: str = "logits", *, progress: Callable[[int, int], None] | None = None
) -> np.ndarray:
    """Top-1 class (N,) int64 of each row of ``logits`` (N, C) (a float numpy array, memory-mapped or
    not), after checking that every value is finite: ValueError naming ``name``, the first row holding a
    NaN or an infinity and its first such class. ``progress(done, N)`` after each chunk of rows."""
    arr = np.asarray(logits) if not isinstance(logits, np.ndarray) else logits
    if arr.ndim != 2 or arr.dtype.kind != "f":
        raise ValueError(f"{name}: expected (N, C) float logits, got {arr.dtype} {arr.shape}")
    n, c = arr.shape
    pred = np.empty(n, dtype=np.int64)
    kern = native_path.kernel() if native_path.kernel_dtype(arr) else None
    rows = max(1, CHUNK_ELEMENTS // max(1, c))
    for start in range(0, n, rows):
        stop = min(n, start + rows)
        part = arr[start:stop]
        if kern is not None:
            threads = default_threads(torch.get_num_threads(), new_pass=start == 0)
            try:
                native_path.kernel_scan(kern, part, pred[start:stop], threads=threads)
            except native_path.KernelError as exc:
                Logits(arr, name).check_row(start + exc.row)
                raise  # a refusal other than a NaN or an infinity
        else:
            values = np.asarray(part, dtype=np.float32) if part.dtype == np.float16 else np.asarray(part)
            finite = np.isfinite(values).all(axis=1)
            if not finite.all():
                Logits(arr, name).check_row(start + int(np.flatnonzero(~finite)[0]))
            pred[start:stop] = np.argmax(values, axis=1)
        if progress is not None:
            progress(stop, n)
    return pred
