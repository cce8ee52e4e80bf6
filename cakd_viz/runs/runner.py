"""Execute one run: train the student, log every epoch, write weights, bundle and summary, keep status true.

    run_config(cfg, root)   create a run folder for ``cfg`` and execute it in this process
    execute(run_dir)        execute a prepared folder (what a launched process and a Ray trial do)

The run waits ``queued`` for a concurrency slot (``launcher.run_slot``), then runs and ends as
docs/architecture.md §6 says (``done`` written last; ``failed`` with the traceback in log.txt;
``cancelled`` by the cancel file or SIGTERM). Under ``torchrun`` every rank calls the same function and
trains data-parallel (DistributedDataParallel on ``build``'s per-rank shard, reshuffled every epoch,
``batch_size / world_size`` samples per step); rank 0 alone writes the folder, and takes no slot.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from cakd_viz.distributed import Group, process_group
from cakd_viz.runs import store
from cakd_viz.runs.build import build
from cakd_viz.runs.config import RunConfig
from cakd_viz.runs.dynamics import EPOCHS_DIR, EpochLogits, HeldOutTerms
from cakd_viz.runs.launcher import Cancelled, cancel_reason, default_max_concurrent, record_signal, run_slot
from cakd_viz.runs.outputs import environment, write_outputs
from cakd_viz.runs.teacher_cache import LookupTeacher, teacher_logits

Progress = Callable[[int, int], None]


def run_config(
    cfg: RunConfig,
    root: str | Path | None = None,
    *,
    max_concurrent: int | None = None,
    echo: bool = False,
    progress: Progress | None = None,
) -> Path:
    """Create a run folder for ``cfg`` under ``root`` and execute it here; returns the folder."""
    cfg.validate()
    with process_group(cfg.device) as (group, dev):
        run_dir = None
        if group.is_main:
            run_dir = store.create_run(store.runs_dir(root), cfg.to_dict(), **store.process_identity())
        run_dir = Path(group.broadcast(str(run_dir)))
        _execute(_Context(run_dir, cfg, group, dev, echo=echo, progress=progress), max_concurrent)
    return run_dir


def execute(
    run_dir: str | Path,
    *,
    max_concurrent: int | None = None,
    echo: bool = False,
    progress: Progress | None = None,
    report: Callable[[dict], None] | None = None,
) -> str:
    """Execute the prepared folder ``run_dir``; returns the final state.

    ``max_concurrent=0`` skips the slots (the caller bounds concurrency, e.g. Ray). ``report(metrics)``
    gets every epoch's metrics (Ray Tune's ``tune.report``). Errors are recorded and re-raised.

    A folder is executed once: one that has ended (done, failed, cancelled, or queued/running with its
    process gone), reads ``corrupt``, is running, or belongs to another host is refused with a
    ValueError before anything is written, except that a crash found here is recorded as "failed".
    """
    run_dir = Path(run_dir)
    check_executable(run_dir)
    try:
        cfg = RunConfig.from_dict(store.read_json(run_dir / store.CONFIG)).validated()
    except ValueError as exc:
        store.update_status(run_dir, "failed", error=f"invalid config: {exc}", **store.process_identity())
        raise
    with process_group(cfg.device) as (group, dev):
        ctx = _Context(run_dir, cfg, group, dev, echo=echo, progress=progress, report=report)
        return _execute(ctx, max_concurrent)


def check_executable(run_dir: Path) -> None:
    """ValueError (one line) unless ``run_dir`` is a prepared run waiting to be executed (see ``execute``).

    A run found dead (status queued/running, its process gone) gets its crash recorded as "failed"
    first, so the record is kept rather than relabelled by a later attempt.
    """
    from cakd_viz.runs.results import read_run

    info = read_run(run_dir)
    rerun = f"to run it again, start a new run: cakd-viz tune --config {run_dir / store.CONFIG}"
    if info.state == store.CORRUPT:
        raise ValueError(f"{run_dir}: cannot execute this run folder: {info.error}")
    if info.state in store.FINAL:
        if info.status.get("state") not in store.FINAL and int(os.environ.get("RANK", "0")) == 0:
            store.update_status(run_dir, "failed", error=info.error)  # keep the crash on record
        why = f": {info.error}" if info.error else ""
        raise ValueError(f"{run_dir} has ended ({info.state}{why}); a finished run is never rerun; {rerun}")
    if info.state == store.ELSEWHERE:
        raise ValueError(f"{run_dir} is {info.error}; refusing to execute it here as well")
    if info.state == "running":
        raise ValueError(f"{run_dir} is already running (pid {info.status.get('pid')}); {rerun}")


@dataclass
class _Context:
    """One run being executed: its folder and config, this process's place in the group, and where it
    reports (log.txt, the cancel check, an optional progress bar and per-epoch report)."""

    run_dir: Path
    cfg: RunConfig
    group: Group
    dev: torch.device
    echo: bool = False
    progress: Progress | None = None
    report: Callable[[dict], None] | None = None
    _next_check: float = field(default=0.0, init=False)  # when to look for the cancel file again
    _cancelled: bool = field(default=False, init=False)

    def log(self, line: str) -> None:
        """Append ``line`` to log.txt (rank 0 only); with ``echo`` also print it on stderr."""
        if self.group.is_main:
            store.append_log(self.run_dir, line)
            if self.echo:
                print(line, file=sys.stderr, flush=True)

    def cancelled(self) -> bool:
        """Whether the run's cancel file exists (looked for at most every 0.5 s)."""
        if not self._cancelled and time.monotonic() >= self._next_check:
            self._next_check = time.monotonic() + 0.5
            self._cancelled = store.cancel_requested(self.run_dir)
        return self._cancelled

    def should_stop(self) -> bool:
        """``should_stop`` for ``train``: the cancel file, agreed by all ranks."""
        mine = self.cancelled() if self.group.is_main else False
        return self.group.sum([int(mine)])[0] > 0  # one process: its own answer

    @property
    def cache_dir(self) -> Path | None:
        """Where teacher logits are kept for reuse by later runs (None: not kept)."""
        return self.run_dir.parent / ".cache" / "teacher-logits" if self.cfg.cache_teacher else None


