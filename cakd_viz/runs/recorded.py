"""What a recorded run's config.json (and env.json) hold: a researcher's own hyperparameters, in the run's
columns (the format: docs/architecture.md §6, "Recorded runs"), so readers (``runs.results``) read it as
a launched run's.

The config may be flat (``{"loss": "cakd", "alpha": 1, "T": 4}``) or nested (``{"loss": {"name":
"cakd", ...}}``); "T" is read as "temperature" and "batch" as "batch_size". The loss section takes the
parameters the registered losses declare, each checked by its declaration; a value of the wrong type
(``"lr": "fast"``) is kept in "hyperparameters" only. ``loss.grouping`` and ``loss.temperature``
default to the recorder's, and so does ``loss.standardize`` when the recorder standardizes.
"""

from __future__ import annotations

import contextlib
import json
import platform
import re
import sys
import time
from collections.abc import Mapping

import numpy as np

from cakd_viz.runs.store import INT, NUMBER, TEXT, is_type

RECORDED_FORMAT = "cakd-recorded/1"
_NAME = re.compile(r"^[\w.+-]{0,100}\Z")
_TOP = {"lr": NUMBER, "epochs": INT, "batch_size": INT, "seed": INT}
_TOP |= {"student": TEXT, "teacher": TEXT, "data": TEXT}
_ALIASES = {"temperature": ("temperature", "T"), "batch_size": ("batch_size", "batch")}


def is_recorded(config: Mapping) -> bool:
    """Whether a run's config.json is a recorded run's (no weights, no bundle of its own)."""
    return config.get("recorded") is True


def recorded_config(
    config: Mapping | None,
    *,
    name: str | None,
    grouping: str,
    temperature: float,
    split: str,
    standardize: bool = False,
) -> dict:
    """The config.json of a recorded run (see the module docstring); ValueError for a bad name or a
    config that is not a mapping of JSON-writable values."""
    raw = _json_form(config)
    loss = _loss(raw, grouping, temperature)
    if standardize:
        loss.setdefault("standardize", True)
    out = {"format": RECORDED_FORMAT, "recorded": True, "name": _name(name, loss.get("name"))}
    for key, kind in _TOP.items():
        value = _pick(raw, key, kind)
        if value is not None:
            out[key] = value
    decomposition = {"grouping": grouping, "temperature": temperature, "standardize": standardize}
    decomposition["split"] = split
    return out | {"loss": loss, "decomposition": decomposition, "hyperparameters": raw}


def _json_form(config: Mapping | None) -> dict:
    if config is None:
        return {}
    if not isinstance(config, Mapping):
        raise ValueError(f"config must be a dict of hyperparameters, got {type(config).__name__}")
    try:  # values JSON cannot hold (a device, a path) are kept as their text
        return json.loads(json.dumps(dict(config), default=str, allow_nan=True))
    except (TypeError, ValueError) as exc:  # keys that are not text, circular references
        raise ValueError(f"config cannot be written as JSON ({exc})") from None


def _loss(raw: dict, grouping: str, temperature: float) -> dict:
    from cakd_viz.runs.results import loss_columns  # the declared parameters of every registered loss

    given = raw.get("loss")
    nested = given if isinstance(given, dict) else {}
    name = given if isinstance(given, str) else nested.get("name")
    loss = {"name": name.strip().lower()} if isinstance(name, str) and name.strip() else {}
    for key, param in loss_columns().items():
        for source in (nested, raw):
            value = next((source[a] for a in _ALIASES.get(key, (key,)) if a in source), None)
            with contextlib.suppress(ValueError):  # of the wrong type or range: in "hyperparameters" only
                if value is not None:
                    loss[key] = param.check(value)
                    break
    loss.setdefault("grouping", grouping)
    loss.setdefault("temperature", temperature)
    return loss


def _pick(source: dict, key: str, kind: str) -> object:
    """``source[key]`` (or an alias of it) when it has the type ``kind`` as readers take it
    (``store.is_type``; 2.0 is the whole number 2); else None."""
    for alias in _ALIASES.get(key, (key,)):
        value = source.get(alias)
        if kind == INT and isinstance(value, float) and value.is_integer():
            value = int(value)
        if is_type(value, kind):
            return value
    return None


def _name(name: str | None, loss: str | None) -> str:
    """The run's name: as given; else "" for a loss the runs table labels itself (ce, kd, dkd, cakd),
    else the loss's name or "recorded"."""
    from cakd_viz.runs.config import loss_names

    if name is not None:
        if not isinstance(name, str) or not _NAME.match(name):
            raise ValueError(f"name {name!r}: use at most 100 letters, digits and _ . + - only")
        return name
    if loss in loss_names():
        return ""
    return re.sub(r"[^\w.+-]", "_", loss)[:100] if loss else "recorded"


def environment(config: dict) -> dict:
    """env.json of a recorded run: versions, host, the command, and the seed/batch the config gave."""
    given = {k: config[k] for k in ("seed", "batch_size") if k in config}
    return given | {"recorded": True} | software()


def software() -> dict:
    """The versions, host, command and start time every run's env.json holds (launched and recorded)."""
    import torch

    from cakd_viz import __version__

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "cakd_viz": __version__,
        "platform": platform.platform(),
        "host": platform.node(),
        "argv": sys.argv,
        "started": time.time(),
    }
