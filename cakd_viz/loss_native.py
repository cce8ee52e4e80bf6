"""CAKD loss on CPU tensors through the fused C kernel (`cakd_viz.native`): one call forward, one backward.

Same contract as `loss_kernels.CAKDFunction` (terms = T^2 x batch means of [BCD, SCD, WCD], natural
weights as contributions, loss = w_b*BCD + w_s*SCD + w_w*WCD added left to right in the input dtype),
but the strong set of `target`, `topk:K` and `topk+target:K` is found inside the kernel from the
teacher's logits and the labels, and any other rule comes in as a boolean mask.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.autograd.function import once_differentiable

from .grouping import Grouping
from .native import BAD, ROW, SUMS

RULE_MASK, RULE_TOPK, RULE_TARGET, RULE_TOPK_TARGET = 0, 1, 2, 3
_RULES = {"topk": RULE_TOPK, "target": RULE_TARGET, "topk+target": RULE_TOPK_TARGET}
_NUMPY = {torch.float32: np.float32, torch.float64: np.float64}


def rule_of(grouping: Grouping, c: int) -> tuple[int, int]:
    """(kernel rule, K) for a grouping; RULE_MASK means the caller passes `strong_mask`'s mask."""
    rule = _RULES.get(grouping.kind, RULE_MASK)
    k = min(int(grouping.param), c - 1) if rule in (RULE_TOPK, RULE_TOPK_TARGET) else 0
    return rule, k


class NativeCAKDFunction(torch.autograd.Function):
    """forward(kernel, student, teacher, rule, k, labels, mask, temperature, weights, natural, term_grads)."""

    @staticmethod
    def forward(
        ctx, kern, student, teacher, rule, k, labels, mask, temperature, weights, natural, term_grads
    ):
        n, c = student.shape
        dtype = student.dtype
        name = "float32" if dtype == torch.float32 else "float64"
        if not (student.is_contiguous() and teacher.is_contiguous()):
            student, teacher = student.contiguous(), teacher.contiguous()
        if rule == RULE_MASK:
            mask = mask.to(torch.bool).contiguous()
        else:
            mask = torch.empty((n, c), dtype=torch.bool)
        label_ptr = None
        if rule in (RULE_TARGET, RULE_TOPK_TARGET):
            labels = labels.contiguous()  # kept referenced: the kernel reads it through a raw pointer
            label_ptr = labels.data_ptr()
        probs = torch.empty((2, n, c), dtype=dtype)
        rows = torch.empty((n, ROW), dtype=torch.float64)
        sums, bad = SUMS(), BAD()  # batch sums of the three terms' rows; a bad label's row
        code = kern.forward[name](
            n, c, student.data_ptr(), teacher.data_ptr(), 1.0 / temperature, rule, k, label_ptr,
            mask.data_ptr(), probs.data_ptr(), rows.data_ptr(), sums, natural[0], natural[1], bad,
            torch.get_num_threads(),
        )  # fmt: skip
        if code == -1:
            row = int(bad[0])
            raise ValueError(f"labels must be class indices in [0, {c}); row {row} has {int(labels[row])}")
        if code != 0:
            raise MemoryError("the fused CAKD kernel could not allocate its top-k scratch space")
        real = _NUMPY[dtype]
        factor = temperature**2 / n
        terms = np.array([max(x * factor, 0.0) for x in sums], dtype=real)  # >= 0 despite rounding
        w = [real(x) for x in weights]
        loss = w[0] * terms[0] + w[1] * terms[1] + w[2] * terms[2]  # left to right, in the input dtype
        ctx.kern, ctx.name, ctx.setup = kern, name, (temperature, weights, natural, n, c)
        ctx.probs, ctx.mask, ctx.rows = probs, mask, rows
        ctx.set_materialize_grads(False)
        loss_t, terms_t = torch.from_numpy(np.asarray(loss, dtype=real)), torch.from_numpy(terms)
        if not term_grads:
            ctx.mark_non_differentiable(terms_t)
        return loss_t, terms_t

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_loss, grad_terms):
        if grad_loss is None and grad_terms is None:
            return (None,) * 11
        temperature, weights, natural, n, c = ctx.setup
        g = 0.0 if grad_loss is None else float(grad_loss)
        up = [0.0, 0.0, 0.0] if grad_terms is None else grad_terms.tolist()
        scale = temperature / n  # d(T^2 * batch mean)/ds = (T / n) d(term)/du
        cb, cs, cw = ((g * w + u) * scale for w, u in zip(weights, up, strict=True))
        grad = torch.empty((n, c), dtype=ctx.probs.dtype)
        ctx.kern.backward[ctx.name](
            n, c, ctx.probs.data_ptr(), ctx.mask.data_ptr(), ctx.rows.data_ptr(), cb, cs, cw,
            int(natural[0]), int(natural[1]), grad.data_ptr(), torch.get_num_threads(),
        )  # fmt: skip
        return None, grad, None, None, None, None, None, None, None, None, None


def native_loss_and_terms(
    kern,
    student: torch.Tensor,
    teacher: torch.Tensor,
    grouping: Grouping,
    labels: torch.Tensor | None,
    mask: torch.Tensor | None,
    *,
    temperature: float,
    weights: tuple[float, float, float],
    natural: tuple[bool, bool],
    term_grads: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss 0-dim, terms (3,)) for float32/float64 CPU logits; `mask` only for rules the kernel lacks."""
    rule, k = rule_of(grouping, student.shape[1])
    return NativeCAKDFunction.apply(
        kern, student, teacher, rule, k, labels, mask, float(temperature), tuple(weights), tuple(natural),
        term_grads,
    )  # fmt: skip
