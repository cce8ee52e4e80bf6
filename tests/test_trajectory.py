"""Classes through training (``cakd_viz.runs.trajectory``): per class and kept epoch, a run's held-out terms
from its ``epochs/`` files, checked against the independent float64 reference aggregated here; the
samples that became right or wrong; the families order; and every damaged file refused in one line."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from conftest import make_logits
from fake_runs import write_epochs, write_run
from reference import reference_terms, strong_mask

from cakd_viz.grouping import class_correlation, correlated_classes
from cakd_viz.runs import Recorder
from cakd_viz.runs.epoch_files import read_epochs
from cakd_viz.runs.trajectory import COLUMNS, difference, read_trajectory, trajectory

N, C = 240, 7


def _students(teacher: np.ndarray, student: np.ndarray, steps=(0.1, 0.5, 0.9)) -> list[np.ndarray]:
    """A student drawing nearer to the teacher epoch by epoch."""
    return [(a * teacher + (1 - a) * student).astype(np.float32) for a in steps]


@pytest.fixture
def run(tmp_path):
    """(run folder, students by epoch, teacher, labels, rows, metrics rows): three kept epochs."""
    student, teacher, labels = make_logits(N, C, seed=3)
    students = _students(teacher, student)
    rows = np.arange(N, dtype=np.int64) * 5 + 2
    path = write_run(tmp_path, "20260101-000000-cakd-traj", accs=(0.5, 0.6, 0.7))
    records = write_epochs(path, students, teacher, labels, grouping="topk:3", temperature=2.0, rows=rows)
    return path, students, teacher, labels, rows, records


def _reference_by_class(
    student, teacher, labels, key, grouping, temperature, correlated=None
) -> pd.DataFrame:
    """Per-class means of the reference's per-sample terms on the float16 logits the files hold."""
    held = np.asarray(student, np.float16).astype(np.float64)
    strong = strong_mask(teacher, labels, grouping, temperature, correlated)
    kl, bcd, scd, wcd, p_s, p_w, _ = reference_terms(held, teacher, strong, temperature).T
    frame = pd.DataFrame(
        {
            "key": key,
            "kl_mean": kl,
            "bcd_mean": bcd,
            "scd_mean": p_s * scd,
            "wcd_mean": p_w * wcd,
            "scd_raw_mean": scd,
            "wcd_raw_mean": wcd,
            "agreement": held.argmax(1) == np.asarray(teacher).argmax(1),
        }
    )
    if labels is not None:
        frame["accuracy"] = held.argmax(1) == labels
    return frame.groupby("key").mean()


def test_per_class_terms_match_the_reference_aggregated_by_true_class(run):
    path, students, teacher, labels, _, _ = run
    t = read_trajectory(path)
    assert t.epochs == (1, 2, 3) and t.by == "label" and (t.grouping, t.temperature) == ("topk:3", 2.0)
    for e, student in enumerate(students):
        want = _reference_by_class(student, teacher, labels, labels, "topk:3", 2.0)
        for column in want.columns:
            got = t.term(column)[want.index.to_numpy(), e]
            np.testing.assert_allclose(got, want[column].to_numpy(dtype=float), rtol=1e-3, atol=1e-8)
    np.testing.assert_array_equal(t.counts, np.bincount(labels, minlength=C))


def test_the_parts_add_up_to_the_kl_per_class_and_epoch(run):
    t = read_trajectory(run[0])
    parts = sum(t.term(p) for p in ("bcd_mean", "scd_mean", "wcd_mean"))
    np.testing.assert_allclose(parts, t.term("kl_mean"), rtol=1e-12)
    assert np.isfinite(parts).all() and (parts > 0).all()


def test_the_overall_means_are_the_runs_own_held_out_terms(run):
    path, *_, records = run
    t = read_trajectory(path)
    for e, rec in enumerate(records):  # the run's numbers came from float32 logits, these from float16
        for column, key in (("kl_mean", "val_kl"), ("bcd_mean", "val_bcd"), ("wcd_mean", "val_wcd_part")):
            assert t.overall[e, COLUMNS.index(column)] == pytest.approx(rec[key], rel=2e-3)
        assert t.overall[e, COLUMNS.index("accuracy")] == pytest.approx(rec["val_acc"], abs=1.5 / N)


