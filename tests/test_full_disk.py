"""Writes that cannot get disk space fail with one line and leave nothing behind: on a real, small disk.

Each case runs in a mount namespace of its own (``unshare``) with a fresh tmpfs of a few MB as its disk,
so the disk really fills. Bundles are written through memory maps, where a page the disk has no room for
would be a SIGBUS that kills the process (an app server with every session); the writers reserve a
file's blocks before mapping it, so a full disk is an error naming the file instead.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent


def _on_small_disk(script: str, size: str = "8m", timeout: float = 180) -> subprocess.CompletedProcess:
    """Run bash ``script`` with $DISK a fresh tmpfs of ``size``; ``ls -A $DISK`` is printed last, after
    a line "LEFT:". Fails (never skips) where mount namespaces are not available."""
    if shutil.which("unshare") is None:
        pytest.fail("`unshare` (util-linux) is needed to give a test a small disk of its own")
    wrapped = (
        "DISK=$(mktemp -d) && mount -t tmpfs -o size="
        + size
        + ' tmpfs "$DISK" && export DISK && cd "$DISK" && '
        f'( {script} ); rc=$?; echo LEFT:; ls -A "$DISK"; exit $rc'
    )
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHON": sys.executable}
    out = subprocess.run(
        ["unshare", "--map-root-user", "--mount", "bash", "-c", wrapped],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )
    if "mount:" in out.stderr and "LEFT:" not in out.stdout:
        pytest.fail(f"no small disk could be mounted here: {out.stderr.strip()[-300:]}")
    return out


def _left(out: subprocess.CompletedProcess) -> list[str]:
    return out.stdout.split("LEFT:\n", 1)[1].split()


def test_synth_on_a_full_disk_is_one_line_and_leaves_nothing():
    out = _on_small_disk('"$PYTHON" -m cakd_viz synth --n 100000 --classes 50 --out "$DISK/big" -q')
    assert out.returncode == 2, out.stderr
    (line,) = out.stderr.strip().splitlines()
    assert (
        line.startswith("cakd-viz synth: error: ") and "big/teacher.npy: no room on the disk for its" in line
    )
    assert ".partial-" not in line
    assert _left(out) == []


def test_an_import_that_does_not_fit_is_one_line_and_leaves_nothing(tmp_path):
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(40_000, 50)).astype(np.float32)  # 8 MB per array, 16 MB in all
    np.savez(tmp_path / "big.npz", teacher=logits, student=logits)
    out = _on_small_disk(f'"$PYTHON" -m cakd_viz import {tmp_path / "big.npz"} --out "$DISK/b"')
    assert out.returncode == 2, out.stderr
    (line,) = out.stderr.strip().splitlines()
    assert "no room on the disk for its" in line and ".partial-" not in line
    assert _left(out) == []


def test_an_upload_to_a_full_disk_is_refused_and_the_server_process_lives_on(tmp_path):
    """What the app's upload route does with an honest file on a nearly full disk: one line, nothing
    left, and the process (the server, in the app) still runs and can import a small file after."""
    rng = np.random.default_rng(1)
    big, small = io.BytesIO(), io.BytesIO()
    np.savez(
        big,
        teacher=rng.normal(size=(30_000, 50)).astype(np.float32),
        student=np.zeros((30_000, 50), np.float32),
    )
    np.savez(
        small, teacher=rng.normal(size=(50, 5)).astype(np.float32), student=np.zeros((50, 5), np.float32)
    )
    (tmp_path / "big.npz").write_bytes(big.getvalue())
    (tmp_path / "small.npz").write_bytes(small.getvalue())
    code = f"""
from pathlib import Path
from cakd_viz.app import bundles
try:
    bundles.import_upload("big.npz", Path({str(tmp_path / "big.npz")!r}).read_bytes())
except ValueError as exc:
    print("REFUSED:", exc)
print("SMALL:", bundles.import_upload("small.npz", Path({str(tmp_path / "small.npz")!r}).read_bytes()))
"""
    out = _on_small_disk(f'TMPDIR="$DISK" "$PYTHON" -c {_quote(code)}', size="12m")
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.splitlines()
    refused = next(line for line in lines if line.startswith("REFUSED:"))
    assert "no room on the disk" in refused and "/tmp/" not in refused  # no server path for a browser
    assert any(line.startswith("SMALL: upload:") for line in lines)
    left = _left(out)
    assert left == ["cakd-viz-uploads"]  # the small upload's folder only, no partial import


def _quote(code: str) -> str:
    return "'" + code.replace("'", "'\"'\"'") + "'"
