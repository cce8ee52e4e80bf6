"""Validation split and training dynamics: a run carves a stratified, seeded validation split from its
training data, evaluates every epoch on it (with the held-out decomposition of its student), and
touches the test split only at the end, or never."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
from reference import reference_terms, standardized
from runs_support import make_teacher, tiny_config

from cakd_viz.bundle import load_bundle
from cakd_viz.data import load_data
from cakd_viz.runs import RunConfig, read_run, run_config, store
from cakd_viz.runs.build import validation_split
from cakd_viz.runs.dynamics import EPOCHS_DIR, VAL_TERMS

COUNTING = """
from torch.utils.data import Dataset
from cakd_viz.data import load_data

SEEN = set()  # every row of the test split anything read

class Counting(Dataset):
    def __init__(self):
        src = load_data("sample:digits:test")
        self.base, self.class_names, self.targets = src.dataset, src.class_names, src.labels
    def __len__(self):
        return len(self.base)
    def __getitem__(self, i):
        SEEN.add(int(i))
        return self.base[i]

def make():
    return Counting()
"""


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    return make_teacher(tmp_path_factory.mktemp("teacher"))


@pytest.fixture
def counting(tmp_path, monkeypatch):
    """A test split (digits' own) that records which rows are read: the module, imported here."""
    (tmp_path / "counting_split.py").write_text(COUNTING)
    monkeypatch.syspath_prepend(str(tmp_path))
    import counting_split

    yield counting_split
    sys.modules.pop("counting_split", None)


def test_the_validation_split_is_disjoint_stratified_and_seeded():
    counts = [10, 20, 7, 1, 30, 2]
    labels = np.random.default_rng(0).permutation(np.repeat(np.arange(len(counts)), counts))
    keep, val = validation_split(labels, 0.2, seed=3)
    assert np.intersect1d(keep, val).size == 0
    assert np.array_equal(np.sort(np.concatenate([keep, val])), np.arange(len(labels)))
    assert np.all(np.diff(keep) > 0) and np.all(np.diff(val) > 0)
    # per class: a fifth of its rows, rounded, at least one and never all (a lone row stays in training)
    assert np.bincount(labels[val], minlength=len(counts)).tolist() == [2, 4, 1, 0, 6, 1]
    again, other = validation_split(labels, 0.2, seed=3), validation_split(labels, 0.2, seed=4)
    assert np.array_equal(again[1], val) and not np.array_equal(other[1], val)
    with pytest.raises(ValueError, match="no class has the two rows"):
        validation_split(np.arange(5), 0.5, seed=0)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"val_split": 1.0}, r"val_split must be a fraction below 1, got 1.0"),
        ({"val_split": -0.1}, r"val_split must be a finite number >= 0 and <= 1, got -0.1"),
        ({"evaluate_test": False}, r"evaluate_test is false but val_split is 0"),
        (
            {"loss": {"warmup_schedule": "linear"}},
            r"loss.warmup_schedule must be one of epoch, step, got 'linear'",
        ),
    ],
)
def test_bad_validation_and_warmup_settings_are_refused(teacher, change, message):
    with pytest.raises(ValueError, match=message):
        RunConfig.from_dict(tiny_config(teacher, **change)).validate()


def _reference_means(student, teacher, labels, grouping, temperature) -> dict[str, float]:
    """The VAL_TERMS from the independent float64 reference (tests/reference.py), S built by hand."""
    if grouping == "target":
        strong = np.zeros(teacher.shape, bool)
        strong[np.arange(len(labels)), labels] = True
    else:
        k = int(grouping.split(":")[1])
        strong = np.zeros(teacher.shape, bool)
        for i, row in enumerate(np.asarray(teacher, np.float64)):
            strong[i, np.argsort(-row, kind="stable")[:k]] = True
    kl, bcd, scd, wcd, p_s, p_w, _ = reference_terms(student, teacher, strong, temperature).T
    return {
        "val_kl": kl.mean(),
        "val_bcd": bcd.mean(),
        "val_scd": scd.mean(),
        "val_wcd": wcd.mean(),
        "val_scd_part": (p_s * scd).mean(),
        "val_wcd_part": (p_w * wcd).mean(),
    }


