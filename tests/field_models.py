"""Models as the knowledge-distillation codebases write them, for the tests (importable by subprocesses:
put tests/ on PYTHONPATH and name them `field_models:resnet8x4(num_classes=10)`).

- `resnet8x4(num_classes, width, in_channels)`: a CIFAR-style ResNet (one basic block per stage, as
  CRD's and mdistiller's resnet8x4) whose forward returns `(logits, features)` as theirs do;
- `hf_style(...)`: returns an object with `.logits` (as Hugging Face's ModelOutput);
- `dict_style(...)`: returns `{"logits": ..., "features": ...}`;
- models whose outputs hold no usable logits, for the error messages.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import Dataset


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class ResNet(nn.Module):
    """resnet8x4-like: a stem and three stages of one block, `width` times 4/8/16 channels."""

    def __init__(self, num_classes: int = 100, width: int = 4, in_channels: int = 3) -> None:
        super().__init__()
        c = [4 * width, 8 * width, 16 * width]
        self.stem = nn.Sequential(nn.Conv2d(in_channels, c[0], 3, 1, 1, bias=False), nn.BatchNorm2d(c[0]))
        self.layers = nn.ModuleList(
            [BasicBlock(c[0], c[0], 1), BasicBlock(c[0], c[1], 2), BasicBlock(c[1], c[2], 2)]
        )
        self.fc = nn.Linear(c[2], num_classes)

    def forward(self, x):
        out = F.relu(self.stem(x))
        feats = [out]
        for layer in self.layers:
            out = layer(out)
            feats.append(out)
        pooled = F.adaptive_avg_pool2d(out, 1).flatten(1)
        return self.fc(pooled), {"feats": feats, "pooled_feat": pooled}  # mdistiller's (logits, features)


def resnet8x4(num_classes: int = 100, width: int = 4, in_channels: int = 3) -> ResNet:
    return ResNet(num_classes=num_classes, width=width, in_channels=in_channels)


@dataclass
class Output:
    """What a Hugging Face model returns, in small: logits and more, as attributes."""

    logits: torch.Tensor
    hidden_states: torch.Tensor | None = None


class Wrapped(nn.Module):
    """A ResNet whose output is re-packed by ``pack(logits, features)``."""

    def __init__(self, pack, **kwargs) -> None:
        super().__init__()
        self.net, self.pack = ResNet(**kwargs), pack

    def forward(self, x):
        logits, feats = self.net(x)
        return self.pack(logits, feats)


def hf_style(num_classes: int = 100, width: int = 2, in_channels: int = 3) -> Wrapped:
    return Wrapped(
        lambda z, f: Output(z, f["pooled_feat"]),
        num_classes=num_classes,
        width=width,
        in_channels=in_channels,
    )


def dict_style(num_classes: int = 100, width: int = 2, in_channels: int = 3) -> Wrapped:
    return Wrapped(
        lambda z, f: {"logits": z, "features": f["pooled_feat"]},
        num_classes=num_classes,
        width=width,
        in_channels=in_channels,
    )


def list_style(num_classes: int = 100, width: int = 2, in_channels: int = 3) -> Wrapped:
    return Wrapped(
        lambda z, f: [z, f["pooled_feat"]], num_classes=num_classes, width=width, in_channels=in_channels
    )


# -- outputs that hold no logits ---------------------------------------------------------------------

BAD_OUTPUTS = {
    "none": lambda z, f: None,
    "features_first": lambda z, f: (f["feats"], z),
    "empty_tuple": lambda z, f: (),
    "dict_without_logits": lambda z, f: {"out": z, "features": f["pooled_feat"]},
    "logits_not_a_tensor": lambda z, f: {"logits": z.tolist()},
    "three_dims": lambda z, f: z.unsqueeze(-1),
    "integers": lambda z, f: z.argmax(1, keepdim=True).repeat(1, z.shape[1]),
    "a_number": lambda z, f: 3,
}


def bad(kind: str = "none", num_classes: int = 10, in_channels: int = 1) -> Wrapped:
    """A ResNet whose output is one of ``BAD_OUTPUTS``."""
    return Wrapped(BAD_OUTPUTS[kind], num_classes=num_classes, width=1, in_channels=in_channels)


class Noise(Dataset):
    """A data set made by a factory with arguments: `field_models:noise(n=20, classes=5, side=8)`."""

    def __init__(self, n: int = 20, classes: int = 5, side: int = 8) -> None:
        self.n, self.side = n, side
        self.classes = [f"c{i}" for i in range(classes)]
        self.targets = [i % classes for i in range(n)]

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int):
        g = torch.Generator().manual_seed(i)
        return torch.randn(1, self.side, self.side, generator=g), self.targets[i]


def noise(n: int = 20, classes: int = 5, side: int = 8) -> Noise:
    return Noise(n=n, classes=classes, side=side)
