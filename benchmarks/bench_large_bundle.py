"""A 1,280,000 x 1,000 float16 bundle: decompose from the page cache against the old engine, and from disk.

    .venv/bin/python benchmarks/bench_large_bundle.py [--n 1280000] [--classes 1000] [--dir DIR]
                                                      [--repeats 3] [--skip-cold] [--keep] [--bundle B]
                                                      [--temperatures 4 1]

The steps and targets: benchmarks/README.md. The old engine is frozen in baseline_decompose.py (issue 11);
at T <= 2 the kernel redoes 1-2% of real students' rows in double. The from-disk run evicts the files
(posix_fadvise DONTNEED) and samples /proc/self/status every 50 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from baseline_decompose import baseline_decompose
from bench_decompose import rounds

from cakd_viz.bundle import load_bundle
from cakd_viz.bundle.npy import human_size
from cakd_viz.cli import main as cli_main
from cakd_viz.decomposition import decompose, decompose_many, native_path
from cakd_viz.decomposition.scan import scan_logits

TARGET_BYTES = 3 * 10**9


def rss() -> dict[str, int]:
    """RssAnon and RssFile (bytes) of this process, from /proc/self/status."""
    with open("/proc/self/status") as f:
        fields = [line.split() for line in f]
    return {f[0][:-1]: int(f[1]) * 1024 for f in fields if f[:1] in (["RssAnon:"], ["RssFile:"])}  # kB


@contextmanager
def peak_rss(every_s: float = 0.05) -> Iterator[dict[str, int]]:
    """The peak of each of ``rss()`` while the block runs, sampled in a thread."""
    peak, stop = rss(), threading.Event()

    def sample() -> None:
        while not stop.wait(every_s):
            peak.update({k: max(v, peak[k]) for k, v in rss().items()})

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield peak
    finally:
        stop.set()
        thread.join()
        peak.update({k: max(v, peak[k]) for k, v in rss().items()})


def evict_from_page_cache(root: Path) -> int:
    """Ask the kernel to drop the cached pages of every .npy file under `root`; returns the bytes covered."""
    total = 0
    for file in root.rglob("*.npy"):
        fd = os.open(file, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            total += file.stat().st_size
        finally:
            os.close(fd)
    return total


def ensure_bundle(path: Path, n: int, classes: int) -> None:
    """Create the bundle with the command line's `synth` unless `path` holds one of these sizes."""
    meta_file = path / "meta.json"
    if meta_file.is_file():
        meta = json.loads(meta_file.read_text())
        if (meta.get("num_samples"), meta.get("num_classes")) == (n, classes) and "kd" in meta.get(
            "students", {}
        ):
            print(f"reusing {path}")
            return
    cmd = [sys.executable, "-m", "cakd_viz", "synth", "--n", str(n), "--classes", str(classes)]
    cmd += ["--dtype", "float16", "--out", str(path), "--overwrite"]
    print("$ " + " ".join(["python", *cmd[1:]]), flush=True)
    start = time.perf_counter()
    subprocess.run(cmd, check=True)
    print(f"synth: {time.perf_counter() - start:.0f} s")


