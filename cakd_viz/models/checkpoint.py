"""Checkpoints: ``NAME.safetensors`` (weights) beside ``NAME.json`` (everything needed to rebuild).

The json holds ``format``, ``arch`` (a key of ``ARCHS``), ``arch_kwargs``, ``num_classes``,
``class_names``, ``input_shape`` (C, H, W), ``normalization``, ``accuracy`` (held-out), ``train_config``
and free-form extras. Weights may be stored as float16 to keep shipped files small; they are loaded
back as float32. Nothing is ever unpickled.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from cakd_viz import atomic
from cakd_viz.models.archs import build_arch
from cakd_viz.validate import loads_json

CHECKPOINT_FORMAT = "cakd-checkpoint/1"


def checkpoint_paths(path: str | Path) -> tuple[Path, Path]:
    """(weights .safetensors, config .json) for a stem, a .json or a .safetensors path."""
    p = Path(path)
    stem = p.with_suffix("") if p.suffix in (".json", ".safetensors") else p
    return stem.with_name(stem.name + ".safetensors"), stem.with_name(stem.name + ".json")


def save_checkpoint(
    path: str | Path,
    model: nn.Module,
    *,
    arch: str,
    class_names: Sequence[str],
    input_shape: Sequence[int],
    normalization: Mapping | None = None,
    arch_kwargs: Mapping | None = None,
    accuracy: float | None = None,
    train_config: Mapping | None = None,
    extra: Mapping | None = None,
    dtype: torch.dtype = torch.float32,
) -> Path:
    """Write ``path``.safetensors and ``path``.json (floating tensors cast to ``dtype``); returns the json path."""
    weights, config = checkpoint_paths(path)
    weights.parent.mkdir(parents=True, exist_ok=True)
    state = {
        k: (v.detach().to("cpu", dtype) if v.is_floating_point() else v.detach().cpu()).contiguous()
        for k, v in model.state_dict().items()
    }
    info = {
        "format": CHECKPOINT_FORMAT,
        "arch": arch,
        "arch_kwargs": dict(arch_kwargs or {}),
        "num_classes": len(class_names),
        "class_names": list(class_names),
        "input_shape": [int(v) for v in input_shape],
        "normalization": dict(normalization or {}),
        "accuracy": accuracy,
        "train_config": dict(train_config or {}),
        "weights_dtype": str(dtype).removeprefix("torch."),
        **dict(extra or {}),
    }
    with atomic.replacing(weights) as tmp:
        save_file(state, str(tmp), metadata={"format": "pt", "arch": arch})
    atomic.write_json(config, info)
    return config


def load_checkpoint(path: str | Path, *, map_location: str | torch.device = "cpu") -> tuple[nn.Module, dict]:
    """Rebuild the model of a checkpoint in eval mode (float32); returns (model, info incl. "path").
    ValueError when it is missing, not a cakd-viz checkpoint, or does not build."""
    weights, config = checkpoint_paths(path)
    if not config.is_file():
        raise ValueError(f"{config}: missing; a checkpoint is NAME.safetensors beside NAME.json")
    info = loads_json(config.read_bytes(), str(config))
    if not isinstance(info, dict):
        raise ValueError(f"{config}: not a {CHECKPOINT_FORMAT} checkpoint config (not a JSON object)")
    missing = [k for k in ("arch", "num_classes", "input_shape") if k not in info]
    if info.get("format") != CHECKPOINT_FORMAT or missing:
        raise ValueError(
            f"{config}: not a {CHECKPOINT_FORMAT} checkpoint config (missing {missing or 'format'})"
        )
    if not weights.is_file():
        raise ValueError(f"{weights}: missing (the weights of {config.name})")
    shape, num_classes, kwargs = info["input_shape"], info["num_classes"], info.get("arch_kwargs") or {}
    if not isinstance(shape, list) or len(shape) != 3 or not all(_positive(v) for v in shape):
        raise ValueError(f"{config}: input_shape must be [channels, height, width], got {shape!r}")
    if not _positive(num_classes) or not isinstance(kwargs, dict):
        raise ValueError(
            f"{config}: num_classes must be a whole number and arch_kwargs an object, got "
            f"{num_classes!r} and {kwargs!r}"
        )
    c, *hw = shape
    # refused: no such architecture, or arch_kwargs it does not take or cannot build with (torch's errors)
    try:
        model = build_arch(info["arch"], in_channels=c, num_classes=num_classes, image_size=hw, **kwargs)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise ValueError(f"{config}: cannot build {info['arch']!r} from it ({exc})") from None
    load_weights_into(model, load_state_file(weights), source=str(weights))
    info["path"] = str(config)
    return model.to(map_location).eval(), info


def _positive(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def load_state_file(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of a ``.safetensors`` file, or of a ``.pt``/``.pth``/``.bin`` state dict (weights_only)."""
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"weights file {p} does not exist")
    if p.suffix == ".safetensors":
        try:
            return load_file(str(p))
        except Exception as exc:  # safetensors raises its own error types
            raise ValueError(f"{p}: not a readable .safetensors file ({exc})") from exc
    if p.suffix not in (".pt", ".pth", ".bin"):
        raise ValueError(f"weights file {p}: use .safetensors, or a .pt/.pth state dict")
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # an UnpicklingError for anything but tensors and plain containers
        raise ValueError(
            f"{p}: refused or unreadable as a plain state dict (loaded with weights_only=True): {exc}"
        ) from exc
    for key in ("state_dict", "model_state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ValueError(f"{p}: expected a dict of tensors (a state dict), got {type(obj).__name__}")
    return obj


def _listing(keys: Sequence[str], limit: int = 6) -> str:
    keys = sorted(keys)
    more = f" (+{len(keys) - limit} more)" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


def load_weights_into(model: nn.Module, state: Mapping[str, torch.Tensor], *, source: str) -> None:
    """Strictly load ``state`` into ``model``; ValueError naming missing, unexpected and mis-shaped keys."""
    state = dict(state)
    if state and all(k.startswith("module.") for k in state):  # saved from DataParallel / DDP
        state = {k.removeprefix("module."): v for k, v in state.items()}
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shaped = [
        f"{k} (file {tuple(state[k].shape)} vs model {tuple(own[k].shape)})"
        for k in own
        if k in state and state[k].shape != own[k].shape
    ]
    if missing or unexpected or shaped:
        found = {"missing keys": missing, "unexpected keys": unexpected, "mis-shaped": shaped}
        parts = [f"{what} [{_listing(keys)}]" for what, keys in found.items() if keys]
        raise ValueError(f"{source} does not fit {type(model).__name__}: {' '.join(parts)}")
    model.load_state_dict({k: v.to(own[k].dtype) for k, v in state.items()})
