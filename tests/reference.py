"""Independent, deliberately plain float64 references of docs/architecture.md §1, for tests only.

Loops over samples and renormalises each group explicitly (scipy's log_softmax / logsumexp), so it
shares no code path with cakd_viz.decomposition (neither its C kernel nor its tensor ops) nor with
cakd_viz.grouping: `strong_mask` here implements the rules of §4 from their definitions (a stable
sort; mass:P from sorted float64 probabilities). `terms_mp` checks the float64 reference itself
with mpmath at 50 digits where the terms are tiny. The inputs are the exact float32/float16 values,
widened to float64; `standardized` is logit standardization (LS) from its definition, in float64.
"""

from __future__ import annotations

import itertools
import math

import mpmath
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


NAMES = ("kl", "bcd", "scd", "wcd", "teacher_strong_mass", "teacher_weak_mass", "student_strong_mass")


def teacher_order(t: np.ndarray) -> np.ndarray:
    """Class indices by teacher logit descending, ties to the lower index. t: (C,)."""
    return np.lexsort((np.arange(t.size), -t.astype(np.float64)))


def mass_count(t: np.ndarray, p: float, temperature: float) -> int:
    """mass:P's |S| for one row: #(cum_j < P) + 1, at most C, cum_j the teacher's probability of its j
    first classes in teacher order. Decided exactly for the float64 weights exp((t - max t) / T): the
    sums and the comparison with P x their total in integers (every double is a whole multiple of
    2^-1074), so no rounding of a sum can tip it."""
    x = t.astype(np.float64)[teacher_order(t)]
    scale = 1 << 1100
    w = [
        num * (scale // den)
        for num, den in (math.exp(v).as_integer_ratio() for v in (x - x[0]) / temperature)
    ]
    cum = list(itertools.accumulate(w))
    p_num, p_den = float(p).as_integer_ratio()
    count = sum(c * p_den < p_num * cum[-1] for c in cum)
    return min(count + 1, t.size)


KINDS = ("target", "topk", "topk+target", "mass", "corr")  # the rules this reference defines itself


def strong_mask(
    teacher, labels=None, grouping: str = "topk:5", temperature: float = 1.0, correlated=None, *, select=None
):
    """(N, C) boolean strong set per row, by the rules of cakd_viz.grouping (float64 decisions).

    select: for a rule this reference does not define (a test's own), its definition for one row,
    select(t (C,) float64, label int or None, param text) -> (C,) bool.
    """
    t = np.asarray(teacher, np.float64)
    n, c = t.shape
    kind, _, raw = grouping.partition(":")
    if kind not in KINDS and select is None:
        raise ValueError(f"the reference defines no rule {kind!r}: pass select=")
    mask = np.zeros((n, c), bool)
    for r in range(n):
        if kind not in KINDS:
            mask[r] = select(t[r], None if labels is None else int(labels[r]), raw)
            continue
        order = teacher_order(t[r])
        if kind in ("topk", "topk+target"):
            mask[r, order[: min(int(raw), c - 1)]] = True
        if kind in ("target", "topk+target"):
            mask[r, int(labels[r])] = True
        if kind == "mass":
            count = mass_count(t[r], float(raw), temperature)
            mask[r, order[:count]] = True
        if kind == "corr":
            mask[r] = np.asarray(correlated, bool)[order[0]]
            mask[r, order[0]] = True
    return mask


def standardized(logits, *, center: bool = True) -> np.ndarray:
    """Each row z-scored as the LS paper's public code does it (Sun et al., CVPR 2024, arXiv 2403.01427):
    (z - mean) / (std + 1e-7), std with Bessel's correction (torch's default ``z.std(dim=-1)``). In float64
    from the exact inputs, each row's sums with ``math.fsum`` (correctly rounded), row by row. Without
    ``center``: z / (std + 1e-7), the same up to each row's shift (what strong sets are decided on)."""
    z = np.asarray(logits, np.float64)
    out = np.empty_like(z)
    for r, row in enumerate(z):
        mean = math.fsum(row.tolist()) / row.size
        var = math.fsum((x - mean) ** 2 for x in row.tolist()) / (row.size - 1)
        out[r] = ((row - mean) if center else row) / (math.sqrt(var) + 1e-7)
    return out


def terms(student, teacher, strong, temperature: float) -> dict[str, np.ndarray]:
    """`reference_terms` as {name: (N,) float64} with the names of NAMES."""
    arr = reference_terms(student, teacher, strong, temperature).reshape(-1, len(NAMES))
    return {name: arr[:, j] for j, name in enumerate(NAMES)}


def terms_mp(student_row, teacher_row, strong_row, temperature: float, dps: int = 50) -> dict[str, float]:
    """The same terms for one row with mpmath at `dps` digits (the float64 reference's own check)."""
    with mpmath.workdps(dps):
        temp = mpmath.mpf(float(temperature))
        zt = [mpmath.mpf(float(x)) / temp for x in np.asarray(teacher_row, np.float64)]
        zs = [mpmath.mpf(float(x)) / temp for x in np.asarray(student_row, np.float64)]
        mt, ms = max(zt), max(zs)
        et = [mpmath.exp(x - mt) for x in zt]
        es = [mpmath.exp(x - ms) for x in zs]
        zp, zq = mpmath.fsum(et), mpmath.fsum(es)
        p = [x / zp for x in et]
        q = [x / zq for x in es]
        s = [bool(v) for v in strong_row]

        def kl(idx):
            if len(idx) <= 1:
                return mpmath.mpf(0)
            ps, qs = mpmath.fsum(p[i] for i in idx), mpmath.fsum(q[i] for i in idx)
            return mpmath.fsum(p[i] / ps * mpmath.log((p[i] / ps) / (q[i] / qs)) for i in idx)

        si = [i for i, v in enumerate(s) if v]
        wi = [i for i, v in enumerate(s) if not v]
        p_s, q_s = mpmath.fsum(p[i] for i in si), mpmath.fsum(q[i] for i in si)
        p_w, q_w = mpmath.fsum(p[i] for i in wi), mpmath.fsum(q[i] for i in wi)
        bcd = p_s * mpmath.log(p_s / q_s) + (p_w * mpmath.log(p_w / q_w) if wi else 0)
        full = mpmath.fsum(p[i] * mpmath.log(p[i] / q[i]) for i in range(len(p)))
        return {
            "kl": float(full),
            "bcd": float(bcd),
            "scd": float(kl(si)),
            "wcd": float(kl(wi)),
            "teacher_strong_mass": float(p_s),
            "teacher_weak_mass": float(p_w),
            "student_strong_mass": float(q_s),
        }


def close(got: np.ndarray, want: np.ndarray, rel: float = 1e-3, floor: float = 1e-6, atol: float = 1e-8):
    """Boolean per row: within `rel` relative where |want| >= floor, within `atol` absolute below."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    err = np.abs(got - want)
    return np.where(np.abs(want) >= floor, err <= rel * np.abs(want), err <= atol)
