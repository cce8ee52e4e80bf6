"""Model specs: one string names a trained model, resolved by ``load_model`` (never unpickling).

Forms (``MODEL_SPEC_FORMS``):

- ``sample:glyphs/teacher``, ``sample:glyphs/student_kd``, ``sample:digits/student``, ...: shipped
  checkpoints under ``sample_checkpoints/`` (or ``$CAKD_SAMPLES_DIR``);
- ``PATH.json`` / ``PATH.safetensors`` (with its ``.json`` beside it): a cakd-viz checkpoint;
- ``PATH`` of a TorchScript archive (``torch.jit.save``), loaded with ``torch.jit.load``;
- ``package.module:factory`` or ``package.module:factory(key=literal, ...)`` (e.g.
  ``models.cifar:resnet32x4(num_classes=100)``) returning an ``nn.Module``, plus ``weights=`` a
  ``.safetensors`` file or a ``.pt``/``.pth`` state dict (read with ``torch.load(weights_only=True)``;
  ``{"model": ...}``, ``{"state_dict": ...}`` and DDP ``module.`` prefixes are unwrapped). The arguments
  are literals parsed without running code (``cakd_viz.data.factories``).

Whatever a model's ``forward`` returns, callers take its logits through ``cakd_viz.models.outputs.logits_of``
(a tensor, a tuple or list with the logits first, a mapping with "logits", an object with ``.logits``).
"""

from __future__ import annotations

import re
import warnings
import zipfile
from pathlib import Path

import torch
from torch import nn

from cakd_viz.data.factories import call_factory, is_factory_spec
from cakd_viz.device import resolve_device
from cakd_viz.locations import samples_dir
from cakd_viz.models.checkpoint import checkpoint_paths, load_checkpoint, load_state_file, load_weights_into

MODEL_SPEC_FORMS = (
    "sample:DATA/NAME (e.g. sample:glyphs/teacher), PATH.json or PATH.safetensors (a cakd-viz checkpoint), "
    "PATH of a TorchScript file, package.module:factory or package.module:factory(key=literal, ...) with a "
    "weights file (.safetensors or .pt state dict)"
)
_SAMPLE = re.compile(r"^sample:(\w+)/(\w+)$")


def list_sample_models(root: Path | None = None) -> list[str]:
    """Specs of every shipped checkpoint, e.g. ['sample:digits/student', 'sample:digits/teacher', ...]."""
    root = root or samples_dir()
    return sorted(f"sample:{p.parent.name}/{p.stem}" for p in root.glob("*/*.json"))


def _base_info(spec: str, kind: str, **more: object) -> dict:
    unknown = ("arch", "num_classes", "class_names", "input_shape", "normalization", "accuracy")
    return {"spec": spec, "kind": kind} | dict.fromkeys(unknown) | more


def load_model(
    spec: str | Path,
    *,
    weights: str | Path | None = None,
    map_location: str | torch.device = "cpu",
) -> tuple[nn.Module, dict]:
    """Resolve a model spec (see ``MODEL_SPEC_FORMS``); returns (model in eval mode, info dict).

    ``info`` always has spec, kind ('sample' | 'checkpoint' | 'torchscript' | 'factory'), arch,
    num_classes, class_names, input_shape, normalization and accuracy (None where unknown).
    """
    text = str(spec).strip()
    device = resolve_device(map_location)
    if weights is not None and not is_factory_spec(text):
        raise ValueError(f"model {text!r}: weights= is only for package.module:factory specs")
    if is_factory_spec(text) and "(" in text:  # a factory with arguments is never a path
        return _from_factory(text, weights, device)
    sample = _SAMPLE.match(text)
    if sample:
        return _sample(text, *sample.groups(), device)
    if text.startswith("sample:"):
        raise ValueError(f"bad sample model {text!r}; use sample:DATA/NAME, one of {list_sample_models()}")
    path = Path(text).expanduser()
    if path.is_file():
        return _from_file(text, path, device)
    if is_factory_spec(text):
        return _from_factory(text, weights, device)
    if path.suffix or "/" in text or "\\" in text:
        raise ValueError(f"model {text!r}: no such file; valid: {MODEL_SPEC_FORMS}")
    raise ValueError(f"bad model spec {text!r}; valid: {MODEL_SPEC_FORMS}")


def _sample(text: str, data: str, name: str, device: torch.device) -> tuple[nn.Module, dict]:
    root = samples_dir()
    config = root / data / f"{name}.json"
    if not config.is_file():
        have = list_sample_models(root)
        hint = f"available: {', '.join(have)}" if have else "run `python -m cakd_viz samples build` first"
        raise ValueError(f"no sample model {text!r} under {root}; {hint}")
    model, info = load_checkpoint(config, map_location=device)
    return model, info | {"spec": text, "kind": "sample"}


def is_torchscript(path: Path) -> bool:
    """True for a ``torch.jit.save`` archive (a zip holding compiled code), False for a pickled state dict
    or anything else that is no readable zip archive."""
    try:
        with zipfile.ZipFile(path) as z:
            return any("/code/" in n for n in z.namelist())
    except zipfile.BadZipFile:  # not a zip (a legacy pickle), or one whose end records are damaged
        return False


def _from_file(text: str, path: Path, device: torch.device) -> tuple[nn.Module, dict]:
    weights, config = checkpoint_paths(path)
    if path.suffix in (".json", ".safetensors"):
        if not config.is_file():
            raise ValueError(
                f"{path}: no {config.name} beside it; for bare weights use package.module:factory with weights="
            )
        model, info = load_checkpoint(path, map_location=device)
        return model, info | {"spec": text, "kind": "checkpoint"}
    if not is_torchscript(path):
        raise ValueError(
            f"{path}: not a TorchScript archive (torch.jit.save); a .pt state dict needs "
            "package.module:factory with weights=, and pickled models are never loaded"
        )
    try:
        with warnings.catch_warnings():  # torch >= 2.10 flags TorchScript as deprecated; it still loads
            warnings.simplefilter("ignore", DeprecationWarning)
            model = torch.jit.load(str(path), map_location=device)
    except Exception as exc:  # torch raises RuntimeError subclasses for broken archives
        raise ValueError(f"{path}: cannot load as TorchScript ({exc})") from exc
    return model.eval(), _base_info(text, "torchscript", path=str(path))


def _from_factory(text: str, weights: str | Path | None, device: torch.device) -> tuple[nn.Module, dict]:
    model = call_factory(text, "model factory")
    if not isinstance(model, nn.Module):
        raise ValueError(f"model factory {text!r} returned {type(model).__name__}, not a torch.nn.Module")
    if weights is not None:
        load_weights_into(model, load_state_file(weights), source=str(weights))
    info = _base_info(text, "factory", weights=str(weights) if weights is not None else None)
    return model.to(device).eval(), info
