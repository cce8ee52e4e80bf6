"""What `decompose` accepts as logits, checked once at the boundary, and how its paths read rows.

    zs = Logits.of(student_logits, "student_logits")     # TypeError / ValueError naming the argument
    zs.numpy_rows(0, 1000)   # for the C kernel: a view of the caller's rows where possible
    zs.tensor_rows(0, 1000)  # for the tensor-op path: a torch tensor (on the tensor's own device)

Accepted: numpy arrays (memory-mapped too, any byte order, any strides), torch tensors (any device,
detached; bfloat16 too), and array-likes that ``np.asarray`` turns into a float array (nested lists of
numbers). Refused, with the argument's name: integer and boolean logits (ValueError, worded as
``load_bundle`` words it), and anything that is not an array of numbers (TypeError).
"""

from __future__ import annotations

import sys
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np


def _is_tensor(x: Any) -> bool:
    torch = sys.modules.get("torch")  # a tensor cannot exist unless torch was imported
    return torch is not None and isinstance(x, torch.Tensor)


@dataclass(frozen=True)
class Logits:
    """An (N, C) float array or tensor as given (never copied whole), with the name it was given as."""

    data: Any  # np.ndarray (np.memmap included) or torch.Tensor
    name: str

    @classmethod
    def of(cls, x: Any, name: str) -> Logits:
        """Check that `x` holds floating-point logits and return it wrapped (shape checked by the caller)."""
        if _is_tensor(x):
            if not x.dtype.is_floating_point:
                raise ValueError(f"{name} holds {str(x.dtype).removeprefix('torch.')} values; {_FLOATS}")
            return cls(x.detach(), name)
        if not isinstance(x, np.ndarray):
            x = _as_array(x, name)
        kind = x.dtype.kind
        if kind == "f":
            return cls(x, name)
        if kind in "iub":
            raise ValueError(f"{name} holds {x.dtype.name} values; {_FLOATS}")
        if kind == "c":
            raise ValueError(f"{name} holds complex values ({x.dtype.name}); {_FLOATS}")
        raise TypeError(f"{name} must be an (N, C) array of numbers, got an array of dtype {x.dtype}")

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(int(v) for v in self.data.shape)

    @property
    def is_tensor(self) -> bool:
        return _is_tensor(self.data)

    @property
    def is_float64(self) -> bool:
        """Logits wider than float32 (float64, longdouble): only the float64 tensor path keeps them exact."""
        if self.is_tensor:
            import torch

            return self.data.dtype == torch.float64
        return self.data.dtype.itemsize > 4

    def numpy_rows(self, start: int, stop: int) -> np.ndarray:
        """Rows [start, stop) as a numpy array: a view of the caller's data where it is on the CPU."""
        if not self.is_tensor:
            return self.data[start:stop]
        import torch

        part = self.data[start:stop].cpu()  # (the tensor itself on the CPU)
        if part.dtype == torch.bfloat16:  # numpy has no bfloat16; float32 holds it exactly
            part = part.float()
        return part.numpy()

    def tensor_rows(self, start: int, stop: int):
        """Rows [start, stop) as a torch tensor: the tensor's own rows (its device), or numpy rows on the CPU
        (memory-mapped rows are read here; byte-swapped ones converted)."""
        if self.is_tensor:
            return self.data[start:stop]
        return _from_numpy(self.data[start:stop])

    def take(self, index: np.ndarray):
        """The rows at `index` (int64, sorted) as a CPU torch tensor (a few rows, for recomputation)."""
        if self.is_tensor:
            import torch

            return self.data[torch.as_tensor(index, device=self.data.device)].cpu()
        return _from_numpy(self.data[index])

    def check_row(self, i: int) -> None:
        """A ValueError naming row i's first NaN or infinity, if it holds one (errors after a pass)."""
        if self.is_tensor:
            values = self.data[i].detach().cpu().double().numpy()
        else:
            values = np.asarray(self.data[i], dtype=np.float64)
        if not np.isfinite(values).all():
            col = int(np.flatnonzero(~np.isfinite(values))[0])
            raise ValueError(f"{self.name} has a non-finite value ({values[col]}) at row {i}, class {col}")


_FLOATS = "logits must be float16, float32 or float64"  # as load_bundle words it


def _as_array(x: Any, name: str) -> np.ndarray:
    """An array-like (nested lists, objects with __array__) as a numpy array, or TypeError naming it."""
    if x is None or isinstance(x, (str, bytes, dict, set)):
        raise TypeError(
            f"{name} must be an (N, C) array of numbers (numpy array, torch tensor or nested lists), "
            f"got {type(x).__name__}"
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            arr = np.asarray(x)
    except (TypeError, ValueError) as exc:  # ragged lists, objects numpy cannot read
        raise TypeError(f"{name} cannot be read as an (N, C) array of numbers: {exc}") from None
    if arr.dtype.kind == "O":
        raise TypeError(f"{name} must be an (N, C) array of numbers, got {type(x).__name__} of non-numbers")
    return arr


def _from_numpy(part: np.ndarray):
    """Numpy rows as a CPU tensor of the same float dtype (native byte order; longdouble as float64)."""
    import torch

    if not part.dtype.isnative:
        part = part.astype(part.dtype.newbyteorder("="))
    if part.dtype.itemsize > 8:  # longdouble: torch has no such dtype
        part = part.astype(np.float64)
    with warnings.catch_warnings():
        # Read-only memory maps: the tensor is only read (the paths never write to their inputs).
        warnings.simplefilter("ignore", UserWarning)
        if any(stride < 0 for stride in part.strides):  # one row of rows read backwards still has one:
            part = part.copy()  # numpy calls it contiguous, torch refuses it
        return torch.from_numpy(np.ascontiguousarray(part))
