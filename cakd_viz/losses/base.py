"""What every distillation loss shares: input checks and the weighted sum of named, T^2-scaled terms.

All losses take (student_logits (N, C), teacher_logits (N, C), labels (N,) or None, epoch=None) and
return the distillation part only (no cross-entropy) as a 0-dim batch mean: each term is T^2 times the
batch mean of its part of KL(teacher || student) = KL(p || q), p = softmax(z_t / T), q = softmax(z_s / T)
(T^2 is applied by the kernels and KD's `_terms`, never here), and `loss == sum(weights[k] * terms[k])` exactly. Gradients
reach the student only; float16/bfloat16 inputs are computed in float32, float64 stays float64.

The warm-up (``warmup_factor``: DKD's per-epoch factor, as in mdistiller's ``distillers/DKD.py``, or a
per-step ramp) and logit standardization (``standardize``, LS: Sun et al., CVPR 2024, arXiv 2403.01427;
`cakd_viz.standardize`, the gradient going through it by autograd) are declared and applied here, once
for every loss; README, "Python", says what each does.
"""

from __future__ import annotations

import math
import numbers

import torch
from torch import nn

from cakd_viz.losses.params import BOOL, CHOICE, FLOAT, GROUPING, Param
from cakd_viz.standardize import standardize as standardize_rows
from cakd_viz.validate import check_temperature, label_error


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
    if labels.device.type == "cpu":  # on a GPU this would wait for the device at every step
        bad = ((labels < 0) | (labels >= student.shape[1])).nonzero()
        if bad.numel():
            row = int(bad[0, 0])
            raise label_error(f"{name}: labels", int(labels[row]), row, student.shape[1])
    return labels if labels.dtype == torch.int64 else labels.long()


WARMUP_SCHEDULES = ("epoch", "step")
"""How a warm-up scales the weights: DKD's per-epoch factor (the default) or a per-step ramp."""

TEMPERATURE = Param(
    "temperature",
    4.0,
    FLOAT,
    "Temperature of the softened distributions; every KL term is scaled by T².",
    "T",
    low=0.0,
    open_low=True,
    step=0.5,
)
WARMUP = Param(
    "warmup",
    0.0,
    FLOAT,
    "Epochs of warm-up W: the loss × min(e / W, 1) in epoch e (DKD's schedule); 0 or 1: none.",
    "warm-up",
    low=0.0,
    step=1.0,
)
WARMUP_SCHEDULE = Param(
    "warmup_schedule",
    "epoch",
    CHOICE,
    "epoch: DKD's own factor, one per epoch (the first already gets 1/W); step: a per-step ramp from 0.",
    "warm-up schedule",
    choices=WARMUP_SCHEDULES,
)


STANDARDIZE = Param(
    "standardize",
    False,
    BOOL,
    "Logit standardization (LS, Sun et al., CVPR 2024): z-score each sample's teacher and student logits "
    "separately before T, so the student matches the teacher's logit relations, not their scale.",
    "standardize (LS)",
)


