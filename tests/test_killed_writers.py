"""Writers killed outright (SIGKILL) leave `<bundle>.partial-*` folders and `.<table>.tmp-*` files; the
next write to the same target removes them, and never a live concurrent writer's (issue 9, item 7)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from conftest import make_logits
from runs_support import wait_for

from cakd_viz import processes
from cakd_viz.bundle import load_bundle, write_bundle
from cakd_viz.bundle.writer import LAYOUT, remove_abandoned
from cakd_viz.cli._common import remove_abandoned_temps

REPO = Path(__file__).resolve().parent.parent
ENV = os.environ | {"PYTHONPATH": str(REPO)}


def _cli(*args: object) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "cakd_viz", *map(str, args)], capture_output=True, text=True, cwd=REPO, env=ENV
    )


def _start_big_synth(out: Path) -> tuple[subprocess.Popen, Path]:
    """A synth that takes a while; returns it once its partial folder has arrays being written."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cakd_viz",
            "synth",
            "--n",
            "3000000",
            "--classes",
            "100",
            "--out",
            str(out),
            "-q",
        ],
        cwd=REPO,
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    partial = wait_for(
        lambda: next((p for p in out.parent.glob(f"{out.name}.partial-*") if (p / LAYOUT).exists()), None),
        120,
        "the synth to start writing",
    )
    return proc, partial


def test_a_killed_writers_partial_bundle_is_removed_by_the_next_write(tmp_path):
    out = tmp_path / "b"
    proc, partial = _start_big_synth(out)
    owner = json.loads((partial / LAYOUT).read_text())["owner"]
    assert owner["pid"] == proc.pid and owner["pid_start"] is not None
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert partial.is_dir() and not out.exists()  # what a killed writer leaves
    done = _cli("synth", "--n", "100", "--classes", "5", "--out", out, "-q")
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]
    assert load_bundle(out).num_samples == 100


def test_a_live_writers_partial_bundle_is_kept(tmp_path):
    out = tmp_path / "b"
    proc, partial = _start_big_synth(out)
    try:
        os.utime(partial, (time.time() - 3600, time.time() - 3600))  # old, but its writer is alive
        done = _cli("synth", "--n", "100", "--classes", "5", "--out", out, "-q")
        assert done.returncode == 0, done.stderr
        assert partial.is_dir() and proc.poll() is None  # the concurrent writer goes on
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    again = _cli("synth", "--n", "50", "--classes", "5", "--out", out, "--overwrite", "-q")
    assert again.returncode == 0, again.stderr
    assert not partial.exists() and load_bundle(out).num_samples == 50


def _partial(folder: Path, name: str, owner: dict | None, age_s: float) -> Path:
    path = folder / name
    path.mkdir()
    if owner is not None:
        (path / LAYOUT).write_text(json.dumps({"owner": owner}))
    (path / "teacher.npy").write_bytes(b"half")
    os.utime(path, (time.time() - age_s, time.time() - age_s))
    return path


def test_which_leftovers_count_as_abandoned(tmp_path):
    sleeper = subprocess.Popen(["sleep", "60"])
    dead = subprocess.Popen(["true"])
    dead.wait()
    try:
        live = _partial(tmp_path, "b.partial-live", processes.identity(sleeper.pid), 7200)
        gone = _partial(tmp_path, "b.partial-gone", processes.identity(dead.pid) | {"pid_start": 1}, 0)
        fresh = _partial(tmp_path, "b.partial-fresh", None, 0)  # killed before its layout was written
        stale = _partial(tmp_path, "b.partial-stale", None, 120)
        remote = _partial(
            tmp_path, "b.partial-remote", {"pid": 1, "pid_start": 1, "host": "other-node"}, 7200
        )
        remote_old = _partial(
            tmp_path, "b.partial-remote-old", {"pid": 1, "pid_start": 1, "host": "other-node"}, 3 * 86400
        )
        old = _partial(tmp_path, "b.old-123", None, 0)  # a replaced bundle its publisher was deleting
        other = _partial(tmp_path, "bb.partial-x", None, 7200)  # another target's
        (tmp_path / "b.partial-link").symlink_to(other)
        removed = remove_abandoned(tmp_path / "b")
        assert sorted(p.name for p in removed) == sorted(p.name for p in (gone, stale, remote_old, old))
        assert all(p.exists() for p in (live, fresh, remote, other, tmp_path / "b.partial-link"))
    finally:
        sleeper.kill()
        sleeper.wait()


def test_an_owner_tag_is_read_from_the_end_of_a_name_that_holds_a_look_alike_earlier():
    tag = processes.owner_tag()
    name = f".scores-12-34-deadbeef.csv.tmp-{tag}"  # "12-34-deadbeef" reads like a tag too
    assert processes.parse_owner_tag(name) == processes.parse_owner_tag(tag)
    assert processes.parse_owner_tag(name)["pid"] == os.getpid()


def test_a_killed_table_writers_temp_file_is_removed_by_the_next_write(tmp_path):
    student, teacher, labels = make_logits()
    bundle = write_bundle(tmp_path / "b", teacher=teacher, students={"kd": student}, labels=labels)
    out = tmp_path / "t.csv"
    # a writer that stops half-way through its temp file (as a slow disk or a kill would find it)
    code = (
        "import sys, time, pandas as pd\n"
        "from pathlib import Path\n"
        "from cakd_viz.cli._common import write_table\n"
        "def half(self, path, **kw):\n"
        "    Path(path).write_text('id,kl\\n1,')\n"
        "    print('writing', flush=True)\n"
        "    time.sleep(120)\n"
        "pd.DataFrame.to_csv = half\n"
        "write_table(pd.DataFrame({'a': [1]}), Path(sys.argv[1]))\n"
    )
    writer = subprocess.Popen(
        [sys.executable, "-c", code, str(out)], cwd=REPO, env=ENV, stdout=subprocess.PIPE, text=True
    )
    try:
        assert writer.stdout.readline().strip() == "writing"
        (tmp,) = tmp_path.glob(".t.csv.tmp-*")
        assert (
            tmp.name == f".t.csv.tmp-{writer.pid}-{processes.start_ticks(writer.pid)}-{processes.host_tag()}"
        )
        os.utime(tmp, (time.time() - 3600, time.time() - 3600))
        first = _cli("decompose", bundle, "--out", out, "-q")
        assert first.returncode == 0, first.stderr
        assert tmp.exists()  # its writer is alive: never removed under it
    finally:
        writer.send_signal(signal.SIGKILL)
        writer.wait()
    second = _cli("decompose", bundle, "--out", out, "-q")
    assert second.returncode == 0, second.stderr
    assert not tmp.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["b", "t.csv"]
    assert len(pd.read_csv(out)) == 200


@pytest.mark.parametrize(
    ("name", "age", "removed"),
    [(".t.csv.tmp-4242", 30, False), (".t.csv.tmp-4242", 120, True), (".t.csv.tmp-garbage-name", 120, True)],
)
def test_temp_files_without_an_owner_tag_go_after_a_minute(tmp_path, name, age, removed):
    tmp = tmp_path / name
    tmp.write_text("half")
    os.utime(tmp, (time.time() - age, time.time() - age))
    assert (remove_abandoned_temps(tmp_path / "t.csv") == [tmp]) is removed
    assert tmp.exists() is not removed
