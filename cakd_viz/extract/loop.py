"""The inner loop of extraction: every model on each batch, rows streamed into a BundleWriter.

One pass over this rank's rows; per batch, every model runs on the same inputs (teacher first), the
logits are taken from each output (``cakd_viz.models.outputs.logits_of``: a tensor, a tuple with the
logits first, a mapping with "logits", an object with ``.logits``) and checked to be ``(batch, C)``,
and the batch's rows are written to the writer's memory-mapped arrays. On CUDA the copy of batch k's logits to the host overlaps the computation of
batch k+1 (a non-blocking copy into pinned memory, waited on through an event), so the GPU is not
idle while the CPU writes rows.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from cakd_viz.bundle.writer import BundleWriter
from cakd_viz.models.outputs import logits_of
from cakd_viz.validate import check_labels

__all__ = ["LoadedModel", "RowDataset", "forward_logits", "stream_rows"]


@dataclass
class LoadedModel:
    """One model taking part: ``name`` is "teacher" or the student's name."""

    name: str
    spec: str  # what the user gave (for messages and meta)
    module: nn.Module
    info: dict = field(default_factory=dict)

    @property
    def role(self) -> str:
        """'teacher' or "student 'NAME'", as messages name it."""
        return "teacher" if self.name == "teacher" else f"student {self.name!r}"


class RowDataset(Dataset):
    """Rows ``rows`` of ``base`` as ``(x, label)``, or ``(x, label, shown)`` when ``shown`` is given.

    ``shown(i)`` returns what the bundle stores as input i (e.g. the uint8 image); running it here
    lets data-loader workers do that work too.
    """

    def __init__(self, base: Dataset, rows: range, shown: Callable[[int], np.ndarray] | None = None) -> None:
        self.base, self.rows, self.shown = base, rows, shown

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, k: int) -> tuple:
        i = self.rows[k]
        x, y = self.base[i]
        if self.shown is None:
            return x, y
        return x, y, torch.from_numpy(np.array(self.shown(i)))  # a writable copy


def forward_logits(
    model: LoadedModel,
    x: torch.Tensor,
    *,
    num_classes: int | None = None,
    autocast: torch.dtype | None = None,
) -> torch.Tensor:
    """``model`` on a batch x (B, ...) -> logits (B, C), taken from its output by ``logits_of`` (a tensor,
    a tuple or list with the logits first, a mapping with "logits", an object with ``.logits``);
    ValueError when the output holds no (B, C) float logits.

    Out-of-memory becomes a ValueError suggesting a smaller batch; any other failure of the user's
    model becomes a ValueError naming the model and the input shape.
    """
    batch = x.shape[0]
    ctx = torch.autocast(x.device.type, dtype=autocast) if autocast is not None else nullcontext()
    try:
        with torch.inference_mode(), ctx:
            out = model.module(x)
    except Exception as exc:  # any failure of the user's model; out of memory is torch.OutOfMemoryError,
        # or (MPS, older CUDA builds) a RuntimeError that only says so
        if isinstance(exc, torch.cuda.OutOfMemoryError) or "out of memory" in str(exc).lower():
            raise ValueError(
                f"out of memory running the {model.role} on a batch of {batch} on {x.device}; "
                f"try a smaller --batch-size (e.g. {max(1, batch // 2)})"
            ) from exc
        raise ValueError(
            f"{model.role} ({model.spec}) failed on inputs of shape {tuple(x.shape)}: {exc}"
        ) from exc
    logits = logits_of(out, who=f"{model.role} ({model.spec})", batch=batch)
    if num_classes is not None and logits.shape[1] != num_classes:
        raise ValueError(
            f"{model.role} ({model.spec}) outputs {logits.shape[1]} classes, the teacher {num_classes}"
        )
    return logits


def stream_rows(
    models: Sequence[LoadedModel],
    loader: DataLoader,
    writer: BundleWriter,
    *,
    first_row: int,
    device: torch.device,
    num_classes: int,
    data_name: str,
    autocast: torch.dtype | None = None,
    progress: Callable[[int], None] | None = None,
) -> list[int]:
    """Run every model on each batch of ``loader`` and write rows ``first_row, first_row + 1, ...``.

    ``progress(rows_done)`` is called after each batch is written. Returns this rank's top-1 hits per
    model (teacher first).
    """
    correct = [0] * len(models)
    pending: tuple | None = None  # the batch whose logits are on their way to the host
    start = first_row
    for batch in _batches(loader, data_name, first_row):
        x, y = batch[0], batch[1]
        shown = batch[2] if len(batch) > 2 else None
        y_np = check_labels(y, f"data {data_name!r}", num_classes=num_classes, row_offset=start)  # int64
        xb = x.to(device, non_blocking=True)
        outs = [forward_logits(m, xb, num_classes=num_classes, autocast=autocast) for m in models]
        stacked = torch.stack([o.float() for o in outs])  # (M, B, C), teacher first
        event = None
        if device.type == "cuda":
            host = stacked.to("cpu", non_blocking=True)  # pinned; ready once `event` has passed
            event = torch.cuda.Event()
            event.record()
        else:
            host = stacked.cpu()
        if pending is not None:
            _write(pending, models, writer, correct, first_row, progress)
        pending = (start, host, event, y_np, shown)
        start += len(y_np)
    if pending is not None:
        _write(pending, models, writer, correct, first_row, progress)
    return correct


def _batches(loader: DataLoader, data_name: str, first_row: int) -> Iterator:
    """The loader's batches; a failure of the user's data set becomes a ValueError naming it."""
    it, start, end = iter(loader), first_row, first_row + len(loader.dataset)
    while True:
        try:
            batch = next(it)
        except StopIteration:
            return
        except Exception as exc:  # the data set's own error (unreadable file, a bug in a factory)
            stop = min(start + (loader.batch_size or 1), end) - 1  # the last batch may be short
            raise ValueError(
                f"data {data_name!r}: reading rows {start}..{stop} failed: {type(exc).__name__}: {exc}"
            ) from exc
        start += len(batch[1])
        yield batch


def _write(
    pending: tuple,
    models: Sequence[LoadedModel],
    writer: BundleWriter,
    correct: list[int],
    first_row: int,
    progress: Callable[[int], None] | None,
) -> None:
    start, host, event, labels, shown = pending
    if event is not None:
        event.synchronize()
    logits = host.numpy()  # (M, B, C) float32
    writer.write(  # the memmaps store inputs in their own dtype (the one input 0 has)
        start,
        teacher=logits[0],
        students={m.name: logits[k] for k, m in enumerate(models) if k > 0},
        labels=labels,
        inputs=None if shown is None else shown.numpy(),
    )
    hits = logits.argmax(axis=2) == labels[None, :]  # (M, B)
    for k in range(len(models)):
        correct[k] += int(hits[k].sum())
    if progress is not None:
        progress(start + len(labels) - first_row)