def warm(arr: np.ndarray) -> None:
    """Read every page of a memory-mapped array once, so that it sits in the page cache."""
    step = max(1, (64 << 20) // (arr.shape[1] * arr.itemsize))
    for start in range(0, arr.shape[0], step):
        np.asarray(arr[start : start + step]).max()


def page_cache(bundle: Path, repeats: int) -> None:
    b = load_bundle(bundle, check_values=False)
    teacher, student = b.teacher, b.student("kd")
    for arr in (teacher, student):
        warm(arr)
    kw = {"grouping": "topk:5", "temperature": 4.0}
    results = {}
    fns = {
        "decompose (kernel)": lambda: results.update(new=decompose(student, teacher, device="cpu", **kw)),
        "old engine": lambda: results.update(old=baseline_decompose(student, teacher, **kw)),
    }
    times = rounds(fns, repeats, warmup=0)
    print(f"from the page cache ({b.num_samples:,} x {b.num_classes:,} {b.dtype}, topk:5, T=4, device cpu):")
    for name, ts in times.items():
        print(
            f"  {name:<20} median {statistics.median(ts):6.2f} s   min {min(ts):6.2f}   max {max(ts):6.2f}   (n={len(ts)})"
        )
    new, old = results["new"], results["old"]
    print(f"  max |kernel KL - old engine KL|: {np.max(np.abs(new.kl - old['kl'])):.1e} nats")
    ratio = statistics.median(times["old engine"]) / statistics.median(times["decompose (kernel)"])
    print(f"old engine / decompose = {ratio:.1f}x (target >= 3)  {'OK' if ratio >= 3 else 'MISSED'}")


def students(bundle: Path, repeats: int, temperatures: list[float]) -> None:
    """What a page of the app asks for: both students in one pass (decompose_many) against one
    decompose each, and the scan that opens the bundle (NaN/inf check and predictions) of each file."""
    b = load_bundle(bundle, check_values=False)
    pair = [b.student(name) for name in b.student_names[:2]]
    for arr in (b.teacher, *pair):
        warm(arr)
    for temperature in temperatures:
        for grouping in ("topk:5", "mass:0.9"):
            kw = {"grouping": grouping, "temperature": temperature, "device": "cpu"}
            fns = {
                "one decompose each": lambda kw=kw: [decompose(s, b.teacher, b.labels, **kw) for s in pair],
                "decompose_many": lambda kw=kw: decompose_many(pair, b.teacher, b.labels, **kw),
            }
            _rounds(fns, repeats, f"{' and '.join(b.student_names[:2])} under {grouping}, T={temperature:g}")
    _rounds(
        {"scan_logits, every file": lambda: [scan_logits(a) for a in (b.teacher, *pair)]}, repeats, "opening"
    )


def _rounds(fns: dict, repeats: int, title: str) -> None:
    """Run each function ``repeats`` times in turn; print wall and CPU seconds (medians) with the load."""
    load = os.getloadavg()[0]
    both = rounds(fns, repeats, warmup=0, clock=lambda: np.array([time.perf_counter(), time.process_time()]))
    print(f"{title} (load average {load:.2f} before, {os.getloadavg()[0]:.2f} after):")
    for name, rows in both.items():
        (wall, cpu), fastest = np.median(rows, axis=0), min(r[0] for r in rows)
        print(
            f"  {name:<24} median {wall:6.2f} s wall, {cpu:6.2f} s CPU   (min {fastest:.2f} s, n={repeats})"
        )


def from_disk(bundle: Path, out: Path) -> None:
    evicted = evict_from_page_cache(bundle)
    print(f"evicted {human_size(evicted)} from the page cache")
    argv = ["decompose", str(bundle), "--out", str(out)]
    argv += "--student kd --grouping topk:5 -T 4 --device cpu".split()
    print("cakd-viz " + " ".join(argv))
    before = rss()
    start = time.perf_counter()
    with peak_rss() as peak:
        code = cli_main(argv)
    seconds = time.perf_counter() - start
    if code != 0:
        raise SystemExit(f"decompose failed with exit code {code}")
    anon = peak["RssAnon"]
    print(
        f"from disk, end to end (opening, the table, writing {out.name}, {human_size(out.stat().st_size)}): "
        f"{seconds:.1f} s; peak RssAnon {human_size(anon)} (before: {human_size(before['RssAnon'])}), "
        f"peak RssFile {human_size(peak['RssFile'])} (memory-mapped pages, reclaimable)"
    )
    print(f"peak RssAnon: {anon / 1e9:.2f} GB (target < 3 GB)  {'OK' if anon <= TARGET_BYTES else 'MISSED'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=1_280_000, help="samples (default: %(default)s)")
    parser.add_argument("--classes", type=int, default=1000, help="classes (default: %(default)s)")
    parser.add_argument(
        "--dir", type=Path, default=None, help="where the bundle lives (default: a temporary folder)"
    )
    parser.add_argument("--repeats", type=int, default=3, help="page-cache rounds (default: %(default)s)")
    parser.add_argument("--skip-cold", action="store_true", help="skip the from-disk run")
    parser.add_argument("--keep", action="store_true", help="keep the bundle and the table afterwards")
    parser.add_argument("--bundle", type=Path, default=None, help="an existing bundle to use (never deleted)")
    parser.add_argument(
        "--temperatures",
        type=float,
        nargs="+",
        default=[4.0],
        metavar="T",
        help="temperatures of the both-students step (default: 4)",
    )
    args = parser.parse_args()
    torch.set_num_threads(2)
    made = args.dir is None
    root = Path(tempfile.mkdtemp(prefix="cakd-bench-")) if made else args.dir
    root.mkdir(parents=True, exist_ok=True)
    bundle = args.bundle.resolve() if args.bundle else root / f"synth-{args.n}x{args.classes}-f16"
    out = root / "terms.parquet"
    print(
        f"{native_path.LIBRARY.status()}; torch {torch.__version__}, 2 threads; load average {os.getloadavg()[0]:.2f}"
    )
    try:
        ensure_bundle(bundle, args.n, args.classes)
        size = sum(f.stat().st_size for f in bundle.rglob("*") if f.is_file())
        print(f"bundle {human_size(size)} at {bundle}")
        page_cache(bundle, args.repeats)
        students(bundle, args.repeats, args.temperatures)
        if not args.skip_cold:
            from_disk(bundle, out)
        print(f"load average {os.getloadavg()[0]:.2f} at the end")
    finally:
        if not args.keep:
            out.unlink(missing_ok=True)
            if args.bundle is None:  # a bundle it was given is never removed
                shutil.rmtree(bundle, ignore_errors=True)
                print(f"removed {bundle}")
            if made:
                shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
