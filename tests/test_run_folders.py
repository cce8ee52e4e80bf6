"""Run folders read defensively (issue 9, items 5 and 6): broken folders read as ``corrupt`` with their
reason and never break a table or a page; liveness by host, pid and start time; a final state is never
rewritten, and `cakd-viz tune --run-dir` on an ended run (a kill -9 included) is refused in one line."""

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
from runs_support import make_teacher, tiny_config, wait_for

from cakd_viz.runs import RunConfig, cancel, launch, list_runs, list_sweeps, read_run, runs_table, store
from cakd_viz.runs.results import TABLE_COLUMNS, metrics_frame, sweep_frame, tracker_table

REPO = Path(__file__).resolve().parent.parent


def _cli(*args: object) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "cakd_viz", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=os.environ | {"PYTHONPATH": str(REPO)},
        timeout=300,
    )


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _folder(root: Path, name: str, config: object = None, status: object = None) -> Path:
    """A run folder with config.json and status.json written as given (raw bytes, or JSON of objects)."""
    path = root / name
    path.mkdir(parents=True)
    for file, value in ((store.CONFIG, config), (store.STATUS, status)):
        if value is None:
            continue
        data = value if isinstance(value, bytes) else json.dumps(value).encode()
        (path / file).write_bytes(data)
    (path / store.LOG).write_text("the run's own log\n")
    return path


GOOD_CONFIG = {
    "name": "ok",
    "data": "sample:digits",
    "student": "mlp",
    "loss": {"name": "kd"},
    "seed": 0,
    "epochs": 2,
}


def _done_status() -> dict:
    return {"state": "done", "created": time.time() - 100, "started": time.time() - 90, "ended": time.time()}


BROKEN = [
    (
        "created beyond float",
        GOOD_CONFIG,
        {"state": "queued", "created": 10**400},
        "status.json: 'created' must be a number, found 1000000000000000000000000000000000000...",
    ),
    (
        "created yesterday",
        GOOD_CONFIG,
        {"state": "queued", "created": "yesterday"},
        "status.json: 'created' must be a number, found 'yesterday'",
    ),
    (
        "started x",
        GOOD_CONFIG,
        {"state": "running", "started": "x", "pid": 5},
        "status.json: 'started' must be a number, found 'x'",
    ),
    ("loss list", {"loss": [1]}, {"state": "done"}, "config.json: 'loss' must be an object, found [1]"),
    (
        "loss name int",
        {"loss": {"name": 5}},
        {"state": "done"},
        "config.json: 'loss.name' must be a string, found 5",
    ),
    (
        "epochs text",
        {"epochs": "five"},
        {"state": "done"},
        "config.json: 'epochs' must be a whole number, found 'five'",
    ),
    (
        "pid text",
        GOOD_CONFIG,
        {"state": "running", "pid": "1234"},
        "status.json: 'pid' must be a whole number, found '1234'",
    ),
    (
        "pid bool",
        GOOD_CONFIG,
        {"state": "running", "pid": True},
        "status.json: 'pid' must be a whole number, found True",
    ),
    (
        "state list",
        GOOD_CONFIG,
        {"state": ["running"]},
        "status.json: 'state' must be a string, found ['running']",
    ),
    ("state unknown", GOOD_CONFIG, {"state": "exploded"}, "status.json has an unknown state 'exploded'"),
    ("no state", GOOD_CONFIG, {"pid": 3}, "status.json: 'state' is missing"),
    ("config list", [1, 2], {"state": "done"}, "config.json does not hold a JSON object (found list)"),
    ("status null", GOOD_CONFIG, b"null", "status.json does not hold a JSON object (found NoneType)"),
    ("status binary", GOOD_CONFIG, bytes(range(256)) * 4, "status.json is not text (binary data)"),
    ("config torn", b'{"name": "x", "lo', {"state": "done"}, "config.json is not valid JSON"),
    ("deep nesting", GOOD_CONFIG, b"[" * 200_000 + b"]" * 200_000, "status.json is not valid JSON"),
    (
        "huge int",
        GOOD_CONFIG,
        b'{"state": "running", "pid": ' + b"9" * 5000 + b"}",
        "status.json is not valid JSON",
    ),
    ("no status", GOOD_CONFIG, None, "status.json is missing"),
]


