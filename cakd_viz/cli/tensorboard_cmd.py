"""Write the runs under RUNS_DIR (launched by `cakd-viz tune`/`sweep` or the app, or recorded from your own
training loop with cakd_viz.runs.Recorder) into LOGDIR, one folder per run named NAME-RUN_ID. Every
numeric field of a run's metrics.jsonl becomes a scalar: per-epoch fields (the held-out terms val_kl,
val_bcd, val_scd, val_wcd, val_scd_part, val_wcd_part, val_acc, the loss terms, ...) under epoch/FIELD
at step = the epoch, per-step ones under step/FIELD at step = the training step. Exporting again
replaces each run's folder (no duplicate points). Queued, running and corrupt runs are skipped, one
line each on stderr. Needs the tensorboard package (pip install "cakd-viz[tensorboard]")."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cakd_viz.cli._common import say


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


SUMMARY = "write every run's held-out terms, accuracies and losses as TensorBoard scalars"
EXAMPLES = """
  cakd-viz tensorboard runs --out tb
  tensorboard --logdir tb
  cakd-viz tensorboard /shared/runs --out /tmp/tb_runs
"""
