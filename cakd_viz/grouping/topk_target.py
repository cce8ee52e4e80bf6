"""`topk+target:K`: S = the teacher's top K classes plus the label (needs labels)."""

from __future__ import annotations

from typing import ClassVar

from cakd_viz.grouping.base import RULE_TOPK_TARGET, Sweep
from cakd_viz.grouping.topk import TopK


class TopKTarget(TopK):
    """S = the teacher's top-K classes plus the label: top-K's parameter, checks, clamp and kernel k."""

    name: ClassVar[str] = "topk+target"
    words: ClassVar[str] = "S = the teacher's top K classes plus the true class"
    needs_labels: ClassVar[bool] = True
    code: ClassVar[int] = RULE_TOPK_TARGET

    def describe(self, *, short: bool = False) -> str:
        k = self.param
        return f"teacher top-{k} + label" if short else f"S = the teacher's top-{k} classes plus the label"

    def select(self, teacher_logits, labels, *, temperature, correlated):
        mask = super().select(teacher_logits, labels, temperature=temperature, correlated=correlated)
        return mask.scatter_(1, labels.view(-1, 1), True)

    def select_float(self, teacher_logits, labels, *, temperature, correlated):
        mask = super().select_float(teacher_logits, labels, temperature=temperature, correlated=correlated)
        return mask.scatter_(1, labels.reshape(-1, 1), 1.0)

    @classmethod
    def sweep(cls, num_classes: int, *, has_labels: bool = True) -> Sweep:
        """K of topk+target, or of topk where there are no labels."""
        return super().sweep(num_classes) if has_labels else TopK.sweep(num_classes, has_labels=False)
