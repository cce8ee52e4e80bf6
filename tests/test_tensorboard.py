"""`cakd-viz tensorboard RUNS_DIR --out LOGDIR`: every numeric field of every ended run's metrics.jsonl as
TensorBoard scalars, read back with TensorBoard's own EventAccumulator; one folder per run, replaced on
a second export; skipped runs named; without tensorboard, one line saying how to install it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import make_logits
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from cakd_viz.cli import main
from cakd_viz.runs import Recorder, list_runs, store
from cakd_viz.runs.tensorboard import MARKER, folder_name

REPO = Path(__file__).resolve().parents[1]


def _record(root: Path, name: str, epochs: int = 3, fail: bool = False) -> Path:
    student, teacher, labels = make_logits(seed=len(name))
    try:
        with Recorder(root, name=name, config={"loss": "kd", "lr": 0.1}) as rec:
            for epoch in range(1, epochs + 1):
                for _ in range(3):
                    rec.log(loss=1.0 / epoch, lr=0.1)
                mixed = student + (teacher - student) * epoch / (epochs + 1)
                rec.log_epoch(epoch, mixed, teacher, labels, train_loss=2.0 / epoch)
            if fail:
                raise RuntimeError("diverged")
    except RuntimeError:
        pass
    return rec.path


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    """A runs folder with two recorded runs of the same name, a failed one, and a real `cakd-viz tune` run."""
    root = tmp_path_factory.mktemp("runs")
    _record(root, "same")
    _record(root, "same", epochs=2)
    _record(root, "crashed", epochs=1, fail=True)
    done = subprocess.run(
        [sys.executable, "-m", "cakd_viz", "tune", "--config", str(REPO / "examples" / "run_digits_kd.json")]
        + ["--set", "epochs=2", "--set", "name=tuned", "--runs-dir", str(root), "-q"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return root


def _scalars(folder: Path) -> dict[str, list[tuple[int, float]]]:
    acc = EventAccumulator(str(folder), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def _expected(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """The scalars metrics.jsonl says there should be, read independently of the exporter."""
    want: dict[str, list] = {}
    for line in (run_dir / store.METRICS).read_text().splitlines():
        record = json.loads(line)
        kind = record["kind"]
        for key, value in record.items():
            if key in ("kind", "time", kind) or isinstance(value, bool) or not isinstance(value, int | float):
                continue
            want.setdefault(f"{kind}/{key}", []).append((int(record[kind]), float(value)))
    return want


def _check_against_metrics(folder: Path, run_dir: Path) -> dict:
    got, want = _scalars(folder), _expected(run_dir)
    assert set(got) == set(want)
    for tag, points in want.items():
        assert [s for s, _ in got[tag]] == [s for s, _ in points], tag
        np.testing.assert_allclose([v for _, v in got[tag]], [v for _, v in points], rtol=1e-6, err_msg=tag)
    return got


def test_every_run_is_exported_with_every_numeric_field(runs, tmp_path, capsys):
    out = tmp_path / "tb"
    assert main(["tensorboard", str(runs), "--out", str(out)]) == 0
    assert f"wrote 4 run(s) to {out}" in capsys.readouterr().out
    folders = {f.name: f for f in out.iterdir()}
    assert len(folders) == 4
    for run in list_runs(runs):
        folder = folders[folder_name(run)]
        assert folder.name.endswith(run.id) and (folder / MARKER).read_text().strip() == run.id
        got = _check_against_metrics(folder, run.path)
        assert {"epoch/val_kl", "epoch/val_bcd", "epoch/val_scd_part", "epoch/val_acc"} <= set(got)
        if run.label == "tuned":  # a launched run: loss terms, gradient norms, per-step terms
            assert {"epoch/kd", "epoch/ce", "epoch/grad_norm", "step/loss", "step/lr"} <= set(got)
            assert [s for s, _ in got["epoch/val_kl"]] == [1, 2]
    same = sorted(n for n in folders if n.startswith("same-"))
    assert len(same) == 2  # two runs of one name never share a folder


def test_exporting_again_replaces_each_runs_folder(runs, tmp_path, capsys):
    out = tmp_path / "tb"
    (out / "mine").mkdir(parents=True)  # something else in the log folder is left alone
    for _ in range(2):
        assert main(["tensorboard", str(runs), "--out", str(out)]) == 0
    for run in list_runs(runs):
        folder = out / folder_name(run)
        assert len(list(folder.glob("events.out.tfevents.*"))) == 1
        steps = [s for s, _ in _scalars(folder)["epoch/val_kl"]]
        assert steps == list(range(1, len(run.epochs) + 1))  # each epoch once, not once per export
    assert sorted(p.name for p in out.iterdir() if not (p / MARKER).exists()) == ["mine"]
    assert not list(out.glob(".*"))  # no temporary folder left


def test_running_and_corrupt_runs_are_skipped_and_named(runs, tmp_path):
    mixed = tmp_path / "runs"
    mixed.mkdir()
    ended = _record(mixed, "ended", epochs=1)
    (mixed / "broken").mkdir()
    (mixed / "broken" / store.CONFIG).write_text("{not json")
    student, teacher, labels = make_logits()
    with Recorder(mixed, name="live") as rec:
        rec.log_epoch(1, student, teacher, labels)
        done = subprocess.run(
            [sys.executable, "-m", "cakd_viz", "tensorboard", str(mixed), "--out", str(tmp_path / "tb")],
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONPATH": str(REPO)},
            timeout=120,
        )
    assert done.returncode == 0, done.stderr
    lines = sorted(done.stderr.strip().splitlines())
    assert lines == [
        f"cakd-viz tensorboard: skipped {rec.path.name}: running, not ended yet (export it again once it has ended)",
        "cakd-viz tensorboard: skipped broken: corrupt (config.json is not valid JSON (Expecting property name "
        "enclosed in double quotes: line 1 column 2 (char 1)))",
    ]
    (folder,) = (tmp_path / "tb").iterdir()
    assert folder.name == f"ended-{ended.name}"


def test_without_tensorboard_one_line_says_how_to_install_it(runs, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # as if tensorboard were not installed
    assert main(["tensorboard", str(runs), "--out", str(tmp_path / "tb")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "cakd-viz tensorboard: error: writing TensorBoard files needs the tensorboard package: "
        'pip install "cakd-viz[tensorboard]" (or: pip install tensorboard)'
    ]
    assert not (tmp_path / "tb").exists()


def test_a_missing_runs_folder_is_one_line(tmp_path, capsys):
    assert main(["tensorboard", str(tmp_path / "nowhere"), "--out", str(tmp_path / "tb")]) == 2
    assert (
        capsys.readouterr().err.strip()
        == f"cakd-viz tensorboard: error: {tmp_path / 'nowhere'}: not a folder of runs"
    )


def test_a_skipped_run_with_escape_sequences_in_its_folder_name_is_shown_written_out(tmp_path, capsys):
    """A run folder's name is anyone's text: the terminal shows it, never obeys it (as every command does)."""
    runs = tmp_path / "runs"
    (runs / "evil\x1b]0;owned\x07").mkdir(parents=True)
    (runs / "evil\x1b]0;owned\x07" / store.CONFIG).write_text("{not json")
    assert main(["tensorboard", str(runs), "--out", str(tmp_path / "tb")]) == 0
    out, err = capsys.readouterr()
    assert "\x1b" not in err and "\x07" not in err and "\x1b" not in out
    assert err.startswith("cakd-viz tensorboard: skipped evil")


def test_rows_whose_step_is_not_a_finite_whole_number_are_left_out_not_fatal(tmp_path):
    from cakd_viz.runs.tensorboard import export_runs

    path = _record(tmp_path / "runs", "damaged", epochs=1)
    with open(path / store.METRICS, "a") as handle:  # hand-edited or damaged rows (json reads NaN)
        handle.write('{"kind": "epoch", "epoch": NaN, "x": 1}\n{"kind": "step", "step": 1e30, "x": 1}\n')
        # a whole number beyond float's range, as step or value: OverflowError ended the whole export
        big = "1" + "0" * 400
        handle.write(
            f'{{"kind": "step", "step": {big}, "x": 1}}\n{{"kind": "step", "step": 2, "y": {big}}}\n'
        )
    written, skipped = export_runs(tmp_path / "runs", tmp_path / "tb")
    assert skipped == [] and list(written) == [path.name]
    got = _scalars(written[path.name])
    assert "epoch/x" not in got and "step/x" not in got and [s for s, _ in got["epoch/val_kl"]] == [1]
    assert "step/y" not in got


def test_a_folder_of_the_runs_name_that_no_export_wrote_is_never_replaced(tmp_path):
    from cakd_viz.runs.tensorboard import export_runs

    path = _record(tmp_path / "runs", "mine", epochs=1)
    (run,) = list_runs(tmp_path / "runs")
    own = tmp_path / "tb" / folder_name(run)
    own.mkdir(parents=True)
    (own / "precious.txt").write_text("not TensorBoard's")
    written, skipped = export_runs(tmp_path / "runs", tmp_path / "tb")
    assert written == {} and len(skipped) == 1 and "was not written by an export" in skipped[0]
    assert [p.name for p in own.iterdir()] == ["precious.txt"] and path.name in skipped[0]
    (own / "precious.txt").unlink()
    own.rmdir()
    written, skipped = export_runs(tmp_path / "runs", tmp_path / "tb")  # then exported, and again
    assert list(written) == [path.name] and export_runs(tmp_path / "runs", tmp_path / "tb")[1] == []


def test_an_unreadable_marker_in_another_folder_of_the_output_does_not_stop_the_export(tmp_path):
    """The output folder is shared with anything else: a marker there that is not text (or not readable)
    marks no run of ours; it was read unguarded and a UnicodeDecodeError took the whole export down."""
    from cakd_viz.runs.tensorboard import export_runs

    path = _record(tmp_path / "runs", "mine", epochs=1)
    other = tmp_path / "tb" / "someone-elses"
    other.mkdir(parents=True)
    (other / MARKER).write_bytes(b"\xff\xfe not text")
    written, skipped = export_runs(tmp_path / "runs", tmp_path / "tb")
    assert list(written) == [path.name] and skipped == []
    assert (other / MARKER).read_bytes() == b"\xff\xfe not text"
