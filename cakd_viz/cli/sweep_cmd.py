"""Expand a sweep config (a base run config; 'grid' values crossed; 'cases', partial configs such
as one per loss; 'random' draws) into trials and run each as an ordinary run folder
RUNS_DIR/SWEEP_ID-NNN, plus RUNS_DIR/SWEEP_ID/sweep.json. Engines: 'local' runs up to
--max-concurrent processes on this machine; 'ray' runs Ray Tune trials (pip install 'ray[tune]';
--address joins a cluster, else Ray starts here with --num-cpus). Both write the same folders.
Exit code: 0 when every trial is done, 1 when one failed, 130 when cancelled."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cakd_viz.cli._common import add_quiet, add_runs_dir, positive_int, say


def add_arguments(parser: argparse.ArgumentParser) -> None:
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--config", metavar="SWEEP.json", type=Path, help="the sweep config (see examples/)")
    what.add_argument(
        "--sweep-dir", metavar="DIR", type=Path, help="execute a prepared sweep folder (what the app starts)"
    )
    parser.add_argument(
        "--engine",
        choices=("local", "ray"),
        default=None,
        help="local: processes on this machine; ray: Ray Tune (default: the config's 'engine', else local)",
    )
    add_runs_dir(parser)
    parser.add_argument(
        "--max-concurrent",
        metavar="N",
        type=positive_int,
        default=None,
        help="trials at once (default: the config's, else cores / threads per trial; Ray: its CPUs)",
    )
    parser.add_argument(
        "--num-cpus", metavar="N", type=positive_int, default=None, help="Ray: CPUs of a local Ray"
    )
    parser.add_argument("--address", metavar="ADDR", default=None, help="Ray: join this cluster (e.g. auto)")
    parser.add_argument(
        "--dry-run", action="store_true", help="list the trials and exit without running them"
    )
    parser.add_argument(
        "--detach", action="store_true", help="run the sweep in the background; print its folder"
    )
    add_quiet(parser)


def run(args: argparse.Namespace) -> int:
    from cakd_viz.runs.config import read_json_config
    from cakd_viz.runs.engine import execute_sweep, launch_sweep, run_sweep
    from cakd_viz.runs.results import read_sweep
    from cakd_viz.runs.sweep import SweepConfig

    def log(line: str) -> None:
        if not args.quiet:
            say(line, file=sys.stderr, flush=True)

    if args.sweep_dir is not None:
        state = execute_sweep(args.sweep_dir, engine=args.engine, log=log)
        return _report(read_sweep(args.sweep_dir), state)
    sweep = SweepConfig.from_dict(read_json_config(args.config))
    owners = {"engine": sweep, "max_concurrent": sweep, "num_cpus": sweep.ray, "address": sweep.ray}
    for key, owner in owners.items():
        if getattr(args, key):  # an option given replaces the config's value
            setattr(owner, key, getattr(args, key))
    trials = sweep.validate()
    if args.dry_run:
        for i, trial in enumerate(trials):
            say(f"{i:3d}  {trial.label()}  {trial.params}")
        return 0
    if args.detach:
        sweep_dir = launch_sweep(sweep, args.runs_dir)
        say(f"started {sweep_dir} (follow it with: tail -f {sweep_dir / 'log.txt'})")
        return 0
    sweep_dir = run_sweep(sweep, args.runs_dir, log=log)
    info = read_sweep(sweep_dir)
    return _report(info, info.state)


def _report(info, state: str) -> int:
    say(f"{info.path}: {info.state} ({info.counts_text()})")
    for r in info.trials:
        best = "-" if r.best_acc is None else f"{r.best_acc:.4f}"
        last = "-" if r.last_acc is None else f"{r.last_acc:.4f}"
        say(f"  {r.id}  {r.state:9s}  best {best}  last {last}  {r.label}")
    if state == "cancelled":
        return 130
    return 0 if all(r.state == "done" for r in info.trials) else 1


SUMMARY = "many weight-tuning runs over a grid or random sample (local processes or Ray Tune)"
EXAMPLES = """
  cakd-viz sweep --config examples/sweep_glyphs_grid.json
  cakd-viz sweep --config examples/sweep_glyphs_grid.json --dry-run
  cakd-viz sweep --config examples/sweep_glyphs_ray.json --engine ray --num-cpus 2
  cakd-viz sweep --config examples/sweep_glyphs_ray.json --engine ray --address auto
"""
