"""The Tune page's "Classes through training" (AppTest): a run's per-class heatmap per kept epoch with its term
bound to the URL, the samples that became right or wrong and opening one on the Sample page, the run beside
the bundle's students, the compared runs side by side and their difference, and what is said instead when
something cannot be shown. Run folders are written here (tests/fake_runs.py) with real epochs/ files."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from apptest_support import as_read
from conftest import make_logits
from fake_runs import write_epochs, write_run
from streamlit.testing.v1 import AppTest

from cakd_viz import decompose
from cakd_viz.app import config as app_config
from cakd_viz.bundle import load_bundle, write_bundle
from cakd_viz.runs import store
from cakd_viz.runs.trajectory import difference, read_trajectory

APP = str(Path(__file__).resolve().parent.parent / "app.py")
N, C, VAL = 180, 6, 120
NAMES = ["ant", "bee", "cat", "dog", "eel", "fox"]
TEST_RUN = "20260102-000001-cakd-test"  # epochs on the test split, which its bundle holds
VAL_RUN = "20260102-000000-kd-val"  # epochs on a validation split: its bundle holds the test split


@pytest.fixture
def runs(tmp_path, monkeypatch) -> Path:
    """A runs folder with two runs kept epoch by epoch, and the bundle they were trained against."""
    root, data = tmp_path / "runs", tmp_path / "data"
    root.mkdir()
    data.mkdir()
    monkeypatch.setenv(store.RUNS_DIR_ENV, str(root))
    monkeypatch.setenv(app_config.DATA_ROOT_ENV, f"{data}:{root}")
    monkeypatch.setenv("CAKD_SAMPLES_DIR", str(tmp_path / "no-samples"))
    student, teacher, labels = make_logits(N, C, seed=7)
    write_bundle(data / "base", teacher=teacher, students={"ce": student}, labels=labels, class_names=NAMES)
    epochs = [(a * teacher + (1 - a) * student).astype(np.float32) for a in (0.05, 0.5, 0.95)]
    arrays = {"teacher": teacher, "students": {"tuned": epochs[-1]}, "labels": labels, "class_names": NAMES}
    path = write_run(root, TEST_RUN, bundle=arrays, data="own.npz", accs=(0.5, 0.6, 0.7), created=2)
    write_epochs(path, epochs, teacher, labels, grouping="topk:5", temperature=4.0, split="test")
    kd = {"name": "kd"}
    path = write_run(
        root, VAL_RUN, loss=kd, bundle=arrays, data="own.npz", accs=(0.5, 0.6), created=1, val_split=0.1
    )
    store.write_json(path / store.SUMMARY, store.read_json(path / store.SUMMARY) | {"bundle_split": "test"})
    rows = np.arange(VAL, dtype=np.int64) * 3  # its validation rows: other samples than the bundle's
    held = [e[:VAL] for e in epochs[::2]]
    write_epochs(path, held, teacher[:VAL], labels[:VAL], grouping="topk:2", temperature=2.0, rows=rows)
    return root


def _tune(**params) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120)
    for k, v in params.items():
        at.query_params[k] = v
    at.switch_page("cakd_viz/app/pages/tune.py")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _chart(at: AppTest, key: str) -> dict:
    return next(json.loads(c.proto.spec) for c in at.get("plotly_chart") if key in c.proto.id)


def _array(value) -> np.ndarray:
    """A Plotly JSON array: a plain list, or {"dtype", "bdata" (base64), "shape"} as Plotly >= 6 writes it."""
    if isinstance(value, dict) and "bdata" in value:
        flat = np.frombuffer(base64.b64decode(value["bdata"]), dtype=np.dtype(value["dtype"]))
        shape = [int(x) for x in str(value.get("shape", len(flat))).split(",")]
        return flat.reshape(shape).astype(float)
    return np.array(value, dtype=float)


def _frame(at: AppTest, column: str):
    return next(d.value for d in at.dataframe if column in d.value.columns)


def test_a_runs_classes_heatmap_per_kept_epoch_with_its_term_in_the_url(runs):
    at = _tune()
    assert at.selectbox(key="tune_run").value == TEST_RUN
    spec = _chart(at, "tune_traj_heatmap")
    heat = spec["data"][0]
    assert heat["type"] == "heatmap" and _array(heat["z"]).shape == (C, 3)
    assert spec["layout"]["xaxis"]["ticktext"] == ["epoch 1", "epoch 2", "epoch 3"]
    assert sorted(spec["layout"]["yaxis"]["ticktext"]) == NAMES
    assert "mean BCD" in heat["colorbar"]["title"]["text"] and "nats" in heat["colorbar"]["title"]["text"]
    t = read_trajectory(runs / TEST_RUN)
    np.testing.assert_allclose(_array(heat["z"]), t.term("bcd_mean")[t.order])
    caption = next(c.value for c in at.caption if c.value.startswith("Mean BCD per class"))
    assert "test split (180 samples" in caption and "epochs 1, 2, 3" in caption and "topk:5, T = 4" in caption
    at.selectbox(key="term").set_value("accuracy").run()
    heat = _chart(at, "tune_traj_heatmap")["data"][0]
    assert "accuracy" in heat["colorbar"]["title"]["text"] and "%" in heat["colorbar"]["title"]["text"]
    np.testing.assert_allclose(_array(heat["z"]), t.term("accuracy")[t.order] * 100)
    assert not any(c.value.startswith("These per-class numbers use the run's own") for c in at.caption)


def test_a_link_names_the_term_or_says_what_is_shown_instead(runs):
    at = _tune(term="accuracy")
    assert at.selectbox(key="term").value == "accuracy"
    assert "accuracy" in _chart(at, "tune_traj_heatmap")["data"][0]["colorbar"]["title"]["text"]
    at = _tune(term="nope")
    assert any("term=`nope`" in w.value and "showing BCD" in w.value for w in at.warning)


def test_the_sidebars_other_grouping_is_said_in_one_caption(runs):
    at = _tune(run=VAL_RUN)
    lines = [c.value for c in at.caption if c.value.startswith("These per-class numbers use the run's own")]
    assert lines == [
        "These per-class numbers use the run's own grouping topk:2, T = 2 (what its held-out terms used), "
        "not the sidebar's topk:5, T = 4."
    ]


def test_a_sidebar_without_the_runs_ls_is_said_in_the_caption_and_compared_runs_name_it():
    from dataclasses import replace

    from cakd_viz.app import trajectory_view as tv
    from cakd_viz.runs.trajectory import trajectory

    student, teacher, labels = make_logits(40, 6, seed=2)
    plain = trajectory({1: student}, teacher, labels, grouping="topk:2", temperature=2.0)
    ls = replace(plain, standardize=True)
    assert tv.settings_line(plain, "topk:2", 2.0, False) is None
    assert tv.settings_line(ls, "topk:2", 2.0, False) == (
        "These per-class numbers use the run's own grouping topk:2, T = 2, standardized (what its held-out "
        "terms used), not the sidebar's topk:2, T = 2."
    )
    assert tv.settings_line(ls, "topk:2", 2.0, True) is None
    assert tv.settings_note({"a": plain, "b": ls}) == (
        "The runs' terms use different groupings, T or LS, each its own (a: topk:2, T = 2; "
        "b: topk:2, T = 2, standardized)."
    )
    assert tv.context({"a": ls, "b": ls})["standardize"] is True


def test_samples_that_became_right_open_on_the_sample_page(runs):
    at = _tune()
    table = _frame(at, "epoch 3 says")
    want = read_trajectory(runs / TEST_RUN).changes(1, 3, NAMES)
    assert list(table["sample"]) == list(want["index"]) and list(table["change"]) == list(want["change"])
    assert "training row" not in table.columns  # a test split has no training rows
    assert (want["change"] == "became right").any()
    first = int(want["index"].iloc[0])
    assert at.selectbox(key=f"tune_traj_pick_{TEST_RUN}").format_func(0).startswith(f"#{first}:")
    next(b for b in at.button if b.label == "Open on the Sample page").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.title[0].value == "Sample"
    assert at.query_params["bundle"] == f"path:runs/{TEST_RUN}/bundle"
    assert at.number_input(key="i").value == first


def test_the_epochs_compared_are_picked_and_the_table_follows(runs):
    at = _tune()
    at.selectbox(key=f"tune_traj_from_{TEST_RUN}").set_value(2).run()
    at.selectbox(key=f"tune_traj_to_{TEST_RUN}").set_value(3).run()
    want = read_trajectory(runs / TEST_RUN).changes(2, 3)
    assert list(_frame(at, "epoch 3 says")["sample"]) == list(want["index"])
    assert any(c.value.startswith(f"{(want['change'] == 'became right').sum()} sample") for c in at.caption)


def test_a_validation_runs_samples_are_listed_by_training_row_and_not_opened(runs):
    at = _tune(run=VAL_RUN)
    table = _frame(at, "epoch 2 says")  # its kept epochs are 1 and 2
    np.testing.assert_array_equal(table["training row"], table["sample"] * 3)
    assert any("holds the test split, not the validation split" in as_read(c.value) for c in at.caption)
    assert not any(b.label == "Open on the Sample page" for b in at.button)


def test_the_run_beside_the_bundles_students(runs):
    at = AppTest.from_file(APP, default_timeout=120)
    at.query_params["bundle"] = "path:base"
    at.run()
    at.switch_page("cakd_viz/app/pages/tune.py")
    at.run()
    at.toggle(key="tune_traj_beside").set_value(True).run()
    assert not at.exception, [e.value for e in at.exception]
    spec = _chart(at, "tune_traj_heatmap")
    assert spec["layout"]["xaxis"]["ticktext"] == ["epoch 1", "epoch 2", "epoch 3", " ", "ce", "final run"]
    z = _array(spec["data"][0]["z"])
    t = read_trajectory(runs / TEST_RUN)
    bundle = load_bundle(runs.parent / "data" / "base")
    for column, student in (
        (4, bundle.student("ce")),
        (5, load_bundle(runs / TEST_RUN / "bundle").student()),
    ):
        d = decompose(student, bundle.teacher, bundle.labels, grouping="topk:5", temperature=4.0)
        want = pd.Series(d.bcd).groupby(np.asarray(bundle.labels)).mean()
        np.testing.assert_allclose(z[:, column], want.to_numpy()[t.order], rtol=1e-9)
    assert np.isnan(z[:, 3]).all()
    assert any("the same samples as the epochs" in as_read(c.value) for c in at.caption)


def test_beside_the_bundles_students_says_why_not_without_the_bundle(runs):
    at = _tune()  # no bundle open, and the run's data names no shipped sample
    at.toggle(key="tune_traj_beside").set_value(True).run()
    assert any(c.value.startswith("Not set beside the bundle's students:") for c in at.caption)
    assert len(_chart(at, "tune_traj_heatmap")["layout"]["xaxis"]["ticktext"]) == 3


def test_compared_runs_side_by_side_and_their_difference(runs):
    write_run(runs, "20260102-000002-kd-old", loss={"name": "kd"}, created=0, name="no_epochs")
    at = _tune()
    spec = _chart(at, "tune_cls_side")
    assert [d["type"] for d in spec["data"]] == ["heatmap", "heatmap"]
    assert any(as_read(c.value).startswith("Not shown: no_epochs: ") for c in at.caption)
    at.radio(key="tune_cls_mode").set_value("difference of two").run()
    at.selectbox(key="cterm").set_value("kl_mean").run()
    assert not at.exception, [e.value for e in at.exception]
    a, b = read_trajectory(runs / TEST_RUN), read_trajectory(runs / VAL_RUN)
    epochs, delta = difference(a, b, "kl_mean")
    z = _array(_chart(at, "tune_cls_diff")["data"][0]["z"])
    np.testing.assert_allclose(z, delta[a.order])
    assert epochs == (1, 2)
    caption = next(as_read(c.value) for c in at.caption if "B − A, per class" in c.value)
    assert "different samples" in caption
    table = _frame(at, "mean KL, B − A (nats)")
    assert len(table) == C * 2


def test_a_run_without_kept_epochs_or_with_a_damaged_file_says_so(runs):
    (runs / TEST_RUN / "epochs" / "epoch-002.npy").write_bytes(b"junk")
    at = _tune()
    (line,) = [as_read(i.value) for i in at.info if i.value.startswith("Classes through training cannot")]
    assert f"{TEST_RUN}/epochs/epoch-002.npy: not a readable .npy array" in line
    assert str(runs) not in line
    write_run(runs, "20260102-000009-kd-bare", loss={"name": "kd"}, created=9)
    at = _tune()
    assert any("kd-bare keeps no per-epoch logits" in as_read(i.value) for i in at.info)


def test_a_file_a_running_run_is_writing_neither_changes_nor_breaks_its_trajectorys_identity(
    runs, monkeypatch
):
    """A running run writes each epoch file under a temporary name (".epoch-004.npy.tmp-...") and renames
    it: listed by one poll and gone before its size was read, it made the Tune page's run view fail
    (FileNotFoundError); and while it was there the trajectory was decomposed again for nothing."""
    from cakd_viz.app import trajectory_view
    from cakd_viz.runs import read_run

    run = read_run(runs / TEST_RUN)
    before = trajectory_view.identity(run)
    temp = runs / TEST_RUN / "epochs" / ".epoch-004.npy.tmp-1a2b"
    temp.write_bytes(b"half written")
    lstat = Path.lstat

    def renamed_meanwhile(path: Path):
        if path == temp:
            raise FileNotFoundError(path)
        return lstat(path)

    monkeypatch.setattr(Path, "lstat", renamed_meanwhile)
    assert trajectory_view.identity(run) == before
