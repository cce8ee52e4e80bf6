"""Synthetic bundles: shape, dtype, determinism, a teacher better than its students, correlated families."""

from __future__ import annotations

import numpy as np
import pytest

from cakd_viz.bundle import load_bundle
from cakd_viz.bundle.synth import BLOCK_ROWS, synth_arrays, synth_bundle
from cakd_viz.grouping import class_correlation, correlated_classes


@pytest.mark.parametrize("dtype", ["float16", "float32"])
def test_bundle_has_requested_shape_dtype_labels_and_names(tmp_path, dtype):
    path = synth_bundle(tmp_path / "b", n=300, classes=12, dtype=dtype, students=("kd", "ce", "weak"))
    b = load_bundle(path)
    assert (b.num_samples, b.num_classes, b.dtype) == (300, 12, dtype)
    assert b.student_names == ["kd", "ce", "weak"]
    assert all(s.shape == (300, 12) and s.dtype == np.dtype(dtype) for s in b.students.values())
    assert b.labels.shape == (300,) and 0 <= b.labels.min() and b.labels.max() < 12
    assert b.class_names[:2] == ["f00/c00", "f00/c01"] and len(set(b.class_names)) == 12
    assert b.meta["source"] == "cakd-viz synth" and len(b.meta["families"]) == 12


def test_same_seed_same_values_whatever_the_chunk_size(tmp_path):
    n = 2 * BLOCK_ROWS + 123  # several seeded blocks and a ragged end
    a = load_bundle(synth_bundle(tmp_path / "a", n=n, classes=6, seed=7, chunk_rows=BLOCK_ROWS))
    b = load_bundle(synth_bundle(tmp_path / "b", n=n, classes=6, seed=7, chunk_rows=10 * BLOCK_ROWS))
    np.testing.assert_array_equal(a.teacher, b.teacher)
    np.testing.assert_array_equal(a.student("ce"), b.student("ce"))
    np.testing.assert_array_equal(a.labels, b.labels)
    teacher, students, labels = synth_arrays(n, 6, seed=7)
    np.testing.assert_array_equal(a.teacher, teacher.astype(np.float16))
    np.testing.assert_array_equal(a.student("kd"), students["kd"].astype(np.float16))


def test_different_seeds_differ_and_adding_a_student_keeps_the_teacher():
    t0, s0, y0 = synth_arrays(500, 10, seed=0)
    t1, _, y1 = synth_arrays(500, 10, seed=1)
    assert not np.array_equal(t0, t1) and not np.array_equal(y0, y1)
    t2, s2, y2 = synth_arrays(500, 10, seed=0, students=("kd", "ce", "third"))
    np.testing.assert_array_equal(t0, t2)
    np.testing.assert_array_equal(s0["ce"], s2["ce"])


@pytest.mark.parametrize("classes", [10, 100])
def test_teacher_is_accurate_but_not_perfect_and_students_are_weaker(classes):
    teacher, students, labels = synth_arrays(6000, classes, seed=0)

    def acc(z):
        return float(np.mean(z.argmax(1) == labels))

    assert 0.85 < acc(teacher) < 0.99
    assert acc(teacher) > acc(students["kd"]) > acc(students["ce"]) > 0.4


def test_families_show_as_high_within_family_correlation():
    teacher, _, _ = synth_arrays(5000, 20, families=4, seed=0)
    corr = class_correlation(teacher)
    family = np.arange(20) * 4 // 20
    same = family[:, None] == family[None, :]
    off_diagonal = ~np.eye(20, dtype=bool)
    assert corr[same & off_diagonal].min() > 0.6
    assert np.abs(corr[~same]).max() < 0.3
    # so a corr:0.5 strong set is exactly the predicted class's family
    np.testing.assert_array_equal(correlated_classes(corr, 0.5).numpy(), same)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"classes": 1}, "classes"),
        ({"students": ()}, "at least one student"),
        ({"students": ("kd", "kd")}, "differ"),
        ({"families": 50}, "families"),
        ({"seed": -1}, "seed"),
        ({"n": 0}, "n must"),
    ],
)
def test_bad_arguments_are_clear_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        synth_arrays(**{"n": 10, "classes": 10, **kwargs})


def test_bundle_refuses_bad_dtype_and_existing_output(tmp_path):
    with pytest.raises(ValueError, match="dtype"):
        synth_bundle(tmp_path / "x", n=10, classes=3, dtype="int8")
    synth_bundle(tmp_path / "b", n=10, classes=3)
    with pytest.raises(ValueError, match="exists"):
        synth_bundle(tmp_path / "b", n=10, classes=3, seed=1)
    synth_bundle(tmp_path / "b", n=10, classes=3, seed=1, overwrite=True)
    assert load_bundle(tmp_path / "b").meta["synth"]["seed"] == 1


def test_progress_is_reported_per_chunk(tmp_path):
    seen = []
    synth_bundle(
        tmp_path / "b",
        n=3 * BLOCK_ROWS,
        classes=3,
        chunk_rows=BLOCK_ROWS,
        progress=lambda d, t: seen.append((d, t)),
    )
    assert seen == [(BLOCK_ROWS * k, 3 * BLOCK_ROWS) for k in (1, 2, 3)]
