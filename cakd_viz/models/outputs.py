"""A model's logits, whatever its ``forward`` returns (``ACCEPTED``: mdistiller's and CRD's ResNets return
``(logits, features)``, Hugging Face's ``ModelOutput`` has ``.logits``). Every place cakd-viz calls a
model (extraction, training, evaluation, the teacher-logit cache) goes through ``logits_of``."""

from __future__ import annotations

from collections.abc import Mapping

import torch

from cakd_viz.text import a_type

ACCEPTED = (
    "a logits tensor (batch, C), a tuple or list with the logits first, a mapping with 'logits', "
    "or an object with a .logits tensor"
)


def logits_of(output: object, *, who: str, batch: int | None = None) -> torch.Tensor:
    """The logits (B, C) in a model's ``output``; ValueError (one line naming ``who``) when there are none.

    ``batch``: the number of inputs, checked against the logits' first dimension when given.
    """
    logits = _find(output, who)
    if logits.dim() != 2 or (batch is not None and logits.shape[0] != batch):
        of = f" for a batch of {batch}" if batch is not None else ""
        want = f"({batch}, C)" if batch is not None else "(batch, C)"
        raise ValueError(
            f"{who} returned shape {tuple(logits.shape)}{of}; expected logits (batch, C) = {want}"
        )
    if not logits.is_floating_point():
        raise ValueError(f"{who} returned {str(logits.dtype).removeprefix('torch.')} logits; expected floats")
    return logits


def _find(output: object, who: str) -> torch.Tensor:
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, Mapping):
        if "logits" in output and isinstance(output["logits"], torch.Tensor):
            return output["logits"]
        raise ValueError(f"{who} returned {_describe(output)}; expected {ACCEPTED}")
    attr = getattr(output, "logits", None)
    if isinstance(attr, torch.Tensor):
        return attr
    if isinstance(output, tuple | list) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    raise ValueError(f"{who} returned {_describe(output)}; expected {ACCEPTED}")


def _describe(output: object) -> str:
    """What came back, in words: its type, and its keys or length where that helps."""
    kind = type(output).__name__
    if isinstance(output, Mapping):
        keys = [repr(k) for k in list(output)[:6]]
        more = ", ..." if len(output) > 6 else ""
        if "logits" in output:
            return f"{a_type(output)} whose 'logits' is {a_type(output['logits'])}, not a tensor"
        return (
            f"{a_type(output)} without 'logits' (keys: {', '.join(keys)}{more})"
            if keys
            else f"an empty {kind}"
        )
    if isinstance(output, tuple | list):
        if not output:
            return f"an empty {kind}"
        first = "None" if output[0] is None else a_type(output[0])
        return f"{a_type(output)} of {len(output)} whose first item is {first}, not a tensor"
    if output is None:
        return "None"
    return f"a value of type {kind}"
