"""Train a student on a data set with cross-entropy plus a distillation loss from a frozen teacher,
and write runs/RUN_ID/: config.json, status.json, metrics.jsonl (every loss term and the held-out
accuracy per epoch), log.txt, env.json (seed, device, batch size, versions), the final student
weights (student.safetensors + student.json) and bundle/, the held-out logits of the teacher and
the student, which opens in the app's explorer pages. Under torchrun it trains data-parallel.
Runs beyond --max-concurrent wait (state 'queued'). Exit code: 0 done, 1 failed, 130 cancelled,
2 refused (bad config, or --run-dir on a run that has ended: rerun with --config RUN/config.json,
which makes a new run; a run killed outright is recorded as failed, never relabelled)."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from cakd_viz.cli._common import add_quiet, add_runs_dir, say


def parse_override(text: str) -> tuple[str, object]:
    """argparse type: ``KEY=VALUE`` with a dotted key (``loss.beta=2``); VALUE is JSON, else a string."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE (e.g. loss.beta=2), got {text!r}")
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return key.strip(), value


def apply_overrides(data: dict, overrides: list[tuple[str, object]]) -> dict:
    """A copy of the config dict with each dotted ``key`` set to its value."""
    out = json.loads(json.dumps(data))
    for key, value in overrides:
        *parents, leaf = key.split(".")
        node = out
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ValueError(f"--set {key}: {part!r} is not an object in the config")
        node[leaf] = value
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--config", metavar="RUN.json", type=Path, help="the run config (see examples/)")
    what.add_argument(
        "--run-dir",
        metavar="DIR",
        type=Path,
        help="execute a prepared run folder (what the app's launcher starts); a folder runs once: one that "
        "has ended, is running, is corrupt or belongs to another host is refused",
    )
    add_runs_dir(parser)
    parser.add_argument(
        "--set",
        metavar="KEY=VALUE",
        dest="overrides",
        type=parse_override,
        action="append",
        default=[],
        help="override a config value, e.g. --set loss.beta=2 --set epochs=1 (repeatable)",
    )
    parser.add_argument(
        "--max-concurrent",
        metavar="N",
        type=int,
        default=None,
        help="runs training at once on this machine; the rest wait queued (default: $CAKD_VIZ_MAX_RUNS, "
        "else half the cores; 0: no limit)",
    )
    parser.add_argument(
        "--detach", action="store_true", help="start the run in the background and print its folder at once"
    )
    add_quiet(parser)


def run(args: argparse.Namespace) -> int:
    from cakd_viz.cli.progress import progress_bar
    from cakd_viz.runs import execute, launch, read_run, run_config
    from cakd_viz.runs.config import RunConfig, read_json_config

    if args.max_concurrent is not None and args.max_concurrent < 0:
        raise ValueError(f"--max-concurrent must be >= 0, got {args.max_concurrent}")
    if args.run_dir is not None:
        if args.overrides:
            raise ValueError("--set applies to --config only; a prepared run folder is executed as it is")
        with progress_bar("tune", unit="steps", enabled=not args.quiet) as progress:
            state = execute(
                args.run_dir, max_concurrent=args.max_concurrent, echo=not args.quiet, progress=progress
            )
        return _report(read_run(args.run_dir), state)
    cfg = RunConfig.from_dict(apply_overrides(read_json_config(args.config), args.overrides)).validated()
    if args.detach:
        run_dir = launch(cfg, args.runs_dir, max_concurrent=args.max_concurrent or None)
        say(f"started {run_dir} (follow it with: tail -f {run_dir / 'log.txt'})")
        return 0
    with progress_bar("tune", unit="steps", enabled=not args.quiet) as progress:
        run_dir = run_config(
            cfg, args.runs_dir, max_concurrent=args.max_concurrent, echo=not args.quiet, progress=progress
        )
    if int(os.environ.get("RANK", "0")) != 0:  # under torchrun, rank 0 reports
        return 0
    info = read_run(run_dir)
    return _report(info, info.state)


def _report(info, state: str) -> int:
    if info.state == "done":
        s = info.summary
        say(
            f"{info.path}: done, held-out accuracy best {s['best_val_acc']:.4f} (epoch {s['best_epoch']}), "
            f"last {s['last_val_acc']:.4f}; teacher {s['teacher_val_acc']:.4f}"
        )
        return 0
    say(f"{info.path}: {info.state}" + (f" ({info.error})" if info.error else ""))
    return 130 if state == "cancelled" else 1


SUMMARY = "one weight-tuning run: train a student with CE + KD/DKD/CAKD into runs/RUN_ID"
EXAMPLES = """
  cakd-viz tune --config examples/run_glyphs_cakd.json
  cakd-viz tune --config examples/run_digits_kd.json --set epochs=2 --set loss.temperature=2
  cakd-viz tune --config examples/run_glyphs_cakd.json --detach --runs-dir /tmp/runs
  torchrun --nproc-per-node=2 -m cakd_viz tune --config examples/run_digits_kd.json
"""
