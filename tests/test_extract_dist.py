"""Sharded extraction: the shard arithmetic, and `torchrun --nproc-per-node=2 -m cakd_viz extract` on
CPU (gloo) giving the same bundle as one process, and cleaning up when a rank fails."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from cakd_viz.bundle import load_bundle
from cakd_viz.distributed import Group, shard_range
from cakd_viz.extract import extract

REPO = Path(__file__).resolve().parents[1]
MODULE = "cakd_dist_toys"
N, C = 29, 5  # an odd N, so the two shards differ in size

SOURCE = f'''
import torch
from torch import nn
from torch.utils.data import Dataset


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 3, 3, padding=1)
        self.fc = nn.Linear(3 * 6 * 6, {C})

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).flatten(1))


def teacher():
    torch.manual_seed(0)
    return Net()


class Broken(Dataset):
    """Fails on a row of the second rank's shard only."""

    classes = [str(i) for i in range({C})]

    def __len__(self):
        return {N}

    def __getitem__(self, i):
        if i == {N} - 2:
            raise OSError("unreadable image")
        return torch.zeros(1, 6, 6), i % {C}


def broken():
    return Broken()
'''


@pytest.mark.parametrize("n, world", [(29, 2), (10, 3), (2, 4), (1, 1), (1000, 7)])
def test_shards_cover_every_row_once_and_differ_by_at_most_one(n, world):
    shards = [shard_range(n, r, world) for r in range(world)]
    assert [i for s in shards for i in s] == list(range(n))
    sizes = [len(s) for s in shards]
    assert max(sizes) - min(sizes) <= 1


def test_a_single_process_group_has_no_op_collectives():
    g = Group()
    assert g.is_main and not g.distributed and g.shard(7) == range(7)
    assert g.sum([3, 4]) == [3, 4] and g.broadcast("id") == "id"
    g.agree(None, "anything")
    with pytest.raises(ValueError, match="boom"):
        g.agree(ValueError("boom"), "anything")


@pytest.fixture(scope="module")
def toys(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("dist")
    (root / f"{MODULE}.py").write_text(textwrap.dedent(SOURCE))
    sys.path.insert(0, str(root))
    mod = __import__(MODULE)
    save_file(mod.teacher().state_dict(), str(root / "t.safetensors"))
    torch.manual_seed(1)
    torch.save(mod.Net().state_dict(), root / "s.pt")
    rng = np.random.default_rng(0)
    np.savez(root / "d.npz", inputs=rng.integers(0, 256, (N, 6, 6), dtype=np.uint8), labels=np.arange(N) % C)
    yield root
    sys.path.remove(str(root))
    sys.modules.pop(MODULE, None)


def _torchrun(root: Path, args: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), str(REPO)]), "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node=2",
        "-m",
        "cakd_viz",
        "extract",
        *args,
        "--device",
        "cpu",
        "--batch-size",
        "4",
        "-q",
    ]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=root, timeout=180)


def _models(root: Path) -> list[str]:
    return [
        "--teacher",
        f"{MODULE}:Net",
        "--teacher-weights",
        str(root / "t.safetensors"),
        "--student",
        f"kd={MODULE}:Net",
        "--student-weights",
        f"kd={root / 's.pt'}",
    ]


def test_torchrun_two_gloo_ranks_give_the_single_process_bundle(toys, tmp_path):
    out = tmp_path / "dist"
    r = _torchrun(toys, [*_models(toys), "--data", str(toys / "d.npz"), "--out", str(out), "--store-inputs"])
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.count("wrote ") == 1  # rank 0 alone reports
    one = extract(
        f"{MODULE}:Net",
        {"kd": f"{MODULE}:Net"},
        str(toys / "d.npz"),
        tmp_path / "one",
        weights={"teacher": toys / "t.safetensors", "kd": toys / "s.pt"},
        device="cpu",
        batch_size=4,
        store_inputs=True,
    )
    a, b = load_bundle(one), load_bundle(out)
    np.testing.assert_allclose(b.teacher.astype(np.float32), a.teacher.astype(np.float32), atol=1e-3)
    np.testing.assert_allclose(
        b.student("kd").astype(np.float32), a.student("kd").astype(np.float32), atol=1e-3
    )
    np.testing.assert_array_equal(b.labels, a.labels)
    np.testing.assert_array_equal(b.inputs, a.inputs)
    assert b.class_names == a.class_names
    for who in ("teacher", "kd"):
        assert b.accuracy(who) == pytest.approx(a.accuracy(who))
    assert b.meta["students"]["kd"]["accuracy"] == pytest.approx(a.meta["students"]["kd"]["accuracy"])
    run = b.meta["extract"]
    assert (run["world_size"], run["backend"], run["device"]) == (2, "gloo", "cpu")
    assert not list(tmp_path.glob("*.partial-*"))


def test_torchrun_a_failing_rank_aborts_cleanly(toys, tmp_path):
    out = tmp_path / "dist"
    r = _torchrun(toys, [*_models(toys), "--data", f"{MODULE}:broken", "--out", str(out)])
    assert r.returncode != 0
    assert "OSError: unreadable image" in r.stderr
    assert "rank 1 of 2 failed during extracting logits" in r.stderr  # rank 0 learns why
    assert not out.exists() and not list(tmp_path.glob("*.partial-*"))
