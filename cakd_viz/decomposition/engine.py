"""The exact per-sample split of the distillation KL into BCD, SCD and WCD.

CAKD (Zhang et al., "CAKD: A Correlation-Aware Knowledge Distillation Framework Based on Decoupling
Kullback-Leibler Divergence", arXiv 2410.14741). With teacher p = softmax(z_t / T), student
q = softmax(z_s / T), a strong set S of classes per sample and its complement W, the chain rule of KL gives

    KL(p || q) = BCD + p_S * SCD + p_W * WCD
    BCD = KL([p_S, p_W] || [q_S, q_W])
    SCD = KL(p|S renormalised || q|S renormalised)     (0 when |S| = 1)
    WCD = KL(p|W renormalised || q|W renormalised)     (0 when W is empty)

With S = {label} this is DKD's split (Zhao et al., CVPR 2022): BCD = TCKD, WCD = NCKD.

How it is computed, per chunk of rows, in float32 on the compute device:
    a_t = (z_t - max z_t) / T,  e_t = exp(a_t)         (likewise a_s, e_s: one exp per element each)
    [e_t, e_s, e_t * (a_t - a_s)]  x  [1_S, 1_W]  ->  six group sums per row, in one batched matmul
and then, per row in float64 on the CPU, the group log-masses and the three terms from those sums:
    A_G = sum_{i in G} p_i (log p_i - log q_i),  p_G * KL_G = A_G - p_G (log p_G - log q_G)
so KL = A_S + A_W holds by construction and every term is a difference of well-scaled numbers.
Rows where a group's mass falls below float32's range (extreme logits, tiny T) are recomputed in
float64 with masked logsumexp. Nothing here ever takes log(softmax(...)).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np
import torch

from cakd_viz.decomposition.result import Decomposition
from cakd_viz.device import resolve_device
from cakd_viz.grouping import (
    DEFAULT_GROUPING,
    Grouping,
    class_correlation,
    correlated_classes,
    parse_grouping,
    strong_mask,
)
from cakd_viz.validate import check_labels, check_temperature

_TINY = 1e-20  # group sums of exp(a) below this go through the float64 path
_EXP_FLOOR = -87.0  # exp(-87) = 1.6e-38, the bottom of float32's normal range
_OUT_FLOAT = ("kl", "bcd", "scd", "wcd", "teacher_strong_mass", "teacher_weak_mass", "student_strong_mass")


def decompose(
    student_logits,
    teacher_logits,
    labels=None,
    *,
    grouping: str | Grouping = DEFAULT_GROUPING,
    temperature: float = 1.0,
    device: str | torch.device = "auto",
    correlation: np.ndarray | None = None,
    chunk_rows: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Decomposition:
    """Split KL(teacher || student) of every sample into BCD, SCD and WCD.

    student_logits, teacher_logits: (N, C) numpy arrays (memory-mapped is fine) or torch tensors,
    any float dtype; labels: (N,) integers or None. grouping: a spec of docs/architecture.md §4. correlation:
    a precomputed (C, C) class-correlation matrix for `corr:R` (computed from the teacher otherwise).
    Works through row chunks, so memory stays bounded for arrays larger than RAM; `progress(done, N)`
    is called after each chunk. Returns a `Decomposition` of (N,) numpy arrays.
    """
    g = parse_grouping(grouping)
    temp = check_temperature(temperature)
    n, c = _check_pair(student_logits, teacher_logits)
    y = None if labels is None else check_labels(labels, "labels", num_samples=n, num_classes=c)
    if g.needs_labels and y is None:
        raise ValueError(f"grouping {g} needs labels, and none were given")
    dev = resolve_device(device)
    correlated = None
    if g.needs_correlation:
        corr = (
            class_correlation(teacher_logits, device=dev) if correlation is None else np.asarray(correlation)
        )
        if corr.shape != (c, c):
            raise ValueError(f"correlation has shape {corr.shape}, expected ({c}, {c})")
        correlated = correlated_classes(corr, float(g.param)).to(dev)
    rows = chunk_rows or _default_chunk_rows(c, dev)
    out = {name: np.empty(n, dtype=np.float64) for name in _OUT_FLOAT}
    for name in ("strong_size", "teacher_pred", "student_pred"):
        out[name] = np.empty(n, dtype=np.int64)
    with torch.inference_mode():
        for start in range(0, n, rows):
            stop = min(n, start + rows)
            zt = _rows(teacher_logits, start, stop, dev)
            zs = _rows(student_logits, start, stop, dev)
            yy = None if y is None else torch.from_numpy(y[start:stop]).to(dev)
            part = _chunk_terms(zs, zt, yy, g, temp, correlated)
            _check_finite(part, student_logits, teacher_logits, start)
            for name, values in part.items():
                out[name][start:stop] = values
            if progress is not None:
                progress(stop, n)
    return Decomposition(**out, labels=y, grouping=str(g), temperature=temp)


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


def _rows(arr, start: int, stop: int, dev: torch.device) -> torch.Tensor:
    """Rows [start, stop) of an (N, C) array or tensor as float32 on `dev`."""
    if isinstance(arr, torch.Tensor):
        return arr[start:stop].to(dev, torch.float32)
    chunk = np.ascontiguousarray(arr[start:stop])
    with warnings.catch_warnings():
        # Read-only memmaps: the tensor is only read (every op below writes to new tensors).
        warnings.simplefilter("ignore", UserWarning)
        return torch.from_numpy(chunk).to(dev, torch.float32)


def _default_chunk_rows(c: int, dev: torch.device) -> int:
    elements = 2**24 if dev.type == "cuda" else 2**18  # CPU: stay cache-sized (measured best); GPU: fill it
    return max(1, elements // max(c, 1))


def _check_pair(student, teacher) -> tuple[int, int]:
    for name, arr in (("student_logits", student), ("teacher_logits", teacher)):
        shape = tuple(arr.shape)
        if len(shape) != 2:
            raise ValueError(f"{name} must have shape (N, C), got {shape}")
        dtype = arr.dtype
        is_float = (
            dtype.is_floating_point if isinstance(arr, torch.Tensor) else np.issubdtype(dtype, np.floating)
        )
        if not is_float:
            raise ValueError(f"{name} must hold floating-point logits, got dtype {dtype}")
        if shape[0] < 1 or shape[1] < 2:
            raise ValueError(f"{name} has shape {shape}: need at least 1 sample and 2 classes")
    if tuple(student.shape) != tuple(teacher.shape):
        raise ValueError(
            f"student_logits has shape {tuple(student.shape)}, teacher_logits {tuple(teacher.shape)}"
        )
    return int(teacher.shape[0]), int(teacher.shape[1])


def _check_finite(part: dict, student, teacher, start: int) -> None:
    """Non-finite results mean non-finite (or overflowing) inputs: name the first culprit."""
    if np.isfinite(part["kl"]).all():
        return
    row = start + int(np.flatnonzero(~np.isfinite(part["kl"]))[0])
    for name, arr in (("teacher_logits", teacher), ("student_logits", student)):
        values = np.asarray(
            arr[row].detach().cpu() if isinstance(arr, torch.Tensor) else arr[row], dtype=np.float64
        )
        if not np.isfinite(values).all():
            col = int(np.flatnonzero(~np.isfinite(values))[0])
            raise ValueError(f"{name} has a non-finite value ({values[col]}) at row {row}, class {col}")
    raise ValueError(f"row {row}: logits divided by the temperature overflow float32")
