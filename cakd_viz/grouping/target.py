"""`target`: S = {label} (DKD's split: BCD = TCKD, WCD = NCKD; needs labels)."""

from __future__ import annotations

from typing import ClassVar

from cakd_viz.grouping.base import RULE_TARGET, Grouping, Sweep
from cakd_viz.grouping.topk import TopK


class Target(Grouping):
    """S = {label}."""

    name: ClassVar[str] = "target"
    words: ClassVar[str] = "S = {true class}"
    needs_labels: ClassVar[bool] = True
    code: ClassVar[int] = RULE_TARGET
    kernels: ClassVar[frozenset[str]] = frozenset({"decompose", "loss"})

    def describe(self, *, short: bool = False) -> str:
        return "{label}" if short else "S = {label} (DKD's split: BCD = TCKD, WCD = NCKD)"

    def select(self, teacher_logits, labels, *, temperature, correlated):
        import torch

        mask = torch.zeros(teacher_logits.shape, dtype=torch.bool, device=teacher_logits.device)
        return mask.scatter_(1, labels.view(-1, 1), True)

    def select_float(self, teacher_logits, labels, *, temperature, correlated):
        import torch

        mask = torch.zeros_like(teacher_logits)
        return mask.scatter_(1, labels.reshape(-1, 1), 1.0)

    @classmethod
    def sweep(cls, num_classes: int, *, has_labels: bool = True) -> Sweep:
        """No parameter to sweep: the top-K family instead (K = 1 has the size of {label})."""
        return TopK.sweep(num_classes, has_labels=has_labels)
