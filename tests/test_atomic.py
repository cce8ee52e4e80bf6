"""Every file cakd-viz publishes is written whole (cakd_viz.atomic): a reader sees the old file or the new
one, a failed write leaves the old one and no temporary file, and an error names the file asked for."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from test_full_disk import _left, _on_small_disk

from cakd_viz import atomic


def _names(folder) -> list[str]:
    return sorted(os.listdir(folder))


def test_a_published_file_replaces_the_old_one_whole(tmp_path):
    target = tmp_path / "status.json"
    atomic.write_json(target, {"state": "queued"})
    atomic.write_json(target, {"state": "running", "epoch": 3})
    assert json.loads(target.read_text()) == {"state": "running", "epoch": 3}
    atomic.save_npy(tmp_path / "a.npy", np.arange(6).reshape(2, 3))
    assert np.load(tmp_path / "a.npy", allow_pickle=False).tolist() == [[0, 1, 2], [3, 4, 5]]
    assert _names(tmp_path) == ["a.npy", "status.json"]  # no temporary file left


def test_a_write_that_fails_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "note.txt"
    target.write_text("old\n")
    with pytest.raises(RuntimeError, match="stopped"), atomic.replacing(target) as tmp:
        tmp.write_text("half of the ne")
        raise RuntimeError("stopped")
    assert target.read_text() == "old\n" and _names(tmp_path) == ["note.txt"]


def test_an_error_names_the_file_asked_for_not_the_temporary(tmp_path):
    with pytest.raises(OSError) as err:
        atomic.write_text(tmp_path / "missing" / "x.json", "{}")
    assert err.value.filename == str(tmp_path / "missing" / "x.json")


def test_a_full_disk_keeps_the_old_file_and_leaves_no_temporary():
    script = (
        '"$PYTHON" -c "'
        "from pathlib import Path; from cakd_viz import atomic; import os; "
        "t = Path(os.environ['DISK']) / 'cache.npy'; t.write_bytes(b'old'); "
        "import numpy as np\n"
        "try:\n"
        "    atomic.save_npy(t, np.zeros(4_000_000))\n"
        "except OSError as e:\n"
        "    print('REFUSED', e.filename == str(t), t.read_bytes() == b'old')\n"
        '"'
    )
    out = _on_small_disk(script, size="8m")
    assert "REFUSED True True" in out.stdout, out.stderr[-1500:]
    assert _left(out) == ["cache.npy"]


def test_a_folder_that_cannot_be_published_leaves_the_old_one_in_place(tmp_path):
    target = tmp_path / "bundle"
    target.mkdir()
    (target / "meta.json").write_text("old")
    with pytest.raises(OSError):
        atomic.publish_dir(tmp_path / "never-written", target)  # the rename of the new folder fails
    assert (target / "meta.json").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle"]  # no PATH.old-* beside it
