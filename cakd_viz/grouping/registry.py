"""The registered grouping rules, and the spec parser that reads them.

`RULES` maps a rule's name to its class (``base.Grouping``); `parse_grouping` turns a spec such as
``"topk:5"`` into an instance. Every caller (decomposition, losses, figures, app, command line) asks
the instance; none names a rule. A new rule is one module and one `register` line below
(docs/architecture.md §4); tests may register a rule for a while and `unregister` it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from cakd_viz.grouping.base import Grouping
from cakd_viz.grouping.corr import Corr
from cakd_viz.grouping.mass import Mass
from cakd_viz.grouping.target import Target
from cakd_viz.grouping.topk import TopK
from cakd_viz.grouping.topk_target import TopKTarget

RULES: dict[str, type[Grouping]] = {}
DEFAULT_GROUPING = "topk:5"
_MAX_SPEC = 64  # characters
_NAME = re.compile(r"^[a-z][a-z0-9_+]*$")
_SPEC = re.compile(r"^\s*([a-z][a-z0-9_+]*)\s*(?::\s*([-+0-9.eE]+))?\s*$")


def register(rule: type[Grouping]) -> type[Grouping]:
    """Add a rule class to `RULES` (a ValueError if its name is taken or malformed); returns it."""
    if not _NAME.match(rule.name):
        raise ValueError(f"grouping rule name {rule.name!r} must be lower-case letters, digits, '_' or '+'")
    if rule.name in RULES:
        raise ValueError(f"a grouping rule named {rule.name!r} is already registered")
    RULES[rule.name] = rule
    return rule


def unregister(name: str) -> None:
    """Remove a registered rule (tests that register one for a while)."""
    del RULES[name]


class _Forms(Sequence):
    """The registered rules' forms ("target", "topk:K", ...), in registration order, always current."""

    def __getitem__(self, index):
        return tuple(rule.form for rule in RULES.values())[index]

    def __len__(self) -> int:
        return len(RULES)

    def __eq__(self, other) -> bool:
        return tuple(self) == tuple(other) if isinstance(other, (tuple, list, _Forms)) else NotImplemented

    def __repr__(self) -> str:
        return repr(tuple(self))


GROUPING_FORMS: Sequence[str] = _Forms()


def parse_grouping(spec: str | Grouping) -> Grouping:
    """Parse a grouping spec such as ``"topk:5"``. ValueError in one line: an unknown rule lists the valid forms,
    a bad parameter names the spec and what is wrong with it."""
    if isinstance(spec, Grouping):
        return spec
    forms = ", ".join(GROUPING_FORMS)
    if len(str(spec)) > _MAX_SPEC:  # a spec is a few characters; never echo (or parse) a huge one
        raise ValueError(f"grouping spec of {len(str(spec)):,} characters is too long; valid forms: {forms}")
    match = _SPEC.match(str(spec))
    if not match or match.group(1) not in RULES:
        raise ValueError(f"unknown grouping {spec!r}; valid forms: {forms}")
    return RULES[match.group(1)].parse(str(spec), match.group(2))


def strong_mask(
    grouping: str | Grouping,
    teacher_logits,
    labels=None,
    *,
    temperature: float = 1.0,
    correlated=None,
):
    """The strong set S of every row as a boolean (n, C) tensor.

    teacher_logits: (n, C) raw (unscaled) teacher logits. labels: (n,) int64, needed by rules that use
    them (`target`). correlated: what the rule reads from the class correlation (`corr:R`: the (C, C)
    boolean matrix `corr >= R`, see `Grouping.correlated` and `correlated_classes`).
    """
    g = parse_grouping(grouping)
    return g.strong_mask(teacher_logits, labels, temperature=temperature, correlated=correlated)


for _rule in (Target, TopK, TopKTarget, Mass, Corr):
    register(_rule)
