"""Your own training loop, recorded (`cakd_viz.runs.Recorder`): the run folder reads like a launched run's
(states, held-out terms, epoch logits, tracker columns), failures and kills read as failed, runs copied
from another machine keep their state, bad inputs are one-line errors, and the Tune page shows it."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from apptest_support import open_app
from conftest import make_logits
from reference import strong_mask, terms

from cakd_viz.runs import Recorder, cancel, dynamics, list_runs, read_run, store
from cakd_viz.runs.dynamics import EPOCHS_DIR, VAL_TERMS
from cakd_viz.runs.results import metrics_frame, tracker_table
from cakd_viz.runs.trajectory import read_trajectory

REPO = Path(__file__).resolve().parents[1]
T = 4.0


def _epochs(n: int = 3, seed: int = 0) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """A student per epoch coming closer to the teacher, the teacher and labels (200 x 10)."""
    student, teacher, labels = make_logits(seed=seed)
    students = [(student + (teacher - student) * e / (n + 1)).astype(np.float32) for e in range(1, n + 1)]
    return students, teacher, labels


def _reference(student, teacher, labels, grouping: str = "topk:5") -> dict:
    ref = terms(student, teacher, strong_mask(teacher, labels, grouping, T), T)
    return {
        "val_kl": ref["kl"].mean(),
        "val_bcd": ref["bcd"].mean(),
        "val_scd": ref["scd"].mean(),
        "val_wcd": ref["wcd"].mean(),
        "val_scd_part": (ref["teacher_strong_mass"] * ref["scd"]).mean(),
        "val_wcd_part": (ref["teacher_weak_mass"] * ref["wcd"]).mean(),
        "val_acc": (student.argmax(1) == labels).mean(),
    }


def test_a_recorded_run_reads_like_a_launched_run(tmp_path):
    students, teacher, labels = _epochs()
    t = torch.from_numpy(teacher).requires_grad_(True)  # tensors straight from a training loop
    with Recorder(tmp_path, name="r8x4_cakd", config={"loss": "cakd", "lr": 0.05}) as rec:
        assert read_run(rec.path).state == "running"
        for epoch, s in enumerate(students, 1):
            rec.log_epoch(epoch, torch.from_numpy(s), t, torch.from_numpy(labels), train_loss=1.0 / epoch)
    run = read_run(rec.path)
    assert (run.state, run.error, run.label, run.config["recorded"]) == ("done", None, "r8x4_cakd", True)
    rows = metrics_frame(run).to_dict("records")
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    for row, s in zip(rows, students, strict=True):
        for key, value in _reference(s, teacher, labels).items():
            assert row[key] == pytest.approx(value, rel=1e-4, abs=1e-9), key
        assert row["val_kl"] == pytest.approx(row["val_bcd"] + row["val_scd_part"] + row["val_wcd_part"])
    assert [r["train_loss"] for r in rows] == [1.0, 0.5, pytest.approx(1 / 3)]
    accs = [(s.argmax(1) == labels).mean() for s in students]
    s = run.summary
    assert s["best_val_acc"] == pytest.approx(max(accs)) and s["best_epoch"] == 1 + int(np.argmax(accs))
    assert (s["last_val_acc"], s["last_epoch"], s["eval_samples"]) == (pytest.approx(accs[-1]), 3, 200)
    assert s["teacher_val_acc"] == pytest.approx((teacher.argmax(1) == labels).mean())
    index = json.loads((run.path / EPOCHS_DIR / "index.json").read_text())
    assert (index["epochs"], index["not_kept"], index["grouping"], index["temperature"]) == (
        [1, 2, 3],
        [],
        "topk:5",
        T,
    )
    np.testing.assert_array_equal(
        np.load(run.path / EPOCHS_DIR / "epoch-002.npy"), students[1].astype(np.float16)
    )
    np.testing.assert_array_equal(np.load(run.path / EPOCHS_DIR / "teacher.npy"), teacher)
    np.testing.assert_array_equal(np.load(run.path / EPOCHS_DIR / "labels.npy"), labels)
    status = run.status
    assert status["pid"] == os.getpid() and status["host"] and status["pid_start"] and status["epoch"] == 3
    assert "pgid" not in status  # nothing may ever kill the researcher's own process group
    assert json.loads((run.path / store.ENV).read_text())["recorded"] is True
    assert "done: 3 epochs recorded" in store.log_tail(run.path)


def test_a_recorder_that_standardizes_splits_the_standardized_logits_and_says_so(tmp_path):
    from reference import standardized

    students, teacher, labels = _epochs()
    with Recorder(tmp_path, name="ls", config={"loss": "kd"}, standardize=True) as rec:
        rec.log_epoch(1, students[0], teacher, labels)
    run = read_run(rec.path)
    row = metrics_frame(run).to_dict("records")[0]
    want = _reference(standardized(students[0]), standardized(teacher), labels)
    for key, value in want.items():
        assert row[key] == pytest.approx(value, rel=1e-4, abs=1e-9), key
    assert run.config["decomposition"]["standardize"] is True and run.config["loss"]["standardize"] is True
    assert json.loads((run.path / EPOCHS_DIR / "index.json").read_text())["standardize"] is True
    with pytest.raises(ValueError, match="standardize must be True or False"):
        Recorder(tmp_path, standardize="yes")


def test_recorded_hyperparameters_fill_the_trackers_columns(tmp_path):
    _, teacher, labels = _epochs(1)
    flat = {"loss": "CAKD", "grouping": "topk:3", "T": 2, "w_b": 1, "alpha": 2, "beta": 6, "warmup": 5}
    flat |= {"lr": 0.1, "epochs": 240, "batch": 64, "seed": 3, "student": "resnet8x4", "data": "cifar100"}
    nested = {"loss": {"name": "dkd", "alpha": 1, "beta": 8, "temperature": 4}, "lr": "fast", "seed": 1.5}
    for name, config in (("flat", flat), ("nested", nested), (None, {"loss": "my_loss"}), (None, None)):
        with Recorder(tmp_path, name=name, config=config) as rec:
            rec.log_epoch(1, teacher, teacher, labels)
    table = tracker_table(list_runs(tmp_path)).set_index("run")
    row = table.loc["flat"]
    assert (row["loss"], row["grouping"], row["temperature"], row["w_b"], row["alpha"], row["beta"]) == (
        "cakd",
        "topk:3",
        2,
        1,
        2,
        6,
    )
    assert (row["warmup"], row["lr"], row["epochs"], row["batch"], row["seed"]) == (5, 0.1, 240, 64, 3)
    assert (row["student"], row["data"], row["state"], row["epochs_done"]) == (
        "resnet8x4",
        "cifar100",
        "done",
        1,
    )
    row = table.loc["nested"]
    assert (row["loss"], row["alpha"], row["beta"], row["temperature"]) == ("dkd", 1, 8, 4)
    assert pd.isna(row["grouping"])  # DKD declares no grouping: its split is S = {label} by definition
    assert row[["lr", "seed"]].isna().all()  # of the wrong type: kept only as given
    (nested_run,) = [r for r in list_runs(tmp_path) if r.config.get("name") == "nested"]
    assert nested_run.config["hyperparameters"] == nested
    assert set(table.index) == {"flat", "nested", "my_loss", "recorded"}  # unknown loss, no loss at all


def test_recorded_loss_settings_out_of_their_range_are_kept_as_given_only():
    from cakd_viz.runs.recorded import recorded_config

    given = {"loss": "cakd", "T": -1, "beta": float("nan"), "alpha": 2, "grouping": "topk:x"}
    config = recorded_config(given, name=None, grouping="topk:5", temperature=4.0, split="test")
    assert config["loss"] == {"name": "cakd", "alpha": 2.0, "grouping": "topk:5", "temperature": 4.0}
    assert config["hyperparameters"]["T"] == -1 and config["hyperparameters"]["grouping"] == "topk:x"


def test_recorded_numbers_beyond_floats_range_are_kept_as_given_only():
    from cakd_viz.runs.recorded import recorded_config

    given = {"seed": 10**400, "lr": 10**400, "epochs": 3}
    config = recorded_config(given, name=None, grouping="topk:5", temperature=4.0, split="test")
    assert "seed" not in config and "lr" not in config and config["epochs"] == 3
    assert config["hyperparameters"]["seed"] == 10**400


def test_recorded_whole_numbers_beyond_64_bits_are_kept_as_given_only(tmp_path):
    # seed 2**70 went into config.json's seed, a field readers take within 64 bits: the run read corrupt
    with Recorder(tmp_path, config={"seed": 2**70, "batch": 1e300, "epochs": 3}) as rec:
        pass
    info = read_run(rec.path)
    assert info.state == "done" and info.config["epochs"] == 3
    assert "seed" not in info.config and "batch_size" not in info.config
    assert info.config["hyperparameters"]["seed"] == 2**70


def test_per_step_rows(tmp_path):
    _, teacher, labels = _epochs(1)
    with Recorder(tmp_path) as rec:
        for _ in range(4):
            rec.log(loss=torch.tensor(2.0), lr=np.float32(0.5))
        rec.log_epoch(1, teacher, teacher, labels)
        rec.log(step=10, loss=1)
        rec.log(loss=1, epoch=1.9)
    steps = metrics_frame(rec.path, "step")
    assert list(steps["step"]) == [1, 2, 3, 4, 10, 11]
    assert list(steps["loss"]) == [2, 2, 2, 2, 1, 1] and list(steps["lr"][:4]) == [0.5] * 4
    assert list(steps["epoch"]) == [0, 0, 0, 0, 1.25, 1.9]  # after epoch 1: its 4 calls per epoch


def test_an_exception_marks_the_run_failed_with_its_line_and_goes_on(tmp_path):
    _, teacher, labels = _epochs(1)
    with pytest.raises(RuntimeError, match="loss is nan"), Recorder(tmp_path) as rec:
        rec.log_epoch(1, teacher, teacher, labels)
        raise RuntimeError("loss is nan\n  at step 3")
    run = read_run(rec.path)
    assert (run.state, run.error) == ("failed", "RuntimeError: loss is nan at step 3")
    assert (
        "Traceback (most recent call last)" in store.log_tail(run.path, 40)
        and not (run.path / store.SUMMARY).exists()
    )
    with pytest.raises(KeyboardInterrupt), Recorder(tmp_path) as rec:
        raise KeyboardInterrupt
    assert read_run(rec.path).state == "cancelled"


KILLED = """
import sys
import numpy as np
import pandas as pd
from cakd_viz.runs import Recorder
rng = np.random.default_rng(0)
t = rng.normal(size=(20, 5)).astype(np.float32)
with Recorder(sys.argv[1], config={"lr": 0.1}) as rec:
    rec.log_epoch(1, t * 0.5, t, np.arange(20) % 5)
    print(rec.path, flush=True)
    sys.stdin.read()  # until killed