def test_a_validation_run_never_evaluates_the_test_split(teacher, tmp_path, counting):
    cfg = RunConfig.from_dict(
        tiny_config(
            teacher, epochs=2, val_split=0.2, val_seed=5, evaluate_test=False, test_data="counting_split:make"
        )
    )
    run = read_run(run_config(cfg, tmp_path / "runs", max_concurrent=0))
    assert run.state == "done", run.error
    assert counting.SEEN <= {0}  # only the loader's look at one item's shape
    train_labels = load_data("sample:digits:train").labels
    _, val_rows = validation_split(train_labels, 0.2, seed=5)
    s = run.summary
    assert s["eval_split"] == "validation" and s["test_acc"] is None and s["bundle_split"] == "validation"
    assert s["eval_samples"] == len(val_rows) and s["train_samples"] == len(train_labels) - len(val_rows)
    bundle = load_bundle(run.path / store.BUNDLE)
    assert np.array_equal(bundle.labels, train_labels[val_rows])
    assert bundle.meta["data"]["split"] == "validation"
    student = np.asarray(bundle.student(bundle.student_names[0]))
    assert float((student.argmax(1) == bundle.labels).mean()) == pytest.approx(s["last_val_acc"])
    assert np.array_equal(np.load(run.path / EPOCHS_DIR / "rows.npy"), val_rows)


def test_a_final_run_evaluates_the_test_split_once_at_the_end(teacher, tmp_path, counting):
    cfg = RunConfig.from_dict(tiny_config(teacher, epochs=2, val_split=0.2, test_data="counting_split:make"))
    run = read_run(run_config(cfg, tmp_path / "runs", max_concurrent=0))
    assert run.state == "done", run.error
    test = load_data("sample:digits:test")
    assert counting.SEEN == set(range(len(test)))
    bundle = load_bundle(run.path / store.BUNDLE)
    assert np.array_equal(bundle.labels, test.labels) and bundle.meta["data"]["split"] == "test"
    student = np.asarray(bundle.student(bundle.student_names[0]))
    assert run.summary["test_acc"] == pytest.approx(float((student.argmax(1) == test.labels).mean()))
    assert run.summary["eval_split"] == "validation" and run.summary["bundle_split"] == "test"


@pytest.mark.parametrize(
    "change",
    [
        {"val_split": 0.2, "evaluate_test": False, "loss": {"name": "cakd", "grouping": "topk:3"}},
        {"loss": {"name": "dkd", "grouping": "target", "temperature": 2.0, "warmup": 2}},
        {"loss": {"name": "ce", "grouping": "topk:2"}},
        {"loss": {"name": "kd", "grouping": "topk:3", "standardize": True}},
    ],
    ids=["cakd-validation", "dkd-test", "ce-test", "kd-ls-test"],
)
def test_every_epoch_records_the_held_out_decomposition(teacher, tmp_path, change):
    cfg = RunConfig.from_dict(tiny_config(teacher, epochs=2, **change))
    run = read_run(run_config(cfg, tmp_path / "runs", max_concurrent=0))
    assert run.state == "done", run.error
    assert [e["epoch"] for e in run.epochs] == [1, 2]
    assert all(set(VAL_TERMS) <= set(e) for e in run.epochs)
    # the last epoch's terms are those of the saved final student on the bundle's split (= the
    # evaluation split here), recomputed by the independent float64 reference
    bundle = load_bundle(run.path / store.BUNDLE)
    student = np.asarray(bundle.student(bundle.student_names[0]), np.float64)
    teacher_logits = np.asarray(bundle.teacher, np.float64)
    if cfg.loss.standardize:  # the held-out split follows the run's own logit standardization
        student, teacher_logits = standardized(student), standardized(teacher_logits)
    expected = _reference_means(
        student, teacher_logits, bundle.labels, cfg.loss.grouping, cfg.loss.temperature
    )
    last = run.epochs[-1]
    for key, value in expected.items():
        assert last[key] == pytest.approx(value, rel=1e-5, abs=1e-9), key
    assert last["val_kl"] == pytest.approx(
        last["val_bcd"] + last["val_scd_part"] + last["val_wcd_part"], rel=1e-6
    )
    assert run.epochs[0]["val_kl"] != last["val_kl"]  # a second epoch moved the student
    # the epoch logits kept for stepping through: float16 copies of each epoch's student
    index = json.loads((run.path / EPOCHS_DIR / "index.json").read_text())
    assert index["epochs"] == [1, 2] and index["not_kept"] == [] and index["grouping"] == cfg.loss.grouping
    assert index["split"] == ("validation" if cfg.val_split else "test")
    assert index["standardize"] is cfg.loss.standardize
    kept = np.load(run.path / EPOCHS_DIR / "epoch-002.npy")
    assert kept.dtype == np.float16 and kept.shape == student.shape
    saved = np.asarray(bundle.student(bundle.student_names[0]), np.float64)
    np.testing.assert_allclose(kept.astype(np.float64), saved, rtol=1e-3, atol=1e-2)
    np.testing.assert_array_equal(np.load(run.path / EPOCHS_DIR / "teacher.npy"), np.asarray(bundle.teacher))
