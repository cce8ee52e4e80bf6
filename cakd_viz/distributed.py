"""Sharding extraction across processes started by ``torchrun`` (one or many nodes).

``torchrun --nproc-per-node=K -m cakd_viz extract ...`` starts K copies of the same command with
``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK`` set. :func:`process_group` reads them, joins the process
group (NCCL when the ranks compute on CUDA, each on ``cuda:LOCAL_RANK``; gloo on CPU) and yields a
:class:`Group`. Without those variables it yields a one-process group whose collectives are no-ops,
so the extraction code has a single path.

The few collectives are small and happen only between phases (never inside the batch loop):
:meth:`Group.agree` makes every rank fail when one rank failed (so rank 0 can remove the partial
bundle and no rank waits forever in a later collective), :meth:`Group.sum` adds counters (accuracy),
:meth:`Group.broadcast` shares rank 0's temp-directory id.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import TypeVar

import torch
import torch.distributed as dist

from cakd_viz.device import resolve_device

__all__ = ["Group", "RankFailed", "env_world_size", "process_group", "shard_range"]

T = TypeVar("T")
# Errors that mean "bad input" on the rank that raised them; the other ranks report them the same way.
_BAD_INPUT = (ValueError, OSError)


class RankFailed(RuntimeError):
    """Another rank failed; this rank stopped too. The message names the rank and its error."""


class RankFailedBadInput(RankFailed, ValueError):
    """Another rank failed on bad input (a ValueError or OSError there)."""


def shard_range(num_samples: int, rank: int, world_size: int) -> range:
    """The contiguous rows of a ``num_samples`` data set that ``rank`` of ``world_size`` computes.

    Shards differ in size by at most one row and together cover ``0..num_samples`` exactly once;
    a rank may get no rows when there are more ranks than samples.
    """
    return range(num_samples * rank // world_size, num_samples * (rank + 1) // world_size)


def env_world_size() -> int:
    """``WORLD_SIZE`` from the environment (1 when unset): how many ranks torchrun started."""
    try:
        return max(1, int(os.environ.get("WORLD_SIZE", "1")))
    except ValueError:
        raise ValueError(f"WORLD_SIZE={os.environ['WORLD_SIZE']!r} is not a whole number") from None


@dataclass(frozen=True)
class Group:
    """This process's place among the ranks; collectives are no-ops when ``world_size == 1``."""

    rank: int = 0
    world_size: int = 1
    backend: str | None = None  # "nccl" | "gloo" | None (one process)
    tensor_device: torch.device = torch.device("cpu")  # where collective tensors live (CUDA for NCCL)

    @property
    def is_main(self) -> bool:
        """Rank 0: creates and commits the bundle, shows progress."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def shard(self, num_samples: int) -> range:
        """This rank's contiguous rows (see :func:`shard_range`)."""
        return shard_range(num_samples, self.rank, self.world_size)

    def agree(self, error: BaseException | None, phase: str) -> None:
        """Raise on every rank if any rank failed in ``phase``; return normally when all succeeded.

        The failing rank re-raises its own ``error``; the others raise :class:`RankFailed` naming it
        (a ValueError too when the error was bad input, so the command line exits 2 on every rank).
        """
        if not self.distributed:
            if error is not None:
                raise error
            return
        mine = None if error is None else (isinstance(error, _BAD_INPUT), f"{type(error).__name__}: {error}")
        everyone: list = [None] * self.world_size
        dist.all_gather_object(everyone, mine)
        if error is not None:
            raise error
        for rank, report in enumerate(everyone):
            if report is not None:
                bad_input, message = report
                cls = RankFailedBadInput if bad_input else RankFailed
                raise cls(f"rank {rank} of {self.world_size} failed during {phase}: {message}")

    def step(self, phase: str, fn: Callable[..., T], *args: object) -> T:
        """``fn(*args)`` on this rank, then :meth:`agree` on its outcome: every rank returns or raises."""
        result, error = None, None
        try:
            result = fn(*args)
        except Exception as exc:  # reported to the other ranks, then re-raised here by agree()
            error = exc
        self.agree(error, phase)
        return result

    def sum(self, values: Sequence[int]) -> list[int]:
        """Element-wise sum of integer counters over all ranks."""
        if not self.distributed:
            return [int(v) for v in values]
        t = torch.tensor([int(v) for v in values], dtype=torch.int64, device=self.tensor_device)
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return [int(v) for v in t.cpu().tolist()]

    def broadcast(self, obj: object) -> object:
        """Rank 0's ``obj`` on every rank (any picklable value)."""
        if not self.distributed:
            return obj
        box = [obj if self.is_main else None]
        dist.broadcast_object_list(box, src=0)
        return box[0]


def _rank_device(device: str | torch.device | None, local_rank: int) -> torch.device:
    """The device a rank computes on: ``cuda:LOCAL_RANK`` when the requested device is CUDA."""
    dev = resolve_device(device)  # unknown or unavailable devices fail here, on every rank alike
    if dev.type != "cuda":
        return dev
    visible = torch.cuda.device_count()
    if local_rank >= visible:
        raise ValueError(
            f"rank with LOCAL_RANK={local_rank} has no GPU: only {visible} CUDA GPU(s) are visible on this "
            f"node; start at most {visible} processes per node (torchrun --nproc-per-node={visible})"
        )
    return torch.device("cuda", local_rank)


@contextmanager
def process_group(device: str | torch.device | None = "auto") -> Iterator[tuple[Group, torch.device]]:
    """Yield ``(group, device)`` for this process; joins torchrun's process group when there is one.

    Under torchrun (``WORLD_SIZE > 1``) each CUDA rank gets ``cuda:LOCAL_RANK`` and the NCCL backend,
    other devices get gloo. An already initialised default group (the caller's own) is reused and
    left alone; a group created here is destroyed on exit.
    """
    world_size = env_world_size()
    if world_size == 1:
        yield Group(), resolve_device(device)
        return
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    dev = _rank_device(device, local_rank)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    created = not dist.is_initialized()
    if created:
        backend = "nccl" if dev.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, timeout=timedelta(minutes=30))
    backend = dist.get_backend()
    group = Group(
        rank=dist.get_rank(),
        world_size=dist.get_world_size(),
        backend=str(backend),
        tensor_device=dev if backend == "nccl" else torch.device("cpu"),
    )
    if group.rank != rank:
        raise RuntimeError(f"process group rank {group.rank} differs from RANK={rank}")
    try:
        yield group, dev
        if created:
            dist.barrier()  # every rank done before any tears the group down (gloo aborts a rank whose
            # peer closed its connections mid-way: "terminate called without an active exception")
    finally:
        if created:
            dist.destroy_process_group()
