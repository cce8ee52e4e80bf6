"""An independent, deliberately plain float64 implementation of docs/architecture.md §1, for tests only.

Loops over samples and renormalises each group explicitly (scipy's log_softmax / logsumexp), so it
shares no code path with cakd_viz.decomposition.
"""

from __future__ import annotations

import numpy as np
from scipy.special import log_softmax, logsumexp


def _kl_restricted(lp: np.ndarray, lq: np.ndarray) -> float:
    """KL between two log-distributions restricted to the same classes, each renormalised."""
    if lp.size <= 1:
        return 0.0
    a = lp - logsumexp(lp)
    b = lq - logsumexp(lq)
    return float(np.sum(np.exp(a) * (a - b)))


def reference_terms(student, teacher, strong, temperature):
    """Per-sample (kl, bcd, scd, wcd, p_S, p_W, q_S) as an (N, 7) float64 array. strong: (N, C) bool."""
    lp_all = log_softmax(np.asarray(teacher, np.float64) / temperature, axis=1)
    lq_all = log_softmax(np.asarray(student, np.float64) / temperature, axis=1)
    rows = []
    for lp, lq, s in zip(lp_all, lq_all, np.asarray(strong, bool), strict=True):
        w = ~s
        kl = float(np.sum(np.exp(lp) * (lp - lq)))
        lps, lqs = logsumexp(lp[s]), logsumexp(lq[s])
        if w.any():
            lpw, lqw = logsumexp(lp[w]), logsumexp(lq[w])
            bcd = np.exp(lps) * (lps - lqs) + np.exp(lpw) * (lpw - lqw)
            wcd, p_w = _kl_restricted(lp[w], lq[w]), np.exp(lpw)
        else:
            bcd, wcd, p_w = np.exp(lps) * (lps - lqs), 0.0, 0.0
        rows.append((kl, bcd, _kl_restricted(lp[s], lq[s]), wcd, np.exp(lps), p_w, np.exp(lqs)))
    return np.array(rows)
