"""CAKD (Zhang et al., arXiv 2410.14741): w_b*BCD + alpha*SCD + beta*WCD over a strong set S per sample.

For a strong set S per sample (a grouping rule, `cakd_viz.grouping`) and its complement W:
BCD = KL([p_S, p_W] || [q_S, q_W]), SCD = KL(p^S || q^S), WCD = KL(p^W || q^W), with p^S the teacher
distribution restricted to S and renormalised, so that KL(p || q) = BCD + p_S*SCD + p_W*WCD. With
alpha = beta = "natural" the per-sample teacher masses p_S, p_W stand in for the constants and CAKD
(w_b = 1) equals KD for every grouping. A "natural" term is reported as its contribution,
terms["scd"] = T^2 * mean(p_S * SCD), with weight 1 (the per-sample weight lives inside the term).
"""

from __future__ import annotations

import numpy as np
import torch

from cakd_viz.grouping import DEFAULT_GROUPING, Grouping, parse_grouping
from cakd_viz.grouping.base import RULE_MASK
from cakd_viz.losses.base import DistillationLoss, _check_inputs
from cakd_viz.losses.native_kernel import NativeCAKDFunction, kernel, rule_of
from cakd_viz.losses.params import FLOAT, GROUPING, Param
from cakd_viz.losses.tensor_kernel import CAKDFunction

NATURAL = "natural"


class CAKDLoss(DistillationLoss):
    """CAKD (arXiv 2410.14741): w_b*BCD + alpha*SCD + beta*WCD, each T^2-scaled. Terms: bcd, scd, wcd.

    grouping: a spec of `cakd_viz.grouping` (its forms: `GROUPING_FORMS`, e.g. "topk:K", "mass:P").
    alpha, beta: numbers, or "natural" for the per-sample teacher masses p_S, p_W (KD when both are
    natural and w_b = 1). correlation: the (C, C) class-correlation matrix of the teacher's logits,
    required by corr:R (see `grouping.class_correlation`; compute it once over the training set, with
    ``standardize=True`` when the loss standardizes) and ignored by the other rules. standardize: LS
    (see `losses.base`); S is then the standardized teacher's.

    With grouping ``topk:K`` this is GDKD's top-k decoupled loss (Zheng & Cheng, arXiv 2512.04625):
    w_b·KL of the binary [p_S, p_W] split + alpha·KL inside the top-k + beta·KL inside the rest. There is deliberately no running estimate from training batches: it
    would move S under the student while it learns and make early batches' S noise.

    warmup, warmup_schedule: DKD's warm-up (see `losses.base`); default none.
    """

    term_names = ("bcd", "scd", "wcd")
    fused_slots = (0, 1, 2)
    title = "CAKD"
    own_params = (
        Param(
            "grouping",
            DEFAULT_GROUPING,
            GROUPING,
            "The strong set S: target, topk:K, topk+target:K, mass:P or corr:R.",
            "grouping",
        ),
        Param("w_b", 1.0, FLOAT, "Weight of BCD.", "w_b", low=0.0, step=0.5),
        Param("alpha", 1.0, FLOAT, "Weight of SCD.", "α", low=0.0, step=0.5),
        Param("beta", 8.0, FLOAT, "Weight of WCD.", "β", low=0.0, step=0.5),
    )

    def __init__(
        self,
        grouping: str | Grouping = DEFAULT_GROUPING,
        w_b: float = 1.0,
        alpha: float | str = 1.0,
        beta: float | str = 8.0,
        temperature: float = 4.0,
        warmup: float = 0,
        correlation=None,
        warmup_schedule: str = "epoch",
        standardize: bool = False,
    ) -> None:
        super().__init__(
            temperature=temperature, warmup=warmup, warmup_schedule=warmup_schedule, standardize=standardize
        )
        self.grouping = parse_grouping(grouping)
        self._name = f"CAKDLoss with grouping {self.grouping}"
        self.w_b = float(w_b)
        self.alpha, self.beta = _weight(alpha, "alpha"), _weight(beta, "beta")
        self.register_buffer("correlated", _correlated(self.grouping, correlation), persistent=False)

    @property
    def natural(self) -> tuple[bool, bool]:
        """Whether SCD / WCD carry their natural per-sample weights p_S / p_W."""
        return (self.alpha == NATURAL, self.beta == NATURAL)

    def _base_weights(self) -> tuple[float, ...]:
        return (self.w_b, *(1.0 if w == NATURAL else w for w in (self.alpha, self.beta)))

    def _fused(self, student, teacher, labels, epoch, term_grads):
        g = self.grouping
        labels = _check_inputs(self._name, student, teacher, labels, g.needs_labels)
        student, teacher = self._logits(student, teacher)
        if self.correlated is not None and self.correlated.shape[0] != student.shape[1]:
            raise ValueError(
                f"correlation is {tuple(self.correlated.shape)} but the logits have {student.shape[1]} classes"
            )
        setup = {
            "temperature": self.temperature,
            "weights": self._weight_values(epoch),
            "natural": self.natural,
        }
        return fused_terms(student, teacher, g, labels, self.correlated, term_grads, **setup)

    def formula(self) -> str:
        """E.g. "1*BCD + 1*SCD + 8*WCD (T=4, S = teacher top-5)"; natural weights show as p_S, p_W."""
        scd = "p_S" if self.alpha == NATURAL else f"{self.alpha:g}"
        wcd = "p_W" if self.beta == NATURAL else f"{self.beta:g}"
        return f"{self.w_b:g}*BCD + {scd}*SCD + {wcd}*WCD ({self._setting()}, S = {self.grouping.describe(short=True)})"


