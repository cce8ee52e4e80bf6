"""Fused CAKD loss kernel: the three terms of a batch and their analytic gradient in a few tensor ops.

For scaled logits u = z_s / T (student) and v = z_t / T (teacher), q = softmax(u), p = softmax(v), a
strong set S per sample and its complement W, with group masses p_S, p_W (q_S, q_W) and the
renormalised in-group distributions p^S, q^S (p^W, q^W):

    BCD = KL([p_S, p_W] || [q_S, q_W])        dBCD/du = q - (1_S p_S q^S + 1_W p_W q^W)
    SCD = KL(p^S || q^S)  (0 if |S| = 1)      dSCD/du = 1_S (q^S - p^S)
    WCD = KL(p^W || q^W)  (0 if W is empty)   dWCD/du = 1_W (q^W - p^W)

and dz_s = du / T. Everything is in log space with per-group log-sum-exps, so the terms stay finite
for |z| up to 1e4 and T down to 0.05; a single-class group gives exactly 0 with exactly zero
gradient, and student == teacher gives exactly 0 terms and gradient.

Why a kernel: at 256 x 100 on CPU the time of a loss is mostly the number of tensor ops (each costs
a few microseconds however small), not FLOPs. A plain autograd graph of masked log-sum-exps costs
6-7x KD (benchmarks/bench_losses.py). This forward + backward is about 50 ops (the top-k mask adds
about 15), KD's about 23; it also moves about twice KD's data, as the layout below holds each class
once per group.

Its strong set comes as a {0, 1} float mask from the rule's own `Grouping.strong_mask_float` (faster
paths for `target` and `topk`: torch.topk at 256 x 100 on CPU costs about as much as KD's whole step).
"""

from __future__ import annotations

import functools

import torch
from torch.autograd.function import once_differentiable


