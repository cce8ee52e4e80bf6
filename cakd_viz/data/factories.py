"""Factory specs: ``package.module:factory`` or ``package.module:factory(key=literal, ...)``.

The form the knowledge-distillation codebases write their models in (``models.cifar:resnet32x4(num_classes=100)``,
``pkg.wrn:wrn(depth=40, width=2)``). The arguments are parsed with ``ast``, never evaluated: only keyword
arguments whose values are literals are accepted (numbers, negative ones included, strings,
True/False/None, and tuples or lists of those); anything else is refused in one line naming what was
refused (a call, a name, an attribute, ``**kwargs``, a positional argument, a lambda, a subscript, a
spec longer than ``MAX_FACTORY_SPEC_CHARS``). Parsing imports nothing; ``call_factory`` imports the
module and calls the factory with the parsed arguments.
"""

from __future__ import annotations

import ast
import importlib
import math
import re
from dataclasses import dataclass, field

from cakd_viz.text import a_type

MAX_FACTORY_SPEC_CHARS = 1000
_HEAD = re.compile(r"^([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*):([A-Za-z_]\w*)(\s*\(.*)?$", re.DOTALL)
_LITERALS = "numbers, strings, True/False/None, and tuples or lists of them"
_WHAT = {
    ast.Call: "a call",
    ast.Name: "a name",
    ast.Attribute: "an attribute",
    ast.Lambda: "a lambda",
    ast.Subscript: "a subscript",
    ast.Dict: "a dict",
    ast.Set: "a set",
    ast.Starred: "a starred expression",
    ast.JoinedStr: "an f-string",
    ast.BinOp: "an expression",
    ast.BoolOp: "an expression",
    ast.Compare: "a comparison",
    ast.IfExp: "a conditional expression",
    ast.NamedExpr: "an assignment expression",
    ast.UnaryOp: "an expression",
}


class FactorySpecError(ValueError):
    """A refused factory spec: the message names what, the spec and the reason; ``reason`` alone."""

    def __init__(self, what: str, text: str, reason: str) -> None:
        shown = repr(text) if len(text) <= 200 else repr(text[:60]) + "..."
        super().__init__(f"{what} {shown}: {reason}")
        self.reason = reason


@dataclass(frozen=True)
class FactorySpec:
    """A parsed factory spec: ``module:attr`` and the keyword arguments of its call ({} without any)."""

    module: str
    attr: str
    kwargs: dict = field(default_factory=dict)

    @property
    def target(self) -> str:
        """``module:attr``, the object the spec names."""
        return f"{self.module}:{self.attr}"


def is_factory_spec(text: str) -> bool:
    """Whether ``text`` has the form of a factory spec (``module:attr``, optionally followed by ``(...)``);
    its arguments are checked by ``parse_factory_spec``."""
    return bool(_HEAD.match(str(text).strip()))


def parse_factory_spec(text: str, what: str = "factory") -> FactorySpec:
    """Parse ``module:attr`` or ``module:attr(key=literal, ...)``; FactorySpecError, a ValueError (one
    line naming ``what``, the spec and what was refused), for any other form."""
    text = str(text).strip()
    if len(text) > MAX_FACTORY_SPEC_CHARS:
        too_long = f"too long ({len(text):,} characters; at most {MAX_FACTORY_SPEC_CHARS:,})"
        raise FactorySpecError(what, text, too_long)
    head = _HEAD.match(text)
    if head is None:
        raise FactorySpecError(what, text, "not a package.module:factory spec")
    module, attr, call = head.groups()
    if call is None:
        return FactorySpec(module, attr)
    return FactorySpec(module, attr, _keywords(call.strip(), text, what))


def _keywords(call: str, text: str, what: str) -> dict:
    try:
        tree = ast.parse("f" + call, mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
        why = getattr(exc, "msg", None) or type(exc).__name__
        raise FactorySpecError(what, text, f"its arguments are not valid Python syntax ({why})") from None
    node = tree.body
    if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Name) or node.func.id != "f":
        raise FactorySpecError(what, text, "expected one call, package.module:factory(key=value, ...)")
    if any(isinstance(arg, ast.Starred) for arg in node.args):
        raise FactorySpecError(what, text, "*args is refused; write each argument as key=value")
    if node.args:
        raise FactorySpecError(what, text, "positional arguments are refused; name each one (key=value)")
    out = {}
    for kw in node.keywords:
        if kw.arg is None:
            raise FactorySpecError(what, text, "**kwargs is refused; write each argument as key=value")
        if kw.arg in out:
            raise FactorySpecError(what, text, f"argument {kw.arg} is given twice")
        out[kw.arg] = _literal(kw.value, kw.arg, text, what)
    return out


def _literal(node: ast.AST, key: str, text: str, what: str) -> object:
    if isinstance(node, ast.Constant) and (node.value is None or isinstance(node.value, bool | int | str)):
        return node.value
    if isinstance(node, ast.Constant) and isinstance(node.value, float):
        if not math.isfinite(node.value):
            raise FactorySpecError(what, text, f"argument {key} is not a finite number")
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        inner = node.operand
        if isinstance(inner, ast.Constant) and isinstance(inner.value, int | float):
            if not isinstance(inner.value, bool):
                value = _literal(inner, key, text, what)
                return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, ast.Tuple | ast.List):
        items = [_literal(item, key, text, what) for item in node.elts]
        return tuple(items) if isinstance(node, ast.Tuple) else items
    kind = _WHAT.get(type(node))
    if kind is None and isinstance(node, ast.Constant):
        kind = f"a {type(node.value).__name__} constant"
    kind = kind or f"a {type(node).__name__} expression"
    raise FactorySpecError(what, text, f"argument {key} is {kind}; only literals are accepted ({_LITERALS})")


def call_factory(spec: str, what: str) -> object:
    """Import the factory ``spec`` names and call it with the spec's keyword arguments; its result.

    ValueError (one line) when the spec is refused, the module does not import, or the call fails.
    """
    parsed = parse_factory_spec(spec, what)
    try:
        module = importlib.import_module(parsed.module)
    except Exception as exc:  # any import-time failure of the user's module
        detail = " ".join(str(exc).split())[:300]
        raise ValueError(f"{what} {spec!r}: cannot import module {parsed.module!r} ({detail})") from exc
    if not hasattr(module, parsed.attr):
        raise ValueError(f"{what} {spec!r}: module {parsed.module!r} has no attribute {parsed.attr!r}")
    factory = getattr(module, parsed.attr)
    if not callable(factory):
        raise ValueError(f"{what} {spec!r}: {parsed.target} is {a_type(factory)}, not callable")
    try:
        return factory(**parsed.kwargs)
    except Exception as exc:  # report the user's error against the spec that ran it
        detail = " ".join(str(exc).split())[:300]
        raise ValueError(f"{what} {spec!r} failed: {type(exc).__name__}: {detail}") from exc
