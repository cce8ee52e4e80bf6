"""Two students side by side (cakd_viz.compare) and run students composed into a bundle (bundle.compose),
checked against sums and masks computed here sample by sample."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from conftest import make_logits

from cakd_viz import compare, decompose
from cakd_viz.bundle import load_bundle, write_bundle
from cakd_viz.bundle.compose import TEACHER_ATOL, TEACHER_RTOL, compose_students


@pytest.fixture(scope="module")
def pair():
    """(A, B, labels): two students of one teacher, B closer to the teacher, decomposed at topk:3, T = 2."""
    student, teacher, labels = make_logits(300, 8, seed=3)
    better = (0.5 * student + 0.5 * teacher).astype(np.float32)
    a = decompose(student, teacher, labels, grouping="topk:3", temperature=2.0, device="cpu")
    b = decompose(better, teacher, labels, grouping="topk:3", temperature=2.0, device="cpu")
    return a, b, labels


def test_summary_is_b_minus_a_for_every_measure(pair):
    a, b, labels = pair
    table = compare.summary(a, b).set_index("measure")
    assert table.loc["kl_mean", "a"] == pytest.approx(a.kl.mean())
    assert table.loc["kl_mean", "b"] == pytest.approx(b.kl.mean())
    np.testing.assert_allclose(table["delta"], table["b"] - table["a"])
    assert table.loc["scd_mean", "b"] == pytest.approx((b.teacher_strong_mass * b.scd).mean())
    assert table.loc["wcd_raw_mean", "a"] == pytest.approx(a.wcd.mean())
    assert table.loc["accuracy", "b"] == pytest.approx(np.mean(b.student_pred == labels))
    assert table.loc["kl_mean", "delta"] < 0  # B is the closer student


def test_class_deltas_against_a_loop_over_classes(pair):
    a, b, labels = pair
    names = [f"c{i}" for i in range(8)]
    table = compare.class_deltas(a, b, num_classes=8, class_names=names)
    assert sorted(table["class"]) == sorted(set(labels.tolist()))
    for row in table.itertuples():
        rows = labels == row._1
        assert row.count == rows.sum()
        assert row.kl_mean_a == pytest.approx(a.kl[rows].mean())
        assert row.kl_mean_delta == pytest.approx(b.kl[rows].mean() - a.kl[rows].mean())
        assert row.wcd_mean_delta == pytest.approx(
            (b.teacher_weak_mass * b.wcd)[rows].mean() - (a.teacher_weak_mass * a.wcd)[rows].mean()
        )
        assert row.name == names[row._1]
    assert list(np.abs(table["kl_mean_delta"])) == sorted(np.abs(table["kl_mean_delta"]), reverse=True)


def test_fixed_and_broken_sets(pair):
    a, b, labels = pair
    fixed, broken = compare.set_mask(a, b, "fixed"), compare.set_mask(a, b, "broken")
    for i in range(len(labels)):
        right_a, right_b = a.student_pred[i] == labels[i], b.student_pred[i] == labels[i]
        assert fixed[i] == (not right_a and right_b)
        assert broken[i] == (right_a and not right_b)
    assert fixed.sum() > 0
    with pytest.raises(ValueError, match="unknown comparison set"):
        compare.set_mask(a, b, "nope")


def test_the_sets_in_words_name_the_students():
    """The Diagnose page replaced the first 'A' and then the first 'B' of the words: A named "ABC" made
    "AkdC gets wrong and B gets right" (the B inside A's name replaced by B's)."""
    assert compare.SETS["fixed"].format(a="ABC", b="kd") == "ABC gets wrong and kd gets right"
    assert compare.SETS["broken"].format(a="BA", b="AB") == "BA gets right and AB gets wrong"


def test_changes_lists_what_changed_per_sample(pair):
    a, b, labels = pair
    mask = compare.set_mask(a, b, "fixed")
    table = compare.changes(a, b, mask, limit=5)
    assert len(table) == min(5, mask.sum())
    i = int(table["index"].iloc[0])
    assert table["kl_delta"].iloc[0] == pytest.approx(b.kl[i] - a.kl[i])
    parts = table[["bcd_delta", "scd_contribution_delta", "wcd_contribution_delta"]].to_numpy()
    np.testing.assert_allclose(parts.sum(1), table["kl_delta"], rtol=1e-4, atol=1e-6)  # the identity, changed
    assert set(table["changed_most"]) <= {"bcd", "scd", "wcd"}
    every = compare.changes(a, b, mask)
    assert list(np.abs(every["kl_delta"])) == sorted(np.abs(every["kl_delta"]), reverse=True)


def test_set_summary_and_empty_sets(pair):
    a, b, _ = pair
    mask = compare.set_mask(a, b, "broken")
    table = compare.set_summary(a, b, mask).set_index("measure")
    if mask.any():
        assert table.loc["kl_mean", "a"] == pytest.approx(a.kl[mask].mean())
    empty = compare.set_summary(a, b, np.zeros(len(a.kl), bool))
    assert empty["a"].isna().all()


def test_students_under_different_settings_are_refused(pair):
    a, _, labels = pair
    student, teacher, _ = make_logits(300, 8, seed=3)
    other = decompose(student, teacher, labels, grouping="topk:3", temperature=4.0, device="cpu")
    with pytest.raises(ValueError, match="differ in setting"):
        compare.summary(a, other)
    standardized = decompose(student, teacher, labels, grouping="topk:3", temperature=2.0, standardize=True)
    with pytest.raises(ValueError, match="topk:3 at T = 2 against topk:3 at T = 2, standardized"):
        compare.summary(a, standardized)


def test_students_of_other_samples_teachers_or_labels_are_refused(pair):
    a, b, labels = pair
    other_teacher = replace(b, teacher_pred=(b.teacher_pred + 1) % 8)
    other_labels = replace(b, labels=None)
    cases = [(b.subset(slice(0, 10)), "300 and 10 samples"), (other_teacher, "different teachers")]
    for other, words in [*cases, (other_labels, "different labels")]:
        with pytest.raises(ValueError, match=words):
            compare.summary(a, other)
    unlabelled = replace(a, labels=None)
    with pytest.raises(ValueError, match="comparison by true class needs labels"):
        compare.class_deltas(unlabelled, replace(b, labels=None), num_classes=8)


# -- composing run students into a bundle ---------------------------------------------------------------


def _bundles(tmp_path, *, teacher_noise: float = 0.0, labels_shift: bool = False, n: int = 120):
    student, teacher, labels = make_logits(n, 6, seed=5)
    base = write_bundle(
        tmp_path / "base", teacher=teacher, students={"s1": student}, labels=labels, dtype="float16"
    )
    run_teacher = teacher + teacher_noise
    run_labels = (labels + 1) % 6 if labels_shift else labels
    tuned = (0.2 * student + 0.8 * teacher).astype(np.float32)
    run = write_bundle(tmp_path / "run", teacher=run_teacher, students={"tuned": tuned}, labels=run_labels)
    return load_bundle(base), load_bundle(run), tuned


def test_a_run_student_is_added_without_touching_the_files(tmp_path):
    base, run, tuned = _bundles(tmp_path)  # the base is float16: teacher logits differ by its rounding
    before = {p: p.stat().st_mtime_ns for p in (tmp_path / "base").rglob("*")}
    view = compose_students(base, {"run:x": (run, "tuned")})
    assert view.student_names == ["s1", "run:x"]
    np.testing.assert_array_equal(view.student("run:x"), tuned)
    assert view.teacher is base.teacher and view.meta["composed"]["run:x"]["student"] == "tuned"
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "base").rglob("*")} == before
    assert load_bundle(tmp_path / "base").student_names == ["s1"]


def test_a_composed_view_keeps_the_predictions_already_worked_out(tmp_path):
    """Opening a bundle scans every logit file once for its predictions (the app's open_checked): the view
    with a run's student added reuses them, the base's and the run's, instead of another argmax pass."""
    base, run, tuned = _bundles(tmp_path)
    known = {who: base.predictions(who) for who in ("teacher", "s1")} | {"run:x": run.predictions("tuned")}
    view = compose_students(base, {"run:x": (run, "tuned")})
    for who, pred in known.items():
        assert view.predictions(who) is pred
    np.testing.assert_array_equal(known["run:x"], tuned.argmax(1))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"teacher_noise": 0.05}, "made with another teacher"),
        ({"labels_shift": True}, "other labels"),
        ({"n": 100}, "not the same data"),
    ],
)
def test_a_run_of_other_data_or_teacher_is_refused(tmp_path, kwargs, message):
    student, teacher, labels = make_logits(120, 6, seed=5)
    base = load_bundle(
        write_bundle(tmp_path / "base", teacher=teacher, students={"s1": student}, labels=labels)
    )
    _, run, _ = _bundles(tmp_path / "x", **kwargs)
    with pytest.raises(ValueError, match=message):
        compose_students(base, {"run:x": (run, "tuned")})


def test_the_tolerance_is_what_float16_rounding_needs():
    # float16 keeps 11 significant bits: rounding moves a logit by at most 2^-11 of its size
    z = np.linspace(-60, 60, 10001)
    rounded = z.astype(np.float16).astype(np.float64)
    assert np.all(np.abs(rounded - z) <= TEACHER_ATOL + TEACHER_RTOL * np.abs(z))


def test_a_name_already_in_the_bundle_is_refused(tmp_path):
    base, run, _ = _bundles(tmp_path)
    with pytest.raises(ValueError, match="already"):
        compose_students(base, {"s1": (run, "tuned")})