def test_an_ls_runs_trajectory_is_of_the_standardized_logits_as_its_curves_are(tmp_path):
    student, teacher, labels = make_logits(N, C, seed=4)
    students = _students(teacher * 3.0, student)  # scales unlike the teacher's: LS changes every term
    path = write_run(tmp_path, "20260101-000000-cakd-ls", accs=(0.5, 0.6, 0.7))
    records = write_epochs(
        path, students, teacher, labels, grouping="topk:3", temperature=2.0, standardize=True
    )
    t = read_trajectory(path)
    assert t.standardize and t.setting == "topk:3, T = 2, standardized"
    raw = trajectory(dict(enumerate(students, start=1)), teacher, labels, grouping="topk:3", temperature=2.0)
    for e, rec in enumerate(records):  # the run's numbers came from float32 logits, these from float16
        for column, key in (("kl_mean", "val_kl"), ("bcd_mean", "val_bcd"), ("wcd_mean", "val_wcd_part")):
            assert t.overall[e, COLUMNS.index(column)] == pytest.approx(rec[key], rel=2e-3)
        assert raw.overall[e, COLUMNS.index("kl_mean")] != pytest.approx(rec["val_kl"], rel=0.05)


def test_became_right_and_wrong_follow_the_predictions(run):
    path, students, _, labels, rows, _ = run
    t = read_trajectory(path)
    before = np.asarray(students[0], np.float16).argmax(1)
    after = np.asarray(students[2], np.float16).argmax(1)
    frame = t.changes(1, 3)
    right = set(np.flatnonzero((before != labels) & (after == labels)))
    wrong = set(np.flatnonzero((before == labels) & (after != labels)))
    assert right, "the fixture's student must learn something"
    assert set(frame.loc[frame["change"] == "became right", "index"]) == right
    assert set(frame.loc[frame["change"] == "became wrong", "index"]) == wrong
    assert list(frame["change"]) == ["became right"] * len(right) + ["became wrong"] * len(wrong)
    i = frame["index"].to_numpy()
    np.testing.assert_array_equal(frame["row"].to_numpy(dtype=np.int64), rows[i])
    np.testing.assert_array_equal(frame["before"], before[i])
    np.testing.assert_array_equal(frame["after"], after[i])
    np.testing.assert_array_equal(frame["true"], labels[i])
    assert (frame.loc[frame["change"] == "became right", "kl_after"] >= 0).all()
    assert t.changes(3, 3).empty
    with pytest.raises(ValueError, match="epoch 4 is not kept"):
        t.changes(1, 4)


def test_the_table_lists_every_class_and_epoch_with_families_together(run):
    t = read_trajectory(run[0])
    names = [f"class {i}" for i in range(C)]
    table = t.table(names)
    assert list(table.columns[:5]) == ["class", "name", "family", "epoch", "count"]
    assert list(table.columns[5:]) == list(COLUMNS)
    assert len(table) == C * 3 and sorted(set(table["class"])) == list(range(C))
    assert list(table["class"].drop_duplicates()) == list(t.order)
    families = list(table["family"].drop_duplicates())
    assert families == sorted(families) == list(range(len(families)))  # each family in one block
    row = table[(table["class"] == 4) & (table["epoch"] == 2)].iloc[0]
    assert row["name"] == "class 4" and row["kl_mean"] == t.term("kl_mean")[4, 1]


def test_look_alike_classes_share_a_family():
    rng = np.random.default_rng(0)
    teacher = rng.normal(size=(400, 6)).astype(np.float32)
    teacher[:, 4] = teacher[:, 1] + 0.05 * rng.normal(size=400)  # class 4 looks like class 1
    t = trajectory({1: teacher}, teacher, grouping="topk:2", temperature=1.0)
    assert t.family[1] == t.family[4]
    assert len(set(t.family)) >= 4  # the independent classes stay apart
    position = {int(c): i for i, c in enumerate(t.order)}
    assert abs(position[1] - position[4]) == 1


def test_without_labels_classes_are_the_teachers_and_right_means_agreeing_with_it(tmp_path):
    student, teacher, _ = make_logits(N, C, seed=4)
    students = _students(teacher, student, steps=(0.0, 0.8))
    path = write_run(tmp_path, "20260101-000000-kd-nolabels", accs=(0.5, 0.6))
    write_epochs(path, students, teacher, None, grouping="topk:2", temperature=3.0, split="test")
    t = read_trajectory(path)
    key = teacher.argmax(1)
    assert t.by == "teacher_pred" and np.isnan(t.term("accuracy")).all()
    want = _reference_by_class(students[1], teacher, None, key, "topk:2", 3.0)
    np.testing.assert_allclose(t.term("kl_mean")[want.index, 1], want["kl_mean"], rtol=1e-3, atol=1e-8)
    np.testing.assert_allclose(t.term("agreement")[want.index, 1], want["agreement"])
    frame = t.changes(1, 2)
    before, after = (np.asarray(s, np.float16).argmax(1) for s in students)
    assert set(frame["index"]) == set(np.flatnonzero((before == key) != (after == key)))
    assert frame["row"].isna().all()  # a test split has no training rows