def _execute(ctx: _Context, max_concurrent: int | None) -> str:
    run_dir, group, log = ctx.run_dir, ctx.group, ctx.log
    limit = default_max_concurrent() if max_concurrent is None else max_concurrent
    try:
        with sigterm_cancels(), _slot(ctx, limit):
            if group.is_main and store.update_status(run_dir, "running", **own_identity()) is None:
                raise Cancelled("the run was cancelled before it started")
            log(f"running {run_dir.name} on {ctx.dev} (world size {group.world_size}): {ctx.cfg.label()}")
            _train_and_write(ctx)
        return "done"
    except BaseException as exc:
        why = cancel_reason(exc)
        if why is not None:
            if group.is_main:
                store.update_status(run_dir, "cancelled", error=None)
                log(f"cancelled: {why}")
            return "cancelled"
        if group.is_main:
            message = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            log(traceback.format_exc().rstrip())  # before the status, so a reader of "failed" finds it
            log(f"failed: {message}")
            store.update_status(run_dir, "failed", error=message)
        raise


def own_identity() -> dict:
    ident = store.process_identity()
    if os.getpgid(0) == os.getpid():  # a group of its own: cancel may kill the whole group
        ident["pgid"] = os.getpid()
    return ident


@contextlib.contextmanager
def _slot(ctx: _Context, limit: int):
    run_dir, group = ctx.run_dir, ctx.group
    if not group.is_main or group.distributed or limit <= 0:
        yield
        return
    if store.update_status(run_dir, "queued", waiting_since=time.time(), **own_identity()) is None:
        raise Cancelled("the run was cancelled before it started")
    ctx.log(f"waiting for one of {limit} run slot(s)")
    with run_slot(run_dir.parent, limit, run_dir, should_stop=ctx.cancelled):
        yield


