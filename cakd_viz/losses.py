"""Distillation losses: KD, DKD and CAKD as `torch.nn.Module`s that return their named terms.

All losses take (student_logits, teacher_logits, labels=None, epoch=None), logits (N, C), labels (N,),
and return the distillation part only (no cross-entropy) as a 0-dim batch mean. KL is always
KL(teacher || student) = KL(p || q) with p = softmax(z_t / T), q = softmax(z_s / T); each term is
T^2 times its batch mean (T^2 is applied there and nowhere else). Gradients reach the student only.

    KD    (Hinton et al. 2015)                  L = KD                      KD = KL(p || q)
    DKD   (Zhao et al., CVPR 2022)              L = alpha*TCKD + beta*NCKD  split at S = {label}
    CAKD  (Zhang et al., arXiv 2410.14741)      L = w_b*BCD + alpha*SCD + beta*WCD

For a strong set S per sample (a grouping rule, `cakd_viz.grouping`) and its complement W:
BCD = KL([p_S, p_W] || [q_S, q_W]), SCD = KL(p^S || q^S), WCD = KL(p^W || q^W), with p^S the teacher
distribution restricted to S and renormalised, so that KL(p || q) = BCD + p_S*SCD + p_W*WCD. DKD's
TCKD/NCKD are BCD/WCD at S = {label}. With alpha = beta = "natural" the per-sample teacher masses
p_S, p_W stand in for the constants and CAKD (w_b = 1) equals KD for every grouping.

`loss == sum(weights[k] * terms[k])` holds exactly. A "natural" term is reported as its contribution,
terms["scd"] = T^2 * mean(p_S * SCD), with weight 1 (the per-sample weight lives inside the term).
With `warmup` > 0 the weights are scaled by min(epoch / warmup, 1), epoch 0-based (fractional
allowed), as DKD does; epoch=None means fully warmed up. Float16/bfloat16 inputs are computed in
float32, float64 stays float64, and the teacher is computed in the student's dtype; everything runs on
the inputs' device.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import native
from .grouping import DEFAULT_GROUPING, Grouping, correlated_classes, parse_grouping, strong_mask
from .loss_kernels import cakd_loss_and_terms, strong_mask_float
from .loss_native import RULE_MASK, native_loss_and_terms, rule_of

NATURAL = "natural"
_TARGET = parse_grouping("target")


def _as_compute(logits: torch.Tensor) -> torch.Tensor:
    """float64 stays float64, every other float dtype is computed in float32."""
    return logits if logits.dtype == torch.float64 else logits.float()


def _teacher_like(teacher: torch.Tensor, student: torch.Tensor) -> torch.Tensor:
    """The teacher's logits, detached, in the student's compute dtype (the kernels take one dtype)."""
    return teacher.detach().to(student.dtype)


def _check_inputs(name: str, student, teacher, labels, needs_labels: bool):
    for what, t in (("student_logits", student), ("teacher_logits", teacher)):
        if not isinstance(t, torch.Tensor) or t.dim() != 2 or not t.is_floating_point():
            got = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
            raise ValueError(f"{name}: {what} must be a float tensor of shape (N, C), got {got}")
    if student.shape != teacher.shape:
        raise ValueError(
            f"{name}: student logits {tuple(student.shape)} and teacher {tuple(teacher.shape)} differ"
        )
    if student.shape[0] < 1 or student.shape[1] < 2:
        raise ValueError(f"{name}: needs at least 1 sample and 2 classes, got {tuple(student.shape)}")
    if labels is None:
        if needs_labels:
            raise ValueError(f"{name} needs labels: call it as crit(student_logits, teacher_logits, labels)")
        return None
    if not isinstance(labels, torch.Tensor) or labels.device != student.device:
        labels = torch.as_tensor(labels, device=student.device)
    if labels.shape != (student.shape[0],) or labels.is_floating_point():
        raise ValueError(
            f"{name}: labels must be integers of shape ({student.shape[0]},), got {tuple(labels.shape)}"
        )
    return labels if labels.dtype == torch.int64 else labels.long()


def _num(w: float) -> str:
    return f"{w:g}"


class DistillationLoss(nn.Module):
    """Base class: a weighted sum of named, T^2-scaled, batch-mean terms with an optional warm-up."""

    term_names: tuple[str, ...] = ()

    def __init__(self, *, temperature: float, warmup: float) -> None:
        super().__init__()
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        if not warmup >= 0:
            raise ValueError(f"warmup must be >= 0 epochs, got {warmup}")
        self.temperature = float(temperature)
        self.warmup = float(warmup)

    def warmup_factor(self, epoch: float | None = None) -> float:
        """min(epoch / warmup, 1) (0-based, fractional epochs); 1 without warm-up or when epoch is None."""
        if self.warmup <= 0 or epoch is None:
            return 1.0
        return min(max(float(epoch), 0.0) / self.warmup, 1.0)

    def _base_weights(self) -> tuple[float, ...]:
        raise NotImplementedError

    def weights(self, epoch: float | None = None) -> dict[str, float]:
        """The weight of each term at this epoch, warm-up included: loss == sum(weights[k] * terms[k])."""
        factor = self.warmup_factor(epoch)
        return {k: w * factor for k, w in zip(self.term_names, self._base_weights(), strict=True)}

    def _weight_values(self, epoch: float | None) -> tuple[float, ...]:
        """`weights(epoch)`'s values in term order (no dict to build without a warm-up: a hot path)."""
        return self._base_weights() if self.warmup <= 0 else tuple(self.weights(epoch).values())

    def _terms(self, student, teacher, labels) -> tuple[torch.Tensor, ...]:
        """The 0-dim terms in `term_names` order, each T^2 times a batch mean."""
        raise NotImplementedError

    def terms(self, student_logits, teacher_logits, labels=None, epoch=None) -> dict[str, torch.Tensor]:
        """Named 0-dim terms (differentiable w.r.t. the student); `epoch` only affects the weights."""
        return dict(zip(self.term_names, self._terms(student_logits, teacher_logits, labels), strict=True))

    def loss_and_terms(
        self, student_logits, teacher_logits, labels=None, epoch=None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(loss 0-dim, {name: detached 0-dim term}) with loss = sum(weights(epoch)[k] * terms[k])."""
        terms = self.terms(student_logits, teacher_logits, labels)
        weights = self.weights(epoch)
        # Left to right, as Python's sum() adds; a weight of exactly 1 costs no extra op.
        parts = [t if weights[k] == 1.0 else weights[k] * t for k, t in terms.items()]
        loss = parts[0]
        for part in parts[1:]:
            loss = loss + part
        return loss, {k: v.detach() for k, v in terms.items()}

    def forward(self, student_logits, teacher_logits, labels=None, epoch=None) -> torch.Tensor:
        """The distillation loss, a 0-dim batch mean (add cross-entropy yourself)."""
        return self.loss_and_terms(student_logits, teacher_logits, labels, epoch)[0]

    def _setting(self) -> str:
        warm = f", warm-up {_num(self.warmup)} epochs" if self.warmup > 0 else ""
        return f"T={_num(self.temperature)}{warm}"

    def formula(self) -> str:
        """A one-line caption such as "1*TCKD + 8*NCKD (T=4)"."""
        parts = [f"{_num(w)}*{k.upper()}" for k, w in zip(self.term_names, self._base_weights(), strict=True)]
        return f"{' + '.join(parts)} ({self._setting()})"

    def __str__(self) -> str:
        return self.formula()

    def extra_repr(self) -> str:
        return self.formula()


class KDLoss(DistillationLoss):
    """Hinton's KD: T^2 * mean_n KL(p_n || q_n). Terms: {"kd"}."""

    term_names = ("kd",)

    def __init__(self, temperature: float = 4.0, *, warmup: float = 0) -> None:
        super().__init__(temperature=temperature, warmup=warmup)

    def _base_weights(self) -> tuple[float, ...]:
        return (1.0,)

    def _terms(self, student, teacher, labels) -> tuple[torch.Tensor, ...]:
        _check_inputs("KDLoss", student, teacher, labels, needs_labels=False)
        t = self.temperature
        log_q = F.log_softmax(_as_compute(student) / t, dim=1)  # (N, C)
        log_p = F.log_softmax(_teacher_like(teacher, log_q) / t, dim=1)
        return (F.kl_div(log_q, log_p, reduction="batchmean", log_target=True) * t**2,)


class DKDLoss(DistillationLoss):
    """Decoupled KD (Zhao et al., CVPR 2022): alpha*TCKD + beta*NCKD, each T^2-scaled. Needs labels.

    TCKD = KL([p_t, 1 - p_t] || [q_t, 1 - q_t]) on the target class t; NCKD = KL over the non-target
    classes, both distributions renormalised there: CAKD's BCD and WCD at S = {label}, so on CPU it runs
    through CAKD's fused kernel; elsewhere log-space tensor ops (masked log-sum-exp).
    """

    term_names = ("tckd", "nckd")

    def __init__(
        self, alpha: float = 1.0, beta: float = 8.0, temperature: float = 4.0, warmup: float = 0
    ) -> None:
        super().__init__(temperature=temperature, warmup=warmup)
        self.alpha, self.beta = float(alpha), float(beta)

    def _base_weights(self) -> tuple[float, ...]:
        return (self.alpha, self.beta)

    def _native(self, student, teacher, labels, epoch, term_grads):
        """(loss, [TCKD, 0, NCKD]) from the fused CPU kernel at S = {label}; None where it is not used."""
        kern = native.kernel() if student.device.type == "cpu" else None
        if kern is None:
            return None
        labels = _check_inputs("DKDLoss", student, teacher, labels, needs_labels=True)
        a, b = self._weight_values(epoch)
        student = _as_compute(student)
        return native_loss_and_terms(
            kern, student, _teacher_like(teacher, student), _TARGET, labels, None,
            temperature=self.temperature, weights=(a, 0.0, b), natural=(False, False), term_grads=term_grads,
        )  # fmt: skip

    def _terms(self, student, teacher, labels) -> tuple[torch.Tensor, ...]:
        fused = self._native(student, teacher, labels, None, True)
        if fused is not None:
            tckd, _, nckd = fused[1].unbind()
            return tckd, nckd
        return self._tensor_terms(student, teacher, labels)

    def loss_and_terms(self, student_logits, teacher_logits, labels=None, epoch=None):
        """(loss 0-dim, {"tckd", "nckd": detached 0-dim}) with loss = sum(weights(epoch)[k] * terms[k])."""
        fused = self._native(student_logits, teacher_logits, labels, epoch, False)
        if fused is None:
            return super().loss_and_terms(student_logits, teacher_logits, labels, epoch)
        return fused[0], {"tckd": fused[1][0], "nckd": fused[1][2]}

    def forward(self, student_logits, teacher_logits, labels=None, epoch=None) -> torch.Tensor:
        """The distillation loss, a 0-dim batch mean (add cross-entropy yourself)."""
        fused = self._native(student_logits, teacher_logits, labels, epoch, False)
        return super().forward(student_logits, teacher_logits, labels, epoch) if fused is None else fused[0]

    def _tensor_terms(self, student, teacher, labels) -> tuple[torch.Tensor, ...]:
        """The same terms from tensor ops (CUDA, or where the fused kernel is not built)."""
        labels = _check_inputs("DKDLoss", student, teacher, labels, needs_labels=True).view(-1, 1)
        t = self.temperature
        u = _as_compute(student) / t
        v = _teacher_like(teacher, u) / t  # (N, C)
        log_q, log_p = F.log_softmax(u, 1), F.log_softmax(v, 1)
        target = torch.zeros_like(u, dtype=torch.bool).scatter_(1, labels, True)
        # Binary split [target, rest]: log masses (N, 2).
        bin_q = torch.cat(
            (log_q.gather(1, labels), log_q.masked_fill(target, -torch.inf).logsumexp(1, True)), 1
        )
        bin_p = torch.cat(
            (log_p.gather(1, labels), log_p.masked_fill(target, -torch.inf).logsumexp(1, True)), 1
        )
        tckd = (bin_p.exp() * (bin_p - bin_q)).sum(1)  # (N,)
        # Non-target distributions; the target entry is set to log 1 in both so that it adds 0.
        in_q = F.log_softmax(u.masked_fill(target, -torch.inf), 1).masked_fill(target, 0.0)
        in_p = F.log_softmax(v.masked_fill(target, -torch.inf), 1).masked_fill(target, 0.0)
        nckd = (in_p.exp() * (in_p - in_q)).sum(1)  # (N,)
        return tckd.mean() * t**2, nckd.mean() * t**2


class CAKDLoss(DistillationLoss):
    """CAKD (arXiv 2410.14741): w_b*BCD + alpha*SCD + beta*WCD, each T^2-scaled. Terms: bcd, scd, wcd.

    grouping: a spec of `cakd_viz.grouping` ("target", "topk:K", "topk+target:K", "mass:P", "corr:R").
    alpha, beta: numbers, or "natural" for the per-sample teacher masses p_S, p_W (KD when both are
    natural and w_b = 1). correlation: the (C, C) class-correlation matrix of the teacher's logits,
    required by corr:R (see `grouping.class_correlation`; compute it once over the training set) and
    ignored by the other rules. There is deliberately no running estimate from training batches: it
    would move S under the student while it learns and make early batches' S noise.
    """

    term_names = ("bcd", "scd", "wcd")

    def __init__(
        self,
        grouping: str | Grouping = DEFAULT_GROUPING,
        w_b: float = 1.0,
        alpha: float | str = 1.0,
        beta: float | str = 8.0,
        temperature: float = 4.0,
        warmup: float = 0,
        correlation=None,
    ) -> None:
        super().__init__(temperature=temperature, warmup=warmup)
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
        student = _as_compute(student)
        teacher = _teacher_like(teacher, student)
        if self.correlated is not None and self.correlated.shape[0] != student.shape[1]:
            raise ValueError(
                f"correlation is {tuple(self.correlated.shape)} but the logits have {student.shape[1]} classes"
            )
        setup = {
            "temperature": self.temperature,
            "weights": self._weight_values(epoch),
            "natural": self.natural,
        }
        kern = native.kernel() if student.device.type == "cpu" else None
        if kern is not None:  # one fused call each way (cakd_viz.native); S found inside for target/top-k
            mask = None
            if rule_of(g, student.shape[1])[0] == RULE_MASK:
                with torch.no_grad():
                    mask = strong_mask(
                        g, teacher, labels, temperature=self.temperature, correlated=self.correlated
                    )
            return native_loss_and_terms(
                kern, student, teacher, g, labels, mask, term_grads=term_grads, **setup
            )
        with torch.no_grad():
            strong = strong_mask_float(
                g, teacher, labels, temperature=self.temperature, correlated=self.correlated
            )
        return cakd_loss_and_terms(student, teacher, strong, term_grads=term_grads, **setup)

    def _terms(self, student, teacher, labels) -> tuple[torch.Tensor, ...]:
        return self._fused(student, teacher, labels, None, True)[1].unbind()

    def loss_and_terms(self, student_logits, teacher_logits, labels=None, epoch=None):
        """(loss 0-dim, {"bcd", "scd", "wcd": detached 0-dim}) with loss = sum(weights(epoch)[k] * terms[k])."""
        loss, vec = self._fused(student_logits, teacher_logits, labels, epoch, False)
        return loss, dict(zip(self.term_names, vec.unbind(), strict=True))

    def forward(self, student_logits, teacher_logits, labels=None, epoch=None) -> torch.Tensor:
        """The distillation loss, a 0-dim batch mean (add cross-entropy yourself)."""
        return self._fused(student_logits, teacher_logits, labels, epoch, False)[0]

    def formula(self) -> str:
        """E.g. "1*BCD + 1*SCD + 8*WCD (T=4, S = teacher top-5)"; natural weights show as p_S, p_W."""
        scd = "p_S" if self.alpha == NATURAL else _num(self.alpha)
        wcd = "p_W" if self.beta == NATURAL else _num(self.beta)
        return (
            f"{_num(self.w_b)}*BCD + {scd}*SCD + {wcd}*WCD ({self._setting()}, S = {_short(self.grouping)})"
        )


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
    return correlated_classes(corr, float(g.param))


def _short(g: Grouping) -> str:
    if g.kind == "target":
        return "{label}"
    if g.kind in ("topk", "topk+target"):
        return f"teacher top-{g.param}" + (" + label" if g.kind == "topk+target" else "")
    if g.kind == "mass":
        return f"teacher top classes holding {_num(g.param)} of its mass"
    return f"teacher prediction + classes with r >= {_num(g.param)}"


LOSSES: dict[str, type[DistillationLoss]] = {"KD": KDLoss, "DKD": DKDLoss, "CAKD": CAKDLoss}