def test_a_recorded_corr_run_is_split_with_the_correlation_it_used(tmp_path):
    student, teacher, labels = make_logits(N, C, seed=5)
    students = _students(teacher, student, steps=(0.2, 0.7))
    with Recorder(tmp_path, name="corr", grouping="corr:0.1", temperature=2.0) as rec:
        rows = [rec.log_epoch(e + 1, s, teacher, labels) for e, s in enumerate(students)]
    t = read_trajectory(rec.path)
    assert t.notes == ()
    correlated = correlated_classes(class_correlation(teacher), 0.1).numpy()
    want = _reference_by_class(students[1], teacher, labels, labels, "corr:0.1", 2.0, correlated)
    np.testing.assert_allclose(t.term("scd_mean")[want.index, 1], want["scd_mean"], rtol=1e-3, atol=1e-8)
    assert t.overall[1, COLUMNS.index("kl_mean")] == pytest.approx(rows[1]["val_kl"], rel=2e-3)


def test_a_recorded_ls_corr_run_is_split_with_the_standardized_correlation_it_used(tmp_path):
    student, teacher, labels = make_logits(N, C, seed=5)
    students = _students(teacher, student, steps=(0.2, 0.7))
    with Recorder(tmp_path, grouping="corr:0.05", temperature=2.0, standardize=True) as rec:
        rows = [rec.log_epoch(e + 1, s, teacher, labels) for e, s in enumerate(students)]
    t = read_trajectory(rec.path)
    for e, row in enumerate(rows):
        for column, key in (
            ("bcd_mean", "val_bcd"),
            ("scd_mean", "val_scd_part"),
            ("wcd_mean", "val_wcd_part"),
        ):
            assert t.overall[e, COLUMNS.index(column)] == pytest.approx(row[key], rel=2e-3, abs=1e-6)


def test_a_launched_corr_run_says_its_correlation_is_not_kept(tmp_path):
    student, teacher, labels = make_logits(N, C, seed=6)
    path = write_run(tmp_path, "20260101-000000-cakd-corr", accs=(0.5,))
    write_epochs(path, [student], teacher, labels, grouping="corr:0.2", temperature=2.0)
    (note,) = read_trajectory(path).notes
    assert "training rows" in note and "not kept" in note


def test_the_difference_of_two_runs_is_per_class_on_common_epochs(run, tmp_path):
    path, students, teacher, labels, _, _ = run
    other = write_run(tmp_path, "20260101-000001-kd-other", accs=(0.5, 0.6))
    write_epochs(other, [students[2], students[0]], teacher, labels, grouping="topk:3", temperature=2.0)
    a, b = read_trajectory(path), read_trajectory(other)
    epochs, delta = difference(a, b, "kl_mean")
    assert epochs == (1, 2)
    np.testing.assert_allclose(delta, b.term("kl_mean") - a.term("kl_mean")[:, :2])
    assert (delta[:, 0] < 0).all()  # b's first epoch is a's last, nearer the teacher


# -- damaged files ----------------------------------------------------------------------------------------


def _index(path, **change):
    file = path / "epochs" / "index.json"
    file.write_text(json.dumps(json.loads(file.read_text()) | change))


DAMAGE = {
    "no folder": (lambda p: __import__("shutil").rmtree(p / "epochs"), "epochs: missing"),
    "no index": (lambda p: (p / "epochs" / "index.json").unlink(), "epochs/index.json: missing"),
    "index not json": (lambda p: (p / "epochs" / "index.json").write_text("{"), "index.json: not JSON"),
    "index nested": (
        lambda p: (p / "epochs" / "index.json").write_text("[" * 100_000),
        "index.json: not JSON",
    ),
    "format": (lambda p: _index(p, format="other/9"), "index.json: 'format' must be"),
    "rows": (lambda p: _index(p, rows=N + 1), "teacher.npy: shape (240, 7), expected (241, 7)"),
    "epochs": (lambda p: _index(p, epochs=[2, 1]), "index.json: 'epochs' must be increasing"),
    "grouping": (lambda p: _index(p, grouping="nope:3"), "index.json: 'grouping' is not a grouping"),
    "temperature": (lambda p: _index(p, temperature=-1), "index.json: 'temperature' must be"),
    "temperature beyond float": (
        lambda p: _index(p, temperature=10**400),
        "index.json: 'temperature' must be a finite number > 0",
    ),
    "a number of more digits than Python reads": (
        lambda p: (p / "epochs" / "index.json").write_text('{"rows": 1' + "0" * 5000 + "}"),
        "index.json: not JSON",
    ),
    "standardize": (
        lambda p: _index(p, standardize="yes"),
        "index.json: 'standardize' must be true or false",
    ),
    "epoch file gone": (lambda p: (p / "epochs" / "epoch-002.npy").unlink(), "epochs/epoch-002.npy: missing"),
    "epoch number too long for a file name": (
        lambda p: _index(p, epochs=[10**300]),
        "epochs/epoch-1000000000",
    ),
    "teacher dtype": (
        lambda p: np.save(p / "epochs" / "teacher.npy", np.zeros((N, C), np.int32)),
        "teacher.npy: holds int32 values, expected floats",
    ),
    "pickle": (
        lambda p: np.save(
            p / "epochs" / "labels.npy", np.array([{"a": 1}] * N, dtype=object), allow_pickle=True
        ),
        "labels.npy: not a readable .npy array",
    ),
    "truncated": (
        lambda p: (p / "epochs" / "epoch-003.npy").write_bytes(
            (p / "epochs" / "epoch-003.npy").read_bytes()[:500]
        ),
        "epochs/epoch-003.npy: not a readable .npy array",
    ),
    "nan": (
        lambda p: np.save(p / "epochs" / "epoch-001.npy", np.full((N, C), np.nan, np.float16)),
        "epoch-001.npy: holds NaN or infinite values",
    ),
    "labels range": (
        lambda p: np.save(p / "epochs" / "labels.npy", np.full(N, C, np.int64)),
        "labels.npy: labels must lie in 0..6",
    ),
    "link": (
        lambda p: (
            (p / "epochs" / "teacher.npy").unlink(),
            (p / "epochs" / "teacher.npy").symlink_to("/etc/passwd"),
        ),
        "teacher.npy: a link, refused",
    ),
}


