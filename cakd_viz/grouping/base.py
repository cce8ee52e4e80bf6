"""What a grouping rule is: one subclass of `Grouping` per rule, its instances the parsed specs.

A rule class states its name and parameter (`topk` and `K`), its checks and words, what its strong set
needs (labels, the class correlation), the set itself as a boolean (n, C) mask decided in float64, the
family of specs the Overview's "vs grouping" tab sweeps, how it is fitted to C classes, and its code for
the C kernels (``rules.h``). `registry.py` holds the registered rules; docs/architecture.md §4 walks
through adding one. This module imports no torch (the command line builds its help from the registry).
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, NamedTuple

if TYPE_CHECKING:
    import numpy as np
    import torch

# The codes of rules.h (one definition for the C side; a test checks these against it).
RULE_MASK, RULE_TARGET, RULE_TOPK, RULE_TOPK_TARGET, RULE_MASS, RULE_CORR = 0, 1, 2, 3, 4, 5
KERNELS = ("decompose", "loss")  # the C kernels: decompose_kernel.c, cakd_kernel.c
_INT64_MAX = 2**63 - 1  # the largest whole parameter (K) kept


class Sweep(NamedTuple):
    """The specs the Overview's "vs grouping" tab sweeps: parameter in words ("K (strong-set size)"),
    the specs and their parameter values."""

    param: str
    specs: list[str]
    values: list[float]


class KernelArgs(NamedTuple):
    """A rule's numeric arguments to the C kernels: k (top-k rules) and mass_p (mass:P); 0 if unused."""

    k: int = 0
    mass_p: float = 0.0


