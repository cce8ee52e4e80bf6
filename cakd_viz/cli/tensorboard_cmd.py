"""`cakd-viz tensorboard RUNS_DIR --out LOGDIR`: every run's per-epoch and per-step numbers as TensorBoard
scalars, one folder per run (``cakd_viz.runs.tensorboard``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cakd_viz.cli._common import Command, say


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("runs_dir", metavar="RUNS_DIR", type=Path, help="a folder of runs (e.g. ./runs)")
    parser.add_argument(
        "--out",
        metavar="LOGDIR",
        type=Path,
        required=True,
        help="where the event files go, one folder per run (NAME-RUN_ID); a run exported again replaces its folder",
    )


def run(args: argparse.Namespace) -> int:
    from cakd_viz.runs.tensorboard import export_runs

    written, skipped = export_runs(args.runs_dir, args.out)
    for line in skipped:
        say(f"cakd-viz tensorboard: {line}", file=sys.stderr)  # a run's folder name is anyone's text
    say(f"wrote {len(written)} run(s) to {args.out}; view them with: tensorboard --logdir {args.out}")
    return 0


COMMAND = Command(
    name="tensorboard",
    summary="write every run's held-out terms, accuracies and losses as TensorBoard scalars",
    description=(
        "Write the runs under RUNS_DIR (launched by `cakd-viz tune`/`sweep` or the app, or recorded from your own\n"
        "training loop with cakd_viz.runs.Recorder) into LOGDIR, one folder per run named NAME-RUN_ID. Every\n"
        "numeric field of a run's metrics.jsonl becomes a scalar: per-epoch fields (the held-out terms val_kl,\n"
        "val_bcd, val_scd, val_wcd, val_scd_part, val_wcd_part, val_acc, the loss terms, ...) under epoch/FIELD\n"
        "at step = the epoch, per-step ones under step/FIELD at step = the training step. Exporting again\n"
        "replaces each run's folder (no duplicate points). Queued, running and corrupt runs are skipped, one\n"
        'line each on stderr. Needs the tensorboard package (pip install "cakd-viz[tensorboard]").'
    ),
    examples="""
  cakd-viz tensorboard runs --out tb
  tensorboard --logdir tb
  cakd-viz tensorboard /shared/runs --out /tmp/tb_runs
""",
    add_arguments=add_arguments,
    run=run,
)
