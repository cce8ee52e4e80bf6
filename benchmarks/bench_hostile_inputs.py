"""Peak memory of `cakd-viz import` on hostile files and on legitimate ones under 200 MB.

    .venv/bin/python benchmarks/bench_hostile_inputs.py [--dir /tmp/cakd-hostile] [--legit-mb 150]

Goal (issue 9) and files: benchmarks/README.md. Each import runs in a fresh subprocess whose VmHWM
(memory-mapped pages included) and RssAnon (numpy buffers) are sampled from /proc; both are deltas over a
tiny valid import in the same run. "legit" is the bytes of the .npy arrays an import produces (a refused
file produces none, so its whole delta counts); "over" = peak delta - legit, the figure the goal bounds.
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

import numpy as np
from probe_support import REPO, H, cli  # H: tests/hostile_files.py, shared with the tests

MiB = 2**20
GOAL_MB = 300


def run_import(src: Path, out: Path, *extra: str) -> dict:
    """Run the CLI import in a subprocess; its exit code, first stderr line and peak memory (MiB)."""
    shutil.rmtree(out, ignore_errors=True)
    done = cli("import", src, "--out", out, *extra, cwd=REPO, timeout=3600)
    legit = sum(f.stat().st_size for f in out.rglob("*.npy")) / MiB if done.code == 0 else 0
    message = (done.stderr.strip().splitlines() or [""])[0]
    return {"code": done.code, "message": message, "legit": legit, "peak": done.peak_mb, "anon": done.anon_mb}


def legit_files(folder: Path, mb: int) -> dict[str, Path]:
    """Legitimate imports of about ``mb`` MB: uncompressed .npz, .safetensors, .pt, and a compressed
    .npz of coarse logits that inflates about 2.5x."""
    import torch
    from safetensors.numpy import save_file

    rng = np.random.default_rng(0)
    c = 1000
    n = mb * MiB // (2 * c * 4)
    teacher = rng.normal(size=(n, c)).astype(np.float32)
    student = (teacher + rng.normal(size=(n, c)).astype(np.float32)).astype(np.float32)
    labels = rng.integers(0, c, n)
    arrays = {"teacher": teacher, "student": student, "labels": labels}
    files = {
        "npz": folder / "legit.npz",
        "safetensors": folder / "legit.safetensors",
        "pt": folder / "legit.pt",
        "npz-compressed": folder / "legit_compressed.npz",
    }
    np.savez(files["npz"], **arrays)
    save_file(arrays, str(files["safetensors"]))
    torch.save({k: torch.from_numpy(v) for k, v in arrays.items()}, files["pt"])
    coarse = {k: np.round(arrays[k] * 2) / 2 for k in ("teacher", "student")}  # deflate gets ~2.5x
    np.savez_compressed(files["npz-compressed"], **coarse, labels=labels)
    return files


def hostile_files(folder: Path) -> dict[str, Path]:
    import torch

    files = {
        "npz bomb (1 GiB per member)": H.npz_bomb(folder / "bomb.npz"),
        "npz header (10^12, 1000)": H.npz_declared_huge(folder / "huge_shape.npz"),
        "npz header (2^32, 2^32)": H.npz_declared_huge(folder / "overflow.npz", (2**32, 2**32)),
        "npz entry lying about its size": H.npz_lying_entry(folder / "lying.npz"),
        "npz header claiming 4 GiB": H.npz_huge_header(folder / "huge_header.npz"),
        "npz with 60,000 entries": H.npz_many_entries(folder / "many.npz"),
        "npz bzip2 member": H.npz_bzip2(folder / "bzip2.npz"),
        "safetensors header of 1 TiB": H.safetensors_huge_header(folder / "huge_header.safetensors"),
        "safetensors (500000, 1000) in 16 bytes": H.safetensors_declared_huge(folder / "huge.safetensors"),
        "safetensors overlapping tensors": H.safetensors_overlapping(folder / "overlap.safetensors"),
        "pt: one storage x 5000 tensors": H.pt_shared_storage(folder / "shared.pt"),
        "pt: 43 MB pickle": H.pt_big_pickle(folder / "pickle.pt"),
    }
    small = {"teacher": torch.zeros(10, 5), "student": torch.zeros(10, 5)}
    torch.save(small, folder / "plain.pt")
    torch.save(small, folder / "legacy.pt", _use_new_zipfile_serialization=False)
    (folder / "random.pt").write_bytes(np.random.default_rng(0).bytes(1000))
    files["pt: members deflated"] = H.pt_recompressed(folder / "plain.pt", folder / "deflated.pt")
    files["pt: legacy format"] = folder / "legacy.pt"
    files["pt: random bytes"] = folder / "random.pt"
    return files


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", type=Path, default=Path("/tmp/cakd-hostile"))
    parser.add_argument("--legit-mb", type=int, default=150, help="size of the legitimate files (MB)")
    args = parser.parse_args()
    folder = args.dir
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    t0 = time.time()
    tiny = folder / "tiny.npz"
    np.savez(tiny, teacher=np.zeros((4, 3), np.float32), student=np.zeros((4, 3), np.float32))
    hostile = hostile_files(folder)
    legit = legit_files(folder, args.legit_mb)
    print(f"built the files in {time.time() - t0:.1f} s under {folder}")
    base = min((run_import(tiny, folder / "out") for _ in range(3)), key=lambda r: r["peak"])
    print(f"baseline (tiny valid .npz): peak {base['peak']:.0f} MiB, anonymous {base['anon']:.0f} MiB\n")
    header = f"{'file':42s} {'size':>9s} {'exit':>4s} {'peak +MiB':>9s} {'anon +MiB':>9s} {'legit MiB':>9s} {'over MiB':>8s}"
    print(header)
    print("-" * len(header))
    worst = 0.0
    cases = [(name, path, ()) for name, path in hostile.items()]
    cases += [(f"legit {name}, {path.stat().st_size / 1e6:.0f} MB", path, ()) for name, path in legit.items()]
    cases.append(("legit npz with --max-bytes 100M", legit["npz"], ("--max-bytes", "100M")))
    messages = []
    for name, path, extra in cases:
        r = run_import(path, folder / "out", *extra)
        size = path.stat().st_size
        peak, anon = r["peak"] - base["peak"], r["anon"] - base["anon"]
        over = peak - r["legit"]
        if size < 200e6:
            worst = max(worst, over)
        print(
            f"{name:42s} {size / 1e6:8.1f}M {r['code']:>4d} {round(peak):9d} {round(anon):9d} "
            f"{round(r['legit']):9d} {round(over):8d}"
        )
        if r["code"] != 0:
            messages.append(f"  {name}: {r['message']}")
    print("\nrefusals (one line each, exit 2):")
    print("\n".join(messages))
    verdict = "meets" if worst <= GOAL_MB else "MISSES"
    print(
        f"\nworst peak over the legitimate arrays, files under 200 MB: {worst:.0f} MiB ({verdict} the {GOAL_MB} MB goal)"
    )
    shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
