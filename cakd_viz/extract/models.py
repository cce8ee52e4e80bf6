"""Which models an extraction runs: ``[NAME=]MODEL`` parsing, student names, loading every model."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import Path

from torch import nn

from cakd_viz.data.factories import is_factory_spec
from cakd_viz.extract.loop import LoadedModel

ModelLike = str | Path | nn.Module
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.+-]*$")


def parse_named_model(text: str) -> tuple[str | None, str]:
    """``"NAME=MODEL"`` -> (NAME, MODEL); ``"MODEL"`` -> (None, MODEL). An existing file wins over NAME=."""
    name, sep, spec = text.partition("=")
    if sep and _NAME.match(name) and spec and not Path(text).exists():
        return name, spec
    return None, text


def default_student_name(model: ModelLike) -> str:
    """A student's name from its spec: ``sample:glyphs/student_kd`` -> 'student_kd', ``nets/r8.pt`` ->
    'r8', ``pkg.mod:make_resnet`` or ``pkg.mod:make_resnet(depth=8)`` -> 'make_resnet', a module -> its
    lower-cased class name."""
    if isinstance(model, nn.Module):
        base = type(model).__name__.lower()
    elif is_factory_spec(str(model)):  # pkg.mod:resnet8x4(num_classes=100) -> 'resnet8x4'
        base = str(model).strip().split(":", 1)[1].split("(", 1)[0].strip()
    else:
        text = str(model).strip().rstrip("/\\")
        base = re.split(r"[/\\:]", text)[-1]
        base = base.rsplit(".", 1)[0] if "." in base and not base.startswith(".") else base
    # a valid student name (validate.check_student_name): at most 100 characters, ending in no "."
    base = re.sub(r"[^A-Za-z0-9_.+-]", "_", base).lstrip(".-")[:100].rstrip(".") or "student"
    return "teacher_copy" if base == "teacher" else base


def name_students(pairs: Iterable[tuple[str | None, ModelLike]]) -> dict[str, ModelLike]:
    """{name: model} from (NAME or None, MODEL) pairs, as ``--student [NAME=]MODEL`` gives them: a model
    without a NAME gets its ``default_student_name`` (``_2``, ``_3``, ... appended while that is taken,
    cutting the name short where it would pass 100 characters); a NAME given twice is refused."""
    named: dict[str, ModelLike] = {}
    for name, spec in pairs:
        if name is not None and name in named:
            raise ValueError(f"--student {name}={spec}: the name {name!r} is used twice")
        if name is None:
            base = name = default_student_name(spec)
            k = 2
            while name in named:
                name, k = f"{base[: 99 - len(str(k))]}_{k}", k + 1
        named[name] = spec
    return named


def _load_models(
    teacher: ModelLike, students: dict[str, ModelLike], weights: Mapping[str, str | Path]
) -> list[LoadedModel]:
    from cakd_viz.models import load_model

    unknown = sorted(set(weights) - {"teacher", *students})
    if unknown:
        raise ValueError(f"weights given for {unknown}: not 'teacher' nor a student ({sorted(students)})")
    models = []
    for name, spec in [("teacher", teacher), *students.items()]:
        if isinstance(spec, nn.Module):
            if name in weights:
                raise ValueError(
                    f"weights given for {name!r}, which is an nn.Module: load them into it first"
                )
            module, info, text = spec.eval(), {}, f"<{type(spec).__name__}>"
        else:
            w = weights.get(name)
            text = str(spec) if w is None else f"{spec} (weights {w})"
            try:
                module, info = load_model(str(spec), weights=w, map_location="cpu")
            except ValueError as exc:
                role = "teacher" if name == "teacher" else f"student {name!r}"
                raise ValueError(f"{role}: {exc}") from exc
        models.append(LoadedModel(name=name, spec=text, module=module, info=dict(info)))
    return models
