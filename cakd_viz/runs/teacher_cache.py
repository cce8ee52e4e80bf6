"""The frozen teacher's logits, computed once per (teacher, data) and shared by every run that needs them.

A run's teacher is fixed and in eval mode, so its logits are a function of the input alone. Each run
would otherwise spend one full teacher pass over the training split (the biggest cost of a short run
on a CPU); here the logits are looked up instead:

- ``teacher_logits(teacher, dataset, cache_dir)`` computes (N, C) logits in dataset order, or loads
  them from ``cache_dir/KEY.npy``, where KEY hashes the teacher's architecture and weights and the
  exact bytes of every input, so a cached file can never belong to other weights or other data;
- ``LookupTeacher`` stands in for the teacher in the training loop: it finds each input row by the
  hash of its bytes and falls back to the real teacher for a row it has never seen (e.g. under
  random augmentation), so it always returns what the teacher would.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from cakd_viz import atomic
from cakd_viz.models.outputs import logits_of

_BATCH = 1024


def _row_digests(x: torch.Tensor) -> list[bytes]:
    """One 16-byte digest per row of a batch (B, ...), from the row's float32 bytes."""
    rows = x.detach().to("cpu", torch.float32).contiguous().numpy().reshape(len(x), -1)
    return [hashlib.blake2b(r.tobytes(), digest_size=16).digest() for r in rows]


def _model_digest(model: nn.Module) -> bytes:
    h = hashlib.blake2b(repr(model).encode(), digest_size=16)
    for name, t in model.state_dict().items():
        h.update(name.encode())
        h.update(t.detach().to("cpu").contiguous().numpy().tobytes())
    return h.digest()


def teacher_logits(
    teacher: nn.Module, dataset: Dataset, cache_dir: Path | None, *, device: str | torch.device = "cpu"
) -> tuple[np.ndarray, list[bytes]]:
    """(logits (N, C) float32 in dataset order, input digests (N,)); read from / written to ``cache_dir``."""
    batches = DataLoader(dataset, batch_size=_BATCH, shuffle=False)
    digests = [d for batch in batches for d in _row_digests(batch[0])]
    key = hashlib.blake2b(_model_digest(teacher) + b"".join(digests), digest_size=20).hexdigest()
    path = cache_dir / f"{key}.npy" if cache_dir is not None else None
    if path is not None and path.is_file():
        try:
            logits = np.load(path, allow_pickle=False)
            if logits.shape[0] == len(digests):
                return logits, digests
        except (OSError, ValueError):
            pass  # a damaged cache file is recomputed and replaced
    from cakd_viz.train import predict_logits

    logits = predict_logits(teacher, dataset, device=device, batch_size=256, who="teacher")
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic.save_npy(path, logits)  # a full disk leaves no temporary file for later runs to trip on
    return logits, digests


class LookupTeacher(nn.Module):
    """The teacher, answered from a table of its logits by input content; unseen rows go to the teacher."""

    def __init__(self, teacher: nn.Module, logits: np.ndarray, digests: list[bytes]) -> None:
        super().__init__()
        self.teacher = teacher.eval()
        self.register_buffer("table", torch.from_numpy(np.ascontiguousarray(logits, dtype=np.float32)))
        self.index = {d: i for i, d in enumerate(digests)}
        self.misses = 0  # rows the real teacher had to compute

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, ...) -> the teacher's logits (B, C)."""
        rows = [self.index.get(d, -1) for d in _row_digests(x)]
        found = torch.tensor(rows, device=self.table.device)
        out = self.table[found.clamp_min(0)].to(x.device)
        missing = (found < 0).nonzero().squeeze(1)
        if missing.numel():
            self.misses += int(missing.numel())
            with torch.no_grad():
                rows = x[missing.to(x.device)]
                out[missing.to(x.device)] = logits_of(
                    self.teacher(rows), who="teacher", batch=len(rows)
                ).float()
        return out
