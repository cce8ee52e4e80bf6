"""`mass:P`: S = the fewest teacher-top classes whose teacher mass (at T) reaches P, 0 < P < 1."""

from __future__ import annotations

from typing import ClassVar

from cakd_viz.grouping.base import RULE_MASS, Grouping, KernelArgs, param_text


class Mass(Grouping):
    """S = the fewest teacher-top classes holding P of the teacher's mass (decided in float64)."""

    name: ClassVar[str] = "mass"
    symbol: ClassVar[str | None] = "P"
    param_words: ClassVar[str] = "teacher mass in S"
    words: ClassVar[str] = "S = the fewest teacher-top classes with mass ≥ P"
    code: ClassVar[int] = RULE_MASS
    kernels: ClassVar[frozenset[str]] = frozenset({"decompose"})
    grid: ClassVar[tuple[float, ...]] = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99)
    typical: ClassVar[float | None] = 0.9

    @classmethod
    def check(cls, spec: str, value: float | int) -> float:
        if not 0.0 < value < 1.0:
            raise ValueError(f"grouping {spec!r}: P must lie strictly between 0 and 1")
        return value

    def describe(self, *, short: bool = False) -> str:
        v = param_text(self.param)
        if short:
            return f"teacher top classes holding {v} of its mass"
        return f"S = the fewest teacher-top classes holding {v} of the teacher's mass"

    def select(self, teacher_logits, labels, *, temperature, correlated):
        return mass_mask(teacher_logits, float(self.param), temperature)

    @classmethod
    def slider(cls, num_classes: int) -> tuple[float, float, float]:
        return (0.05, 0.95, 0.05)

    def kernel_args(self) -> KernelArgs:
        return KernelArgs(mass_p=float(self.param))


def mass_mask(logits, p: float, temperature: float):
    """mass:P decided in float64, by the tie rule of docs/architecture.md §4 (the C kernel's as well).

    Classes in the teacher's order (logit descending, ties to the lower class index) enter one at a
    time; S ends with the first class at which the cumulative probability reaches P:
    |S| = #{j : cum_j < P} + 1, clipped to C. The probabilities are w = exp((t - max t) / T) in float64,
    and cum_j < P sum(w) is decided exactly for the computed sums (the product P sum(w) carried as an
    unrounded pair), so [2, 2, -1] at T = 0.1 (0.49999999999998 on each top class) needs both for
    mass:0.5, and ten equal logits need all ten for mass:0.9 (9 < 0.9 x 10 exactly). The C kernel sums
    the same probabilities in another order: the two could differ only where a cumulative mass lies
    within float64 rounding (~1e-16 relative) of P.
    """
    import torch

    order = torch.sort(logits, dim=1, descending=True, stable=True)
    x = order.values.to(torch.float64)
    w = torch.exp((x - x[:, :1]) * (1.0 / temperature))  # (n, C) unnormalised, sorted descending
    cum = torch.cumsum(w, dim=1)
    hi, lo = exact_product(p, cum[:, -1:])  # P * sum(w) = hi + lo exactly
    below = (cum - hi) < lo  # cum < P sum(w), exactly: cum - hi is exact wherever it is close to 0
    count = below.sum(1, keepdim=True) + 1  # the classes below P, and the one reaching it
    keep = torch.arange(logits.shape[1], device=logits.device).unsqueeze(0) < count  # (n, C) in sorted order
    return torch.zeros_like(keep).scatter_(1, order.indices, keep)


def _split(x):
    """Veltkamp's split of float64 x into hi + lo, each with at most 26 significant bits."""
    c = 134217729.0 * x  # 2^27 + 1
    hi = c - (c - x)
    return hi, x - hi


def exact_product(a: float, b):
    """(hi, lo) with hi = fl(a b) and hi + lo = a b exactly (Dekker's product; float64, no overflow)."""
    hi = a * b
    a_hi, a_lo = _split(a)
    b_hi, b_lo = _split(b)
    lo = ((a_hi * b_hi - hi) + a_hi * b_lo + a_lo * b_hi) + a_lo * b_lo
    return hi, lo
