"""The tensor-op path of `decompose`, in float64: CUDA, CPUs without the C kernel, and float64 logits.

The same formulation as ``decompose_kernel.c`` (its header has the maths and why it is accurate), with
torch ops on whole chunks of rows, every quantity in float64 on the compute device: `chunk_terms` with one
shift per row, and `chunk_terms_grouped` (each group its own shift and reference) for the rows it flags.
The terms are accurate to about 1e-12 relative (float64 rounding and the series truncation), far inside
the 1e-3 the tests ask. Per-row results stay on the device until the end (`decompose_tensors`), so the
only synchronisations are `_Feeder`'s buffer reuse and one at the end (rows to recompute, then the
results to the host). Under logit standardization each float64 chunk is z-scored first (`_prepared`).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from cakd_viz.decomposition.inputs import Logits
from cakd_viz.decomposition.result import FLOAT_ARRAYS, INT_ARRAYS
from cakd_viz.grouping import Grouping, strong_mask
from cakd_viz.standardize import for_strong_sets, row_stats

SERIES_BELOW = 1e-2  # |u| below: phi by its series (truncation 4e-14 relative); above: e^u - 1 - u
COMMON_SPAN = 700.0  # teacher logits spanning at most this times T: one shift for both groups (e^-700 is
# a normal float64); rows spanning more are recomputed with each group's own shift
PARTS_MAX = 1e8  # the parts of D (BCD's argument) beyond this size: recomputed with BCD from log masses


def phi(x: torch.Tensor) -> torch.Tensor:
    """e^x - 1 - x >= 0 elementwise, to full relative precision (its series where expm1(x) - x cancels)."""
    series = x * x * (0.5 + x * (1 / 6 + x * (1 / 24 + x * (1 / 120 + x / 720))))
    return torch.where(x.abs() < SERIES_BELOW, series, torch.expm1(x) - x)


def chunk_terms(
    t: torch.Tensor, s: torch.Tensor, strong: torch.Tensor, temperature: float
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Every per-row output for one chunk, fast, and the rows to recompute with `chunk_terms_grouped`.

    t, s: (n, C) float64 teacher and student logits; strong: (n, C) bool, S of each row (non-empty).
    Both groups share one shift (max t) and one reference class (the argmax r): every weight
    e^{(t - max t) / T} >= e^-700 stays a normal float64 where the teacher's logits span at most 700 T,
    and any shift and reference give the same maths. Each summand is w phi(u) with
    phi(u) = expm1(u) - u, whose rounding (2.2e-16 |u| absolute) is a relative error of about 4e-16 / |u|
    per summand and 4e-16 / rms(u) on F: never 1e-8 of a term of 1e-6 nats or more, and far below
    1e-8 nats absolute under it. Rows spanning more than 700 T, or whose F overflows (a KL of hundreds
    of nats), are flagged in `redo`. Returns ({name: (n,) tensor}, redo (n,) bool).
    """
    n, c = t.shape
    inv_t = 1.0 / temperature
    groups = torch.stack((strong, ~strong), 1).to(t.dtype)  # (n, 2, C): S, W as 0/1
    t_max, t_pred = t.max(1, keepdim=True)  # the first index of the maximum: the reference r
    d_ref = t.gather(1, t_pred) - s.gather(1, t_pred)
    both = torch.empty((n, 2, c), dtype=t.dtype, device=t.device)  # [w, w dd]
    w = torch.exp(torch.sub(t, t_max).mul_(inv_t), out=both[:, 0])
    dd = torch.sub(t, s).sub_(d_ref).mul_(inv_t)  # d - d_ref: differences before any shift
    torch.mul(w, dd, out=both[:, 1])
    sums = torch.bmm(both, groups.transpose(1, 2))  # (n, 2 [w, w dd], 2 [S, W])
    zp = sums[:, 0]
    zp_safe = torch.where(zp > 0, zp, 1.0)  # an empty W: no division by 0 (its terms are masked below)
    dbc = sums[:, 1] / zp_safe  # (n, 2): dbar_G - d_ref
    u = torch.where(strong, dbc[:, :1], dbc[:, 1:]).sub_(dd)
    term = torch.expm1(u).sub_(u).mul_(w)  # w phi(u) >= 0
    f = torch.bmm(term.unsqueeze(1), groups.transpose(1, 2)).squeeze(1)  # (n, 2)
    kl_g = torch.log1p(f / zp_safe)
    rho = torch.log(zp_safe[:, 1] / zp_safe[:, 0])  # log(p_W / p_S): one shift for both groups
    delta = (kl_g[:, 0] - kl_g[:, 1]) - (dbc[:, 0] - dbc[:, 1])  # D = K_S - K_W (same reference)
    # Redo: a span beyond the common shift, F overflowing, or D the small difference of huge parts
    # (BCD's error is about 2e-16 times their size over |D|: 1e-5 of a BCD of 1e-6 nats at PARTS_MAX).
    span = (t_max.squeeze(1) - t.min(1).values) * inv_t
    parts = kl_g.abs().sum(1) + dbc.abs().sum(1)
    redo = ~torch.isfinite(f).all(1) | (span > COMMON_SPAN) | ~(parts <= PARTS_MAX)
    out = _assemble(kl_g, strong, zp[:, 1] > 0, *_bcd_centred(rho, delta))
    out.update(teacher_pred=t_pred.squeeze(1), student_pred=s.argmax(1))
    return out, redo


