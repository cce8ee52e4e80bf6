"""Training cost of CAKD: one optimisation step with CAKDLoss vs KDLoss, and a whole 5-epoch glyphs run.

    .venv/bin/python benchmarks/bench_train.py [--threads 1] [--rounds 300] [--skip-run]

1. Step: the default glyphs student (``cnn_s``) on a batch of 64 32x32 images, 62 classes, teacher
   logits given (runs cache them): forward, CE + distillation loss, backward, SGD step. The two
   losses run round-robin, one step each per round, so load from other processes falls on both
   alike; figures are medians over rounds after a warm-up. Target (issue 5): CAKD <= 1.3x KD.
2. Run: ``cakd-viz tune --config examples/run_glyphs_cakd.json`` as a fresh process (imports, data,
   teacher pass, 5 epochs with held-out evaluation, weights and bundle written), wall time, one
   thread. Target: < 60 s on 2 cores. Then the same run again in the same runs folder, whose
   teacher-logit cache spares the teacher pass. Needs the shipped samples (``cakd-viz samples build``).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from bench_decompose import rounds

from cakd_viz.losses import CAKDLoss, KDLoss
from cakd_viz.models import build_arch

REPO = Path(__file__).resolve().parent.parent
RUN_CONFIG = REPO / "examples" / "run_glyphs_cakd.json"


def train_step(criterion, student, opt, x, y, t_logits, repeat: int = 1):
    """``repeat`` steps: CE + distillation loss, backward, the optimiser's step (bench_gpu.py's too)."""

    def run():
        for _ in range(repeat):
            logits = student(x)
            loss = F.cross_entropy(logits, y) + criterion(logits, t_logits, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

    return run


def bench_steps(repeats: int, batch: int = 64, classes: int = 62) -> dict:
    """Median seconds per training step for each loss, and CAKD's ratio to KD."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 1, 32, 32, generator=g)
    y = torch.randint(0, classes, (batch,), generator=g)
    t_logits = torch.randn(batch, classes, generator=g) * 3
    steps = {}
    for name, criterion in (("KD", KDLoss(4.0)), ("CAKD topk:5", CAKDLoss("topk:5", 1.0, 1.0, 8.0, 4.0))):
        torch.manual_seed(0)
        student = build_arch("cnn_s", in_channels=1, num_classes=classes, image_size=32)
        opt = torch.optim.SGD(student.parameters(), lr=0.01, momentum=0.9)
        steps[name] = train_step(criterion, student, opt, x, y, t_logits)
    times = rounds(steps, repeats, warmup=20)
    med = {name: statistics.median(v) for name, v in times.items()}
    return {"step_s": med, "ratio": med["CAKD topk:5"] / med["KD"]}


def bench_run(threads: int) -> list[float]:
    """Wall seconds of the example 5-epoch glyphs run as a fresh `cakd-viz tune` process: first with an
    empty runs folder (the teacher's logits computed), then again beside it (read from its cache)."""
    walls = []
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(2):
            cmd = [sys.executable, "-m", "cakd_viz", "tune", "--config", str(RUN_CONFIG), "--runs-dir", tmp]
            cmd += ["-q", "--set", f"threads={threads}", "--set", "device=cpu", "--max-concurrent", "0"]
            t0 = time.perf_counter()
            out = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
            walls.append(time.perf_counter() - t0)
            if out.returncode != 0:
                raise SystemExit(f"the run failed:\n{out.stderr[-2000:]}")
            print(out.stdout.strip())
    return walls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1, as a run uses)")
    parser.add_argument("--rounds", type=int, default=300)
    parser.add_argument("--skip-run", action="store_true", help="only the step benchmark")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} thread(s), {os.cpu_count()} CPU(s) visible")
    steps = bench_steps(args.rounds)
    for name, sec in steps["step_s"].items():
        print(f"  step, cnn_s, batch 64 x 62 classes, {name:12s} {1000 * sec:7.2f} ms")
    verdict = "ok" if steps["ratio"] <= 1.3 else "OVER TARGET"
    print(f"  CAKD / KD step time: {steps['ratio']:.3f}x (target <= 1.3x: {verdict})")
    if not args.skip_run:
        cold, warm = bench_run(args.threads)
        verdict = "ok" if cold < 60 else "OVER TARGET"
        print(f"  5-epoch glyphs run ({RUN_CONFIG.name}), wall: {cold:.1f} s (target < 60 s: {verdict})")
        print(f"  the same run again, teacher logits from the runs folder's cache: {warm:.1f} s")


if __name__ == "__main__":
    main()