@pytest.mark.parametrize(("case", "config", "status", "reason"), BROKEN, ids=[b[0] for b in BROKEN])
def test_a_broken_folder_reads_corrupt_and_the_rest_of_the_table_is_intact(
    tmp_path, case, config, status, reason
):
    root = tmp_path / "runs"
    good = _folder(root, "20250101-000000-good", GOOD_CONFIG, _done_status())
    (good / store.SUMMARY).write_text(
        json.dumps({"best_val_acc": 0.9, "last_val_acc": 0.8, "teacher_val_acc": 0.95, "best_epoch": 1})
    )
    (good / store.BUNDLE).mkdir()
    (good / store.BUNDLE / "meta.json").write_text("{}")
    (good / f"{store.WEIGHTS}.json").write_text("{}")
    bad = _folder(root, "20250102-000000-bad", config, status)
    before = _snapshot(root)
    runs = list_runs(root)
    assert [r.id for r in runs] == [bad.name, good.name]
    info = runs[0]
    assert info.state == store.CORRUPT and info.error.startswith(reason), info.error
    assert "\n" not in info.error and len(info.error) < 300
    assert runs[1].state == "done" and runs[1].best_acc == 0.9
    table = runs_table(runs)
    assert list(table.columns) == list(TABLE_COLUMNS)
    row = table.iloc[0]
    assert row["state"] == "corrupt" and row["error"] == info.error
    for column in ("best_acc", "last_acc", "duration_s"):
        assert row[column] is None or row[column] != row[column]  # None, or NaN in a float column
    assert table.iloc[1]["best_acc"] == 0.9
    sweep_frame(runs)
    assert isinstance(info.label, str) and (info.duration, info.active, info.bundle_path) == (
        None,
        False,
        None,
    )
    assert _snapshot(root) == before  # reading never writes


def test_an_unreadable_file_reads_corrupt(tmp_path):
    run = _folder(tmp_path, "r", GOOD_CONFIG, None)
    (run / store.STATUS).mkdir()  # a directory where the file should be: unreadable even for root
    info = read_run(run)
    assert info.state == store.CORRUPT and info.error.startswith("status.json is unreadable")


def test_a_done_run_with_a_damaged_summary_reads_corrupt(tmp_path):
    run = _folder(tmp_path, "r", GOOD_CONFIG, _done_status())
    (run / store.SUMMARY).write_text(json.dumps({"best_val_acc": "high", "last_val_acc": 0.5}))
    info = read_run(run)
    assert info.state == store.CORRUPT
    assert info.error == "marked done, but summary.json: 'best_val_acc' must be a number, found 'high'"


def test_wrong_values_in_metrics_never_reach_a_table_or_a_curve(tmp_path):
    run = _folder(tmp_path, "r", GOOD_CONFIG, {"state": "failed", "error": "boom"})
    lines = [
        {"kind": "epoch", "epoch": 1, "val_acc": 0.5},
        {"kind": "epoch", "epoch": "two", "val_acc": "good"},
        {"kind": "epoch", "epoch": 3, "val_acc": [1]},
        {"kind": "epoch", "epoch": 4, "val_acc": 0.7},
        # json writes NaN and Infinity, and reads them back: never an accuracy
        {"kind": "epoch", "epoch": 5, "val_acc": float("nan")},
        {"kind": "epoch", "epoch": 6, "val_acc": float("inf")},
    ]
    (run / store.METRICS).write_text("\n".join(json.dumps(x) for x in lines) + "\n" + "[" * 100_000 + "\n")
    info = read_run(run)
    assert info.state == "failed" and info.best_acc == 0.7 and info.last_acc == 0.7
    frame = metrics_frame(info)
    assert list(frame["val_acc"].isna()) == [False, True, True, False, True, True]
    assert frame["val_acc"].dtype.kind == "f" and frame["epoch"].dtype.kind == "f"


