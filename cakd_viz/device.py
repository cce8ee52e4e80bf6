"""Which device computes: "auto" prefers a CUDA GPU, then the CPU."""

from __future__ import annotations

import torch

DEVICE_CHOICES = ("auto", "cpu", "cuda", "cuda:N", "mps")


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """Turn "auto" | "cpu" | "cuda" | "cuda:N" | "mps" into a torch.device; clear error when unavailable."""
    if isinstance(device, torch.device):
        return device
    unknown = ValueError(f"unknown device {device!r}; choose one of {', '.join(DEVICE_CHOICES)}")
    if device is not None and not isinstance(device, str):  # 0 would read as "auto", 1 as nothing at all
        raise unknown
    name = (device or "auto").strip().lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "mps":
        if not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
            raise ValueError("device 'mps' was asked for, but no Apple GPU is available here")
        return torch.device("mps")
    if name != "cuda" and not name.startswith("cuda:"):
        raise unknown
    if not torch.cuda.is_available():
        raise ValueError(f"device {device!r} was asked for, but no CUDA GPU is available here")
    try:
        dev = torch.device(name)
    except RuntimeError:  # "cuda:x", "cuda:-1": torch names no such device
        raise unknown from None
    if dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ValueError(f"device {device!r}: only {torch.cuda.device_count()} CUDA GPU(s) are visible")
    return dev


def describe_device(device: str | torch.device | None = "auto") -> str:
    """A short human label, e.g. 'CUDA: NVIDIA H100 80GB HBM3' or 'CPU (2 threads)'."""
    dev = resolve_device(device)
    if dev.type == "cuda":
        return f"CUDA: {torch.cuda.get_device_name(dev)}"
    if dev.type == "mps":
        return "Apple GPU (MPS)"
    return f"CPU ({torch.get_num_threads()} threads)"
