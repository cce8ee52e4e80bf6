"""The README experiment: on glyphs, same budget, 3 seeds each: CE only, KD, DKD, CAKD target, CAKD topk:5.

    .venv/bin/python scripts/experiment.py [--config examples/experiment_glyphs.json] [--runs-dir DIR]
                                           [--engine local|ray] [--max-concurrent N] [--from SWEEP_DIR]

Runs the sweep in ``examples/experiment_glyphs.json`` with the sweep machinery (every trial an
ordinary run folder), then prints a Markdown table of held-out accuracy per case: mean ± standard
deviation over seeds of the last epoch (the honest figure: no epoch is picked on the test split) and
of the best epoch (optimistic: picked on the test split, as many papers report). ``--from`` only
re-reads a finished sweep.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from cakd_viz.runs.config import read_json_config  # noqa: E402
from cakd_viz.runs.engine import run_sweep  # noqa: E402
from cakd_viz.runs.results import read_sweep  # noqa: E402
from cakd_viz.runs.sweep import SweepConfig  # noqa: E402


def table(sweep_dir: Path) -> pd.DataFrame:
    """One row per case (run name, in the sweep's order): runs done, mean/std of last and best accuracy."""
    info = read_sweep(sweep_dir)
    rows = [
        {
            "case": t.config.get("name") or t.label,
            "loss": t.label,
            "seed": t.config.get("seed"),
            "state": t.state,
            "last": t.last_acc if t.state == "done" else None,
            "best": t.best_acc if t.state == "done" else None,
            "seconds": t.duration,
        }
        for t in info.trials
    ]
    frame = pd.DataFrame(rows)
    order = list(dict.fromkeys(frame["case"]))
    agg = frame.groupby("case", sort=False).agg(
        runs=("last", "count"),
        seeds=("seed", lambda s: ",".join(str(v) for v in s)),
        last_mean=("last", "mean"),
        last_std=("last", "std"),
        best_mean=("best", "mean"),
        best_std=("best", "std"),
        minutes=("seconds", lambda s: s.sum() / 60),
    )
    return agg.reindex(order)


def markdown(agg: pd.DataFrame, sweep_dir: Path, config: dict) -> str:
    base = config["base"]
    lines = [
        f"Glyphs (62 classes, {base.get('epochs')} epochs, batch {base.get('batch_size')}, lr {base.get('lr')}, "
        f"student `{base.get('student')}`, teacher `{base.get('teacher')}`), held-out accuracy over seeds "
        f"{agg['seeds'].iloc[0]} (mean ± std):",
        "",
        "| case | runs | last epoch | best epoch |",
        "|---|---|---|---|",
    ]
    for case, r in agg.iterrows():
        lines.append(
            f"| {case} | {r['runs']} | {100 * r['last_mean']:.2f} ± {100 * r['last_std']:.2f} | "
            f"{100 * r['best_mean']:.2f} ± {100 * r['best_std']:.2f} |"
        )
    lines += ["", f"Sweep folder: `{sweep_dir}`"]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, default=REPO / "examples" / "experiment_glyphs.json")
    parser.add_argument("--runs-dir", type=Path, default=None)
    parser.add_argument("--engine", choices=("local", "ray"), default=None)
    parser.add_argument("--max-concurrent", type=int, default=None)
    parser.add_argument(
        "--from", dest="existing", type=Path, default=None, help="re-read a finished sweep folder"
    )
    args = parser.parse_args()
    if args.existing is not None:
        sweep_dir = args.existing
        config = read_sweep(sweep_dir).config
    else:
        config = read_json_config(args.config)
        sweep = SweepConfig.from_dict(config)
        if args.max_concurrent:
            sweep.max_concurrent = args.max_concurrent
        sweep_dir = run_sweep(
            sweep, args.runs_dir, engine=args.engine, log=lambda s: print(s, file=sys.stderr)
        )
    print(markdown(table(sweep_dir), sweep_dir, config))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
