"""Peak memory of the app's server while it takes hostile uploads (and one large honest one).

Starts `streamlit run app.py` on a free port (a private temp folder, so its uploads land there), opens
the Data page in Debian's Chromium, uploads each file through the real file uploader and reads the
server process's peak resident memory (VmHWM, reset before each upload through /proc/PID/clear_refs).
For each file it prints what the app said (one line) and, in MiB:

  peak +      how far the server's peak resident memory (VmHWM) rose above its resident memory just
              before the upload; it includes the pages of memory-mapped bundle files being written
              and read (page cache the kernel can drop)
  heap +      the same for its anonymous memory (RssAnon, sampled every 5 ms): the app's own memory
  upload      the file's size (Streamlit keeps the upload in memory while its widget holds it)
  arrays      the arrays an honest file legitimately produces (0 for a refused one)
  excess      heap + minus upload minus arrays: the goal is < 300 MB for every file under the limit

The hostile files: .npz members of zeros that inflate ~1000x (a decompression bomb, 2 x 1 GiB), an .npz
whose header declares 4 TB, a .safetensors whose header declares 40 GB in a small file, a .pt whose
storages are deflated (torch.save stores them raw) to 2 x 1 GiB, and `--honest-mb` MB of random bytes
named .npz (what Streamlit's upload route itself costs: the app refuses it at once). The honest one: an
uncompressed .npz of float16 logits of about `--honest-mb` MB (default 180: under the 200 MB upload limit, which the browser counts in units of 10^6 bytes).

    .venv/bin/python benchmarks/bench_app_uploads.py [--honest-mb 180] [--keep DIR]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))  # the hostile-file builders, shared with the tests

import hostile_files as H  # noqa: E402

from cakd_viz.app import serve  # noqa: E402

MB = 2**20
UPLOAD_INPUT = '[data-testid="stFileUploaderDropzoneInput"][accept*=".npz"]'  # the bundle uploader, not the class-names one
ERROR_BOX = '[data-testid="stAlertContentError"]'


# -- the files --------------------------------------------------------------------------------------


def npz_huge_header(path: Path) -> Path:
    """An .npz whose members declare (10^9, 1000) float32 (4 TB) and hold a few bytes."""
    head = H.npy_header((10**9, 1000)) + bytes(64)
    return H.write_zip(path, [H.stored(f"{k}.npy", head) for k in ("teacher", "student")])


def safetensors_huge_header(path: Path) -> Path:
    """A .safetensors file whose header declares 2 x 20 GB tensors; the file is a few hundred bytes."""
    n, shape = 10**6 * 5000 * 4, [10**6, 5000]
    meta = {
        k: {"dtype": "F32", "shape": shape, "data_offsets": [i * n, (i + 1) * n]}
        for i, k in enumerate(("teacher", "student"))
    }
    return H.safetensors_file(path, meta, bytes(64))


def honest_npz(path: Path, mb: int) -> tuple[Path, int]:
    """An uncompressed .npz of float16 logits (teacher, one student, labels) of about `mb` MB; returns
    (path, bytes of the arrays it holds)."""
    classes = 500
    n = mb * MB // (2 * classes * 2)
    rng = np.random.default_rng(0)
    labels = rng.integers(0, classes, n)
    teacher = rng.standard_normal((n, classes), dtype=np.float32).astype(np.float16)
    student = (teacher + rng.standard_normal((n, classes), dtype=np.float32)).astype(np.float16)
    np.savez(path, teacher=teacher, student=student, labels=labels)
    return path, teacher.nbytes + student.nbytes + labels.nbytes


def pt_deflated(folder: Path) -> Path:
    """A torch.save file of two 1 GiB zero tensors, rewritten with deflated members."""
    import torch

    raw = folder / "archive.pt"  # torch names its members after the file: archive/..., as from a buffer
    n = H.GiB // 4 // 100
    torch.save({"teacher": torch.zeros(n, 100), "student": torch.zeros(n, 100)}, raw)
    try:
        return H.pt_recompressed(raw, folder / "deflated.pt")
    finally:
        raw.unlink()


def hostile_files(folder: Path, honest_mb: int) -> list[tuple[str, Path, int]]:
    """(what, file, bytes of the arrays it legitimately produces) for every file the benchmark uploads."""
    folder.mkdir(parents=True, exist_ok=True)
    files = [
        ("npz bomb, 2 x 1 GiB of zeros", H.npz_bomb(folder / "bomb.npz"), 0),
        ("npz declaring 4 TB", npz_huge_header(folder / "huge.npz"), 0),
        ("safetensors declaring 40 GB", safetensors_huge_header(folder / "huge.safetensors"), 0),
        ("pt with deflated 2 x 1 GiB", pt_deflated(folder), 0),
    ]
    if honest_mb:
        junk = folder / "junk.npz"
        junk.write_bytes(np.random.default_rng(1).bytes(honest_mb * MB))
        files.append((f"junk npz, {honest_mb} MB", junk, 0))
        path, arrays = honest_npz(folder / "honest.npz", honest_mb)
        files.append((f"honest npz, {honest_mb} MB", path, arrays))
    return files


# -- the measurement ----------------------------------------------------------------------------------


def upload_and_measure(server: serve.Server, page, path: Path, timeout_s: float = 300) -> dict:
    """Upload `path` on the open Data page; returns what the app said and the server's rise in memory
    (bytes): "total" (peak resident, memory-mapped files included) and "anon" (peak heap, sampled)."""
    serve.wait_rendered(page)
    before = serve.memory_bytes(server.pid)
    serve.reset_peak_memory(server.pid)
    said = ""
    with serve.PeakAnon(server.pid) as anon:
        page.locator(UPLOAD_INPUT).set_input_files(str(path))
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and not said:
            page.wait_for_timeout(250)
            errors = page.locator(ERROR_BOX)
            if errors.count():
                said = errors.first.inner_text().strip()
            elif f"upload: {path.name}" in page.locator('[data-testid="stSidebar"]').inner_text():
                said = f"opened as upload: {path.name}"
        serve.wait_rendered(page)
    after = serve.memory_bytes(server.pid)
    return {
        "said": said or "(no answer)",
        "total": after["peak"] - before["rss"],
        "anon": anon.peak - before["anon"],
    }


def run(honest_mb: int, keep: Path | None) -> list[tuple[str, str, list[float]]]:
    """Upload every file to a fresh server (its temp folder a private one): per file, what the app said and
    the figures in MiB: peak +, heap +, upload, arrays and excess (see the module docstring)."""
    rows = []
    with tempfile.TemporaryDirectory(prefix="cakd-bench-uploads-") as work:
        files = hostile_files(keep or Path(work) / "files", honest_mb)
        (Path(work) / "tmp").mkdir()
        with serve.running_server(env={"TMPDIR": f"{work}/tmp"}) as server, serve.browser() as b:
            page = b.new_page(viewport={"width": 1400, "height": 900})
            for what, path, arrays in files:
                page.goto(f"{server.url}/data?bundle=sample:digits")
                serve.wait_rendered(page)
                page.get_by_role("tab", name="Upload a file").click()
                m = upload_and_measure(server, page, path)
                size = path.stat().st_size
                figures = [m["total"], m["anon"], size, arrays, m["anon"] - size - arrays]
                rows.append((what, m["said"], [x / MB for x in figures]))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--honest-mb", type=int, default=180, help="size of the honest upload and the junk one (0: none)"
    )
    parser.add_argument("--keep", type=Path, help="write the files here (default: a temporary folder)")
    args = parser.parse_args()
    rows = run(args.honest_mb, args.keep)
    print(
        f"{'file':32s} {'peak +':>7s} {'heap +':>7s} {'upload':>7s} {'arrays':>7s} {'excess':>7s}  the app said"
    )
    for what, said, figures in rows:
        print(f"{what:32s} " + " ".join(f"{x:7.1f}" for x in figures) + f"  {said[:100]}")
    worst = max(figures[-1] for _, _, figures in rows)
    print(f"largest excess (heap + minus upload minus arrays): {worst:.1f} MiB (goal < 300 MB)")


if __name__ == "__main__":
    main()
