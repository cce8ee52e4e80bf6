"""Executing sweeps: the local engine, dispatch to the Ray engine, launching and cancelling a sweep.

The local engine keeps up to ``workers`` trial processes alive on this machine (default: the cores
divided by each trial's threads), each started like a single run (``launcher.spawn``: its own process
group, output to its log.txt), and starts the next when one ends. The Ray engine (``ray_engine``)
executes the same prepared trial folders as Ray Tune trials. Either way the folders are the only
record: the app reads them and never needs Ray.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

from cakd_viz.runs import launcher, store
from cakd_viz.runs.config import RunConfig
from cakd_viz.runs.launcher import Cancelled
from cakd_viz.runs.results import read_run
from cakd_viz.runs.sweep import SweepConfig, create_sweep, sweep_trials

Log = Callable[[str], None]


def ray_available() -> bool:
    """Whether the Ray engine can run here (Ray Tune is installed); nothing is imported."""
    import importlib.util

    return importlib.util.find_spec("ray") is not None


def default_workers(threads_per_trial: int = 1) -> int:
    """Trials at once on this machine: its cores divided by each trial's threads (at least 1)."""
    return max(1, (os.cpu_count() or 1) // max(1, threads_per_trial))


def run_sweep(
    sweep: SweepConfig, root: str | Path | None = None, *, engine: str | None = None, log: Log = print
) -> Path:
    """Create the sweep's folders and execute it in this process; returns the sweep folder."""
    sweep_dir, _ = create_sweep(sweep, root, **store.process_identity())
    execute_sweep(sweep_dir, engine=engine, log=log)
    return sweep_dir


def launch_sweep(sweep: SweepConfig, root: str | Path | None = None) -> Path:
    """Validate and create the sweep, then execute it in a background process (its own group); returns its folder."""
    sweep_dir, _ = create_sweep(sweep, root)
    launcher.spawn_cli(sweep_dir, ["sweep", "--sweep-dir", str(sweep_dir)])
    return sweep_dir


def execute_sweep(sweep_dir: str | Path, *, engine: str | None = None, log: Log = print) -> str:
    """Execute a prepared sweep folder with its engine (or ``engine``); returns the sweep's final state."""
    from cakd_viz.runs.runner import own_identity, sigterm_cancels

    sweep_dir = Path(sweep_dir)
    sweep = SweepConfig.from_dict(store.read_json(sweep_dir / store.SWEEP)["config"])
    engine = engine or sweep.engine
    if store.update_status(sweep_dir, "running", engine=engine, **own_identity()) is None:
        return "cancelled"
    trials = sweep_trials(sweep_dir)
    for d in trials:  # this process now owns the queued trials: they read as failed if it dies
        store.update_status(d, "queued", owner=f"sweep {sweep_dir.name}", **store.process_identity())
    try:
        with sigterm_cancels():
            if engine == "ray":
                from cakd_viz.runs import ray_engine

                ray_engine.run_trials(sweep, sweep_dir, trials, log=log)
            elif engine == "local":
                _run_local(sweep, sweep_dir, trials, log)
            else:
                raise ValueError(f"unknown engine {engine!r}; choose local or ray")
    except BaseException as exc:
        _cancel_trials(trials)
        if launcher.cancel_reason(exc) is not None:
            store.update_status(sweep_dir, "cancelled")
            return "cancelled"
        store.update_status(sweep_dir, "failed", error=f"{type(exc).__name__}: {exc}")
        raise
    _fail_leftovers(trials)
    final = "cancelled" if store.cancel_requested(sweep_dir) else "done"
    store.update_status(sweep_dir, final)
    return final


def _run_local(sweep: SweepConfig, sweep_dir: Path, trials: list[Path], log: Log) -> None:
    threads = RunConfig.from_dict(store.read_json(trials[0] / store.CONFIG)).threads if trials else 1
    workers = sweep.max_concurrent or default_workers(threads)
    log(f"sweep {sweep_dir.name}: {len(trials)} trial(s), {workers} at a time on this machine")
    pending, running = list(trials), {}
    try:
        while pending or running:
            if store.cancel_requested(sweep_dir):
                raise Cancelled("cancelled")
            while pending and len(running) < workers:
                d = pending.pop(0)
                if store.read_state(d) not in store.FINAL:  # e.g. cancelled from the app before it started
                    running[d] = launcher.spawn(d, max_concurrent=workers)
            for d, proc in list(running.items()):
                if proc.poll() is not None:
                    del running[d]
                    info = read_run(d)
                    acc = f", best held-out accuracy {info.best_acc:.4f}" if info.best_acc is not None else ""
                    log(f"{d.name}: {info.state}{acc}" + (f" ({info.error})" if info.error else ""))
            time.sleep(0.2)
    except BaseException:
        _cancel_trials(list(running) + pending)
        raise


def _cancel_trials(trials: list[Path]) -> None:
    for d in trials:
        if store.read_state(d) not in store.FINAL:
            launcher.cancel(d)


def _fail_leftovers(trials: list[Path]) -> None:
    """A trial still queued after its engine returned never ran (e.g. Ray dropped it): say so."""
    for d in trials:
        if store.read_state(d) == "queued":
            store.update_status(d, "failed", error="the sweep engine finished without running this trial")


def cancel_sweep(sweep_dir: str | Path) -> bool:
    """Stop a sweep: its process (and group), then every trial not finished; False if it had ended."""
    sweep_dir = Path(sweep_dir)
    # The sweep process's SIGTERM handler cancels the trials it started; the rest are cancelled here.
    if not launcher.stop_folder(sweep_dir, grace_s=10.0):
        return False
    _cancel_trials(sweep_trials(sweep_dir))
    store.update_status(sweep_dir, "cancelled")
    return True
