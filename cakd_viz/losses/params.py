"""A loss's parameters, declared once: what a run config, the Tune form, sweeps and the runs tracker read.

Each loss class lists its parameters as ``Param`` objects (``DistillationLoss.params()``); from them
come a run config's loss section (defaults, types, ranges, unknown keys refused), its one-line label,
the Tune form's fields, the values a sweep may vary and the tracker's columns. Nothing else names a
loss's parameters, so adding a loss is one module and its tests (docs/architecture.md §8).

    Param("beta", 8.0, FLOAT, low=0.0, label="β", help="weight of WCD")
"""

from __future__ import annotations

import math
from dataclasses import dataclass

FLOAT, INT, CHOICE, GROUPING, BOOL = "float", "int", "choice", "grouping", "bool"
KINDS = (FLOAT, INT, CHOICE, GROUPING, BOOL)
_TRUE, _FALSE = ("true", "yes", "on", "1"), ("false", "no", "off", "0")  # a BOOL typed as text


@dataclass(frozen=True)
class Param:
    """One setting of a loss: its name (the run config's key), default, kind and range, a help line, a
    short label (form field, tracker column), and whether a sweep may vary it.

    kind: ``FLOAT`` or ``INT`` (a number in [low, high]; ``open_low``: low itself excluded), ``CHOICE``
    (one of ``choices``), ``GROUPING`` (a grouping spec, ``cakd_viz.grouping``) or ``BOOL`` (true or
    false: JSON's booleans, never 0 / 1 or a string in a config).
    """

    name: str
    default: object
    kind: str = FLOAT
    help: str = ""
    label: str = ""  # "" : the name
    low: float | None = None
    high: float | None = None
    open_low: bool = False
    choices: tuple = ()
    sweep: bool = True
    step: float | None = None  # the form's step for a number

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(
                f"parameter {self.name}: kind must be one of {', '.join(KINDS)}, got {self.kind!r}"
            )
        if self.kind == CHOICE and self.default not in self.choices:
            raise ValueError(f"parameter {self.name}: default {self.default!r} is not one of its choices")
        if not self.label:
            object.__setattr__(self, "label", self.name)

    @property
    def numeric(self) -> bool:
        return self.kind in (FLOAT, INT)

    def coerce(self, value: object, where: str = "loss") -> object:
        """``value`` (from JSON) as this parameter's type (an int is a float; 2.0 is the int 2);
        ValueError "WHERE.NAME must be a number, got 'x'" otherwise. Ranges are ``check``'s."""
        key = f"{where}.{self.name}"
        if self.kind == FLOAT:
            if isinstance(value, int | float) and not isinstance(value, bool):
                try:
                    return float(value)
                except OverflowError:  # an int beyond float's range (JSON reads 1 and 400 zeros as one)
                    raise ValueError(f"{key} must be a finite number, got {str(value)[:10]}…") from None
            raise ValueError(f"{key} must be a number, got {value!r}")
        if self.kind == INT:
            if isinstance(value, float) and value.is_integer():
                return int(value)
            if isinstance(value, int) and not isinstance(value, bool):
                return value
            raise ValueError(f"{key} must be a whole number, got {value!r}")
        if self.kind == BOOL:
            if isinstance(value, bool):
                return value
            raise ValueError(f"{key} must be true or false, got {value!r}")
        if not isinstance(value, str):
            raise ValueError(f"{key} must be a string, got {value!r}")
        return value

    def check(self, value: object, where: str = "loss") -> object:
        """``value`` coerced and checked against the range or choices; ValueError naming WHERE.NAME."""
        value = self.coerce(value, where)
        key = f"{where}.{self.name}"
        if self.kind == BOOL:
            return value
        if self.kind == CHOICE:
            if value not in self.choices:
                raise ValueError(f"{key} must be one of {', '.join(map(str, self.choices))}, got {value!r}")
        elif self.kind == GROUPING:
            from cakd_viz.grouping import parse_grouping

            try:
                parse_grouping(value)
            except ValueError as exc:
                raise ValueError(f"{key}: {exc}") from None
        elif not self._in_range(value):
            what = "a whole number" if self.kind == INT else "a finite number"
            raise ValueError(f"{key} must be {what} {self.range_text()}, got {value!r}")
        return value

    def _in_range(self, value: float) -> bool:
        if not math.isfinite(value):
            return False
        if self.low is not None and (value < self.low or (self.open_low and value == self.low)):
            return False
        return self.high is None or value <= self.high

    def range_text(self) -> str:
        """E.g. ">= 0", "> 0", "between 1 and 10"; "" without bounds."""
        if self.low is not None and self.high is not None:
            return f"between {self.low:g} and {self.high:g}"
        if self.low is not None:
            return f"{'>' if self.open_low else '>='} {self.low:g}"
        return f"<= {self.high:g}" if self.high is not None else ""

    def expects(self) -> str:
        """What a value must be, in words: "a finite number >= 0", "one of epoch, step", ..."""
        if self.kind == CHOICE:
            return f"one of {', '.join(map(str, self.choices))}"
        if self.kind == GROUPING:
            return "a grouping spec (target, topk:K, topk+target:K, mass:P, corr:R)"
        if self.kind == BOOL:
            return "true or false"
        return f"{'a whole number' if self.kind == INT else 'a finite number'} {self.range_text()}".strip()

    def parse(self, text: str, where: str = "loss") -> object:
        """One value typed as text (a form's sweep field), checked; ValueError naming WHERE.NAME."""
        text = str(text).strip()
        if self.numeric:
            try:
                value: object = float(text)
            except ValueError:
                raise ValueError(f"{where}.{self.name}: {text[:40]!r} is not a number") from None
            if self.kind == INT and not float(value).is_integer():
                raise ValueError(f"{where}.{self.name} must be a whole number, got {text[:40]!r}")
            value = int(value) if self.kind == INT else value
        elif self.kind == BOOL:
            word = text.lower()
            if word not in _TRUE + _FALSE:
                raise ValueError(f"{where}.{self.name}: {text[:40]!r} is not true or false")
            value = word in _TRUE
        else:
            value = text
        return self.check(value, where)

    def show(self, value: object) -> str:
        """A value as a label shows it: numbers with ``:g``, anything else as it is."""
        if isinstance(value, bool):
            return "yes" if value else "no"
        if isinstance(value, float):
            return f"{value:g}"
        return str(value)


def by_name(params: tuple[Param, ...] | list[Param]) -> dict[str, Param]:
    """``{name: Param}``, the first declaration of a name winning."""
    out: dict[str, Param] = {}
    for p in params:
        out.setdefault(p.name, p)
    return out
