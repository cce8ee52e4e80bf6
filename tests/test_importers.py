"""Importers: .npz, .safetensors and .pt/.pth into bundles; pickles are refused, never run."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.numpy import save_file as save_safetensors_numpy
from safetensors.torch import save_file as save_safetensors_torch

from cakd_viz.bundle import load_bundle
from cakd_viz.bundle.imports import SUPPORTED_EXTENSIONS, import_file, read_arrays
from cakd_viz.validate import BundleError


class Payload:
    """A custom class: pickling it into a file must never get it run on import."""

    def __reduce__(self):
        return (exec, ("raise SystemExit('pickled code ran')",))


def _check(bundle_path, logits, students=("student",), dtype="float32"):
    student, teacher, labels = logits
    b = load_bundle(bundle_path)
    assert b.student_names == list(students) and b.dtype == dtype
    np.testing.assert_array_equal(b.teacher, teacher.astype(dtype))
    np.testing.assert_array_equal(b.student(), student.astype(dtype))
    np.testing.assert_array_equal(b.labels, labels)
    return b


def test_npz_round_trip_with_class_names_and_inputs(tmp_path, logits):
    student, teacher, labels = logits
    names = np.array([f"class {i}" for i in range(10)])
    inputs = np.zeros((200, 4, 4), np.uint8)
    src = tmp_path / "logits.npz"
    np.savez(src, teacher=teacher, student=student, labels=labels, class_names=names, inputs=inputs)
    b = _check(import_file(src, tmp_path / "b", student_name="kd"), logits, students=("kd",))
    assert b.class_names == list(names) and b.inputs.shape == (200, 4, 4)
    assert b.meta["source"] == {"file": "logits.npz", "format": "npz"}


def test_npz_with_several_named_students_and_float16(tmp_path, logits):
    student, teacher, labels = logits
    src = tmp_path / "logits.npz"
    np.savez_compressed(src, teacher=teacher, student_kd=student, student_dkd=student, labels=labels)
    b = _check(
        import_file(src, tmp_path / "b", dtype="float16"), logits, students=("kd", "dkd"), dtype="float16"
    )
    assert b.class_names == [str(i) for i in range(10)]


def test_safetensors_round_trip_with_class_names_in_metadata(tmp_path, logits):
    student, teacher, labels = logits
    src = tmp_path / "logits.safetensors"
    names = [f"c{i}" for i in range(10)]
    tensors = {"teacher": teacher, "student_kd": student, "labels": labels}
    save_safetensors_numpy(tensors, str(src), metadata={"class_names": json.dumps(names)})
    b = _check(import_file(src, tmp_path / "b"), logits, students=("kd",))
    assert b.class_names == names


def test_safetensors_bfloat16_is_read_as_float32(tmp_path, logits):
    student, teacher, labels = logits
    src = tmp_path / "logits.safetensors"
    t = torch.from_numpy(teacher).to(torch.bfloat16)
    save_safetensors_torch({"teacher": t, "student": t.clone(), "labels": torch.from_numpy(labels)}, str(src))
    arrays = read_arrays(src)
    assert arrays["teacher"].dtype == np.float32
    np.testing.assert_array_equal(arrays["teacher"], t.float().numpy())


@pytest.mark.parametrize("ext", [".pt", ".pth"])
def test_torch_dict_of_tensors(tmp_path, logits, ext):
    student, teacher, labels = logits
    src = tmp_path / f"logits{ext}"
    names = [f"n{i}" for i in range(10)]
    obj = {"teacher": torch.from_numpy(teacher), "student": torch.from_numpy(student)}
    torch.save({**obj, "labels": torch.from_numpy(labels), "class_names": names}, src)
    b = _check(import_file(src, tmp_path / "b"), logits)
    assert b.class_names == names


def test_torch_nested_students_dict(tmp_path, logits):
    student, teacher, labels = logits
    src = tmp_path / "logits.pt"
    torch.save({"teacher": torch.from_numpy(teacher), "students": {"kd": torch.from_numpy(student)}}, src)
    assert load_bundle(import_file(src, tmp_path / "b")).student_names == ["kd"]


def test_torch_student_named_twice_is_refused_not_overwritten(tmp_path, logits):
    """'student_kd' and {"students": {"kd": ...}} both name kd: one must not silently replace the other."""
    student, teacher, _ = logits
    src = tmp_path / "dup.pt"
    t = torch.from_numpy
    torch.save({"teacher": t(teacher), "student_kd": t(student), "students": {"kd": t(student + 1)}}, src)
    with pytest.raises(BundleError, match=r"^dup.pt: .*'kd'.*twice"):
        read_arrays(src)
    assert not (tmp_path / "b").exists()


def test_pt_with_a_custom_object_is_refused_and_never_run(tmp_path, logits):
    _, teacher, _ = logits
    src = tmp_path / "evil.pt"
    torch.save({"teacher": torch.from_numpy(teacher), "student": Payload()}, src)
    msg = r"^evil.pt: contains pickled Python objects; refusing to load \(only plain tensors are accepted\)$"
    with pytest.raises(BundleError, match=msg):
        import_file(src, tmp_path / "b")
    assert not (tmp_path / "b").exists()


def test_pt_with_numpy_arrays_is_refused_with_a_hint(tmp_path, logits):
    student, teacher, _ = logits
    src = tmp_path / "np.pt"
    torch.save({"teacher": teacher, "student": student}, src)
    with pytest.raises(BundleError, match="np.pt: contains pickled Python objects.*torch.from_numpy"):
        read_arrays(src)


def test_npz_with_an_object_array_is_refused(tmp_path, logits):
    student, teacher, _ = logits
    src = tmp_path / "evil.npz"
    np.savez(src, teacher=teacher, student=student, class_names=np.array([Payload()] * 10, dtype=object))
    with pytest.raises(BundleError, match=r"^evil.npz: contains pickled Python objects; refusing to load"):
        import_file(src, tmp_path / "b")


def test_pt_that_is_not_a_dict_is_refused(tmp_path, logits):
    src = tmp_path / "t.pt"
    torch.save(torch.zeros(3, 4), src)
    with pytest.raises(BundleError, match="t.pt: expected a dict of tensors, found a Tensor"):
        read_arrays(src)
    torch.save({"teacher": torch.zeros(3, 4), "student": "oops"}, src)
    with pytest.raises(BundleError, match="t.pt: 'student' holds a str, expected a tensor"):
        read_arrays(src)
    torch.save({"teacher": torch.zeros(3, 4), "extra": 3}, src)
    with pytest.raises(BundleError, match="t.pt: 'extra' holds an int, expected a tensor"):
        read_arrays(src)


@pytest.mark.parametrize(
    ("make", "says"),
    [
        (lambda t: t.to_sparse(), "is a torch.sparse_coo tensor; save it dense"),
        (
            lambda t: torch.quantize_per_tensor(t, 0.1, 0, torch.qint8),
            "is a quantized tensor; save it as floats",
        ),
        (
            lambda t: torch.empty(t.shape, device="meta"),
            "is a tensor on the 'meta' device, which holds no values",
        ),
    ],
)
def test_pt_tensors_without_plain_values_are_refused_in_one_line(tmp_path, make, says):
    """Tensors that hold no plain numbers are refused by name (a quantized or meta tensor was an
    'internal error': numpy cannot take them)."""
    src = tmp_path / "t.pt"
    torch.save({"teacher": make(torch.randn(4, 3)), "student": torch.randn(4, 3)}, src)
    with pytest.raises(BundleError, match=f"^t.pt: 'teacher' {says}"):
        read_arrays(src)


@pytest.mark.parametrize("ext", [".npz", ".safetensors", ".pt"])
def test_corrupt_files_are_reported(tmp_path, ext):
    src = tmp_path / f"junk{ext}"
    src.write_bytes(b"\x00\x01garbage" * 10)
    with pytest.raises(BundleError, match=f"junk{ext}: cannot read this"):
        read_arrays(src)


def test_unknown_extension_lists_the_supported_ones(tmp_path):
    src = tmp_path / "logits.h5"
    src.write_bytes(b"")
    with pytest.raises(
        BundleError, match=r"logits.h5: unknown file type '.h5'; supported: .npz, .safetensors, .pt, .pth"
    ):
        import_file(src, tmp_path / "b")
    assert SUPPORTED_EXTENSIONS == (".npz", ".safetensors", ".pt", ".pth")


def test_missing_file(tmp_path):
    with pytest.raises(BundleError, match="no such file"):
        read_arrays(tmp_path / "nope.npz")


def test_missing_teacher_lists_the_keys_found(tmp_path, logits):
    student, teacher, _ = logits
    src = tmp_path / "x.npz"
    np.savez(src, techer=teacher, student=student)
    with pytest.raises(BundleError, match=r"^x.npz: no 'teacher' array \(keys found: student, techer\)$"):
        import_file(src, tmp_path / "b")


def test_missing_student(tmp_path, logits):
    _, teacher, labels = logits
    src = tmp_path / "x.npz"
    np.savez(src, teacher=teacher, labels=labels)
    with pytest.raises(BundleError, match=r"x.npz: no student array \(expected 'student' or 'student_NAME'"):
        import_file(src, tmp_path / "b")


def test_unknown_keys_are_refused(tmp_path, logits):
    student, teacher, _ = logits
    src = tmp_path / "x.npz"
    np.savez(src, teacher=teacher, student=student, studnet_kd=student)
    with pytest.raises(
        BundleError, match="x.npz: unknown key 'studnet_kd'; expected teacher, labels, student"
    ):
        import_file(src, tmp_path / "b")


def test_validation_errors_name_the_source_file(tmp_path, logits):
    student, teacher, labels = logits
    src = tmp_path / "x.npz"
    np.savez(src, teacher=teacher, student=student[:, :5])
    with pytest.raises(BundleError, match="^x.npz: student 'student' has 5 classes, teacher has 10$"):
        import_file(src, tmp_path / "b")
    np.savez(src, teacher=teacher, **{"student_..": student})
    with pytest.raises(BundleError, match=r"x.npz: invalid student name '\.\.'"):
        import_file(src, tmp_path / "b")
    bad = teacher.copy()
    bad[17, 4] = np.nan
    np.savez(src, teacher=bad, student=student, labels=labels)
    with pytest.raises(BundleError, match=r"x.npz: teacher has 1 NaN value \(first at row 17, class 4\)"):
        import_file(src, tmp_path / "b")
    assert not (tmp_path / "b").exists()


def test_import_refuses_to_overwrite_unless_asked(tmp_path, logits):
    student, teacher, labels = logits
    src = tmp_path / "x.npz"
    np.savez(src, teacher=teacher, student=student)
    import_file(src, tmp_path / "b")
    with pytest.raises(BundleError, match="already exists; pass overwrite=True"):
        import_file(src, tmp_path / "b")
    np.savez(src, teacher=teacher, student=student, labels=labels)
    assert load_bundle(import_file(src, tmp_path / "b", overwrite=True)).labels is not None


def _save(path, arrays: dict) -> None:
    if path.suffix == ".npz":
        np.savez(path, **arrays)
    elif path.suffix == ".safetensors":
        save_safetensors_numpy(arrays, str(path))
    else:
        torch.save({k: torch.from_numpy(v) for k, v in arrays.items()}, path)


@pytest.mark.parametrize("ext", [".npz", ".safetensors", ".pt"])
@pytest.mark.parametrize(
    ("key", "dtype", "who"), [("teacher", np.int32, "teacher"), ("student_kd", np.int64, "student 'kd'")]
)
def test_integer_logits_are_refused_on_import_as_load_bundle_refuses_them(
    tmp_path, logits, ext, key, dtype, who
):
    student, teacher, labels = logits
    arrays = {"teacher": teacher, "student_kd": student, "labels": labels}
    arrays[key] = np.round(arrays[key]).astype(dtype)
    src = tmp_path / f"ints{ext}"
    _save(src, arrays)
    name = np.dtype(dtype).name
    with pytest.raises(
        BundleError,
        match=rf"^ints{ext}: {who} holds {name} values; logits must be float16, float32 or float64$",
    ):
        import_file(src, tmp_path / "b")
    assert not (tmp_path / "b").exists()


def test_the_import_command_refuses_integer_logits_in_one_line(tmp_path, logits):
    from test_hostile_files import assert_refused, cli

    student, teacher, labels = logits
    src = tmp_path / "ints.npz"
    np.savez(src, teacher=np.round(teacher).astype(np.int32), student=student, labels=labels)
    run = cli("import", src, "--out", tmp_path / "b")
    assert_refused(
        run, "import", "ints.npz: teacher holds int32 values; logits must be float16, float32 or float64$"
    )
    assert not (tmp_path / "b").exists()