@functools.lru_cache(maxsize=32)
def _group_offsets(dtype: torch.dtype, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(base, scale), (2, 1, 1) each: base + scale * s = [0 in S / -far outside, 0 in W / -far outside]."""
    far = 0.25 * torch.finfo(dtype).max
    base = torch.tensor([[[-far]], [[0.0]]], dtype=dtype, device=device)
    scale = torch.tensor([[[far]], [[-far]]], dtype=dtype, device=device)
    return base, scale


@functools.lru_cache(maxsize=64)
def _combine(factor: float, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """(3, 4): factor * [BCD, SCD, WCD] from the batch sums of [BCD's S half, its W half, SCD, WCD]."""
    m = torch.tensor([[1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0]], dtype=torch.float64)
    return (m * factor).to(dtype=dtype, device=device)


class CAKDFunction(torch.autograd.Function):
    """Batch terms and weighted loss of CAKD with an analytic backward (to the student logits only).

    forward(student (n, C), teacher (n, C), strong (n, C) {0, 1}, temperature, weights (w_b, w_s, w_w),
    natural (bool, bool), term_grads) -> (loss 0-dim, terms (3,) = [BCD, SCD, WCD]), each term T^2 times the
    batch mean of its per-sample value; where `natural[i]` is set, SCD (WCD) is replaced by its
    contribution p_S * SCD (p_W * WCD). loss = w_b*terms[0] + w_s*terms[1] + w_w*terms[2]. The logits are
    float32 or float64 (no gradient reaches the teacher), ``strong`` in their dtype; term_grads=False
    returns the terms without a gradient (cheaper when only the loss is trained on).

    Layout: x = (2 sides [student, teacher], 2 groups [S, W], n, C) scaled logits with the classes
    outside each group set to -far (finite, so no inf arithmetic). A (log_)softmax over its last
    dimension is then the in-group distribution, exactly 0 outside the group and exactly 1 (log 0)
    for a single-class group; torch's (log_)softmax kernels are also fast where exp underflows,
    unlike exp itself on CPU. An empty W holds C equal entries: its mass is 0 and its student and
    teacher rows are identical, so WCD and its gradient are exactly 0 with no special case.
    """

    @staticmethod
    def forward(ctx, student, teacher, strong, temperature, weights, natural, term_grads=True):
        n = student.shape[0]
        base, scale = _group_offsets(student.dtype, student.device)
        pushed = torch.addcmul(base, strong, scale)  # (2, n, C): 0 inside the group, -far outside
        z = torch.stack((student, teacher)).unsqueeze(1)  # (2, 1, n, C)
        x = torch.add(pushed, z, alpha=1.0 / temperature)  # (2, 2, n, C): scaled, -far outside the group
        log_in = x.log_softmax(-1)  # log q^G, log p^G inside each group G, about -far outside
        # Group log-sum-exp = group max + log(sum exp(. - max)), the latter = -(log_in at the max).
        group_lse = x.amax(-1, keepdim=True) - log_in.amax(-1, keepdim=True)  # (2, 2, n, 1)
        log_mass = group_lse.log_softmax(1)  # (2, 2, n, 1): log q_G, log p_G
        masses = log_mass.exp()  # q_G, p_G
        p_in = x[1].softmax(-1)  # (2, n, C): p^S, p^W, exactly 0 outside the group
        log_in_q, log_in_p = log_in.unbind(0)
        inner = p_in * (log_in_p - log_in_q)  # (2, n, C): summed over classes, SCD and WCD per sample
        if any(natural):
            inner = _natural_scale(inner, masses[1], natural)
        log_mass_q, log_mass_p = log_mass.unbind(0)
        bcd = masses[1] * (log_mass_p - log_mass_q)  # (2, n, 1): BCD's S and W halves
        sums = torch.cat((bcd.sum((1, 2)), inner.sum((1, 2))))  # (4,)
        factor = temperature**2 / n  # T^2: here, in native_kernel.py and in kd.py's _terms only
        terms = torch.mv(_combine(factor, sums.dtype, sums.device), sums)
        terms.clamp_min_(0.0)  # >= 0 despite rounding
        w = torch.tensor(weights, dtype=terms.dtype, device=terms.device)
        b, s, ww = (terms * w).unbind()
        ctx.save_for_backward(x, p_in, masses, w)
        ctx.setup = (temperature, natural)
        ctx.set_materialize_grads(False)
        if not term_grads:
            ctx.mark_non_differentiable(terms)
        return b + s + ww, terms

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_loss, grad_terms):
        x, p_in, masses, w = ctx.saved_tensors
        temperature, natural = ctx.setup
        # d(T^2 * term mean)/dz = (T / n) d(term)/du; fold the upstream gradients in as well.
        scale = temperature / x.shape[2]
        if grad_loss is None and grad_terms is None:
            return (None,) * 7
        if grad_terms is None:  # the usual case: only the loss was differentiated
            coef = w * (grad_loss * scale)  # (3,)
        elif grad_loss is None:
            coef = grad_terms * scale
        else:
            coef = torch.addcmul(grad_terms, grad_loss, w).mul_(scale)
        group_coef = _natural_scale(coef[1:].view(2, 1, 1), masses[1], natural)  # (2, 1 or n, 1)
        # du = sum over groups G of 1_G [q^G (c_b (q_G - p_G) + c_G) - c_G p^G]
        q_factor = torch.addcmul(group_coef, masses[0] - masses[1], coef[0])  # (2, n, 1)
        # Two separate products (no fused multiply-add): where q == p they cancel exactly.
        grad = x[0].softmax(-1).mul_(q_factor).sub_(p_in * group_coef).sum(0)  # (n, C)
        return grad, None, None, None, None, None, None


def _natural_scale(values: torch.Tensor, mass: torch.Tensor, natural: tuple[bool, bool]) -> torch.Tensor:
    """values (2, 1 or n, 1 or C): group g times its teacher mass `mass[g]` (2, n, 1) where natural[g]."""
    if natural == (False, False):
        return values
    if natural == (True, True):
        return values * mass
    return values * torch.stack([mass[g] if natural[g] else torch.ones_like(mass[g]) for g in range(2)])
