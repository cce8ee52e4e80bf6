"""This code against another checkout, call for call: both students' `decompose_many` on a bundle, under
each setting, alternating the two in fresh processes round after round, so that a noisy machine weighs on
both alike.

    python benchmarks/bench_ab.py --bundle DIR --against ../old-checkout --rounds 4

Each round runs one process per checkout (this one first in odd rounds, the other first in even ones);
a process opens the bundle, warms the kernel on 20,000 rows, then times one call per setting over every
row. Prints each setting's median per checkout, their ratio (this / other) and every round's times.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]
SETTINGS = ("topk:5@1", "mass:0.9@1", "mass:0.9@4")

CHILD = """
import json, sys, time
from cakd_viz.bundle import load_bundle
from cakd_viz.decomposition import decompose_many
b = load_bundle(sys.argv[1], check_values=False)
students = [b.student(s) for s in b.student_names]
out = {}
for setting in sys.argv[2:]:
    grouping, temperature = setting.split("@")
    kw = dict(grouping=grouping, temperature=float(temperature), device="cpu")
    decompose_many([s[:20000] for s in students], b.teacher[:20000], b.labels[:20000], **kw)
    start = time.perf_counter()
    decompose_many(students, b.teacher, b.labels, **kw)
    out[setting] = time.perf_counter() - start
print(json.dumps(out))
"""


def _times(checkout: Path, bundle: str, settings: list[str]) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(checkout)}
    done = subprocess.run(
        [sys.executable, "-c", CHILD, bundle, *settings], env=env, capture_output=True, text=True, check=True
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--bundle", required=True, help="a bundle with a teacher and students (e.g. 1.28M x 1,000)"
    )
    parser.add_argument(
        "--against", required=True, type=Path, help="the other checkout (its repository root)"
    )
    parser.add_argument("--rounds", type=int, default=4, help="alternating rounds (default: 4)")
    parser.add_argument(
        "--settings", nargs="+", default=list(SETTINGS), help="GROUPING@T each (default: %(default)s)"
    )
    args = parser.parse_args(argv)
    sides = {"this": HERE, "other": args.against.resolve()}
    times: dict[str, dict[str, list[float]]] = {side: {s: [] for s in args.settings} for side in sides}
    print(f"this: {sides['this']}\nother: {sides['other']}\nload average before: {os.getloadavg()[0]:.1f}")
    for r in range(args.rounds):
        order = ["this", "other"] if r % 2 == 0 else ["other", "this"]
        for side in order:
            got = _times(sides[side], args.bundle, args.settings)
            for setting, seconds in got.items():
                times[side][setting].append(seconds)
            print(
                f"round {r + 1} {side:5s} " + "  ".join(f"{s} {t:.2f} s" for s, t in got.items()), flush=True
            )
    print(f"load average after: {os.getloadavg()[0]:.1f}")
    for setting in args.settings:
        this, other = (statistics.median(times[side][setting]) for side in ("this", "other"))
        print(
            f"{setting:12s} this median {this:.2f} s, other {other:.2f} s: this / other = {this / other:.2f}"
        )


if __name__ == "__main__":
    main()