class DistillationLoss(nn.Module):
    """Base class: a weighted sum of named, T^2-scaled, batch-mean terms with an optional warm-up.

    A subclass declares its own parameters in ``own_params`` (``Param``s, matching its constructor's
    keyword arguments and defaults) and its display name in ``title``. The temperature, the warm-up and
    logit standardization are declared here, in ``shared_params``, because this class applies them (the
    T² scale, the warm-up factor on every weight, ``_logits``): every loss takes them, with one meaning.
    """

    term_names: tuple[str, ...] = ()
    fused_slots: tuple[int, ...] = ()  # where each of `term_names` sits in `_fused`'s terms vector
    title: str = ""  # the loss's name in labels, e.g. "DKD"
    own_params: tuple[Param, ...] = ()
    shared_params: tuple[Param, ...] = (TEMPERATURE, WARMUP, WARMUP_SCHEDULE, STANDARDIZE)

    @classmethod
    def params(cls) -> tuple[Param, ...]:
        """Every parameter this loss takes: its own, then the shared temperature, warm-up and standardize.
        (Not ``parameters()``: that is ``nn.Module``'s list of tensors, which ``zero_grad`` and optimizers use.)"""
        return (*cls.own_params, *cls.shared_params)

    @classmethod
    def describe(cls, settings) -> str:
        """A short label from settings (missing ones at their defaults): the title ("+ LS" when it
        standardizes), any grouping, the loss's own numbers joined by "/", T and the warm-up, e.g.
        "CAKD topk:5 (1/1/8, T=4, warm-up 2)", "KD + LS (T=4)"."""
        value = {p.name: settings.get(p.name, p.default) for p in cls.params()}
        groups = [str(value[p.name]) for p in cls.own_params if p.kind == GROUPING]
        numbers = [p.show(value[p.name]) for p in cls.own_params if p.numeric]
        parts = ["/".join(numbers)] if numbers else []
        parts.append(f"T={TEMPERATURE.show(value['temperature'])}")
        if isinstance(value["warmup"], int | float) and value["warmup"] > 0:
            step = " per step" if value["warmup_schedule"] == "step" else ""
            parts.append(f"warm-up {WARMUP.show(value['warmup'])}{step}")
        title = (cls.title or cls.__name__) + (" + LS" if value["standardize"] is True else "")
        return " ".join([title, *groups]) + f" ({', '.join(parts)})"

    def __init__(
        self,
        temperature: float = 4.0,
        *,
        warmup: float = 0,
        warmup_schedule: str = "epoch",
        standardize: bool = False,
    ) -> None:
        super().__init__()
        if not isinstance(standardize, bool):
            raise ValueError(f"standardize must be True or False, got {standardize!r}")
        # an infinite warm-up would scale the loss to 0 for ever; a string or True is no number of epochs
        if isinstance(warmup, bool) or not isinstance(warmup, numbers.Real) or not 0 <= warmup < math.inf:
            raise ValueError(f"warmup must be a finite number >= 0 (epochs), got {warmup!r}")
        if warmup_schedule not in WARMUP_SCHEDULES:
            raise ValueError(
                f"warmup_schedule must be one of {', '.join(WARMUP_SCHEDULES)}, got {warmup_schedule!r}"
            )
        self.temperature = check_temperature(temperature)
        self.warmup = float(warmup)
        self.warmup_schedule = warmup_schedule
        self.standardize = standardize

    def _logits(self, student: torch.Tensor, teacher: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(student, teacher) as the kernels take them: the student in its compute dtype, the teacher
        detached in the same dtype, and under LS each row z-scored (the student's differentiably)."""
        if student.dtype != torch.float64:  # float64 stays float64, every other float dtype float32
            student = student.float()
        teacher = teacher.detach().to(student.dtype)  # the kernels take one dtype
        if self.standardize:
            student, teacher = standardize_rows(student), standardize_rows(teacher)
        return student, teacher

    def warmup_factor(self, epoch: float | None = None) -> float:
        """The factor on every weight at training progress ``epoch`` (0-based, fractional allowed).

        "epoch" schedule: ``min((floor(epoch) + 1) / warmup, 1)``, mdistiller's DKD factor with its
        1-based epoch; "step": ``min(epoch / warmup, 1)``. 1 without warm-up or when epoch is None.
        """
        if self.warmup <= 0 or epoch is None:
            return 1.0
        progress = max(float(epoch), 0.0)
        if self.warmup_schedule == "epoch":
            progress = math.floor(progress) + 1.0  # the 1-based number of the current whole epoch
        return min(progress / self.warmup, 1.0)

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

    def _fused(self, student, teacher, labels, epoch, term_grads: bool):
        """(loss 0-dim, terms vector) from one fused kernel call, the terms at `fused_slots`; None where
        this loss has no fused kernel for these inputs (then `_terms`, and their weighted sum)."""
        return None

    def _named(self, vec: torch.Tensor) -> dict[str, torch.Tensor]:
        parts = vec.unbind()
        return {k: parts[i] for k, i in zip(self.term_names, self.fused_slots, strict=True)}

    def terms(self, student_logits, teacher_logits, labels=None, epoch=None) -> dict[str, torch.Tensor]:
        """Named 0-dim terms (differentiable w.r.t. the student); `epoch` only affects the weights."""
        fused = self._fused(student_logits, teacher_logits, labels, None, True)
        if fused is not None:
            return self._named(fused[1])
        return dict(zip(self.term_names, self._terms(student_logits, teacher_logits, labels), strict=True))

    def loss_and_terms(
        self, student_logits, teacher_logits, labels=None, epoch=None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(loss 0-dim, {name: detached 0-dim term}) with loss = sum(weights(epoch)[k] * terms[k])."""
        fused = self._fused(student_logits, teacher_logits, labels, epoch, False)
        if fused is not None:
            return fused[0], self._named(fused[1])
        terms = self.terms(student_logits, teacher_logits, labels)
        weights = self.weights(epoch)
        # Left to right from the first part (no 0 + ...); a weight of exactly 1 costs no extra op.
        parts = [t if weights[k] == 1.0 else weights[k] * t for k, t in terms.items()]
        return sum(parts[1:], parts[0]), {k: v.detach() for k, v in terms.items()}

    def forward(self, student_logits, teacher_logits, labels=None, epoch=None) -> torch.Tensor:
        """The distillation loss, a 0-dim batch mean (add cross-entropy yourself)."""
        fused = self._fused(student_logits, teacher_logits, labels, epoch, False)  # no terms to name
        if fused is not None:
            return fused[0]
        return self.loss_and_terms(student_logits, teacher_logits, labels, epoch)[0]

    def _setting(self) -> str:
        per = "" if self.warmup_schedule == "epoch" else ", per step"
        warm = f", warm-up {self.warmup:g} epochs{per}" if self.warmup > 0 else ""
        ls = ", logits standardized (LS)" if self.standardize else ""
        return f"T={self.temperature:g}{warm}{ls}"

    def formula(self) -> str:
        """A one-line caption such as "1*TCKD + 8*NCKD (T=4)"."""
        parts = [f"{w:g}*{k.upper()}" for k, w in zip(self.term_names, self._base_weights(), strict=True)]
        return f"{' + '.join(parts)} ({self._setting()})"

    def __str__(self) -> str:
        return self.formula()

    def extra_repr(self) -> str:
        return self.formula()