@pytest.mark.parametrize("case", list(DAMAGE))
def test_a_missing_or_damaged_file_is_one_line_naming_it(run, case):
    path = run[0]
    damage, message = DAMAGE[case]
    damage(path)
    with pytest.raises(ValueError) as info:
        read_trajectory(path)
    text = str(info.value)
    assert message in text and "\n" not in text
    assert text.startswith("20260101-000000-cakd-traj/epochs") and str(path.parent) not in text


def test_the_checked_files_are_what_the_run_wrote(run):
    path, students, teacher, labels, rows, _ = run
    files = read_epochs(path)
    assert (files.split, files.grouping, files.temperature, files.epochs) == (
        "validation",
        "topk:3",
        2.0,
        (1, 2, 3),
    )
    np.testing.assert_array_equal(files.teacher, teacher)
    np.testing.assert_array_equal(files.labels, labels)
    np.testing.assert_array_equal(files.rows, rows)
    np.testing.assert_array_equal(files.student(2), students[1].astype(np.float16))
    with pytest.raises(ValueError, match="epoch 7 is not kept"):
        files.student(7)


def test_without_a_kept_epoch_the_counts_are_still_the_samples_per_class():
    _, teacher, labels = make_logits(N, C, seed=6)
    with_labels = trajectory({}, teacher, labels, grouping="topk:3", temperature=2.0)
    assert with_labels.epochs == () and with_labels.by == "label"
    np.testing.assert_array_equal(with_labels.counts, np.bincount(labels, minlength=C))
    without = trajectory({}, teacher, None, grouping="topk:3", temperature=2.0)
    np.testing.assert_array_equal(without.counts, np.bincount(teacher.argmax(1), minlength=C))


def _small(classes: int, epochs=(1, 2)):
    student, teacher, labels = make_logits(60, classes, seed=7)
    return trajectory(dict.fromkeys(epochs, student), teacher, labels, grouping="topk:2", temperature=2.0)


def test_the_difference_refuses_runs_of_other_classes_or_without_a_common_epoch():
    with pytest.raises(ValueError, match="^the runs have 5 and 6 classes: no per-class difference$"):
        difference(_small(5), _small(6), "kl_mean")
    with pytest.raises(ValueError, match="^the two runs keep no epoch in common$"):
        difference(_small(5, epochs=(1, 2)), _small(5, epochs=(3,)), "kl_mean")


def test_an_unknown_column_is_refused_naming_the_columns():
    with pytest.raises(ValueError, match="^unknown column 'nope'; one of: kl_mean, bcd_mean, "):
        difference(_small(5), _small(5), "nope")
    with pytest.raises(ValueError, match="^unknown column 'kl'"):
        _small(5).term("kl")


def test_class_names_of_another_count_are_refused():
    t = _small(5)
    with pytest.raises(ValueError, match="^2 class names for 5 classes$"):
        t.table(class_names=["a", "b"])
    with pytest.raises(ValueError, match="^6 class names for 5 classes$"):
        t.changes(1, 2, class_names=list("abcdef"))
    assert list(t.table(class_names=list("abcde"))["name"].unique()) == [list("abcde")[c] for c in t.order]