def chunk_terms_grouped(
    t: torch.Tensor, s: torch.Tensor, strong: torch.Tensor, temperature: float
) -> dict[str, torch.Tensor]:
    """`chunk_terms` for any rows, slower: each group its own shift and reference, no overflow.

    Per group G with its teacher argmax r (lowest index): w_i = e^{(t_i - t_r) / T} (Zp >= 1),
    dd_i = ((t_i - s_i) - (t_r - s_r)) / T, and w phi(u) as w u^2 (1/2 + u/6 + ...) for |u| < 0.01
    and e^{a + dbc} - w (1 + u) above (a = (s - s_r) / T), so that a weight below float64's range still
    counts through e^{a + dbc}; a group whose F overflows uses KL_G = logsumexp_G(a) + dbc - log Zp,
    which cannot cancel there.
    """
    inv_t = 1.0 / temperature
    weak = ~strong

    def per_class(pair: torch.Tensor) -> torch.Tensor:  # (n, 2) group constants -> (n, C)
        return torch.where(strong, pair[:, :1], pair[:, 1:])

    def per_group(x: torch.Tensor, reduce, fill=-torch.inf) -> torch.Tensor:  # (n, C) -> (n, 2): S, W
        return torch.stack((reduce(x.masked_fill(weak, fill)), reduce(x.masked_fill(strong, fill))), 1)

    def group_sums(x: torch.Tensor) -> torch.Tensor:
        return per_group(x, lambda v: v.sum(1), 0.0)

    refs = per_group(t, lambda v: v.argmax(1))  # each group's teacher argmax, lowest index (W empty: unused)
    t_ref, s_ref = t.gather(1, refs), s.gather(1, refs)  # (n, 2)
    d_ref = t_ref - s_ref
    w = torch.exp((t - per_class(t_ref)) * inv_t)  # in (0, 1]
    dd = ((t - s) - per_class(d_ref)) * inv_t
    a = (s - per_class(s_ref)) * inv_t  # b + u = a + dbc
    zp = group_sums(w)
    zp_safe = torch.where(zp > 0, zp, 1.0)
    dbc = group_sums(w * dd) / zp_safe
    u = per_class(dbc) - dd
    series = w * u * u * (0.5 + u * (1 / 6 + u * (1 / 24 + u * (1 / 120 + u / 720))))
    wide = torch.exp(a + per_class(dbc)) - w * (1.0 + u)
    f = group_sums(torch.where(u.abs() < SERIES_BELOW, series, wide))
    lse = per_group(a, lambda v: v.logsumexp(1))
    kl_g = torch.where(torch.isfinite(f), torch.log1p(f / zp_safe), lse + dbc - zp_safe.log())
    rho = (t_ref[:, 1] - t_ref[:, 0]) * inv_t + torch.log(zp_safe[:, 1] / zp_safe[:, 0])
    # log(q_S / q_W) from each group's own student maximum (s_r may be far below it)
    s_max = per_group(s, lambda v: v.amax(1))
    s_max = torch.where(torch.isfinite(s_max), s_max, 0.0)  # an empty W: finite, unused
    zq = group_sums(torch.exp((s - per_class(s_max)) * inv_t))
    sigma = (s_max[:, 0] - s_max[:, 1]) * inv_t + torch.log(
        zq[:, 0] / torch.where(zq[:, 1] > 0, zq[:, 1], 1.0)
    )
    out = _assemble(kl_g, strong, zp[:, 1] > 0, *_bcd_direct(rho, sigma))
    out.update(teacher_pred=t.argmax(1), student_pred=s.argmax(1))
    return out


