"""Opening a bundle reads each logit file once: every value checked for NaN and inf, and each model's
top-1 predictions taken on the way (``decomposition.scan``); the app's class correlation over all rows
or a stated subsample."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import make_logits

from cakd_viz.app import bundles
from cakd_viz.bundle import load_bundle, write_bundle
from cakd_viz.decomposition import decompose, native_path
from cakd_viz.decomposition.scan import scan_logits
from cakd_viz.grouping import class_correlation, parse_grouping, strong_mask
from cakd_viz.scans import subset_rows
from cakd_viz.validate import BundleError


def _ties(dtype) -> np.ndarray:
    """Rows with equal maxima (the lowest index must win), negative rows, signed zeros, one-class peaks."""
    rng = np.random.default_rng(3)
    x = rng.integers(-3, 3, (500, 37)).astype(dtype)
    x[:50] = 0
    x[50:60] = -0.0
    x[60:70, 36] = 9
    x[70:80] = -5
    return x


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64, ">f4"])
def test_scan_gives_numpys_argmax_with_the_lowest_index_among_ties(dtype):
    x = _ties(dtype)
    np.testing.assert_array_equal(scan_logits(x), np.argmax(x.astype(np.float64), axis=1))


def test_scan_agrees_with_the_decompositions_own_argmaxes():
    student, teacher, labels = make_logits(300, 12)
    d = decompose(student, teacher.astype(np.float16), labels, grouping="topk:3", temperature=2.0)
    np.testing.assert_array_equal(scan_logits(teacher.astype(np.float16)), d.teacher_pred)
    np.testing.assert_array_equal(scan_logits(student), d.student_pred)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_scan_names_the_first_non_finite_value(bad, monkeypatch):
    x = _ties(np.float32)
    x[321, 5] = bad
    x[400, 0] = np.nan
    with pytest.raises(ValueError, match=rf"^t\.npy has a non-finite value \({bad}\) at row 321, class 5$"):
        scan_logits(x, "t.npy")
    monkeypatch.setattr(native_path, "kernel", lambda: None)  # the numpy path says the same
    with pytest.raises(ValueError, match=r"at row 321, class 5$"):
        scan_logits(x, "t.npy")


def test_scan_reports_progress_by_chunks(monkeypatch):
    from cakd_viz.decomposition import scan

    monkeypatch.setattr(scan, "CHUNK_ELEMENTS", 37 * 100)
    seen = []
    scan_logits(_ties(np.float16), progress=lambda done, total: seen.append((done, total)))
    assert seen == [(100, 500), (200, 500), (300, 500), (400, 500), (500, 500)]


def test_an_opened_bundle_refuses_a_bad_value_with_load_bundles_message(tmp_path):
    student, teacher, labels = make_logits(100, 6)
    path = write_bundle(tmp_path / "nan", teacher=teacher, students={"s": student}, labels=labels)
    edit = np.load(path / "students" / "s.npy", mmap_mode="r+")  # edited in place (writers refuse NaN)
    edit[42, 3] = np.nan
    edit[50, 1] = np.nan
    edit.flush()
    del edit
    with pytest.raises(BundleError) as expected:
        load_bundle(path)
    with pytest.raises(BundleError) as got:
        bundles.open_checked(path)
    assert str(got.value) == str(expected.value)
    assert "students/s.npy" in str(got.value) and "2 NaN values (first at row 42, class 3)" in str(got.value)


def test_correlation_over_all_rows_or_a_stated_subsample(tmp_path):
    student, teacher, labels = make_logits(300, 8)
    b = load_bundle(write_bundle(tmp_path / "b", teacher=teacher, students={"s": student}, labels=labels))
    full = bundles.teacher_correlation(b.teacher)
    np.testing.assert_allclose(full, class_correlation(b.teacher))
    assert not full.flags.writeable
    part = bundles.teacher_correlation(b.teacher, max_rows=120)
    rows = subset_rows(300, 120, 0)
    assert len(rows) == 120 and np.all(np.diff(rows) > 0)
    np.testing.assert_allclose(part, class_correlation(np.asarray(b.teacher)[rows]))
    assert bundles.correlation_scope(300) == "over all 300 samples"
    many = bundles.CORRELATION_ROWS + 1
    assert bundles.correlation_scope(many) == (
        f"over a fixed random subsample of {bundles.CORRELATION_ROWS:,} of {many:,} samples"
    )


def _tensor_in_strong(d, teacher_logits, rows, correlation) -> np.ndarray:
    """For each of `rows`, whether the student's top class lies in the strong set S rebuilt with tensor
    ops (`grouping.strong_mask`) under the decomposition's grouping and T: the reference."""
    g = parse_grouping(d.grouping)
    correlated = g.correlated(correlation)
    z = torch.from_numpy(np.asarray(teacher_logits[rows], dtype=np.float32))  # (n, C)
    y = None if d.labels is None else torch.from_numpy(d.labels[rows])
    mask = strong_mask(g, z, y, temperature=d.temperature, correlated=correlated)  # (n, C)
    pred = torch.from_numpy(d.student_pred[rows]).view(-1, 1)
    return mask.gather(1, pred).squeeze(1).numpy()


@pytest.mark.parametrize("grouping", ["target", "topk:3", "topk+target:2", "mass:0.9", "corr:0.1"])
@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_membership_in_strong_sets_is_the_tensor_ops_own(grouping, dtype, monkeypatch):
    """`in_strong_set` (the kernel's selection, or tensor ops for float64) agrees with the strong sets
    of `grouping.strong_mask` (tensor ops) row by row, in chunks."""
    from cakd_viz.decomposition import membership
    from cakd_viz.decomposition.membership import in_strong_set

    monkeypatch.setattr(membership, "CHUNK_ROWS", 37)
    student, teacher, labels = make_logits(300, 12, seed=7)
    teacher = teacher.astype(dtype)
    corr = np.corrcoef(np.asarray(teacher, dtype=np.float64), rowvar=False)
    d = decompose(student, teacher, labels, grouping=grouping, temperature=2.0, correlation=corr)
    rows = np.flatnonzero(np.arange(300) % 3 > 0)  # two thirds of the samples, in order
    want = _tensor_in_strong(d, teacher, rows, corr)
    got = in_strong_set(
        d.student_pred[rows], teacher, labels, rows, grouping=grouping, temperature=2.0, correlation=corr
    )
    assert 0 < want.sum() < len(rows)  # both outcomes occur
    np.testing.assert_array_equal(got, want)
