"""The decomposition engine as it was before the fused kernel (float32 tensor ops): the baseline that
benchmarks/bench_large_bundle.py measures the kernel against ("today's" decompose of issue 11).

A frozen copy of the per-chunk computation of cakd_viz/decomposition/engine.py at commit 613a296,
for benchmarks only: group sums of float32 exponentials by a batched matmul, terms in float64 from
those sums (issue 10 measured its errors). Not part of the library.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch

from cakd_viz.grouping import Grouping, parse_grouping, strong_mask

_TINY = 1e-20  # group sums of exp(a) below this go through the float64 path
_EXP_FLOOR = -87.0  # exp(-87) = 1.6e-38, the bottom of float32's normal range


def baseline_decompose(student_logits, teacher_logits, labels=None, *, grouping="topk:5", temperature=1.0):
    """{name: (N,) numpy} as the old `decompose(..., device="cpu")` computed it, 2**18 elements a chunk."""
    g = parse_grouping(grouping)
    n, c = teacher_logits.shape
    rows = max(1, 2**18 // c)
    out: dict[str, np.ndarray] = {}
    with torch.inference_mode():
        for start in range(0, n, rows):
            stop = min(n, start + rows)
            zt, zs = _rows(teacher_logits, start, stop), _rows(student_logits, start, stop)
            y = None if labels is None else torch.from_numpy(np.asarray(labels[start:stop]))
            part = _chunk_terms(zs, zt, y, g, float(temperature), None)
            for name, values in part.items():
                out.setdefault(name, np.empty(n, dtype=values.dtype))[start:stop] = values
    return out


def _rows(arr, start: int, stop: int) -> torch.Tensor:
    chunk = np.ascontiguousarray(arr[start:stop])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return torch.from_numpy(chunk).to(torch.float32)


def _chunk_terms(zs, zt, y, g: Grouping, temp: float, correlated) -> dict[str, np.ndarray]:
    """All per-row outputs for one chunk; zs, zt: (n, C) float32 on the compute device."""
    n, c = zt.shape
    smask = strong_mask(g, zt, y, temperature=temp, correlated=correlated)  # (n, C) bool
    mt, t_pred = zt.max(1, keepdim=True)
    ms, s_pred = zs.max(1, keepdim=True)
    at = torch.sub(zt, mt).mul_(1.0 / temp)  # (n, C), <= 0
    as_ = torch.sub(zs, ms).mul_(1.0 / temp)
    buf = torch.empty((n, 3, c), dtype=torch.float32, device=zt.device)
    torch.sub(at, as_, out=buf[:, 2])  # log-ratio up to a per-row constant, from the unfloored values
    # exp of arguments below float32's normal range is ~30x slower on CPU; floored values add at most
    # C * 1.6e-38 to a group sum, and sums below _TINY are recomputed exactly anyway.
    torch.exp(at.clamp_(min=_EXP_FLOOR), out=buf[:, 0])
    torch.exp(as_.clamp_(min=_EXP_FLOOR), out=buf[:, 1])
    buf[:, 2].mul_(buf[:, 0])
    groups = torch.empty((n, 2, c), dtype=torch.float32, device=zt.device)
    groups[:, 0] = smask
    groups[:, 1] = ~smask
    sums = torch.bmm(buf, groups.transpose(1, 2))  # (n, 3, 2): [e_t, e_s, e_t*(a_t-a_s)] x [S, W]
    size = smask.sum(1)
    host = sums.cpu().double().numpy()  # float64 on the host (MPS has no float64)
    size_np = size.cpu().numpy()
    part = _row_terms(host, size_np, c)
    part["strong_size"] = size_np
    part["teacher_pred"] = t_pred.squeeze(1).cpu().numpy()
    part["student_pred"] = s_pred.squeeze(1).cpu().numpy()
    bad = _needs_exact(host, size_np, c)
    if bad.any():
        rows = torch.from_numpy(np.flatnonzero(bad)).to(zt.device)
        exact = _exact_terms(zs[rows].cpu(), zt[rows].cpu(), smask[rows].cpu(), temp)
        for name, values in exact.items():
            part[name][bad] = values
    return part


def _row_terms(sums: np.ndarray, size: np.ndarray, c: int) -> dict[str, np.ndarray]:
    """Terms from the six group sums per row, in float64 (see the module docstring)."""
    et_s, et_w = sums[:, 0, 0], sums[:, 0, 1]
    es_s, es_w = sums[:, 1, 0], sums[:, 1, 1]
    ad_s, ad_w = sums[:, 2, 0], sums[:, 2, 1]
    st, ss = et_s + et_w, es_s + es_w
    has_w = size < c
    with np.errstate(divide="ignore", invalid="ignore"):
        log_st, log_ss = np.log(st), np.log(ss)
        shift = log_st - log_ss  # a_t - a_s differs from log p - log q by this much
        p_s, p_w = et_s / st, et_w / st
        c_s = (np.log(et_s) - log_st) - (np.log(es_s) - log_ss)  # log p_S - log q_S
        c_w = np.where(has_w, (np.log(et_w) - log_st) - (np.log(es_w) - log_ss), 0.0)
        a_s = (ad_s - shift * et_s) / st  # sum_S p_i (log p_i - log q_i)
        a_w = (ad_w - shift * et_w) / st
        bcd = p_s * c_s + np.where(has_w, p_w * c_w, 0.0)
        scd_c = np.where(size > 1, a_s - p_s * c_s, 0.0)  # p_S * SCD
        wcd_c = np.where(has_w, a_w - p_w * c_w, 0.0)  # p_W * WCD
        scd = np.where(size > 1, scd_c / p_s, 0.0)
        wcd = np.where(has_w, wcd_c / np.where(has_w, p_w, 1.0), 0.0)
    qs = es_s / ss
    return {
        "kl": np.maximum(a_s + a_w, 0.0),
        "bcd": np.maximum(bcd, 0.0),
        "scd": np.maximum(scd, 0.0),
        "wcd": np.maximum(wcd, 0.0),
        "teacher_strong_mass": p_s,
        "teacher_weak_mass": p_w,
        "student_strong_mass": qs,
    }


def _needs_exact(sums: np.ndarray, size: np.ndarray, c: int) -> np.ndarray:
    """Rows where a group's sum of exp(a) left float32's comfortable range."""
    has_w = size < c
    low = (sums[:, 0, 0] < _TINY) | (sums[:, 1, 0] < _TINY)
    low |= has_w & ((sums[:, 0, 1] < _TINY) | (sums[:, 1, 1] < _TINY))
    return low | ~np.isfinite(sums).all(axis=(1, 2))


def _exact_terms(
    zs: torch.Tensor, zt: torch.Tensor, smask: torch.Tensor, temp: float
) -> dict[str, np.ndarray]:
    """The same terms in float64 with masked logsumexp, for the few rows that need it. (m, C) inputs."""
    lp = torch.log_softmax(zt.double() / temp, dim=1)
    lq = torch.log_softmax(zs.double() / temp, dim=1)
    wmask = ~smask
    has_w = wmask.any(1)
    kl = (lp.exp() * (lp - lq)).sum(1)
    parts = {}
    for name, mask in (("s", smask), ("w", wmask)):
        lpg = torch.logsumexp(lp.masked_fill(~mask, -torch.inf), dim=1, keepdim=True)  # log p_G, (m, 1)
        lqg = torch.logsumexp(lq.masked_fill(~mask, -torch.inf), dim=1, keepdim=True)
        inner_p = (lp - lpg).masked_fill(~mask, -torch.inf)  # log of p restricted to G, renormalised
        inner_q = (lq - lqg).masked_fill(~mask, 0.0)
        div = (inner_p.exp() * (inner_p.masked_fill(~mask, 0.0) - inner_q)).sum(1)
        div = torch.where(mask.any(1), div, torch.zeros_like(div))
        parts[name] = (lpg.squeeze(1), lqg.squeeze(1), div)
    (lps, lqs, scd), (lpw, lqw, wcd) = parts["s"], parts["w"]
    p_s, p_w = lps.exp(), lpw.exp()
    bcd = p_s * (lps - lqs) + torch.where(has_w, p_w * (lpw - lqw), torch.zeros_like(p_w))
    scd = torch.where(smask.sum(1) > 1, scd, torch.zeros_like(scd))
    return {
        "kl": kl.clamp_min(0).numpy(),
        "bcd": bcd.clamp_min(0).numpy(),
        "scd": scd.clamp_min(0).numpy(),
        "wcd": wcd.clamp_min(0).numpy(),
        "teacher_strong_mass": p_s.numpy(),
        "teacher_weak_mass": p_w.numpy(),
        "student_strong_mass": lqs.exp().numpy(),
    }
