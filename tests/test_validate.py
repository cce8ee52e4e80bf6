"""Boundary checks: every bad input gets a precise one-line BundleError."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cakd_viz.validate import (
    BundleError,
    as_numpy,
    check_class_names,
    check_fits_dtype,
    check_inputs,
    check_labels,
    check_logits,
    check_student_name,
    iter_row_chunks,
)


def test_bundle_error_is_a_value_error():
    assert issubclass(BundleError, ValueError)


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64, np.int32, np.uint8])
def test_check_logits_accepts_numeric_2d_and_scans_floats(logits, dtype):
    _, teacher, _ = logits
    arr = teacher.astype(dtype)
    check_logits(arr, "teacher.npy", num_samples=200, num_classes=10)  # accepted: no error
    if np.dtype(dtype).kind == "f":  # the same array with one infinity is refused, naming where
        arr[7, 3] = np.inf
        with pytest.raises(
            BundleError, match=r"^teacher.npy has 1 infinite value \(first at row 7, class 3\)$"
        ):
            check_logits(arr, "teacher.npy", num_samples=200, num_classes=10)


def test_check_logits_reads_bfloat16_tensors_and_scans_them(logits):
    _, teacher, _ = logits
    tensor = torch.from_numpy(teacher).to(torch.bfloat16)
    check_logits(tensor, "teacher")  # accepted: no error
    tensor[2, 5] = float("nan")
    with pytest.raises(BundleError, match=r"1 NaN value \(first at row 2, class 5\)"):
        check_logits(tensor, "teacher")


@pytest.mark.parametrize("shape", [(10,), (2, 3, 4)])
def test_check_logits_rejects_wrong_rank(shape):
    with pytest.raises(BundleError, match=rf"teacher.npy: expected a 2-D \(N, C\) array.*got {len(shape)}-D"):
        check_logits(np.zeros(shape, np.float32), "teacher.npy")


@pytest.mark.parametrize("dtype", [bool, object, np.complex64, "U3"])
def test_check_logits_rejects_non_numeric_dtypes(dtype):
    arr = np.zeros((4, 3)).astype(dtype)
    with pytest.raises(BundleError, match=r"teacher.npy: dtype .* is not numeric"):
        check_logits(arr, "teacher.npy")


@pytest.mark.parametrize("shape", [(0, 10), (5, 0)])
def test_check_logits_rejects_empty_arrays(shape):
    with pytest.raises(BundleError, match=r"teacher.npy is empty \(shape"):
        check_logits(np.zeros(shape, np.float32), "teacher.npy")


def test_check_logits_rejects_a_single_class():
    with pytest.raises(BundleError, match="teacher.npy has 1 class; logits need at least 2 classes"):
        check_logits(np.zeros((5, 1), np.float32), "teacher.npy")


def test_check_logits_names_both_files_on_a_class_mismatch():
    with pytest.raises(BundleError, match="^students/kd.npy has 100 classes, teacher.npy has 10$"):
        check_logits(np.zeros((5, 100)), "students/kd.npy", num_classes=10, reference="teacher.npy")


def test_check_logits_names_both_files_on_a_sample_mismatch():
    with pytest.raises(BundleError, match="^students/kd.npy has 4 samples, teacher.npy has 5$"):
        check_logits(np.zeros((4, 10)), "students/kd.npy", num_samples=5, reference="teacher.npy")


@pytest.mark.parametrize("dtype", [np.float16, np.float32])
def test_check_logits_counts_nan_and_inf_across_chunks(dtype):
    arr = np.zeros((100, 10), dtype)
    arr[17, 4] = arr[60, 0] = arr[99, 9] = np.nan
    arr[3, 1] = -np.inf
    arr[80, 2] = np.inf
    msg = (
        r"^teacher.npy has 3 NaN values \(first at row 17, class 4\) and "
        r"2 infinite values \(first at row 3, class 1\)$"
    )
    with pytest.raises(BundleError, match=msg):
        check_logits(arr, "teacher.npy", chunk_rows=7)  # chunks that split the bad rows


def test_check_logits_reports_rows_with_an_offset():
    arr = np.zeros((4, 3), np.float32)
    arr[1, 2] = np.nan
    with pytest.raises(BundleError, match=r"1 NaN value \(first at row 1001, class 2\)"):
        check_logits(arr, "teacher", row_offset=1000)


def test_check_logits_can_skip_the_value_scan():
    arr = np.full((4, 3), np.nan, np.float32)
    check_logits(arr, "teacher.npy", check_values=False)  # the shape is checked, the values are not
    with pytest.raises(BundleError, match="12 NaN values"):
        check_logits(arr, "teacher.npy")


def test_iter_row_chunks_covers_all_rows_in_bounded_chunks():
    chunks = list(iter_row_chunks(1000, 1 << 20, chunk_rows=64))
    assert chunks[0] == slice(0, 4)  # 4M elements per chunk at most
    assert sum(c.stop - c.start for c in chunks) == 1000
    assert list(iter_row_chunks(10, 3, chunk_rows=4)) == [slice(0, 4), slice(4, 8), slice(8, 10)]


def test_check_labels_accepts_integers_and_integral_floats_as_int64():
    for raw in (np.array([0, 9, 3]), np.array([0.0, 9.0, 3.0]), np.array([0, 9, 3], dtype=np.uint8)):
        out = check_labels(raw, "labels.npy", num_samples=3, num_classes=10)
        assert out.dtype == np.int64 and out.tolist() == [0, 9, 3]
    out = check_labels(torch.tensor([1, 2]), "labels", num_samples=2, num_classes=3)
    assert out.dtype == np.int64 and out.tolist() == [1, 2]


def test_check_labels_rejects_out_of_range():
    labels = np.array([0, 1, 2, 3, 4, 12, 1])
    with pytest.raises(BundleError, match=r"^labels.npy: label 12 at row 5 is outside 0..9$"):
        check_labels(labels, "labels.npy", num_samples=7, num_classes=10)
    with pytest.raises(BundleError, match=r"label -1 at row 0 is outside 0..9"):
        check_labels(np.array([-1, 0]), "labels.npy", num_samples=2, num_classes=10)


def test_check_labels_without_classes_refuses_labels_no_int64_holds():
    # a float or uint64 label of 2**63 or more became a negative int64 (-9223372036854775808) silently
    assert check_labels(np.array([0.0, 2.0**62]), "labels").tolist() == [0, 2**62]
    for raw in (np.array([0.0, 1e20]), np.array([0.0, 2.0**63]), np.array([0, 2**64 - 1], dtype=np.uint64)):
        with pytest.raises(
            BundleError, match=r"^labels: label \d+ at row 1 is outside 0..9223372036854775807$"
        ):
            check_labels(raw, "labels")
    with pytest.raises(BundleError, match=r"^labels: label -1 at row 0 is outside >= 0$"):
        check_labels(np.array([-1, 0]), "labels")


def test_check_labels_rejects_non_integers():
    with pytest.raises(BundleError, match=r"labels.npy: label 2.5 at row 1 is not an integer"):
        check_labels(np.array([1.0, 2.5, np.nan]), "labels.npy", num_samples=3, num_classes=10)


@pytest.mark.parametrize("dtype", [bool, object, "U2"])
def test_check_labels_rejects_non_numeric(dtype):
    with pytest.raises(BundleError, match=r"labels.npy: dtype .* is not numeric"):
        check_labels(np.zeros(3).astype(dtype), "labels.npy", num_samples=3, num_classes=10)


def test_check_labels_rejects_wrong_shape_and_length():
    with pytest.raises(
        BundleError, match=r"labels.npy: expected a 1-D \(N,\) array of labels, got shape \(3, 1\)"
    ):
        check_labels(np.zeros((3, 1), int), "labels.npy", num_samples=3, num_classes=10)
    with pytest.raises(BundleError, match="^labels.npy has 3 samples, teacher.npy has 4$"):
        check_labels(np.zeros(3, int), "labels.npy", num_samples=4, num_classes=10, reference="teacher.npy")


def test_check_inputs():
    check_inputs(np.zeros((4, 1, 8, 8), np.uint8), "inputs.npy", num_samples=4)
    with pytest.raises(BundleError, match="inputs.npy has 3 samples, expected 4"):
        check_inputs(np.zeros((3, 8), np.uint8), "inputs.npy", num_samples=4)
    with pytest.raises(BundleError, match="inputs.npy: dtype object is not numeric"):
        check_inputs(np.zeros((4, 8), object), "inputs.npy", num_samples=4)


def test_check_class_names():
    assert check_class_names(np.array(["a", "b"]), "class_names", num_classes=2) == ["a", "b"]
    assert check_class_names([b"x", "y"], "class_names", num_classes=2) == ["x", "y"]
    with pytest.raises(BundleError, match="class_names has 3 class names, but the logits have 2 classes"):
        check_class_names(["a", "b", "c"], "class_names", num_classes=2)
    with pytest.raises(BundleError, match="class names must be strings"):
        check_class_names([1, 2], "class_names", num_classes=2)
    with pytest.raises(BundleError, match="must be a list of strings"):
        check_class_names("ab", "class_names", num_classes=2)
    # a meta.json's {"0": "cat", "1": "dog"} gave the names "0" and "1"; a set gave them in any order
    for names in ({"0": "cat", "1": "dog"}, {"cat", "dog"}):
        with pytest.raises(BundleError, match=f"must be a list of strings, got {type(names).__name__}$"):
            check_class_names(names, "meta.json class_names", num_classes=2)


@pytest.mark.parametrize("name", ["kd", "student_kd", "dkd-b8.0", "CAKD+topk=5", "_x"])
def test_student_names_that_are_safe_file_names(name):
    assert check_student_name(name) == name


@pytest.mark.parametrize(
    "name", ["", "../x", "a/b", "a\\b", ".hidden", "..", "-x", "a b", "x.", "a" * 101, 3, None]
)
def test_student_names_that_are_refused(name):
    with pytest.raises(BundleError, match="invalid student name"):
        check_student_name(name)


def test_student_cannot_be_called_teacher():
    with pytest.raises(BundleError, match="refers to the teacher"):
        check_student_name("teacher")


def test_check_fits_dtype_refuses_float16_overflow():
    arr = np.array([[1.0, -70000.0]], np.float32)
    with pytest.raises(
        BundleError, match=r"teacher has values up to 70000 in magnitude, beyond float16's range"
    ):
        check_fits_dtype(arr, "teacher", np.float16)
    check_fits_dtype(arr, "teacher", np.float32)
    check_fits_dtype(np.array([[65504.0, 0.0]]), "teacher", np.float16)


def test_as_numpy_handles_tensors_and_lists():
    t = torch.arange(6, dtype=torch.bfloat16).reshape(2, 3).requires_grad_(True)
    arr = as_numpy(t, "x")
    assert arr.dtype == np.float32 and arr.shape == (2, 3)
    assert as_numpy([[1, 2]], "x").shape == (1, 2)
