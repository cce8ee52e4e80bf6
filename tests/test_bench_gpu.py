"""benchmarks/bench_gpu.py, the one script a GPU machine runs: it must work the first time it gets one.

Without CUDA it says so in one line and exits 0; `--device cpu` runs every section's code on the CPU
with small sizes (the figures mean nothing there, the script working does).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "bench_gpu.py"


def _run(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=600, env=env, cwd=ROOT
    )


def test_without_cuda_it_says_so_in_one_line_and_exits_0():
    if torch.cuda.is_available():  # on a GPU machine: a small real run instead
        out = _run("--n", "4000", "--sections", "decompose")
        assert out.returncode == 0, out.stderr
        assert out.stdout.startswith("GPU: ") and "OK" in out.stdout
        return
    out = _run()
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [
        f"bench_gpu: no CUDA GPU is available here (torch {torch.__version__}): nothing to measure"
    ]


def test_every_section_runs_on_the_cpu():
    out = _run("--device", "cpu", "--n", "3000", "--repeats", "1", "--steps", "2", "--extract-n", "300")
    assert out.returncode == 0, out.stdout + out.stderr
    text = out.stdout
    for expected in (
        "bench_gpu on the CPU: a check of the script, not a measurement",
        "1. decompose 3,000 x 1,000 float16, topk:5, T=4",
        "numpy arrays in host memory",
        "pinned torch tensors",
        "largest difference",
        "2. a training step, batch 256",
        "(a) linear 2,048 -> 1,000: KDLoss",
        "(b) cnn_l, 32 x 32 images: KDLoss",
        "3. extraction, teacher + 2 students",
        "fp32",
        "total",
    ):
        assert expected in text, (expected, text)
    assert "strong sets equal" in text and "DIFFER" not in text