def test_a_broken_sweep_reads_corrupt_and_never_reads_outside(tmp_path):
    root = tmp_path / "runs"
    root.mkdir()
    cases = {
        "s1": {"config": [1], "trials": []},
        "s2": {"config": {"grid": [1]}, "trials": []},
        "s3": {"config": {}, "trials": ["../../etc"]},
        "s4": {"config": {}, "trials": "r"},
    }
    for name, info in cases.items():
        (root / name).mkdir()
        (root / name / store.SWEEP).write_text(json.dumps(info))
        (root / name / store.STATUS).write_text(json.dumps({"state": "done"}))
    sweeps = list_sweeps(root)
    assert {s.id: s.state for s in sweeps} == dict.fromkeys(cases, store.CORRUPT)
    errors = {s.id: s.error for s in sweeps}
    assert errors["s1"] == "sweep.json: 'config' must be an object, found list"
    assert errors["s2"] == "sweep.json config: 'grid' must be an object, found [1]"
    assert errors["s3"] == errors["s4"] == "sweep.json: 'trials' must be a list of run folder names"
    assert all(s.counts_text() == "no trials" and s.name == s.id for s in sweeps)


def test_a_status_that_cannot_be_read_is_never_overwritten(tmp_path):
    run = _folder(tmp_path, "r", GOOD_CONFIG, {"state": "running", "created": "yesterday"})
    (run / store.STATUS).write_bytes(b"\x00garbage")
    assert store.update_status(run, "failed", error="x") is None
    assert (run / store.STATUS).read_bytes() == b"\x00garbage"
    (run / store.STATUS).write_text(json.dumps({"state": ["done"]}))
    assert store.update_status(run, "running") is None


# -- liveness -------------------------------------------------------------------------------------------


def _running(root: Path, name: str, **status) -> Path:
    return _folder(root, name, GOOD_CONFIG, {"state": "running", "created": time.time(), **status})


def test_a_run_of_another_host_reads_elsewhere_never_running(tmp_path):
    run = _running(
        tmp_path, "r", pid=os.getpid(), pid_start=store.process_identity()["pid_start"], host="gpu-node-7"
    )
    info = read_run(run)
    assert info.state == store.ELSEWHERE and info.active
    assert info.error == "running elsewhere (host gpu-node-7, cannot be checked from here)"
    assert (
        store.process_liveness(store.read_json(run / store.STATUS), run) != "alive"
    )  # nothing here is killed for it
    assert runs_table([info]).iloc[0]["state"] == "elsewhere"


def test_pid_1_without_a_start_time_is_not_running_forever(tmp_path):
    run = _running(tmp_path, "r", pid=1)  # alive, but not this run
    info = read_run(run)
    assert info.state == "failed"
    assert info.error.startswith(
        "the run's process (pid 1) cannot be proven to be alive: no start time was recorded"
    )


def test_a_reused_pid_with_another_start_time_reads_failed(tmp_path):
    me = store.process_identity()
    run = _running(tmp_path, "r", pid=me["pid"], pid_start=me["pid_start"] + 1, host=me["host"])
    info = read_run(run)
    assert info.state == "failed" and "ended without recording a result (killed?)" in info.error


def test_a_dead_runs_duration_is_unknown_rather_than_still_counting(tmp_path):
    me = store.process_identity()
    started = time.time() - 100
    dead = _running(
        tmp_path, "r", pid=me["pid"], pid_start=me["pid_start"] + 1, host=me["host"], started=started
    )
    assert read_run(dead).state == "failed" and read_run(dead).duration is None
    live = _running(tmp_path, "s", **me, started=started)
    assert read_run(live).state == "running" and read_run(live).duration >= 100


def test_a_run_that_ended_before_it_started_has_no_duration(tmp_path):
    """A hand-edited status.json, or a clock set back meanwhile: no negative seconds in the tracker."""
    status = {"state": "cancelled", "created": 1000.0, "started": 2000.0, "ended": 1500.0}
    info = read_run(_folder(tmp_path, "r", GOOD_CONFIG, status))
    assert info.state == "cancelled" and info.duration is None
    me = store.process_identity()
    ahead = _running(tmp_path, "s", **me, started=time.time() + 3600)  # started "in an hour"
    assert read_run(ahead).state == "running" and read_run(ahead).duration is None


