"""Extraction throughput (samples/s): the glyphs teacher + 2 students over glyph images, into a bundle.

    python benchmarks/bench_extract.py                       # CPU, and the GPU (with and without autocast) if any
    python benchmarks/bench_extract.py --devices cpu --cpu-n 3100 --batch-sizes 256 1024
    python benchmarks/bench_extract.py --devices cuda --gpu-n 200000 --num-workers 4

Models: the shipped ``sample:glyphs/teacher`` and its first two students (``sample_checkpoints/``);
when those are not built yet, untrained models of the same sample architectures (throughput does not
depend on the weights; the output says which were used). Data: the ``sample:glyphs:test`` images
(62 classes, 32x32) repeated to the asked size, held in memory and served by a DataLoader, as
``cakd-viz extract`` does. Each row is one full ``extract()`` call (load, one pass, float16 memmap
writes, commit) into a temp directory: ``loop`` is the pass over the data as recorded in meta.json,
``total`` includes loading the models; ``forward`` is the three models alone on batches already on
the device, an upper bound for the loop.
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from cakd_viz.bundle import load_bundle
from cakd_viz.data import ArrayDataset, DataSource, Normalization, load_data
from cakd_viz.device import describe_device
from cakd_viz.extract import extract
from cakd_viz.models import build_arch, list_sample_models, load_model


def glyph_models() -> tuple[dict[str, object], str]:
    """{"teacher": spec or module, student name: ...} for the glyphs teacher and two students."""
    specs = [s for s in list_sample_models() if s.startswith("sample:glyphs/")]
    teacher = "sample:glyphs/teacher"
    students = [s for s in specs if s != teacher][:2]
    if teacher in specs and len(students) == 2:
        return {"teacher": teacher, **{s.split("/")[-1]: s for s in students}}, "shipped sample checkpoints"
    from cakd_viz.samples import sample_plans  # the architectures `samples build` trains

    plan = next(p for p in sample_plans() if p.data == "glyphs")
    torch.manual_seed(0)
    models = {
        m.name: build_arch(m.arch, in_channels=1, num_classes=62, image_size=32) for m in plan.models[:3]
    }
    archs = ", ".join(f"{m.name}={m.arch}" for m in plan.models[:3])
    return models, f"untrained {archs}: no sample checkpoints built yet"


def glyph_data(n: int) -> DataSource:
    """The glyph test images repeated to ``n`` samples, normalised like the sample split."""
    base = load_data("sample:glyphs:test")
    reps = -(-n // len(base))
    images = np.tile(base.inputs, (reps, 1, 1))[:n]
    labels = np.tile(base.labels, reps)[:n]
    norm = Normalization(**{k: tuple(v) for k, v in base.normalization.items()})
    ds = ArrayDataset(images, labels, normalization=norm)
    return dataclasses.replace(
        base, dataset=ds, name=f"glyphs:test x{reps} ({n})", inputs=None, labels=ds.labels
    )


def forward_rate(models: dict, source: DataSource, device: torch.device, batch: int, amp: str) -> float:
    """Samples/s of the three models alone on one batch already on the device (no data loading, no writes)."""
    mods = [
        (m if isinstance(m, torch.nn.Module) else load_model(m)[0]).to(device).eval() for m in models.values()
    ]
    x = source.dataset.x[:batch].to(device)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(amp)
    ctx = torch.autocast(device.type, dtype=dtype) if dtype else torch.autocast(device.type, enabled=False)

    def step() -> None:
        with torch.inference_mode(), ctx:
            for m in mods:
                m(x)

    step()  # warm-up (cuDNN autotuning, lazy init)
    reps, start = 0, time.perf_counter()
    while True:
        step()
        reps += 1
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if time.perf_counter() - start > 1.0 and reps >= 3:
            return reps * batch / (time.perf_counter() - start)


def run_one(
    models: dict, source: DataSource, device: str, batch: int, amp: str, workers: int, tmp: Path
) -> dict:
    students = {k: v for k, v in models.items() if k != "teacher"}
    out = tmp / f"b_{device.replace(':', '')}_{batch}_{amp}"
    start = time.perf_counter()
    extract(
        models["teacher"],
        students,
        source,
        out,
        device=device,
        batch_size=batch,
        num_workers=workers,
        autocast=None if amp == "none" else amp,
    )
    total = time.perf_counter() - start
    meta = load_bundle(out, check_values=False).meta["extract"]
    shutil.rmtree(out)
    return {"loop": meta["samples_per_s"], "total": len(source) / total}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    gpu = torch.cuda.is_available()
    p.add_argument("--devices", nargs="+", default=["cpu", "cuda"] if gpu else ["cpu"])
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[256])
    p.add_argument("--gpu-batch-sizes", type=int, nargs="+", default=[1024])
    p.add_argument("--cpu-n", type=int, default=3100, help="samples on the CPU (default: the test split)")
    p.add_argument("--gpu-n", type=int, default=100_000, help="samples on a GPU")
    p.add_argument("--num-workers", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    models, which = glyph_models()
    print(
        f"models: teacher + {', '.join(k for k in models if k != 'teacher')} ({which}); torch {torch.__version__}"
    )
    print(
        f"{'device':<34} {'N':>8} {'batch':>6} {'autocast':>8} {'loop/s':>10} {'total/s':>10} {'forward/s':>10}"
    )
    with tempfile.TemporaryDirectory(prefix="bench_extract_") as tmp:
        for device in args.devices:
            dev = torch.device(device)
            n = args.gpu_n if dev.type == "cuda" else args.cpu_n
            source = glyph_data(n)
            amps = ["none", "bf16", "fp16"] if dev.type == "cuda" else ["none"]
            for batch in args.gpu_batch_sizes if dev.type == "cuda" else args.batch_sizes:
                for amp in amps:
                    r = run_one(models, source, device, batch, amp, args.num_workers, Path(tmp))
                    fwd = forward_rate(models, source, dev, batch, amp)
                    print(
                        f"{describe_device(dev):<34} {n:>8,} {batch:>6} {amp:>8} {r['loop']:>10,.0f} "
                        f"{r['total']:>10,.0f} {fwd:>10,.0f}",
                        flush=True,
                    )


if __name__ == "__main__":
    main()
