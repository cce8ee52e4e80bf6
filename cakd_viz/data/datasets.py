"""Torch datasets over image arrays and image folders, and the input normalisation they apply.

Convention for every image source: pixels are first brought to [0, 1] (uint8 / 255, uint16 / 65535,
floats as they are), then normalised per channel as ``(x - mean) / std``. ``"none"`` skips both steps
(raw values as float32). Every item is ``(float32 tensor (C, H, W), int label)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
# grayscale modes wider than 8 bits -> the factor to 0..255: 16-bit integers (Pillow opens a 16-bit PNG
# as "I;16", older versions as "I") / 65535, floats ("F") taken as [0, 1]
_WIDE_GRAY = {"I;16": 255 / 65535, "I;16B": 255 / 65535, "I;16L": 255 / 65535, "I": 255 / 65535, "F": 255.0}
NORMALIZE_FORMS = "'none', 'unit', 'imagenet', 'MEAN/STD' (e.g. '0.5/0.25' or '0.5,0.4,0.3/0.2,0.2,0.2')"


@dataclass(frozen=True)
class Normalization:
    """``(x01 - mean) / std`` per channel, where x01 is the input scaled to [0, 1]; raw=True: neither."""

    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)
    raw: bool = False  # True: use the stored values as they are (no /255, no mean/std)

    def to_dict(self) -> dict:
        """JSON form, as stored in checkpoints: {"mean": [...], "std": [...]} or {"raw": true}."""
        return {"raw": True} if self.raw else {"mean": list(self.mean), "std": list(self.std)}

    def apply(self, x: torch.Tensor, dtype: np.dtype | torch.dtype) -> torch.Tensor:
        """x (..., C, H, W) float32 holding raw values of dtype ``dtype`` -> normalised float32."""
        if self.raw:
            return x
        if dtype in (np.uint8, torch.uint8):
            x = x / 255.0
        elif dtype in (np.uint16, torch.uint16):
            x = x / 65535.0
        c = x.shape[-3] if x.dim() >= 3 else 1
        mean, std = self._per_channel(c)
        return (x - mean.view(-1, 1, 1)) / std.view(-1, 1, 1) if x.dim() >= 3 else (x - mean) / std

    def _per_channel(self, c: int) -> tuple[torch.Tensor, torch.Tensor]:
        mean, std = (list(v) * c if len(v) == 1 else list(v) for v in (self.mean, self.std))
        if len(mean) != c or len(std) != c:
            raise ValueError(f"normalisation has {len(self.mean)} channel(s), the inputs have {c}")
        return torch.tensor(mean, dtype=torch.float32), torch.tensor(std, dtype=torch.float32)


def parse_normalize(value: object, default: Normalization) -> Normalization:
    """None -> default; 'none' | 'unit' | 'imagenet' | 'MEAN/STD' | (mean, std) | checkpoint dict."""
    if value is None:
        return default
    if isinstance(value, Normalization):
        return value
    if isinstance(value, dict):
        if value.get("raw"):
            return Normalization(raw=True)
        if "mean" in value and "std" in value:
            return _checked(value["mean"], value["std"])
    if isinstance(value, (tuple, list)) and len(value) == 2:
        return _checked(value[0], value[1])
    if isinstance(value, str):
        name = value.strip().lower()
        if name == "none":
            return Normalization(raw=True)
        if name == "unit":
            return Normalization()
        if name == "imagenet":
            return Normalization(IMAGENET_MEAN, IMAGENET_STD)
        if name.count("/") == 1:
            mean, std = name.split("/")
            try:
                return _checked([float(v) for v in mean.split(",")], [float(v) for v in std.split(",")])
            except ValueError:
                pass
    raise ValueError(f"bad normalisation {value!r}; use one of {NORMALIZE_FORMS}")


def _checked(mean: object, std: object) -> Normalization:
    try:  # a checkpoint's JSON may hold anything here: null, nested lists, objects
        mean_t = tuple(float(v) for v in (mean if isinstance(mean, Sequence) else [mean]))
        std_t = tuple(float(v) for v in (std if isinstance(std, Sequence) else [std]))
    except (TypeError, ValueError):
        raise ValueError(
            f"bad normalisation mean={mean!r} std={std!r}: each must be a number or a list of numbers"
        ) from None
    if not mean_t or not std_t or any(s <= 0 for s in std_t):
        raise ValueError(f"bad normalisation mean={mean!r} std={std!r}: std must be > 0")
    if not all(math.isfinite(v) for v in mean_t + std_t):  # inf std makes every input 0, NaN makes NaN
        raise ValueError(f"bad normalisation mean={mean!r} std={std!r}: mean and std must be finite")
    return Normalization(mean_t, std_t)


def resize_images(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear (antialiased) resize of float images (N, C, H, W) -> (N, C, *size)."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return torch.nn.functional.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)


class ArrayDataset(Dataset):
    """Inputs held in memory: images (N, H, W) or (N, C, H, W), or vectors (N, D); labels (N,).

    The normalised float32 tensor is computed once.
    """

    def __init__(
        self,
        inputs: np.ndarray,
        labels: np.ndarray,
        *,
        normalization: Normalization = Normalization(),
        image_size: tuple[int, int] | None = None,
    ) -> None:
        x = torch.from_numpy(np.array(inputs, dtype=np.float32))  # a copy: inputs may be read-only
        if x.dim() == 3:
            x = x.unsqueeze(1)  # (N, 1, H, W)
        elif x.dim() == 4 and x.shape[-1] in (1, 3, 4) and x.shape[1] not in (1, 3, 4):
            x = x.permute(0, 3, 1, 2)  # channel-last (N, H, W, C) -> (N, C, H, W)
        if image_size is not None and x.dim() == 4:
            x = resize_images(x, image_size)
        self.x = normalization.apply(x, inputs.dtype).contiguous()
        self.y = torch.from_numpy(np.array(labels, dtype=np.int64))
        self.labels = self.y.numpy()

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.x[i], int(self.y[i])


@dataclass(eq=False)
class FolderDataset(Dataset):
    """A folder with one sub-folder per class (sorted names), images read lazily with Pillow."""

    files: list[Path]
    labels: np.ndarray  # (N,) int64
    mode: str  # what Pillow converts each image to: "L" or "RGB"
    size: tuple[int, int]  # (H, W) of every image
    normalization: Normalization

    def __len__(self) -> int:
        return len(self.files)

    def image(self, i: int) -> np.ndarray:
        """Image i as uint8 (H, W) or (H, W, 3), resized to the dataset's size (16-bit and float
        grayscale images scaled to 0..255, as the module's convention reads them)."""
        from PIL import Image

        with Image.open(self.files[i]) as im:
            if im.mode in _WIDE_GRAY:  # convert() would clip at 255: scale to 8 bits by the convention
                wide = np.asarray(im, dtype=np.float64) * _WIDE_GRAY[im.mode]
                im = Image.fromarray(np.clip(np.floor(wide + 0.5), 0, 255).astype(np.uint8))
            im = im.convert(self.mode)
            if im.size != (self.size[1], self.size[0]):
                im = im.resize((self.size[1], self.size[0]), Image.BILINEAR)
            return np.array(im, dtype=np.uint8)  # a writable copy

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        a = self.image(i)
        x = torch.from_numpy(a).to(torch.float32)
        x = x.permute(2, 0, 1) if x.dim() == 3 else x.unsqueeze(0)  # (C, H, W)
        return self.normalization.apply(x, np.uint8), int(self.labels[i])
