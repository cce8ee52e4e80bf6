"""Forward + backward time of the distillation losses on one batch (default 256 x 100 float32, CPU).

    .venv/bin/python benchmarks/bench_losses.py [--batch 256] [--classes 100] [--repeats 2000] [--threads 2]

Target, kernels and the round-robin: benchmarks/README.md; each figure is a median over rounds after a
warm-up. "+ LS" (standardize=True: each row z-scored before T, autograd through it) is a ratio to the
same loss without it; "plain autograd CAKD" is the loss as a straightforward graph of masked log-sum-exps.
"""

from __future__ import annotations

import argparse
import os
import statistics

import torch
import torch.nn.functional as F
from bench_decompose import rounds

from cakd_viz.grouping import strong_mask
from cakd_viz.losses import CAKDLoss, DKDLoss, KDLoss
from cakd_viz.losses.native_kernel import LIBRARY


def _plain_cakd(student, teacher, labels, *, grouping="topk:5", weights=(1.0, 1.0, 8.0), temperature=4.0):
    """CAKD as a plain autograd graph: masked log-sum-exps over S and W, three KLs, batch means."""
    strong = strong_mask(grouping, teacher, labels, temperature=temperature)
    log_q = F.log_softmax(student / temperature, 1)
    log_p = F.log_softmax(teacher.detach() / temperature, 1)
    total = 0.0
    for w, mask in ((weights[1], strong), (weights[2], ~strong)):
        lq_g = log_q.masked_fill(~mask, -torch.inf).logsumexp(1, keepdim=True)  # (N, 1)
        lp_g = log_p.masked_fill(~mask, -torch.inf).logsumexp(1, keepdim=True)
        in_q = (log_q - lq_g).masked_fill(~mask, 0.0)
        in_p = (log_p - lp_g).masked_fill(~mask, 0.0)
        inner = (in_p.exp() * (in_p - in_q)).masked_fill(~mask, 0.0).sum(1)
        bcd = lp_g.exp().squeeze(1) * (lp_g - lq_g).squeeze(1)
        total = total + weights[0] * bcd + w * inner
    return total.mean() * temperature**2


def _step(loss_fn, student, teacher, labels):
    def run():
        student.grad = None
        loss_fn(student, teacher, labels).backward()

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--classes", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(0)
    n, c = args.batch, args.classes
    teacher = torch.randn(n, c, generator=gen) * 3
    student = (0.6 * teacher + torch.randn(n, c, generator=gen) * 1.5).requires_grad_()
    labels = torch.randint(0, c, (n,), generator=gen)

    candidates = {
        "KDLoss": KDLoss(4.0),
        "DKDLoss": DKDLoss(1.0, 8.0, 4.0),
        "CAKDLoss topk:5": CAKDLoss("topk:5", 1.0, 1.0, 8.0, 4.0),
        "CAKDLoss target": CAKDLoss("target", 1.0, 1.0, 8.0, 4.0),
        "plain autograd CAKD topk:5": _plain_cakd,
        "KDLoss + LS": KDLoss(4.0, standardize=True),
        "CAKDLoss topk:5 + LS": CAKDLoss("topk:5", 1.0, 1.0, 8.0, 4.0, standardize=True),
    }
    steps = {name: _step(fn, student, teacher, labels) for name, fn in candidates.items()}
    load = os.getloadavg()[0]
    times = rounds(steps, args.repeats, warmup=args.warmup)

    median = {name: statistics.median(t) * 1e6 for name, t in times.items()}
    print(f"forward + backward, {n} x {c} float32, CPU, {args.threads} threads, median of {args.repeats}")
    print(f"CAKDLoss runs on the {LIBRARY.status()} (CAKD_VIZ_NATIVE=0 measures the tensor-op kernel)")
    print(
        f"load average at start: {load:.2f} (on {os.cpu_count()} cores; other processes inflate every figure)"
    )
    for name, us in median.items():
        print(f"  {name:28s} {us:8.1f} us   {us / median['KDLoss']:5.2f}x KDLoss")
    for grouping in ("topk:5", "target"):
        ratio = median[f"CAKDLoss {grouping}"] / median["KDLoss"]
        verdict = "meets" if ratio <= 1.5 else "misses"
        print(f"CAKD/KD ({grouping}): {ratio:.2f}  ({verdict} the 1.5x target)")
    for name in ("KDLoss", "CAKDLoss topk:5"):
        print(f"{name} + LS / {name}: {median[name + ' + LS'] / median[name]:.2f}x")


if __name__ == "__main__":
    main()