def test_a_pid_without_start_time_counts_when_it_runs_this_folder(tmp_path):
    run_name = "20250101-000000-legacy-status"
    proc = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)", "--run-dir", str(tmp_path / run_name)]
    )
    try:
        run = _running(tmp_path, run_name, pid=proc.pid)  # written by an older cakd-viz: no pid_start
        assert read_run(run).state == "running"
        proc.kill()
        proc.wait()
        assert read_run(run).state == "failed"
    finally:
        proc.kill()


# -- a final state is never rewritten -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def teacher(tmp_path_factory) -> Path:
    return make_teacher(tmp_path_factory.mktemp("teacher"))


def test_a_run_killed_with_kill_9_keeps_its_crash_record(teacher, tmp_path):
    root = tmp_path / "runs"
    run_dir = launch(RunConfig.from_dict(tiny_config(teacher, epochs=500)), root, max_concurrent=2)
    wait_for(
        lambda: read_run(run_dir).state == "running" and read_run(run_dir).epochs, 120, "the run to train"
    )
    pid = store.read_json(run_dir / store.STATUS)["pid"]
    os.killpg(store.read_json(run_dir / store.STATUS)["pgid"], signal.SIGKILL)
    wait_for(lambda: read_run(run_dir).state == "failed", 30, "the dead run to read failed")
    crash = (
        f"the run's process (pid {pid}) ended without recording a result (killed?); see the end of log.txt"
    )
    assert read_run(run_dir).error == crash
    metrics, log = (run_dir / store.METRICS).read_text(), (run_dir / store.LOG).read_text()
    for _ in range(2):  # the first refusal records the crash; the second finds it recorded
        out = _cli("tune", "--run-dir", run_dir, "-q")
        assert out.returncode == 2 and out.stdout == ""
        lines = out.stderr.strip().splitlines()
        assert lines == [
            f"cakd-viz tune: error: {run_dir} has ended (failed: {crash}); a finished run is never rerun; "
            f"to run it again, start a new run: cakd-viz tune --config {run_dir / store.CONFIG}"
        ]
        status = store.read_json(run_dir / store.STATUS)
        assert (status["state"], status["error"]) == ("failed", crash)  # recorded, never "cancelled"
    assert (run_dir / store.METRICS).read_text() == metrics and (run_dir / store.LOG).read_text() == log
    assert not cancel(run_dir) and read_run(run_dir).state == "failed"


@pytest.mark.parametrize("state", ["done", "failed", "cancelled"])
def test_tune_run_dir_refuses_every_final_state_and_changes_nothing(tmp_path, state):
    run = _folder(
        tmp_path,
        "r",
        GOOD_CONFIG,
        _done_status() | {"state": state, "error": "boom" if state == "failed" else None},
    )
    if state == "done":
        (run / store.SUMMARY).write_text(
            json.dumps({"best_val_acc": 0.9, "last_val_acc": 0.8, "teacher_val_acc": 0.95, "best_epoch": 1})
        )
        (run / store.BUNDLE).mkdir()
        (run / store.BUNDLE / "meta.json").write_text("{}")
        (run / f"{store.WEIGHTS}.json").write_text("{}")
    before = _snapshot(tmp_path)
    out = _cli("tune", "--run-dir", run)
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 2 and len(lines) == 1, out.stderr
    assert lines[0].startswith(f"cakd-viz tune: error: {run} has ended ({state}")
    assert (
        "a finished run is never rerun" in lines[0]
        and f"cakd-viz tune --config {run / store.CONFIG}" in lines[0]
    )
    assert _snapshot(tmp_path) == before


def test_tune_run_dir_refuses_corrupt_running_and_remote_folders(tmp_path):
    corrupt = _folder(tmp_path, "c", GOOD_CONFIG, {"state": "queued", "created": "yesterday"})
    remote = _running(tmp_path, "e", pid=4242, pid_start=1, host="gpu-node-7")
    before = _snapshot(tmp_path)
    out = _cli("tune", "--run-dir", corrupt)
    assert out.returncode == 2 and out.stderr.strip().splitlines() == [
        f"cakd-viz tune: error: {corrupt}: cannot execute this run folder: status.json: 'created' must be a number, "
        "found 'yesterday'"
    ]
    out = _cli("tune", "--run-dir", remote)
    assert (
        out.returncode == 2
        and "is running elsewhere (host gpu-node-7, cannot be checked from here)" in out.stderr
    )
    assert _snapshot(tmp_path) == before