"""


def test_a_killed_training_script_reads_as_failed(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(KILLED), str(tmp_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        path = Path(proc.stdout.readline().strip())  # the run is recording
        assert read_run(path).state == "running"
    finally:
        proc.kill()
        proc.wait(timeout=60)
    run = read_run(path)
    assert run.state == "failed" and f"(pid {proc.pid}) ended without recording a result" in run.error
    assert len(metrics_frame(run)) == 1 and tracker_table([run]).loc[0, "lr"] == 0.1


def test_runs_recorded_on_another_machine_keep_their_state_and_hyperparameters(tmp_path):
    _, teacher, labels = _epochs(1)
    there, here = tmp_path / "there", tmp_path / "here"
    with Recorder(there, name="finished", config={"lr": 0.1, "loss": "kd"}) as rec:
        rec.log_epoch(1, teacher, teacher, labels)
    with pytest.raises(ValueError), Recorder(there, name="crashed", config={"lr": 0.2}) as rec:
        raise ValueError("boom")
    with Recorder(there, name="unfinished") as rec:
        shutil.copytree(rec.path, here / rec.path.name)  # copied while it still ran
    for run in list_runs(there):
        if run.label != "unfinished":
            shutil.copytree(run.path, here / run.id)
    for status_file in here.glob("*/status.json"):  # as written on the other machine
        status = json.loads(status_file.read_text()) | {"host": "gpu-node-7", "pid": 4242, "pid_start": 99}
        status_file.write_text(json.dumps(status))
    states = {r.label: (r.state, r.error) for r in list_runs(here)}
    assert states["finished"] == ("done", None) and states["crashed"] == ("failed", "ValueError: boom")
    assert states["unfinished"][0] == "elsewhere"  # still running there, as far as anyone here can tell
    table = tracker_table(list_runs(here)).set_index("run")
    assert (table.loc["finished", "lr"], table.loc["finished", "loss"], table.loc["crashed", "lr"]) == (
        0.1,
        "kd",
        0.2,
    )


def _bad_calls(teacher, labels) -> dict:
    s = teacher * 0.5
    return {
        "text scalar": (
            lambda r: r.log_epoch(1, s, teacher, labels, note="good"),
            "note must be a number, got str",
        ),
        "nan scalar": (
            lambda r: r.log_epoch(1, s, teacher, labels, loss=float("nan")),
            "loss is nan (not finite)",
        ),
        "bool scalar": (lambda r: r.log(done=True), "done must be a number, got bool"),
        "vector scalar": (lambda r: r.log(loss=torch.ones(3)), "loss must be a number, got Tensor"),
        "reserved": (
            lambda r: r.log_epoch(1, s, teacher, labels, val_kl=1.0),
            "val_kl is recorded by the Recorder",
        ),
        "reserved acc": (
            lambda r: r.log_epoch(1, s, teacher, labels, val_acc=1.0),
            "val_acc is recorded by the Recorder",
        ),
        "epoch 0": (lambda r: r.log_epoch(0, s, teacher, labels), "epochs count from 1"),
        "epoch 2**70": (lambda r: r.log_epoch(2**70, s, teacher, labels), "epochs count from 1"),
        "epoch twice": (
            lambda r: (r.log_epoch(2, s, teacher, labels), r.log_epoch(2, s, teacher, labels)),
            "epoch 2 is not after epoch 2, the last one logged",
        ),
        "other teacher": (
            lambda r: (r.log_epoch(1, s, teacher, labels), r.log_epoch(2, s, teacher[::-1], labels)),
            "teacher_logits differ from the first epoch's",
        ),
        "other labels": (
            lambda r: (r.log_epoch(1, s, teacher, labels), r.log_epoch(2, s, teacher, (labels + 1) % 10)),
            "labels differ from the first epoch's",
        ),
        "shapes": (lambda r: r.log_epoch(1, s[:10], teacher, labels), "differ in shape"),
        "integer logits": (
            lambda r: r.log_epoch(1, s.astype(np.int32), teacher, labels),
            "student_logits holds int32",
        ),
        "one-dimensional": (lambda r: r.log_epoch(1, s[0], teacher, labels), "must be (N, C) logits"),
        "beyond float32": (  # a finite float64 value was cast to inf and reported as not finite
            lambda r: r.log_epoch(1, np.where(s == s.max(), 1e39, s.astype(np.float64)), teacher, labels),
            "student_logits holds 1e+39, beyond float32's range",
        ),
        "labels length": (
            lambda r: r.log_epoch(1, s, teacher, labels[:5]),
            "labels must be 200 whole numbers",
        ),
        "bad step": (lambda r: r.log(step=-1, loss=1), "step must be a whole number >= 0"),
    }


@pytest.mark.parametrize("case", list(_bad_calls(np.zeros((1, 2)), None)))
def test_bad_values_are_one_line_errors_and_the_run_goes_on(tmp_path, case):
    _, teacher, labels = _epochs(1)
    call, message = _bad_calls(teacher, labels)[case]
    with Recorder(tmp_path) as rec:
        with pytest.raises(ValueError) as info:
            call(rec)
        assert message in str(info.value) and "\n" not in str(info.value), str(info.value)
    assert read_run(rec.path).state == "done"


def test_bad_settings_are_refused_before_a_folder_exists(tmp_path):
    _, teacher, labels = _epochs(1)
    for kwargs, message in (
        ({"grouping": "topk:0"}, "grouping"),
        ({"temperature": 0}, "temperature must be a finite number > 0"),
        ({"name": "a/b"}, "name 'a/b': use at most 100 letters"),
        ({"name": "ab\n"}, r"name 'ab\\n': use at most 100 letters"),
        ({"config": [("lr", 1)]}, "config must be a dict of hyperparameters, got list"),
        ({"split": "train"}, "split must be one of validation, test"),
    ):
        with pytest.raises(ValueError, match=message):
            Recorder(tmp_path, **kwargs)
    with pytest.raises(ValueError, match="log inside the Recorder's block"):
        Recorder(tmp_path).log_epoch(1, teacher, teacher, labels)
    with (
        pytest.raises(ValueError, match="grouping target needs labels"),
        Recorder(tmp_path, grouping="target") as rec,
    ):
        rec.log_epoch(1, teacher, teacher)
    assert [r.state for r in list_runs(tmp_path)] == ["failed"]  # only the last one made a folder


def test_numpy_inputs_without_labels_and_a_correlation_grouping(tmp_path):
    students, teacher, labels = _epochs(2)
    with Recorder(tmp_path, grouping="corr:0.3") as rec:
        for epoch, s in enumerate(students, 1):
            row = rec.log_epoch(epoch, s, teacher.astype(np.float16))
    from cakd_viz.grouping import class_correlation

    teacher16 = teacher.astype(np.float16).astype(np.float32)
    correlated = class_correlation(teacher16) >= 0.3
    ref = terms(students[-1], teacher16, strong_mask(teacher16, grouping="corr", correlated=correlated), T)
    assert row["val_kl"] == pytest.approx(ref["kl"].mean(), rel=1e-4)
    assert row["val_bcd"] == pytest.approx(ref["bcd"].mean(), rel=1e-4) and "val_acc" not in row
    run = read_run(rec.path)
    assert run.summary["best_val_acc"] is None and run.state == "done"
    assert not (run.path / EPOCHS_DIR / "labels.npy").exists()


def test_epoch_logits_keep_the_runs_size_cap(tmp_path, monkeypatch):
    students, teacher, labels = _epochs(3)
    monkeypatch.setattr(dynamics, "MAX_EPOCH_BYTES", 2 * teacher.size * 2)  # two float16 epochs
    with Recorder(tmp_path) as rec:
        for epoch, s in enumerate(students, 1):
            rec.log_epoch(epoch, s, teacher, labels)
    index = json.loads((rec.path / EPOCHS_DIR / "index.json").read_text())
    assert (index["epochs"], index["not_kept"]) == ([1, 2], [3])
    assert len(metrics_frame(rec.path)) == 3  # the terms are recorded for every epoch


def test_an_epoch_beyond_float16s_range_is_not_kept_and_the_others_still_read(tmp_path):
    students, teacher, labels = _epochs(2)
    with Recorder(tmp_path) as rec:
        rec.log_epoch(1, students[0] * 1e5, teacher, labels)  # |z| > 65504: inf as float16
        rec.log_epoch(2, students[1], teacher, labels)
    index = json.loads((rec.path / EPOCHS_DIR / "index.json").read_text())
    assert (index["epochs"], index["not_kept"]) == ([2], [1])
    t = read_trajectory(rec.path)
    assert t.epochs == (2,) and any("float16" in note for note in t.notes)


def test_a_cancel_from_the_page_is_seen_and_kills_nothing(tmp_path):
    students, teacher, labels = _epochs(2)
    with Recorder(tmp_path) as rec:
        rec.log_epoch(1, students[0], teacher, labels)
        assert cancel(rec.path) and rec.cancel_requested
        rec.log_epoch(2, students[1], teacher, labels)
    run = read_run(rec.path)
    assert run.state == "cancelled" and len(run.epochs) == 2
    assert "stays cancelled" in store.log_tail(run.path)


def test_the_example_trains_with_its_own_loop_and_records_it(tmp_path):
    done = subprocess.run(
        [
            sys.executable,
            str(REPO / "examples" / "train_own_loop.py"),
            "--epochs",
            "2",
            "--runs-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    (run,) = list_runs(tmp_path)
    frame = metrics_frame(run)
    assert (
        run.state == "done" and list(frame["epoch"]) == [1, 2] and frame[list(VAL_TERMS)].notna().all().all()
    )
    assert run.summary["last_val_acc"] > 0.5 and run.summary["eval_split"] == "test"
    assert tracker_table([run]).loc[0, ["loss", "grouping", "beta", "lr"]].tolist() == [
        "cakd",
        "topk:3",
        8.0,
        0.05,
    ]


def test_the_tune_page_shows_a_recorded_run_with_its_held_out_term_curves(tmp_path, monkeypatch):
    students, teacher, labels = _epochs(3)
    with Recorder(tmp_path / "runs", name="mine", config={"loss": "cakd", "lr": 0.05, "beta": 8}) as rec:
        for epoch, s in enumerate(students, 1):
            rec.log_epoch(epoch, s, teacher, labels)
    monkeypatch.setenv(store.RUNS_DIR_ENV, str(tmp_path / "runs"))
    monkeypatch.setenv("CAKD_VIZ_DATA_ROOT", str(tmp_path / "runs"))
    at = open_app(page="cakd_viz/app/pages/tune.py")
    assert not at.exception, [e.value for e in at.exception]
    table = next(d.value for d in at.dataframe if "best acc (%)" in d.value)
    row = table.iloc[0]
    assert (row["run"], row["state"], row["loss"], row["lr"], row["β"]) == ("mine", "done", "cakd", 0.05, 8)
    kl = [m["val_kl"] for m in metrics_frame(rec.path).to_dict("records")]
    curves = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    sums = [t for c in curves for t in c["data"] if t.get("name") == "KL (sum of the parts)"]
    assert len(sums) == 1
    np.testing.assert_array_equal(_values(sums[0]["x"]), [1, 2, 3])
    np.testing.assert_allclose(_values(sums[0]["y"]), kl)


def _values(array) -> np.ndarray:
    """A plotly figure's array as sent to the browser: a list, or typed bytes ({"dtype", "bdata"})."""
    if isinstance(array, dict):
        return np.frombuffer(base64.b64decode(array["bdata"]), dtype=array["dtype"])
    return np.asarray(array)