def param_text(value: float | int) -> str:
    """A rule's parameter as specs and captions write it: whole numbers as they are, others to 12
    significant digits: what a person typed reads back as the same number ("mass:0.9999999", not 6
    digits' "mass:1"), float noise (0.35000000000000003) does not show."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return str(int(value))
    return f"{value:.12g}"


@dataclass(frozen=True)
class Grouping:
    """A parsed grouping spec: a rule (the subclass) and its parameter (K int, P or R float, or None).

    Subclasses set the class attributes below and implement `describe` and `select`.
    """

    param: float | int | None = None

    name: ClassVar[str] = ""  # "topk": the spec's word
    symbol: ClassVar[str | None] = None  # "K": the parameter's letter; None for a rule without one
    whole: ClassVar[bool] = False  # the parameter is a whole number
    param_words: ClassVar[str] = ""  # "strong-set size": the parameter in words
    words: ClassVar[str] = ""  # "S = the teacher's top K classes": the rule in words, with its symbol
    needs_labels: ClassVar[bool] = False
    needs_correlation: ClassVar[bool] = False
    code: ClassVar[int] = RULE_MASK  # RULE_* of rules.h; RULE_MASK: no C kernel selects this rule
    kernels: ClassVar[frozenset[str]] = frozenset()  # the C kernels (of KERNELS) that select S themselves
    grid: ClassVar[tuple[float, ...]] = ()  # the parameter values the Overview sweeps
    typical: ClassVar[float | None] = None  # a value to start a slider at
    form: ClassVar[str] = ""  # "topk:K" (set from name and symbol)

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        cls.form = cls.name if cls.symbol is None else f"{cls.name}:{cls.symbol}"

    def __str__(self) -> str:
        return self.spec(self.param)

    # -- parsing ---------------------------------------------------------------------------------------

    @classmethod
    def parse(cls, spec: str, raw: str | None) -> Grouping:
        """The grouping of this rule with parameter text `raw` (None: none); `spec` names it in errors."""
        if cls.symbol is None:
            if raw is not None:
                raise ValueError(f"grouping {spec!r}: '{cls.name}' takes no parameter")
            return cls()
        if raw is None:
            raise ValueError(f"grouping {spec!r} needs a parameter, as in {cls.form}")
        try:
            value = float(raw)
        except ValueError:
            raise ValueError(f"grouping {spec!r}: {raw!r} is not a number") from None
        if not math.isfinite(value):
            raise ValueError(f"grouping {spec!r}: {raw!r} is not a finite number")
        if cls.whole:
            if value != int(value):
                raise ValueError(f"grouping {spec!r}: {cls.symbol} must be a whole number >= 1")
            # digits read exactly (beyond 2**53 too); a K beyond int64 means C - 1 as any K >= C does, so
            # it is kept as int64's largest: the C kernels take that, and its text reads back (a spec has
            # at most 64 characters, and 1e60's digits are 61)
            value = min(int(raw) if raw.lstrip("+-").isdigit() else int(value), _INT64_MAX)
        return cls(cls.check(spec, value))

    @classmethod
    def check(cls, spec: str, value: float | int) -> float | int:
        """The parameter, checked (a one-line ValueError naming `spec` when it is out of range)."""
        return value

    @classmethod
    def spec(cls, value: float | None = None) -> str:
        """The spec text of this rule with `value` ("topk:3"; the value as `param_text` writes it); not
        checked (parse it to check)."""
        return cls.name if value is None else f"{cls.name}:{param_text(value)}"

    # -- words -----------------------------------------------------------------------------------------

    def describe(self, *, short: bool = False) -> str:
        """An honest label of the rule: "S = the teacher's top-5 classes" for captions, or with ``short``
        a few words for formulas ("teacher top-5")."""
        raise NotImplementedError

    # -- the strong set --------------------------------------------------------------------------------

    def strong_mask(
        self,
        teacher_logits: torch.Tensor,
        labels: torch.Tensor | None = None,
        *,
        temperature: float = 1.0,
        correlated: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The strong set of every row, boolean (n, C). teacher_logits: (n, C) raw; labels: (n,) int64."""
        self.check_inputs(labels, correlated)
        return self.select(teacher_logits, labels, temperature=temperature, correlated=correlated)

    def strong_mask_float(
        self, teacher_logits, labels=None, *, temperature: float = 1.0, correlated=None
    ) -> torch.Tensor:
        """The same set as {0, 1} in the teacher's float dtype, shape (n, C) (the loss's tensor-op kernel)."""
        self.check_inputs(labels, correlated)
        return self.select_float(teacher_logits, labels, temperature=temperature, correlated=correlated)

    def check_inputs(self, labels, correlated) -> None:
        """ValueError when the rule needs labels or the class correlation and they are missing."""
        if self.needs_labels and labels is None:
            raise ValueError(f"grouping {self} needs labels, and none were given")
        if self.needs_correlation and correlated is None:
            raise ValueError(f"grouping {self} needs the class-correlation matrix of the teacher's logits")

    def select(self, teacher_logits, labels, *, temperature: float, correlated) -> torch.Tensor:
        """The boolean (n, C) mask, inputs already checked; decided in float64 where values are compared."""
        raise NotImplementedError

    def select_float(self, teacher_logits, labels, *, temperature: float, correlated) -> torch.Tensor:
        """`select` as {0, 1} in the teacher's dtype (a rule may override it with a faster path)."""
        mask = self.select(teacher_logits, labels, temperature=temperature, correlated=correlated)
        return mask.to(teacher_logits.dtype)

    def correlated(self, correlation: np.ndarray | None) -> torch.Tensor | None:
        """What `select`'s ``correlated`` needs from the (C, C) class correlation; None for most rules."""
        return None

    # -- fitting, sweeping, kernels --------------------------------------------------------------------

    def clamp(self, num_classes: int) -> tuple[Grouping, str | None]:
        """(the grouping to use on `num_classes` classes, a one-line note when it differs from this one)."""
        return self, None

    @classmethod
    def slider(cls, num_classes: int) -> tuple[float, float, float] | None:
        """(low, high, step) of a slider for the parameter on C classes (the Learn page); None: no slider
        (no parameter)."""
        return None

    @classmethod
    def sweep(cls, num_classes: int, *, has_labels: bool = True) -> Sweep:
        """The Overview's "vs grouping" family around this rule, for C classes, with or without labels."""
        values = [float(v) for v in cls.grid]
        return Sweep(f"{cls.symbol} ({cls.param_words})", [cls.spec(v) for v in values], values)

    def kernel_code(self, kernel: str) -> int:
        """This rule's RULE_* code for `kernel` ("decompose" or "loss"); RULE_MASK where it selects no S."""
        if kernel not in KERNELS:
            raise ValueError(f"unknown kernel {kernel!r}; kernels: {', '.join(KERNELS)}")
        return self.code if kernel in self.kernels else RULE_MASK

    def kernel_args(self) -> KernelArgs:
        """k and mass_p for the C kernels, k not fitted to C (at most int64's largest value, as `parse`
        allows: the decomposition kernel clamps it to [1, C - 1], the loss kernel's `rule_of` to C - 1)."""
        return KernelArgs()