# -- the Tune page with broken folders --------------------------------------------------------------------


def test_the_tune_page_shows_corrupt_and_remote_runs_without_an_exception(tmp_path, monkeypatch):
    from apptest_support import as_read, assert_ok, open_app

    from cakd_viz.app import config as app_config

    root = tmp_path / "runs"
    for case, config, status, _ in BROKEN:
        _folder(root, case.replace(" ", "-"), config, status)
    _running(root, "remote", pid=4242, pid_start=1, host="gpu-node-7")
    monkeypatch.setenv(store.RUNS_DIR_ENV, str(root))
    monkeypatch.setenv(app_config.DATA_ROOT_ENV, str(root))
    at = open_app(page="tune", timeout=60)
    assert_ok(at)
    table = at.dataframe[0].value
    assert len(table) == len(BROKEN) + 1
    assert sorted(set(table["state"])) == ["corrupt", "elsewhere"]
    texts = " ".join(as_read(e.value) for e in at.error)
    assert "status.json: 'started' must be a number, found 'x'" in texts


def test_a_fifo_in_a_run_folder_never_blocks_a_reader(tmp_path):
    run = _folder(tmp_path, "r", GOOD_CONFIG, None)
    os.mkfifo(run / store.STATUS)  # opening a FIFO for reading would wait for a writer forever
    (run / store.LOG).unlink()
    os.mkfifo(run / store.LOG)
    info = read_run(run)
    assert info.state == store.CORRUPT and info.error == "status.json is unreadable (not a regular file)"
    assert store.log_tail(info.path) == ""


def test_cancel_signals_a_group_only_when_the_runs_process_leads_it(tmp_path):
    """A run folder naming a live process (provably the one it names: pid, start time, host) together
    with some other process group never gets that group signalled; when the process leads the group
    named, cancelling stops the group."""
    from cakd_viz.runs import launcher

    bystander = subprocess.Popen(["sleep", "120"], start_new_session=True)  # an unrelated group
    process = subprocess.Popen(["sleep", "120"], start_new_session=True)  # plays the run's process
    try:
        forged = _running(tmp_path, "forged", **store.process_identity(process.pid), pgid=bystander.pid)
        assert launcher.run_group(store.read_json(forged / store.STATUS), forged) is None
        assert cancel(forged) and read_run(forged).state == "cancelled"
        assert bystander.poll() is None and process.poll() is None  # nobody was signalled
        own = _running(tmp_path, "own", **store.process_identity(process.pid), pgid=process.pid)
        assert launcher.run_group(store.read_json(own / store.STATUS), own) == process.pid
        assert cancel(own)
        assert process.wait(timeout=30) == -signal.SIGTERM  # its group was stopped
        assert bystander.poll() is None
    finally:
        for proc in (bystander, process):
            proc.kill()
            proc.wait()


@pytest.mark.parametrize("created", [-1e300, 1e300, 1e20])
def test_a_run_with_an_impossible_time_leaves_the_tune_page_up(tmp_path, monkeypatch, created):
    """One run folder with a time no clock shows ("created": -1e300) once took the Tune page down for
    every session; its time now reads as unknown and the page shows every run."""
    from apptest_support import assert_ok, open_app
    from fake_runs import write_run

    root = tmp_path / "runs"
    write_run(root, "20260101-000000-kd-odd", created=created)
    write_run(root, "20260101-000001-kd-ok")
    assert pd.isna(tracker_table(list_runs(root)).set_index("id").loc["20260101-000000-kd-odd", "created"])
    monkeypatch.setenv(store.RUNS_DIR_ENV, str(root))
    at = open_app(page="tune", timeout=60)
    assert_ok(at)
    assert not at.error and len(at.dataframe[0].value) == 2
