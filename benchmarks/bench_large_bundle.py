"""Time and peak memory to decompose a 1,280,000 x 1,000 float16 bundle from disk (memory-mapped).

    .venv/bin/python benchmarks/bench_large_bundle.py [--n 1280000] [--classes 1000] [--dir /tmp/cakd-bench]
                                                      [--remove]

1. Synthesises the bundle with `cakd_viz.bundle.synth` (teacher + one student "kd", ~2.6 GB per array at
   full size), or reuses the one already in DIR when its sizes and seed match.
2. Evicts the bundle's files from the page cache (posix_fadvise DONTNEED), so they are read from disk.
3. Runs `cakd-viz decompose BUNDLE --out DIR/terms.parquet --grouping topk:5 -T 4 --device cpu` in this
   process (progress bar on stderr), which memory-maps the arrays and works chunk by chunk.

A background thread samples /proc/self/status every 50 ms. The figure that matters is peak RssAnon:
anonymous memory (numpy/torch buffers, the result table), which excludes the page cache of the
memory-mapped files; target: under 3 GB (issue 2). VmHWM (peak total RSS, mapped pages included) and
RssFile are shown for context. `--remove` deletes the bundle afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import threading
import time
from pathlib import Path

import torch

from cakd_viz.bundle.synth import synth_bundle
from cakd_viz.cli import main as cli_main
from cakd_viz.cli._common import human_bytes
from cakd_viz.cli.progress import progress_bar

TARGET_BYTES = 3 * 10**9


class MemorySampler:
    """Samples RssAnon, RssFile and VmHWM (bytes) of this process from /proc/self/status in a thread."""

    FIELDS = ("RssAnon", "RssFile", "VmHWM")

    def __init__(self, interval: float = 0.05) -> None:
        self.interval = interval
        self.peak = dict.fromkeys(self.FIELDS, 0)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    @classmethod
    def read(cls) -> dict[str, int]:
        out = {}
        with open("/proc/self/status") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key in cls.FIELDS:
                    out[key] = int(value.split()[0]) * 1024  # kB
        return out

    def _loop(self) -> None:
        while not self._stop.is_set():
            for key, value in self.read().items():
                self.peak[key] = max(self.peak[key], value)
            self._stop.wait(self.interval)

    def __enter__(self) -> MemorySampler:
        _reset_peak_rss()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        for key, value in self.read().items():
            self.peak[key] = max(self.peak[key], value)


def _reset_peak_rss() -> None:
    """Reset VmHWM to the current RSS (Linux >= 4.0), so each phase reports its own peak."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def evict_from_page_cache(root: Path) -> int:
    """Ask the kernel to drop the cached pages of every file under `root`; returns the bytes covered."""
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


def ensure_bundle(path: Path, n: int, classes: int, seed: int) -> None:
    """Synthesise the bundle unless `path` already holds one with these sizes and seed."""
    meta_file = path / "meta.json"
    if meta_file.is_file():
        meta = json.loads(meta_file.read_text())
        found = (meta.get("num_samples"), meta.get("num_classes"), meta.get("synth", {}).get("seed"))
        if found == (n, classes, seed) and "kd" in meta.get("students", {}):
            print(f"reusing {path}")
            return
    print(f"synthesising {n:,} x {classes:,} float16 into {path} ...")
    start = time.perf_counter()
    with MemorySampler() as mem, progress_bar("synth", total=n, delay=0.0) as progress:
        synth_bundle(
            path,
            n=n,
            classes=classes,
            students=("kd",),
            dtype="float16",
            seed=seed,
            overwrite=True,
            progress=progress,
        )
    seconds = time.perf_counter() - start
    print(
        f"synth: {seconds:.1f} s ({n / seconds:,.0f} rows/s), peak RssAnon {human_bytes(mem.peak['RssAnon'])}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=1_280_000, help="samples (default: %(default)s)")
    parser.add_argument("--classes", type=int, default=1000, help="classes (default: %(default)s)")
    parser.add_argument("--dir", type=Path, default=Path("/tmp/cakd-bench"), help="where the bundle lives")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--grouping", default="topk:5")
    parser.add_argument("--temperature", default="4")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--remove", action="store_true", help="delete the bundle and table afterwards")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    args.dir.mkdir(parents=True, exist_ok=True)
    bundle = args.dir / f"synth-{args.n}x{args.classes}-f16"
    out = args.dir / "terms.parquet"

    ensure_bundle(bundle, args.n, args.classes, args.seed)
    size = sum(f.stat().st_size for f in bundle.rglob("*") if f.is_file())
    evicted = evict_from_page_cache(bundle)
    print(f"bundle {human_bytes(size)} on disk; evicted {human_bytes(evicted)} from the page cache")
    argv = [
        "decompose",
        str(bundle),
        "--out",
        str(out),
        "--student",
        "kd",
        "--grouping",
        args.grouping,
        "-T",
        args.temperature,
        "--device",
        "cpu",
    ]
    print("cakd-viz " + " ".join(argv))
    before = MemorySampler.read()
    start = time.perf_counter()
    with MemorySampler() as mem:
        code = cli_main(argv)
    seconds = time.perf_counter() - start
    if code != 0:
        raise SystemExit(f"decompose failed with exit code {code}")
    anon = mem.peak["RssAnon"]
    print(
        f"decompose from disk: {seconds:.1f} s wall, {args.n / seconds:,.0f} rows/s end to end "
        f"(incl. opening, the table and writing {out.name}, {human_bytes(out.stat().st_size)})"
    )
    print(
        f"peak RssAnon {human_bytes(anon)} (before: {human_bytes(before['RssAnon'])}), "
        f"peak VmHWM {human_bytes(mem.peak['VmHWM'])}, peak RssFile {human_bytes(mem.peak['RssFile'])} "
        f"(memory-mapped pages, reclaimable)"
    )
    print(
        f"peak RssAnon vs target: {anon / 1e9:.2f} GB <= 3 GB  {'OK' if anon <= TARGET_BYTES else 'MISSED'}"
    )
    if args.remove:
        shutil.rmtree(bundle)
        out.unlink()
        print(f"removed {bundle} and {out}")


if __name__ == "__main__":
    main()
