"""Weight-tuning runs: configs, the run folder, the command line, launching, cancelling, queueing, torchrun."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from runs_support import make_teacher, tiny_config, wait_for, write_factory, write_json

from cakd_viz.runs import RunConfig, cancel, launch, list_runs, read_run, store
from cakd_viz.runs.launcher import group_alive

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def teacher(tmp_path_factory) -> Path:
    return make_teacher(tmp_path_factory.mktemp("teacher"))


@pytest.fixture
def runs(tmp_path, monkeypatch) -> Path:
    root = tmp_path / "runs"
    monkeypatch.setenv(store.RUNS_DIR_ENV, str(root))
    return root


def _cli(*args: str, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "cakd_viz", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=timeout,
    )


def _run_all(cmd: list[str], *, marker: str, timeout: float = 180) -> subprocess.CompletedProcess:
    """Run ``cmd``; on a timeout kill every process whose command line holds ``marker`` (torchrun's workers
    live in sessions of their own), then fail."""
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    try:
        return subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env=env, timeout=timeout)
    except subprocess.TimeoutExpired:
        for proc in Path("/proc").iterdir():
            try:
                if proc.name.isdigit() and marker in (proc / "cmdline").read_text():
                    os.kill(int(proc.name), signal.SIGKILL)
            except OSError:
                pass
        raise


def _state(run_dir: Path) -> str:
    return read_run(run_dir).state


# -- configs ----------------------------------------------------------------------------------------


def test_run_config_round_trips_through_json(teacher):
    cfg = RunConfig.from_dict(tiny_config(teacher)).validated()
    again = RunConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg
    assert again.train_spec() == "sample:digits:train" and again.test_spec() == "sample:digits:test"
    assert RunConfig.from_dict({"loss": "kd"}).loss.name == "kd"


def test_every_preset_names_its_loss_and_holds_out_a_validation_split():
    from cakd_viz.runs.config import loss_parameters
    from cakd_viz.runs.presets import PRESETS, VALIDATION

    assert VALIDATION == {"val_split": 0.1, "val_seed": 0}
    for name, preset in PRESETS.items():
        cfg = RunConfig.from_dict(preset.config()).validated()  # its parameters are its loss's own
        assert cfg.loss.name == preset.loss and (cfg.val_split, cfg.val_seed) == (0.1, 0), name
        assert set(preset.params) <= {p.name for p in loss_parameters(preset.loss)}
        assert all(cfg.loss.settings[k] == v for k, v in preset.params.items())
    assert RunConfig().val_split == 0  # a config file that omits val_split keeps meaning what it did


def test_a_loss_section_holds_only_its_own_loss_and_the_runs_settings():
    kd = RunConfig.from_dict({"loss": {"name": "kd", "temperature": 2}}).validated()
    assert kd.to_dict()["loss"] == {
        "name": "kd",
        "temperature": 2.0,
        "warmup": 0.0,
        "warmup_schedule": "epoch",
        "standardize": False,
        "ce_weight": 1.0,
        "grouping": "topk:5",  # the held-out split's S, which every run records
    }
    assert kd.loss.summary() == "KD (T=2)" and kd.student_name() == "kd"
    ls = RunConfig.from_dict({"loss": {"name": "kd", "standardize": True}}).validated()
    assert ls.loss.summary() == "KD + LS (T=4)" and ls.loss.standardize is True
    for bad in (1, "true", None):  # JSON's true and false only
        with pytest.raises(ValueError, match="loss.standardize must be true or false"):
            RunConfig.from_dict({"loss": {"name": "kd", "standardize": bad}})
    ce = RunConfig.from_dict({"loss": {"name": "ce", "grouping": "target"}}).validated()
    assert ce.loss.to_dict() == {
        "name": "ce",
        "ce_weight": 1.0,
        "grouping": "target",
        "temperature": 4.0,
        "standardize": False,  # the held-out split's, which every run records
    }
    with pytest.raises(ValueError, match=r"'warmup' belongs to kd, dkd, cakd\); ce takes: name, ce_weight"):
        RunConfig.from_dict({"loss": {"name": "ce", "warmup": 0}})
    # the form every config.json had before losses declared their parameters is still read
    old = {"name": "ce", "grouping": "topk:5", "temperature": 4.0, "w_b": 1.0, "alpha": 1.0, "beta": 8.0}
    old |= {"warmup": 0.0, "warmup_schedule": "epoch", "ce_weight": 1.0}
    assert RunConfig.from_dict({"loss": old}).validated().loss.to_dict() == ce.loss.to_dict() | {
        "grouping": "topk:5"
    }


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"epochz": 3}, r"unknown key\(s\) 'epochz' in run config; known keys: data, test_data"),
        ({"loss": {"name": "xkd"}}, r"loss.name must be one of ce, kd, dkd, cakd, got 'xkd'"),
        ({"loss": {"grouping": "topk:x"}}, r"loss.grouping: .*valid forms"),
        ({"loss": {"temperature": 0}}, r"loss.temperature must be a finite number > 0, got 0"),
        ({"loss": {"beta": -1}}, r"loss.beta must be a finite number >= 0, got -1"),
        ({"loss": {"bogus": 1}}, r"unknown key\(s\) 'bogus' in loss; cakd takes: name, grouping, w_b"),
        ({"loss": {"name": "kd", "beta": 8}}, r"'beta' belongs to dkd, cakd\); kd takes: name, temperature"),
        ({"loss": {"alpha": "1"}}, r"loss.alpha must be a number, got '1'"),
        ({"loss": {"alpha": 10**400}}, r"loss.alpha must be a finite number, got 1000000000"),
        (
            {"loss": {"warmup_schedule": "linear"}},
            r"loss.warmup_schedule must be one of epoch, step, got 'linear'",
        ),
        ({"epochs": 0}, r"epochs must be a whole number from 1 to 1,000,000, got 0"),
        ({"epochs": "5"}, r"epochs must be a whole number, got '5'"),
        ({"batch_size": 1.5}, r"batch_size must be a whole number, got 1.5"),
        ({"lr": -0.1}, r"lr must be a finite number > 0 and <= 1e\+06, got -0.1"),
        ({"lr": 10**400}, r"lr must be a finite number, got 1000000000"),
        ({"optimizer": "lbfgs"}, r"optimizer must be 'sgd' or 'adamw'"),
        ({"device": "tpu"}, r"device must be one of auto, cpu, cuda, cuda:N, mps; got 'tpu'"),
        ({"data": "sample:cifar"}, r"data 'sample:cifar': unknown sample"),
        ({"data": "sample:digits:train"}, r"write just sample:NAME"),
        ({"data": "my_data.npz"}, r"test_data is required when data is not a shipped sample"),
        ({"data": "no/such.npz", "test_data": "x.npz"}, r"data 'no/such.npz': no such file or folder"),
        # a path too long to look up is no such file, not the system's raw OSError
        ({"data": "no/" + "a" * 5000 + ".npz", "test_data": "x.npz"}, r"data 'no/a+\.npz': no such file"),
        ({"student_weights": "pkg.m:f/" + "a" * 5000}, r"student_weights 'pkg.m:f/a+': no such file"),
        (
            {"student": "resnet9000"},
            r"student 'resnet9000': expected an architecture \(cnn_l, .*\) or a model spec",
        ),
        ({"teacher": "sample:digits/nope"}, r"teacher 'sample:digits/nope': no such shipped model"),
        ({"name": "a b"}, r"name 'a b': use at most 100 letters, digits and _ . \+ -"),
        ({"name": "ab\n"}, r"name 'ab\\n': use at most 100 letters, digits and _ . \+ -"),
        # names the bundle refuses were accepted, and the run failed only after its last epoch
        (
            {"name": "teacher"},
            r"name 'teacher' cannot name the student of the run's bundle: .*refers to the teacher",
        ),
        ({"name": "-x"}, r"name '-x' cannot name the student of the run's bundle: .*not starting with"),
        ({"name": "x."}, r"name 'x.' cannot name the student of the run's bundle"),
        ({"name": "\u00e9t\u00e9"}, r"name 'été' cannot name the student of the run's bundle"),
        ({"data": "sample:glyphs\n"}, r"write just sample:NAME"),
    ],
)
def test_invalid_run_configs_are_refused_precisely(teacher, change, message):
    with pytest.raises(ValueError, match=message):
        RunConfig.from_dict(tiny_config(teacher, **change)).validate()


def test_an_invalid_config_creates_no_folder(teacher, runs):
    with pytest.raises(ValueError, match="epochs"):
        launch(RunConfig.from_dict(tiny_config(teacher, epochs=0)), runs)
    assert not runs.exists() or not list(runs.iterdir())


# -- the run folder -------------------------------------------------------------------------------------


def test_status_never_leaves_a_final_state(tmp_path):
    run = store.create_run(tmp_path, {"name": "x"})
    assert store.update_status(run, "running")["started"] is not None
    assert store.update_status(run, "cancelled")["ended"] is not None
    assert store.update_status(run, "done") is None
    assert store.update_status(run, None, epoch=3) is None
    assert store.read_json(run / store.STATUS)["state"] == "cancelled"


def test_a_run_id_taken_by_a_concurrent_creator_is_refused_and_leaves_no_partial_folder(
    tmp_path, monkeypatch
):
    rename = os.rename

    def racing(src, dst):  # another process creates the same run id between the check and the rename
        Path(dst).mkdir()
        (Path(dst) / store.CONFIG).write_text("{}")
        rename(src, dst)

    monkeypatch.setattr(store.os, "rename", racing)
    with pytest.raises(FileExistsError, match="a run with this id exists already"):
        store.create_run(tmp_path, {"name": "x"}, run_id="r1")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r1"]


def test_the_log_tail_keeps_crlf_lines_and_the_last_state_of_progress_lines(tmp_path):
    (tmp_path / store.LOG).write_bytes(b"first line\r\nsecond line\r\n 10%\r 50%\r100%\nlast\n")
    assert store.log_tail(tmp_path) == "first line\nsecond line\n100%\nlast"


def test_broken_folders_read_as_such_never_as_done(tmp_path):
    run = store.create_run(tmp_path, {"name": "x"}, **store.process_identity())
    store.update_status(run, "running")
    store.append_metrics(run, {"kind": "epoch", "epoch": 1, "val_acc": 0.5})
    with open(run / store.METRICS, "a") as f:
        f.write('{"kind": "epoch", "epo')  # a torn last line
    assert read_run(run).state == "running" and read_run(run).best_acc == 0.5
    store.update_status(run, "done")
    info = read_run(run)
    assert info.state == store.CORRUPT and "summary.json is missing" in info.error
    (run / store.STATUS).write_text('{"state": "do')
    assert read_run(run).state == store.CORRUPT
    (tmp_path / "empty").mkdir()
    assert read_run(tmp_path / "empty").state == store.CORRUPT


def test_a_running_run_whose_process_is_gone_reads_failed(tmp_path):
    dead = subprocess.Popen(["true"])
    dead.wait()
    run = store.create_run(tmp_path, {"name": "x"}, **store.process_identity(dead.pid))
    store.update_status(run, "running")
    info = read_run(run)
    assert (
        info.state == "failed"
        and f"(pid {dead.pid}) ended without recording a result (killed?)" in info.error
    )


# -- end to end through the command line -------------------------------------------------------------------


def test_tune_command_runs_end_to_end(teacher, tmp_path):
    from cakd_viz.bundle import load_bundle
    from cakd_viz.models import load_model
    from cakd_viz.train import evaluate

    config = write_json(tmp_path / "run.json", tiny_config(teacher, epochs=2))
    done = _cli("tune", "--config", str(config), "--runs-dir", str(tmp_path / "runs"), "-q")
    assert done.returncode == 0, done.stderr
    (run,) = list_runs(tmp_path / "runs")
    assert run.state == "done" and str(run.path) in done.stdout
    files = {p.name for p in run.path.iterdir()}
    assert {
        "config.json",
        "status.json",
        "metrics.jsonl",
        "log.txt",
        "env.json",
        "summary.json",
        "bundle",
    } <= files
    epochs = [r for r in store.read_metrics(run.path) if r["kind"] == "epoch"]
    assert [e["epoch"] for e in epochs] == [1, 2]
    assert {"ce", "bcd", "scd", "wcd", "loss", "train_acc", "val_acc", "val_loss"} <= set(epochs[0])
    env = store.read_json(run.path / store.ENV)
    assert env["seed"] == 0 and env["device"] == "cpu" and env["batch_size"] == 64 and env["torch"]
    assert env["loss_kernel"].startswith("fused CPU kernel: ")  # a CAKD run on CPU, compiler present
    s = run.summary
    assert (
        s["best_val_acc"] == max(e["val_acc"] for e in epochs) and s["last_val_acc"] == epochs[-1]["val_acc"]
    )
    bundle = load_bundle(run.path / "bundle")
    assert bundle.student_names == ["cakd_topk3"] and bundle.num_classes == 10 and bundle.labels is not None
    assert bundle.inputs is not None
    acc = float((np.asarray(bundle.student("cakd_topk3")).argmax(1) == bundle.labels).mean())
    assert acc == pytest.approx(s["last_val_acc"])
    model, info = load_model(str(run.path / "student.json"))
    from cakd_viz.data import load_data

    assert evaluate(model, load_data("sample:digits:test").dataset)["acc"] == pytest.approx(s["last_val_acc"])


def test_tune_is_deterministic_for_a_seed(teacher, tmp_path):
    from cakd_viz.runs import run_config

    cfg = RunConfig.from_dict(tiny_config(teacher))
    a, b = (read_run(run_config(cfg, tmp_path / "r", max_concurrent=0)) for _ in range(2))
    assert a.summary["last_val_acc"] == b.summary["last_val_acc"]
    assert [e["loss"] for e in a.epochs] == [e["loss"] for e in b.epochs]


def test_a_grouping_asking_for_too_many_strong_classes_is_said_before_training(teacher, tmp_path):
    """topk:10 on the 10 digit classes is clipped to topk:9 (W is never empty): the run says so."""
    from cakd_viz.grouping import parse_grouping

    def clipped(grouping: str, num_classes: int) -> str | None:  # the line a run logs (build.build)
        return parse_grouping(grouping).clamp(num_classes)[1]

    assert clipped("topk:9", 10) is None and clipped("target", 10) is None
    assert clipped("topk:12", 10).startswith("topk:12 asks for 12 strong classes, and there are 10")
    config = write_json(
        tmp_path / "run.json", tiny_config(teacher, loss={"name": "cakd", "grouping": "topk:10"})
    )
    out = _cli("tune", "--config", str(config), "--runs-dir", str(tmp_path / "runs"))
    assert out.returncode == 0, out.stderr
    said = "warning: topk:10 asks for 10 strong classes, and there are 10: using topk:9"
    assert said in out.stderr
    (run,) = list_runs(tmp_path / "runs")
    assert said in store.log_tail(run.path)
    assert all(e["val_bcd"] > 0 for e in run.epochs)  # W is not empty (BCD is 0 when it is)
    plain = write_json(tmp_path / "plain.json", tiny_config(teacher, name="plain"))
    assert (
        "strong classes"
        not in _cli("tune", "--config", str(plain), "--runs-dir", str(tmp_path / "r2")).stderr
    )


def test_tune_command_refuses_a_bad_config_in_one_line(teacher, tmp_path):
    config = write_json(tmp_path / "run.json", tiny_config(teacher, loss={"name": "dkdd"}))
    out = _cli("tune", "--config", str(config), "--runs-dir", str(tmp_path / "runs"))
    assert out.returncode == 2
    assert (
        out.stderr.strip() == "cakd-viz tune: error: loss.name must be one of ce, kd, dkd, cakd, got 'dkdd'"
    )
    assert not (tmp_path / "runs").exists()


def test_tune_under_torchrun_trains_data_parallel(teacher, tmp_path):
    config = write_json(tmp_path / "run.json", tiny_config(teacher, epochs=2, loss={"name": "kd"}))
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node=2",
        "-m",
        "cakd_viz",
    ]
    out = _run_all(
        [*cmd, "tune", "--config", str(config), "--runs-dir", str(tmp_path / "runs"), "-q"],
        marker=str(config),
    )
    assert out.returncode == 0, out.stderr[-3000:]
    (run,) = list_runs(tmp_path / "runs")
    assert run.state == "done" and len(run.epochs) == 2
    env = store.read_json(run.path / store.ENV)
    assert env["world_size"] == 2 and env["backend"] == "gloo" and env["batch_size_per_rank"] == 32
    assert run.summary["last_val_acc"] > 0.3
    from cakd_viz.runs.build import build

    rows = len(build(RunConfig.from_dict(run.config)).train_set)  # the training rows, on one process
    assert run.summary["train_samples"] == env["train_samples"] == rows  # all ranks', not rank 0's shard


# -- launching, cancelling, crashing, queueing ----------------------------------------------------------------


def _launch_with_factory(factory, teacher, runs, tmp_path, monkeypatch, **config) -> Path:
    """Launch a run whose training data comes from runs_support.FACTORY's function `factory`."""
    module = write_factory(tmp_path)
    monkeypatch.setenv("PYTHONPATH", f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    cfg = tiny_config(teacher, data=f"{module}:{factory}", test_data="sample:digits:test", **config)
    return launch(RunConfig.from_dict(cfg), runs, max_concurrent=2)


def test_cancel_kills_the_whole_process_group(teacher, runs, tmp_path, monkeypatch):
    monkeypatch.setenv("CHILD_PID_FILE", str(tmp_path / "child.pid"))
    run_dir = _launch_with_factory("with_child", teacher, runs, tmp_path, monkeypatch, epochs=500)
    wait_for(lambda: _state(run_dir) == "running" and read_run(run_dir).epochs, 90, "the run to train")
    status = store.read_json(run_dir / store.STATUS)
    child = int((tmp_path / "child.pid").read_text())
    assert status["pgid"] == status["pid"] and os.getpgid(child) == status["pgid"]
    assert cancel(run_dir)
    info = read_run(run_dir)
    assert info.state == "cancelled" and info.error is None
    assert not group_alive(status["pgid"])  # no process of the group runs (a zombie may wait for init)
    assert store.process_liveness({"pid": child}, run_dir) != "alive"
    assert not cancel(run_dir)  # already final


def test_a_crashing_run_reads_failed_with_its_error_and_log(teacher, runs, tmp_path, monkeypatch):
    run_dir = _launch_with_factory("crash", teacher, runs, tmp_path, monkeypatch)
    wait_for(lambda: _state(run_dir) in store.FINAL, 90, "the run to end")
    info = read_run(run_dir)
    assert info.state == "failed"
    assert info.error == "RuntimeError: boom: a deliberate crash in the data"
    assert "Traceback" in store.log_tail(info.path, 60) and "boom" in store.log_tail(info.path, 5)


@pytest.mark.parametrize("factory", ["sigterm_inside", "sigterm_wrapped"])
def test_a_sigterm_inside_wrapped_user_code_still_reads_cancelled(
    factory, teacher, runs, tmp_path, monkeypatch
):
    # the data factory's errors are re-raised as ValueError ("data factory ... failed"), and a SIGTERM
    # inside an import can come back as "ImportError: initialization failed" (seen in CI, from scipy);
    # a cancel arriving there (a sweep cancelled while its trial loads) must not become a failure
    run_dir = _launch_with_factory(factory, teacher, runs, tmp_path, monkeypatch)
    wait_for(lambda: _state(run_dir) in store.FINAL, 90, "the run to end")
    info = read_run(run_dir)
    assert (info.state, info.error) == ("cancelled", None), store.log_tail(info.path, 20)
    assert "cancelled: stopped by signal SIGTERM" in store.log_tail(info.path, 3)


def test_cancel_reason_finds_a_cancel_however_it_was_wrapped(monkeypatch):
    from cakd_viz.runs import launcher

    monkeypatch.setattr(launcher, "_signalled", [])
    try:
        try:
            raise launcher.Cancelled("stopped by signal SIGTERM")
        except BaseException as exc:
            raise ImportError("initialization failed") from exc
    except ImportError as wrapped:
        try:
            raise ValueError("data factory 'm:f' failed") from wrapped
        except ValueError as outer:
            assert launcher.cancel_reason(outer) == "stopped by signal SIGTERM"
    assert launcher.cancel_reason(ValueError("a real failure")) is None
    launcher.record_signal("SIGTERM")  # the signal arrived, but its Cancelled was lost on the way
    assert launcher.cancel_reason(RuntimeError("boom")).startswith(
        "stopped by signal SIGTERM (it surfaced as"
    )


def test_a_killed_run_reads_failed(teacher, runs):
    run_dir = launch(RunConfig.from_dict(tiny_config(teacher, epochs=500)), runs, max_concurrent=2)
    wait_for(lambda: _state(run_dir) == "running", 90, "the run to start")
    os.killpg(store.read_json(run_dir / store.STATUS)["pgid"], signal.SIGKILL)
    wait_for(lambda: _state(run_dir) == "failed", 30, "the dead run to read failed")
    assert "ended without recording a result (killed?)" in read_run(run_dir).error


def test_runs_beyond_the_limit_wait_queued(teacher, runs):
    long = RunConfig.from_dict(tiny_config(teacher, epochs=500))
    first = launch(long, runs, max_concurrent=1)
    wait_for(lambda: _state(first) == "running", 90, "the first run to start")
    second = launch(long, runs, max_concurrent=1)
    wait_for(
        lambda: store.read_json(second / store.STATUS).get("waiting_since"), 60, "the second run to wait"
    )
    assert _state(second) == "queued" and _state(first) == "running"
    assert cancel(first)
    wait_for(lambda: _state(second) == "running", 60, "the second run to take the free slot")
    assert cancel(second)
    assert [r.state for r in list_runs(runs)] == ["cancelled", "cancelled"]


def test_a_damaged_folder_beside_never_fails_a_run_waiting_for_a_slot(tmp_path):
    from cakd_viz.runs import launcher

    run = store.create_run(tmp_path, {"name": "x"})
    store.update_status(run, "queued", waiting_since=5.0, **store.process_identity())
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    # a whole number beyond float's range (JSON reads it as an int): OverflowError failed the waiting run
    (damaged / store.STATUS).write_text('{"state": "queued", "waiting_since": 1' + "0" * 400 + "}")
    with launcher.run_slot(tmp_path, 1, run, should_stop=lambda: False) as slot:
        assert slot == 0


def test_a_queued_run_can_be_cancelled(teacher, runs):
    long = RunConfig.from_dict(tiny_config(teacher, epochs=500))
    first = launch(long, runs, max_concurrent=1)
    wait_for(lambda: _state(first) == "running", 90, "the first run to start")
    second = launch(long, runs, max_concurrent=1)
    assert cancel(second) and _state(second) == "cancelled"
    assert cancel(first)


def test_the_library_never_imports_streamlit_or_ray():
    code = (
        "import sys, cakd_viz.runs, cakd_viz.runs.runner, cakd_viz.runs.engine, cakd_viz.figures.runs; "
        "import cakd_viz.cli.tune_cmd, cakd_viz.cli.sweep_cmd; "
        "print('streamlit' in sys.modules, 'ray' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert out.stdout.split() == ["False", "False"], out.stderr


@pytest.mark.parametrize("path", sorted((REPO / "examples").glob("*.json")), ids=lambda p: p.name)
def test_the_shipped_examples_are_valid(path, tmp_path, monkeypatch):
    from cakd_viz.runs.sweep import SweepConfig

    for spec in ("digits/teacher", "glyphs/teacher", "glyphs/student_ce"):  # what the examples name
        (tmp_path / spec).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / f"{spec}.json").write_text("{}")
    monkeypatch.setenv("CAKD_SAMPLES_DIR", str(tmp_path))
    data = json.loads(path.read_text())
    if "base" in data:
        assert SweepConfig.from_dict(data).validate()
    else:
        RunConfig.from_dict(data).validate()


def test_the_teacher_lookup_answers_as_the_teacher_and_the_cache_is_reused(teacher, tmp_path):
    import torch

    from cakd_viz.data import load_data
    from cakd_viz.models import load_model
    from cakd_viz.runs.teacher_cache import LookupTeacher, teacher_logits

    model, _ = load_model(str(teacher))
    data = load_data("sample:digits:test").dataset
    logits, digests = teacher_logits(model, data, tmp_path)
    (cached,) = tmp_path.glob("*.npy")
    stamp = cached.stat().st_mtime_ns
    again, _ = teacher_logits(model, data, tmp_path)
    assert np.array_equal(again, logits) and cached.stat().st_mtime_ns == stamp  # read back, not recomputed
    lookup = LookupTeacher(model, logits, digests)
    x = torch.stack([data[i][0] for i in range(5)])
    unseen = torch.randn(3, *x.shape[1:])
    with torch.no_grad():
        got, want = lookup(torch.cat([x, unseen])), model(torch.cat([x, unseen]))
    assert torch.allclose(got, want, atol=1e-5) and lookup.misses == 3
    with torch.no_grad():
        next(model.parameters()).add_(1.0)  # other weights: another cache entry
    teacher_logits(model, data, tmp_path)
    assert len(list(tmp_path.glob("*.npy"))) == 2


@pytest.mark.parametrize(
    ("change", "said"),
    [
        ({"name": "n" * 5000}, r"name 'n{40}… \(5,000 characters\)': use at most 100 letters"),
        ({"weight_decay": 1e308}, r"weight_decay must be a finite number >= 0 and <= 10, got 1e\+308"),
        ({"seed": 2**70}, r"seed must be a whole number from 0 to 9,223,372,036,854,775,807, got 1180591620"),
        ({"lr": float("inf")}, r"lr must be a finite number > 0"),
    ],
)
def test_a_config_out_of_range_is_refused_before_anything_exists(runs, teacher, tmp_path, change, said):
    config = tmp_path / "run.json"
    config.write_text(json.dumps(tiny_config(teacher) | change))
    out = _cli("tune", "--config", str(config), "--runs-dir", str(runs), "-q")
    assert out.returncode == 2 and re.fullmatch(rf"cakd-viz tune: error: {said}.*\n", out.stderr), out.stderr
    assert not runs.exists()  # no run folder was made, nothing was trained


def test_a_config_nested_too_deeply_is_one_line(runs, tmp_path):
    config = tmp_path / "deep.json"
    config.write_text('{"data": ' + "[" * 100_000 + "]" * 100_000 + "}")
    out = _cli("tune", "--config", str(config), "--runs-dir", str(runs), "-q")
    assert out.returncode == 2
    assert out.stderr == f"cakd-viz tune: error: {config}: JSON nested too deeply to read\n"


def test_a_diverging_run_says_so_in_one_line(runs, teacher):
    """lr 10,000 blows the weights up in the first epoch: the run fails with the epoch and a way out,
    not with an error about non-finite logits somewhere downstream."""
    run_dir = launch(RunConfig.from_dict(tiny_config(teacher, lr=10_000.0, epochs=3)), runs)
    info = wait_for(lambda: read_run(run_dir) if read_run(run_dir).state in store.FINAL else None, 120)
    assert info.state == "failed"
    assert (
        "training diverged in epoch 1" in info.error
        and "try a lower learning rate (lr is 10000)" in info.error
    )
