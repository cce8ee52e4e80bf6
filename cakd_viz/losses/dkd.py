"""DKD, decoupled KD (Zhao et al., CVPR 2022): alpha*TCKD + beta*NCKD, split at S = {label}."""

from __future__ import annotations

from cakd_viz.grouping import parse_grouping
from cakd_viz.losses.base import DistillationLoss, _check_inputs
from cakd_viz.losses.cakd import fused_terms
from cakd_viz.losses.params import FLOAT, Param

_TARGET = parse_grouping("target")


class DKDLoss(DistillationLoss):
    """Decoupled KD (Zhao et al., CVPR 2022): alpha*TCKD + beta*NCKD, each T^2-scaled. Needs labels.

    TCKD = KL([p_t, 1 - p_t] || [q_t, 1 - q_t]) on the target class t; NCKD = KL over the non-target
    classes, both distributions renormalised there: CAKD's BCD and WCD at S = {label}, so it runs through
    CAKD's kernels (the fused one on CPU, its tensor ops elsewhere).

    Warm-up as DKD's public code (mdistiller) does it (see `losses.base`); DKD's CIFAR-100 recipe uses
    W = 20 of 240 epochs, the default here is none.
    """

    term_names = ("tckd", "nckd")
    fused_slots = (0, 2)  # TCKD = BCD, NCKD = WCD
    title = "DKD"
    own_params = (
        Param("alpha", 1.0, FLOAT, "Weight of TCKD (= BCD at S = {label}).", "α", low=0.0, step=0.5),
        Param("beta", 8.0, FLOAT, "Weight of NCKD (= WCD at S = {label}).", "β", low=0.0, step=0.5),
    )

    def __init__(
        self,
        alpha: float = 1.0,
        beta: float = 8.0,
        temperature: float = 4.0,
        warmup: float = 0,
        warmup_schedule: str = "epoch",
        standardize: bool = False,
    ) -> None:
        super().__init__(
            temperature=temperature, warmup=warmup, warmup_schedule=warmup_schedule, standardize=standardize
        )
        self.alpha, self.beta = float(alpha), float(beta)

    def _base_weights(self) -> tuple[float, ...]:
        return (self.alpha, self.beta)

    def _fused(self, student, teacher, labels, epoch, term_grads):
        """(loss, [TCKD, 0, NCKD]): CAKD's kernels at S = {label}, with SCD weighted 0."""
        labels = _check_inputs("DKDLoss", student, teacher, labels, needs_labels=True)
        a, b = self._weight_values(epoch)
        student, teacher = self._logits(student, teacher)
        setup = {"temperature": self.temperature, "weights": (a, 0.0, b), "natural": (False, False)}
        return fused_terms(student, teacher, _TARGET, labels, None, term_grads, **setup)
