"""This code against another checkout, call for call: both students' `decompose_many` on a bundle, under
each setting, alternating the two in fresh processes round after round, so that a noisy machine weighs on
both alike.

    python benchmarks/bench_ab.py --bundle DIR --against ../old-checkout --rounds 4
    python benchmarks/bench_ab.py --bundle DIR --against ../old-checkout --threads 1 --rows 300000

Each round runs one process per checkout (this one first in odd rounds, the other first in even ones);
a process opens the bundle, warms the kernel on 20,000 rows, then times one call per setting over every
row (or the first ``--rows``) with ``--threads`` threads. Prints every round's times, each setting's median
wall and CPU time per checkout and their ratios (this / other). One thread's CPU time is the steadiest
figure on a shared machine.
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
import torch
import cakd_viz
from cakd_viz.bundle import load_bundle
from cakd_viz.decomposition import decompose_many
torch.set_num_threads(int(sys.argv[2]))
b = load_bundle(sys.argv[1], check_values=False)
rows = slice(0, int(sys.argv[3]) or b.num_samples)
students = [b.student(s)[rows] for s in b.student_names]
out = {}
for setting in sys.argv[4:]:
    grouping, temperature = setting.split("@")
    kw = dict(grouping=grouping, temperature=float(temperature), device="cpu")
    decompose_many([s[:20000] for s in students], b.teacher[:20000], b.labels[:20000], **kw)
    start, cpu = time.perf_counter(), time.process_time()
    decompose_many(students, b.teacher[rows], b.labels[rows], **kw)
    out[setting] = [time.perf_counter() - start, time.process_time() - cpu]
print(json.dumps({"code": cakd_viz.__file__, "times": out}))
"""


def _times(checkout: Path, args: argparse.Namespace) -> dict[str, list[float]]:
    """{setting: [wall seconds, CPU seconds]} of one process running ``checkout``'s code: started in the
    checkout (``python -c`` puts the working directory first on sys.path, before PYTHONPATH and an editable
    install), and refused unless the package it imported is that checkout's."""
    env = {**os.environ, "PYTHONPATH": str(checkout)}
    bundle = str(Path(args.bundle).resolve())
    command = [sys.executable, "-c", CHILD, bundle, str(args.threads), str(args.rows), *args.settings]
    done = subprocess.run(command, env=env, cwd=checkout, capture_output=True, text=True, check=True)
    out = json.loads(done.stdout.strip().splitlines()[-1])
    if not Path(out["code"]).resolve().is_relative_to(checkout.resolve()):
        sys.exit(f"bench_ab: the process meant for {checkout} imported cakd_viz from {out['code']}")
    return out["times"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--bundle", required=True, help="a bundle with a teacher and students (e.g. 1.28M x 1,000)"
    )
    parser.add_argument(
        "--against", required=True, type=Path, help="the other checkout (its repository root)"
    )
    parser.add_argument("--rounds", type=int, default=4, help="alternating rounds (default: 4)")
    parser.add_argument("--threads", type=int, default=2, help="threads of each call (default: 2)")
    parser.add_argument("--rows", type=int, default=0, help="time the first ROWS samples only (default: all)")
    parser.add_argument(
        "--settings", nargs="+", default=list(SETTINGS), help="GROUPING@T each (default: %(default)s)"
    )
    args = parser.parse_args(argv)
    sides = {"this": HERE, "other": args.against.resolve()}
    times: dict[str, dict[str, list[list[float]]]] = {side: {s: [] for s in args.settings} for side in sides}
    print(f"this: {sides['this']}\nother: {sides['other']}\nload average before: {os.getloadavg()[0]:.1f}")
    for r in range(args.rounds):
        for side in ("this", "other") if r % 2 == 0 else ("other", "this"):
            got = _times(sides[side], args)
            for setting, seconds in got.items():
                times[side][setting].append(seconds)
            said = "  ".join(f"{s} {wall:.2f} s ({cpu:.2f} s CPU)" for s, (wall, cpu) in got.items())
            print(f"round {r + 1} {side:5s} {said}", flush=True)
    print(f"load average after: {os.getloadavg()[0]:.1f}")
    for setting in args.settings:
        for i, what in enumerate(("wall", "CPU")):
            this, other = (
                statistics.median(t[i] for t in times[side][setting]) for side in ("this", "other")
            )
            print(
                f"{setting:12s} {what:4s} this {this:.2f} s, other {other:.2f} s: this / other = {this / other:.2f}"
            )


if __name__ == "__main__":
    main()