def _train_and_write(ctx: _Context) -> None:
    from cakd_viz.train import TrainConfig, train

    run_dir, cfg, group, dev, log = ctx.run_dir, ctx.cfg, ctx.group, ctx.dev, ctx.log
    torch.set_num_threads(cfg.threads)
    t0 = time.time()
    parts = build(cfg, rank=group.rank, world_size=group.world_size)
    for note in parts.notes:
        log(note)
    per_rank = max(1, cfg.batch_size // group.world_size)
    model = parts.student.to(dev)
    if group.distributed:
        from torch.nn.parallel import DistributedDataParallel

        model = DistributedDataParallel(model, device_ids=[dev.index] if dev.type == "cuda" else None)
    same = ("epochs", "lr", "optimizer", "weight_decay", "seed", "clip_grad_norm")  # as the run config says
    tcfg = TrainConfig(**{k: getattr(cfg, k) for k in same}, batch_size=per_rank, device=str(dev))
    teacher = parts.teacher
    if parts.criterion is not None:  # the teacher's logits, looked up instead of recomputed every step
        logits, digests = teacher_logits(teacher, parts.train_set, ctx.cache_dir, device=dev)
        teacher = LookupTeacher(teacher, logits, digests)
    split, eval_set, eval_labels = parts.eval_split()
    log(f"every epoch is evaluated on the {split} split ({len(eval_labels)} samples)")
    val_metrics = None
    if group.is_main:  # the held-out decomposition of every epoch (cakd_viz.runs.dynamics)
        eval_teacher, _ = teacher_logits(parts.teacher, eval_set, ctx.cache_dir, device=dev)
        held = {k: getattr(cfg.loss, k) for k in ("grouping", "temperature", "standardize")}
        device = str(dev) if dev.type == "cuda" else "cpu"
        val_metrics = HeldOutTerms(
            eval_teacher, eval_labels, **held, correlation=parts.correlation, device=device
        )
        val_metrics.keeper = EpochLogits(run_dir / EPOCHS_DIR, val_metrics, split=split, rows=parts.val_rows)
    steps = math.ceil(len(parts.train_set) / per_rank)
    if group.is_main:
        store.write_json(run_dir / store.ENV, environment(cfg, dev, group, per_rank, parts))
    on_epoch, on_step = _callbacks(ctx, steps)
    history = train(
        model,
        parts.train_set,
        eval_set,
        cfg=tcfg,
        teacher=teacher,
        criterion=parts.criterion,
        ce_weight=cfg.loss.ce_weight,
        on_epoch=on_epoch,
        on_step=on_step,
        should_stop=ctx.should_stop,
        val_metrics=val_metrics,
    )
    if not history or history[-1].get("stopped"):
        raise Cancelled("stopped on request")
    if isinstance(teacher, LookupTeacher) and teacher.misses:
        log(f"the teacher computed {teacher.misses} input rows it had not seen before (random augmentation?)")
    err = None
    if group.is_main:
        try:
            summary = write_outputs(run_dir, cfg, parts, history, dev, time.time() - t0, ctx.cache_dir)
            if store.update_status(run_dir, "done") is None:
                raise Cancelled("cancelled while the outputs were written")
            test = f", test {summary['test_acc']:.4f}" if summary.get("test_acc") is not None else ""
            log(
                f"done: {summary['eval_split']} accuracy best {summary['best_val_acc']:.4f}, "
                f"last {summary['last_val_acc']:.4f}{test}"
            )
        except (Exception, Cancelled) as exc:
            err = exc
    group.agree(err, "writing the outputs")  # the other ranks return only once the run is done


def _callbacks(ctx: _Context, steps: int):
    """(on_epoch, on_step) for ``train``: metrics.jsonl, status, log.txt and reports, on rank 0 only."""
    if not ctx.group.is_main:
        return None, None
    run_dir, epochs = ctx.run_dir, ctx.cfg.epochs
    every = max(1, steps // 10)  # about ten step records per epoch

    def on_step(m: dict) -> None:
        if ctx.progress is not None:
            ctx.progress(m["step"], steps * epochs)
        if m["step"] % every == 0:
            store.append_metrics(run_dir, {"kind": "step", **m, "time": time.time()})

    def on_epoch(m: dict) -> None:
        store.append_metrics(run_dir, {"kind": "epoch", **m, "time": time.time()})
        store.update_status(run_dir, None, epoch=m["epoch"], epochs=epochs)
        shown = ", ".join(f"{k} {v:.4g}" for k, v in m.items() if isinstance(v, float))
        ctx.log(f"epoch {m['epoch']}/{epochs}: {shown}")
        if ctx.report is not None:
            ctx.report({k: v for k, v in m.items() if isinstance(v, int | float)})

    return on_epoch, on_step


@contextlib.contextmanager
def sigterm_cancels():
    """Turn SIGTERM into Cancelled (main thread only), so the status says what happened."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        name = signal.Signals(signum).name
        record_signal(name)
        raise Cancelled(f"stopped by signal {name}")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