def _softplus(x: torch.Tensor) -> torch.Tensor:
    """log(1 + e^x), exactly where torch's softplus switches to x (above 20, an error of 2e-9)."""
    return x.clamp_min(0.0) + torch.log1p(torch.exp(-x.abs()))


def _masses(rho: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(p_S, p_W) from rho = log(p_W / p_S): one exp, p_W never as 1 - p_S."""
    e = torch.exp(-rho.abs())
    return torch.where(rho > 0, e / (1 + e), 1 / (1 + e)), torch.where(rho > 0, 1 / (1 + e), e / (1 + e))


def _bcd_centred(rho: torch.Tensor, delta: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """(p_S, p_W, BCD, q_S) from rho = log(p_W / p_S) and D = K_S - K_W, as the kernel computes them.

    q_G is proportional to p_G e^{K_G}; with v_S = p_W D, v_W = -p_S D (centred),
    BCD = log1p(p_S phi(v_S) + p_W phi(v_W)) >= 0 and q_S = p_S e^{v_S - BCD}: a tiny BCD keeps its
    relative precision. Log space where e^v would overflow.
    """
    p_s, p_w = _masses(rho)
    v_s, v_w = p_w * delta, -p_s * delta
    phi_s = phi(v_s)
    x = p_s * phi_s + p_w * phi(v_w)
    e_vs = torch.where(v_s.abs() < 0.5, 1 + v_s + phi_s, torch.exp(v_s))  # e^{v_S}, no cancellation
    bcd, q_s = torch.log1p(x), p_s * e_vs / (1 + x)
    huge = (v_s > 700) | (v_w > 700)
    if rho.device.type != "cpu" or bool(huge.any()):  # (no host synchronisation on a GPU)
        lp_s, lp_w = -_softplus(rho), -_softplus(-rho)
        bcd_log = torch.logaddexp(lp_s + v_s, lp_w + v_w)
        bcd = torch.where(huge, bcd_log, bcd)
        q_s = torch.where(huge, torch.exp(lp_s + v_s - bcd_log), q_s)
    return p_s, p_w, bcd, q_s


def _bcd_direct(rho: torch.Tensor, sigma: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """(p_S, p_W, BCD, q_S) from rho = log(p_W / p_S) and sigma = log(q_S / q_W), by the definition
    BCD = p_S log(p_S / q_S) + p_W log(p_W / q_W): no difference of huge parts (logits far apart)."""
    p_s, p_w = _masses(rho)
    lp_s, lp_w = -_softplus(rho), -_softplus(-rho)
    lq_s, lq_w = -_softplus(-sigma), -_softplus(sigma)
    return p_s, p_w, p_s * (lp_s - lq_s) + p_w * (lp_w - lq_w), torch.exp(lq_s)


def _assemble(kl_g, strong, has_w, p_s, p_w, bcd, q_s) -> dict[str, torch.Tensor]:
    """The row outputs (tensors) from the groups' KLs (n, 2), S (n, C), whether W has a class (n,) and the
    masses and BCD (n,) each; W may be empty."""
    c = strong.shape[1]
    size_s = strong.sum(1)
    kl_g = torch.where(torch.stack((size_s, c - size_s), 1) > 1, kl_g, 0.0)  # one class (or none): 0
    bcd = torch.where(has_w, bcd.clamp_min(0.0), 0.0)
    p_s, p_w = torch.where(has_w, p_s, 1.0), torch.where(has_w, p_w, 0.0)
    kl_s, kl_w = kl_g[:, 0], torch.where(has_w, kl_g[:, 1], 0.0)
    return {
        "kl": bcd + p_s * kl_s + p_w * kl_w,
        "bcd": bcd,
        "scd": kl_s,
        "wcd": kl_w,
        "teacher_strong_mass": p_s,
        "teacher_weak_mass": p_w,
        "student_strong_mass": torch.where(has_w, q_s, 1.0),
        "strong_size": size_s,
    }


def _redo_terms(t, s, t_sets, labels, grouping: Grouping, temperature: float, corr) -> dict:
    """`chunk_terms_grouped` of some (m, C) float64 rows, S decided on ``t_sets``, with exactly 0 for every
    divergence, and q_S = p_S, on rows where the student's logits equal the teacher's: the group sums of
    rows spanning more than 700 T are rounded apart by the order of their additions (3e-17 nats where the
    answer is 0)."""
    strong = strong_mask(grouping, t_sets, labels, temperature=temperature, correlated=corr)
    part = chunk_terms_grouped(t, s, strong, temperature)
    same = (t == s).all(1)
    for name in ("kl", "bcd", "scd", "wcd"):
        part[name] = torch.where(same, 0.0, part[name])
    part["student_strong_mass"] = torch.where(same, part["teacher_strong_mass"], part["student_strong_mass"])
    return part


def rows_terms(
    student: np.ndarray,
    teacher: np.ndarray,
    labels: np.ndarray | None,
    grouping: Grouping,
    temperature: float,
    correlated: np.ndarray | None,
    *,
    standardize: bool = False,
) -> dict[str, np.ndarray]:
    """Every output for a few (m, C) rows on the CPU, with `chunk_terms_grouped` (the C kernel's redo rows)."""
    with torch.inference_mode():
        zt = torch.from_numpy(np.asarray(teacher, dtype=np.float64))
        zs = torch.from_numpy(np.asarray(student, dtype=np.float64))
        y = None if labels is None else torch.from_numpy(labels)
        corr = None if correlated is None else torch.from_numpy(correlated)
        part = _redo_terms(*_prepared(zt, zs, standardize), y, grouping, temperature, corr)
        return {name: v.numpy() for name, v in part.items()}


def _prepared(zt: torch.Tensor, zs: torch.Tensor, standardize: bool) -> tuple[torch.Tensor, ...]:
    """(teacher, student, teacher for the strong sets): float64 logits as they are, or under LS the two
    standardized and the teacher divided by its rows' std + 1e-7 (the standardized teacher up to a
    per-row shift, with no logit rounded into another)."""
    if not standardize:
        return zt, zs, zt
    (mt, st), (ms, ss) = row_stats(zt), row_stats(zs)
    return (zt - mt) / st, (zs - ms) / ss, for_strong_sets(zt)


class _Feeder:
    """Chunks of rows of several sources on the compute device, in order.

    With `stage` (the default on CUDA), host rows are copied through two buffers per source (pinned on
    CUDA) and on to the device on a side stream: the host copy of chunk k + 1 (from the page cache, for
    a memory map) runs while the GPU copies and computes chunk k; a buffer is refilled once the copy
    out of it (two chunks earlier) has finished. Without it, rows are used where they lie. Staging
    on the CPU runs the same buffer logic without streams (the tests check it there).
    """

    def __init__(
        self, sources: list[Logits], dev: torch.device, rows: int, stage: bool | None = None
    ) -> None:
        self.sources, self.dev = sources, dev
        self.rows = min(rows, sources[0].shape[0])  # a chunk's rows: buffers no larger than the logits
        self.cuda = dev.type == "cuda"
        self.stage = self.cuda if stage is None else stage
        self.buffers: list[list[torch.Tensor | None]] = [[None] * len(sources) for _ in range(2)]
        self.done: list[torch.cuda.Event | None] = [None, None]
        self.stream = torch.cuda.Stream(dev) if self.cuda else None

    def get(self, k: int, start: int, stop: int) -> list[torch.Tensor]:
        host = [src.tensor_rows(start, stop) for src in self.sources]
        if not self.stage:
            return [x.to(self.dev) for x in host]
        slot = k % 2
        if self.done[slot] is not None:
            self.done[slot].synchronize()  # the copy out of this slot's buffers (chunk k - 2) is finished
        staged = []
        for j, x in enumerate(host):
            if x.device.type != "cpu" or (self.cuda and x.is_pinned()):
                staged.append(x)  # on the device already, or pinned by the caller: no staging copy
                continue
            buf = self.buffers[slot][j]
            if buf is None or buf.dtype != x.dtype or buf.shape[1:] != x.shape[1:] or len(buf) < len(x):
                buf = torch.empty((self.rows, *x.shape[1:]), dtype=x.dtype, pin_memory=self.cuda)
                self.buffers[slot][j] = buf
            staged.append(buf[: len(x)].copy_(x))
        if not self.cuda:
            return [x.to(self.dev) for x in staged]
        with torch.cuda.stream(self.stream):
            moved = [x.to(self.dev, non_blocking=True) for x in staged]
            event = torch.cuda.Event()
            event.record(self.stream)
        self.done[slot] = event
        compute = torch.cuda.current_stream(self.dev)
        compute.wait_event(event)
        for x in moved:
            x.record_stream(compute)  # allocated on the copy stream, used on the compute stream
        return moved


def decompose_tensors(
    student: Logits,
    teacher: Logits,
    labels: np.ndarray | None,
    grouping: Grouping,
    temperature: float,
    correlated: np.ndarray | None,
    dev: torch.device,
    rows: int,
    progress: Callable[[int, int], None] | None = None,
    *,
    stage: bool | None = None,
    standardize: bool = False,
) -> dict[str, np.ndarray]:
    """Every per-row output of `decompose` as numpy (N,) arrays, computed on `dev` in float64, `rows` rows
    at a time (`stage`: see `_Feeder`); standardize: z-score each row's logits first (LS)."""

    def prepared(t: torch.Tensor, s: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return _prepared(t.to(dev, torch.float64), s.to(dev, torch.float64), standardize)

    n = teacher.shape[0]
    y_all = None if labels is None else torch.from_numpy(np.array(labels, dtype=np.int64)).to(dev)  # (a copy:
    # labels may be a read-only memory map)
    corr = None if correlated is None else torch.from_numpy(correlated).to(dev)
    out = {name: torch.empty(n, dtype=torch.float64, device=dev) for name in FLOAT_ARRAYS}
    out.update({name: torch.empty(n, dtype=torch.int64, device=dev) for name in INT_ARRAYS})
    redo = torch.zeros(n, dtype=torch.bool, device=dev)
    feeder = _Feeder([teacher, student], dev, rows, stage)
    with torch.inference_mode():
        for k, start in enumerate(range(0, n, rows)):
            stop = min(n, start + rows)
            zt, zs, zt_sets = prepared(*feeder.get(k, start, stop))
            y = None if y_all is None else y_all[start:stop]
            strong = strong_mask(grouping, zt_sets, y, temperature=temperature, correlated=corr)
            part, again = chunk_terms(zt, zs, strong, temperature)
            for name, values in part.items():
                out[name][start:stop] = values
            redo[start:stop] = again
            if progress is not None:
                progress(stop, n)
        rows_again = redo.nonzero().squeeze(1).cpu().numpy()  # the one synchronisation before the end
        if rows_again.size:
            index = torch.from_numpy(rows_again).to(dev)
            y = None if y_all is None else y_all[index]
            prepared_rows = prepared(teacher.take(rows_again), student.take(rows_again))
            part = _redo_terms(*prepared_rows, y, grouping, temperature, corr)
            for name, values in part.items():
                out[name][index] = values
        return {name: values.cpu().numpy() for name, values in out.items()}