def fused_terms(
    student, teacher, g: Grouping, labels, correlated, term_grads: bool, *, temperature, weights, natural
):
    """(loss 0-dim, terms [BCD, SCD, WCD]) of prepared logits (``DistillationLoss._logits``) under
    grouping ``g``, with the kernels' ``weights`` (w_b, w_s, w_w) and ``natural`` (bool, bool): through
    the fused C kernel on CPU (one call each way; S found inside where the rule has a code, else passed
    as a mask), else through the tensor-op kernel. DKD runs through it too, at S = {label}."""
    kern = kernel() if student.device.type == "cpu" else None
    if kern is not None:
        rule, k = rule_of(g, student.shape[1])
        mask = None
        if rule == RULE_MASK:
            with torch.no_grad():
                mask = g.strong_mask(teacher, labels, temperature=temperature, correlated=correlated)
        args = (kern, student, teacher, rule, k, labels, mask, temperature, weights, natural, term_grads)
        return NativeCAKDFunction.apply(*args)
    with torch.no_grad():
        strong = g.strong_mask_float(teacher, labels, temperature=temperature, correlated=correlated)
    return CAKDFunction.apply(student, teacher, strong, temperature, weights, natural, term_grads)


def _weight(value: float | str, name: str) -> float | str:
    if isinstance(value, str):
        if value.strip().lower() != NATURAL:
            raise ValueError(f"{name} must be a number or 'natural', got {value!r}")
        return NATURAL
    return float(value)


def _correlated(g: Grouping, correlation) -> torch.Tensor | None:
    if not g.needs_correlation:
        return None
    if correlation is None:
        raise ValueError(
            f"grouping {g} needs correlation=, the (C, C) class-correlation matrix of the teacher's logits; "
            "compute it once over the training set with cakd_viz.grouping.class_correlation(teacher_logits)"
        )
    if isinstance(correlation, torch.Tensor):
        correlation = correlation.detach().cpu().numpy()
    corr = np.asarray(correlation, dtype=np.float64)
    if corr.ndim != 2 or corr.shape[0] != corr.shape[1]:
        raise ValueError(f"correlation must be a square (C, C) matrix, got shape {corr.shape}")
    return g.correlated(corr)
