"""Weight-tuning runs and sweeps (docs/architecture.md §6): configs, the run folder, launching, training, reading back.

    from cakd_viz.runs import RunConfig, launch, list_runs, cancel
    run_dir = launch(RunConfig.from_dict({"data": "sample:glyphs", "loss": {"name": "kd"}}))
    list_runs()[0].state          # "queued" | "running" | "done" | "failed" | "cancelled" (+ "corrupt", "elsewhere")

    with Recorder("runs", config={"loss": "kd", "lr": 0.1}) as rec:   # your own training loop, recorded
        rec.log_epoch(1, student_val_logits, teacher_val_logits, val_labels)

The app only reads run folders and starts processes; it never trains in its own process, and never
needs Ray (the optional sweep engine).
"""

from cakd_viz.runs.config import LossConfig, RunConfig, loss_names
from cakd_viz.runs.launcher import cancel, default_max_concurrent, launch
from cakd_viz.runs.recorder import Recorder
from cakd_viz.runs.results import (
    RunInfo,
    SweepInfo,
    list_runs,
    list_sweeps,
    metrics_frame,
    read_run,
    read_sweep,
    runs_table,
    sweep_frame,
)
from cakd_viz.runs.store import runs_dir


def __getattr__(name: str):
    """``execute`` and ``run_config`` of ``runs.runner``, imported on first use."""
    if name in ("execute", "run_config"):
        from cakd_viz.runs import runner

        return getattr(runner, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "LossConfig",
    "Recorder",
    "RunConfig",
    "RunInfo",
    "SweepInfo",
    "cancel",
    "default_max_concurrent",
    "execute",
    "launch",
    "list_runs",
    "list_sweeps",
    "loss_names",
    "metrics_frame",
    "read_run",
    "read_sweep",
    "run_config",
    "runs_dir",
    "runs_table",
    "sweep_frame",
]
