"""Small image classifiers for the shipped samples and for weight-tuning runs.

``ARCHS`` is a plain registry, ``name -> factory(in_channels, num_classes, image_size, **kwargs)``;
every model maps (B, in_channels, H, W) float inputs to (B, num_classes) logits.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn


def _hw(image_size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(image_size, int):
        return image_size, image_size
    h, w = image_size
    return int(h), int(w)


class CNN(nn.Module):
    """Stages of (conv3x3-BN-ReLU) x ``depth``, each followed by 2x2 max-pool while the map is >= 4 px.

    ``head="gap"``: global average pool then linear; ``"flatten"``: linear on the flattened last map.
    """

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 10,
        image_size: int | Sequence[int] = 32,
        widths: Sequence[int] = (32, 64, 128),
        depth: int = 1,
        head: str = "gap",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if head not in ("gap", "flatten"):
            raise ValueError(f"CNN head must be 'gap' or 'flatten', got {head!r}")
        layers: list[nn.Module] = []
        c, (h, w) = in_channels, _hw(image_size)
        for width in widths:
            for _ in range(depth):
                layers += [
                    nn.Conv2d(c, width, 3, padding=1, bias=False),
                    nn.BatchNorm2d(width),
                    nn.ReLU(inplace=True),
                ]
                c = width
            if min(h, w) >= 4:
                layers.append(nn.MaxPool2d(2))
                h, w = h // 2, w // 2
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1) if head == "gap" else nn.Identity()
        features = c if head == "gap" else c * h * w
        self.classifier = nn.Sequential(nn.Flatten(), nn.Dropout(dropout), nn.Linear(features, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, C, H, W) -> logits (B, num_classes)."""
        return self.classifier(self.pool(self.features(x)))


class MLP(nn.Module):
    """Flatten, then Linear-ReLU per hidden width, then a linear classifier."""

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 10,
        image_size: int | Sequence[int] = 32,
        hidden: Sequence[int] = (128,),
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        h, w = _hw(image_size)
        dims = [in_channels * h * w, *hidden]
        layers: list[nn.Module] = [nn.Flatten()]
        for a, b in zip(dims[:-1], dims[1:], strict=True):
            layers += [nn.Linear(a, b), nn.ReLU(inplace=True), nn.Dropout(dropout)]
        layers.append(nn.Linear(dims[-1], num_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, C, H, W) -> logits (B, num_classes)."""
        return self.net(x)


def _preset(arch: type[nn.Module], **defaults: object) -> Callable[..., nn.Module]:
    def factory(
        in_channels: int = 1, num_classes: int = 10, image_size: int | Sequence[int] = 32, **kw: object
    ):
        return arch(in_channels, num_classes, image_size, **{**defaults, **kw})

    factory.__doc__ = f"{arch.__name__} with {defaults}."
    factory.defaults = dict(defaults)  # saved in checkpoints, so later edits here cannot change them
    return factory


# name -> factory(in_channels, num_classes, image_size, **overrides); widest first
ARCHS: dict[str, Callable[..., nn.Module]] = {
    "cnn_l": _preset(CNN, widths=(24, 48, 96), depth=2, dropout=0.1),  # teacher-sized
    "cnn_m": _preset(CNN, widths=(16, 32, 64), depth=1),
    "cnn_s": _preset(CNN, widths=(8, 16, 32), depth=1),  # student-sized
    "cnn_xs": _preset(CNN, widths=(4, 8), depth=1),
    "mlp": _preset(MLP, hidden=(128,)),  # one hidden layer of 128 units
}


def build_arch(
    name: str, *, in_channels: int, num_classes: int, image_size: int | Sequence[int], **kw: object
):
    """Instantiate ``ARCHS[name]``; ValueError listing the names when unknown."""
    if name not in ARCHS:
        raise ValueError(f"unknown architecture {name!r}; choose one of {', '.join(ARCHS)}")
    return ARCHS[name](in_channels=in_channels, num_classes=num_classes, image_size=image_size, **kw)


def arch_defaults(name: str) -> dict:
    """The keyword arguments a registry name stands for (JSON-ready), e.g. {"widths": [8, 16], ...}."""
    if name not in ARCHS:
        raise ValueError(f"unknown architecture {name!r}; choose one of {', '.join(ARCHS)}")
    return {
        k: list(v) if isinstance(v, tuple) else v for k, v in getattr(ARCHS[name], "defaults", {}).items()
    }


def count_params(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
