"""The gate between the Tune form and a run: which model and data specs a browser may launch with
(docs/architecture.md §3, "What a browser can reach"). Specs can name Python code or files that load code
or read anything on disk: without the operator's opt-in only shipped models, architecture names and
shipped samples pass; with it, factories too, and every path confined to the data roots and passed on
resolved, so the run reads exactly what was checked. Pure functions of a config dict, no Streamlit.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from cakd_viz.app import config as app_config
from cakd_viz.app.config import PathRefused, shown

_PLAIN_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")  # no dot, colon or slash: names no file or code
_FIELDS = {
    "data": "training data",
    "test_data": "held-out data",
    "teacher": "teacher",
    "student": "student",
    "teacher_weights": "teacher weights",
    "student_weights": "student weights",
}


class SpecRefused(ValueError):
    """A model or data spec a browser may not launch a run with (one line, no server path)."""


def gate(config: dict, *, allow_code: bool | None = None, roots: list[Path] | None = None) -> dict:
    """``config`` with every spec checked (SpecRefused naming the field when one is refused) and, with
    the opt-in, every path replaced by the resolved absolute path that was checked."""
    allow = app_config.allow_code_specs() if allow_code is None else allow_code
    roots = app_config.data_roots() if roots is None else [Path(r).resolve() for r in roots]
    out = dict(config)
    for key in [k for k in _FIELDS if k in out]:
        value = out[key]
        if value is None or (key in ("test_data", "teacher_weights", "student_weights") and value == ""):
            out[key] = None
            continue
        if not isinstance(value, str):
            raise SpecRefused(f"{_FIELDS[key]}: expected text, got {type(value).__name__}")
        text = value.strip()
        if len(text) > app_config.MAX_PATH_CHARS:
            raise SpecRefused(
                f"{_FIELDS[key]}: too long ({len(text):,} characters; at most {app_config.MAX_PATH_CHARS:,})"
            )
        out[key] = _check(key, text, allow, roots)
    return out


def _check(key: str, text: str, allow: bool, roots: list[Path]) -> str:
    what = _FIELDS[key]
    if key in ("teacher", "student"):
        from cakd_viz.models.archs import ARCHS
        from cakd_viz.models.specs import list_sample_models

        shipped, word = list_sample_models(), "model"  # e.g. ['sample:digits/student', ...]
        archs = list(ARCHS) if key == "student" else []
        only = f"runs only {'architecture names and ' if archs else ''}shipped models (sample:DATA/NAME)"
    elif key in ("data", "test_data"):
        from cakd_viz.data.sources import SAMPLE_DATA

        parts = [":train", ":test"] if key == "test_data" else [""]  # held-out data names its split
        shipped, word, archs = [f"sample:{name}{part}" for name in SAMPLE_DATA for part in parts], "data", []
        only = f"trains only on the shipped samples ({', '.join(shipped)})"
    else:  # a weights file for a factory model
        if not allow:
            raise _refused(what, text, f"refused, weight files come only with a factory model; {_OPT_IN}")
        return str(_confined_file(what, text, roots))
    if text in shipped or text in archs:
        return text
    if text.startswith("sample:"):
        raise _refused(what, text, f"no such shipped {word}; shipped: {', '.join(shipped)}")
    if word == "model" and _PLAIN_NAME.match(text):  # a word is no file and no factory: a mistyped name
        if archs:
            raise _refused(what, text, f"unknown architecture; choose one of {', '.join(archs)}")
        raise _refused(what, text, f"no such model; shipped: {', '.join(shipped)}")
    if not allow:
        raise _refused(what, text, f"refused, this app {only}; {_OPT_IN}")
    if _is_factory(what, text):
        return text
    return (_opt_in_model if word == "model" else _opt_in_data)(what, text, roots)


def _refused(what: str, text: str, why: str) -> SpecRefused:
    """The refusal of spec ``text`` for field ``what``: its server paths replaced first (as the whole line
    is, later), then cut, so a long path is said in its short form rather than cut to the server's length."""
    return SpecRefused(f"{what} {shown(app_config.scrub(text))}: {why}")


_OPT_IN = f"code, model files and own data files need the operator's opt-in ({app_config.ALLOW_CODE_ENV}=1)"


def _is_factory(what: str, text: str) -> bool:
    """A ``package.module:factory`` spec, with literal keyword arguments or none (the library's grammar,
    ``cakd_viz.data.factories``; checked here without importing anything); refused when the run would
    read it as a file instead (without arguments the run tries a file of that name first, relative to
    its working folder, which is not a data root)."""
    from cakd_viz.data.factories import FactorySpecError, is_factory_spec, parse_factory_spec

    if not is_factory_spec(text):
        return False
    try:
        parse_factory_spec(text, what)
    except FactorySpecError as exc:
        raise _refused(what, text, exc.reason) from None
    if "(" in text:  # with arguments it is always read as a factory
        return True
    if os.path.lexists(text):
        raise _refused(what, text, "names both a factory and a file; give the file's path")
    return True


def _opt_in_model(what: str, text: str, roots: list[Path]) -> str:
    path = _confined_file(what, text, roots)
    if path.suffix in (".json", ".safetensors"):  # a cakd-viz checkpoint reads the file beside it too
        stem = path.with_suffix("")
        for sibling in (stem.with_name(stem.name + ".json"), stem.with_name(stem.name + ".safetensors")):
            if os.path.lexists(sibling) and not app_config.is_confined(sibling, roots):
                where = app_config.public_path(sibling, roots)
                raise _refused(what, text, f"{where} leads outside the data roots")
    return str(path)


def _opt_in_data(what: str, text: str, roots: list[Path]) -> str:
    try:
        path = app_config.resolve_server_path(text, roots)
        if path.is_dir():
            app_config.check_tree_confined(path, roots)
    except PathRefused as exc:
        raise _refused(what, text, str(exc)) from None
    if not path.is_dir() and path.suffix.lower() != ".npz":
        raise _refused(what, text, "not an .npz file or a folder of class sub-folders")
    return str(path)


def _confined_file(what: str, text: str, roots: list[Path]) -> Path:
    try:
        path = app_config.resolve_server_path(text, roots)
    except PathRefused as exc:
        raise _refused(what, text, str(exc)) from None
    if not path.is_file():
        raise _refused(what, text, "not a file")
    return path
