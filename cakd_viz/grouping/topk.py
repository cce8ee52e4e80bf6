"""`topk:K`: S = the teacher's K largest logits (ties: lower class index first; K clipped to C - 1)."""

from __future__ import annotations

from dataclasses import replace
from typing import ClassVar

from cakd_viz.grouping.base import RULE_TOPK, Grouping, KernelArgs, Sweep


class TopK(Grouping):
    """S = the teacher's top-K classes."""

    name: ClassVar[str] = "topk"
    symbol: ClassVar[str | None] = "K"
    whole: ClassVar[bool] = True
    param_words: ClassVar[str] = "strong-set size"
    words: ClassVar[str] = "S = the teacher's top K classes"
    code: ClassVar[int] = RULE_TOPK
    kernels: ClassVar[frozenset[str]] = frozenset({"decompose", "loss"})
    grid: ClassVar[tuple[float, ...]] = (1, 2, 3, 5, 8, 10, 15, 20, 30, 50, 100, 200)
    typical: ClassVar[float | None] = 3

    @classmethod
    def check(cls, spec: str, value: float | int) -> int:
        if value < 1:
            raise ValueError(f"grouping {spec!r}: K must be a whole number >= 1")
        return int(value)

    def describe(self, *, short: bool = False) -> str:
        k = self.param
        return f"teacher top-{k}" if short else f"S = the teacher's top-{k} classes"

    def select(self, teacher_logits, labels, *, temperature, correlated):
        return topk_mask(teacher_logits, min(int(self.param), teacher_logits.shape[1] - 1))

    def select_float(self, teacher_logits, labels, *, temperature, correlated):
        return topk_mask_float(teacher_logits, min(int(self.param), teacher_logits.shape[1] - 1))

    def clamp(self, num_classes: int) -> tuple[Grouping, str | None]:
        if int(self.param) < num_classes:
            return self, None
        clamped = replace(self, param=num_classes - 1)
        return clamped, (
            f"{self} asks for {int(self.param)} strong classes, and there are {num_classes}: "
            f"using {clamped} (K at most C − 1, so that W is not empty)."
        )

    @classmethod
    def slider(cls, num_classes: int) -> tuple[float, float, float]:
        return (1, num_classes - 1, 1)

    @classmethod
    def sweep(cls, num_classes: int, *, has_labels: bool = True) -> Sweep:
        ks = [k for k in cls.grid if k <= max(1, num_classes - 1)]
        return Sweep(f"K ({cls.param_words})", [cls.spec(k) for k in ks], [float(k) for k in ks])

    def kernel_args(self) -> KernelArgs:
        return KernelArgs(k=int(self.param))


def topk_mask(logits, k: int):
    """Boolean (n, C) mask of each row's k largest entries; ties go to the lower class index."""
    import torch

    n, c = logits.shape
    k = max(1, min(int(k), c))
    mask = torch.zeros((n, c), dtype=torch.bool, device=logits.device)
    if k == c:
        return mask.fill_(True)
    # One extra value tells whether the k-th largest also occurs outside the chosen k (a boundary tie).
    top = torch.topk(logits, k + 1, dim=1)
    mask.scatter_(1, top.indices[:, :k], True)
    ties = top.values[:, k] == top.values[:, k - 1]
    if bool(ties.any()):
        rows = ties.nonzero().squeeze(1)
        order = torch.sort(logits[rows], dim=1, descending=True, stable=True).indices[:, :k]
        fixed = torch.zeros((rows.numel(), c), dtype=torch.bool, device=logits.device)
        mask[rows] = fixed.scatter_(1, order, True)
    return mask


def topk_mask_float(logits, k: int):
    """{0, 1} (n, C) mask of each row's k largest entries in the logits' dtype, as `topk_mask`.

    The loss's tensor-op kernel uses it: torch.topk at 256 x 100 on CPU costs about as much as KD's
    whole step. k rounds of "row max, then push everything at or above it far down" find the k-th
    largest distinct value; `x >= it` is the top-k set wherever it has exactly k members (a row always
    has at least k). Only rows with ties at the boundary are redone by `topk_mask`, which breaks ties by
    class index. About 3k + 3 cheap ops; torch.topk at 256 x 100 on CPU costs as much as ~50.
    """
    import torch

    far = -0.25 * torch.finfo(logits.dtype).max
    above = torch.empty_like(logits)
    rest = logits
    for step in range(k):
        level = rest.amax(1, keepdim=True)  # (n, 1): the step-th largest distinct value
        if step < k - 1:
            torch.ge(logits, level, out=above)
            rest = torch.add(logits, above, alpha=far)  # (n, C): the entries >= level pushed out of reach
    mask = torch.ge(logits, level, out=above)
    if int(mask.sum(dtype=torch.float64)) != k * logits.shape[0]:
        size = mask.sum(1)  # (n,)
        rows = (size != k).nonzero().squeeze(1)
        mask[rows] = topk_mask(logits[rows], k).to(mask.dtype)
    return mask
