"""Importers: .npz, .safetensors and .pt/.pth into bundles; pickles are refused, never run."""

from __future__ import annotations

import json
import re
import struct

import hostile_files as H
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


# -- damaged files: one line naming the file and the field, nothing created -----------------------------


def _import_refusal(capsys, src, out) -> str:
    """`cakd-viz import SRC --out OUT` in process: exit 2, exactly one line, no traceback; the message."""
    from cakd_viz.cli import main

    code = main(["import", str(src), "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and len(err.splitlines()) == 1, err
    assert "Traceback" not in err and str(src.parent) not in err
    assert not out.exists() and not list(out.parent.glob(f"{out.name}.partial-*"))
    return err.strip().removeprefix("cakd-viz import: error: ")


_F32 = {"dtype": "F32", "shape": [4, 3]}
_PAIR = {"teacher": {**_F32, "data_offsets": [0, 48]}, "student": {**_F32, "data_offsets": [48, 96]}}
_UNREADABLE = r"cannot read this \.safetensors file \("
_ST_DTYPES = "F64, F32, F16, BF16, I64, I32, I16, I8, U64, U32, U16, U8, BOOL"


def _teacher_entry(**change) -> dict:
    return {**_PAIR, "teacher": {**_PAIR["teacher"], **change}}


@pytest.mark.parametrize(
    ("header", "data", "header_len", "message"),
    [
        (
            b"{not json",
            b"",
            None,
            _UNREADABLE + r"its header is not JSON: Expecting property name .*\(char 1\)\)$",
        ),
        (b"[1, 2]", b"", None, _UNREADABLE + r"its header is not a JSON object\)$"),
        (
            _PAIR,
            bytes(96),
            5000,
            _UNREADABLE + r"its header claims 5,000 bytes of a 247-byte file; at most 16\.0 MiB\)$",
        ),
        (
            _teacher_entry(dtype="F128"),
            bytes(96),
            None,
            rf"tensor 'teacher': unsupported dtype 'F128'; supported: {_ST_DTYPES}$",
        ),
        (
            _teacher_entry(dtype=["F32"]),
            bytes(96),
            None,
            rf"tensor 'teacher': unsupported dtype \['F32'\]; supported: {_ST_DTYPES}$",
        ),
        (
            {**_PAIR, "teacher": [0, 48]},
            bytes(96),
            None,
            r"tensor 'teacher': its header entry is not an object$",
        ),
        (
            _teacher_entry(shape=[4, -3]),
            bytes(96),
            None,
            r"tensor 'teacher': shape \[4, -3\] is not a list of whole numbers >= 0$",
        ),
        (
            _teacher_entry(data_offsets=[0]),
            bytes(96),
            None,
            r"tensor 'teacher': data_offsets \[0\] is not \[begin, end\]$",
        ),
        (
            _teacher_entry(shape=[4, 4]),
            bytes(96),
            None,
            r"tensor 'teacher': data_offsets \[0, 48\] hold 48 bytes, but \(4, 4\) F32 needs 64$",
        ),
        (_PAIR, bytes(90), None, r"the header describes 96 bytes of tensor data, the file holds 90$"),
        (_PAIR, bytes(100), None, r"the header describes 96 bytes of tensor data, the file holds 100$"),
        (
            {"teacher": {**_F32, "data_offsets": [0, 48]}, "student": {**_F32, "data_offsets": [40, 88]}},
            bytes(88),
            None,
            r"tensor 'student' starts at byte 40 of the data, expected 48 \(tensors overlap or leave a gap\)$",
        ),
        (
            {"teacher": {**_F32, "data_offsets": [16, 64]}, "student": {**_F32, "data_offsets": [64, 112]}},
            bytes(112),
            None,
            r"tensor 'teacher' starts at byte 16 of the data, expected 0 \(tensors overlap or leave a gap\)$",
        ),
        (
            {**_PAIR, "__metadata__": ["names"]},
            bytes(96),
            None,
            r"its __metadata__ must be a JSON object of strings$",
        ),
    ],
    ids=[
        "not JSON",
        "not an object",
        "length beyond the file",
        "unknown dtype",
        "dtype not a string",
        "entry not an object",
        "negative shape",
        "offsets not a pair",
        "shape against byte length",
        "offsets beyond the data",
        "data after the tensors",
        "overlap",
        "gap",
        "metadata not an object",
    ],
)
def test_a_damaged_safetensors_header_is_one_line_naming_the_file_and_field(
    tmp_path, capsys, header, data, header_len, message
):
    src = tmp_path / "x.safetensors"
    if isinstance(header, bytes):
        src.write_bytes(struct.pack("<Q", len(header)) + header)
    else:
        H.safetensors_file(src, header, data, header_len=header_len)
    assert re.search(r"^x\.safetensors: " + message, _import_refusal(capsys, src, tmp_path / "b"))


@pytest.mark.parametrize(
    ("class_names", "message"),
    [
        (
            "a,b,c",
            r"metadata 'class_names' is not a JSON list \(Expecting value: line 1 column 1 \(char 0\)\)$",
        ),
        ('{"a": 1}', "metadata 'class_names' must be a JSON list of strings$"),
        (
            5,
            r"metadata 'class_names' is not a JSON list \(the JSON object must be str, bytes or bytearray, not int\)$",
        ),
        ('["a", "b"]', "class_names has 2 class names, but the logits have 3 classes$"),
        ("[1, 2, 3]", "class_names: class names must be strings, found int 1$"),
    ],
)
def test_bad_class_names_metadata_is_refused_by_name(tmp_path, capsys, class_names, message):
    src = H.safetensors_file(
        tmp_path / "x.safetensors", {**_PAIR, "__metadata__": {"class_names": class_names}}, bytes(96)
    )
    assert re.search(r"^x\.safetensors: " + message, _import_refusal(capsys, src, tmp_path / "b"))


def _torch_zip(tmp_path, keep=lambda name: True) -> list:
    """The members of a real torch.save file, stored, those ``keep`` accepts (hostile_files.Entry)."""
    import zipfile

    torch.save({"teacher": torch.zeros(4, 3), "student": torch.zeros(4, 3)}, tmp_path / "src.pt")
    with zipfile.ZipFile(tmp_path / "src.pt") as zf:
        members = [H.stored(i.filename, zf.read(i)) for i in zf.infolist() if keep(i.filename)]
    (tmp_path / "src.pt").unlink()
    return members


def test_a_pt_file_without_its_pickle_is_refused(tmp_path, capsys):
    src = H.write_zip(tmp_path / "x.pt", _torch_zip(tmp_path, keep=lambda name: not name.endswith(".pkl")))
    assert (
        _import_refusal(capsys, src, tmp_path / "b")
        == "x.pt: not a PyTorch file (no pickle inside the zip archive)"
    )


def test_a_pt_file_without_a_storage_is_refused_in_torchs_first_sentence(tmp_path, capsys):
    """torch's own message goes on for 300 characters of advice; the line keeps its first sentence."""
    src = H.write_zip(tmp_path / "x.pt", _torch_zip(tmp_path, keep=lambda name: not name.endswith("data/0")))
    assert _import_refusal(capsys, src, tmp_path / "b") == (
        "x.pt: cannot read this file (RuntimeError: PytorchStreamReader failed locating file data/0: "
        "file not found)"
    )


def test_a_stored_pt_member_whose_sizes_disagree_is_refused_as_compressed(tmp_path, capsys):
    """A stored member whose directory entry claims more bytes than it stores: torch.save never writes that."""
    members = _torch_zip(tmp_path)
    (storage,) = [m for m in members if m.name.endswith(b"data/0")]
    storage.file_size *= 1000
    src = H.write_zip(tmp_path / "x.pt", members)
    assert _import_refusal(capsys, src, tmp_path / "b") == (
        "x.pt: member 'src/data/0' is compressed; torch.save never compresses, so this is not a file torch.save wrote"
    )


_NPY = H.npy_bytes(np.arange(12, dtype=np.float32).reshape(4, 3))


@pytest.mark.parametrize(
    ("teacher", "message"),
    [
        (
            H.deflated("teacher.npy", _NPY[:-20], claim_size=len(_NPY)),
            "member 'teacher' is truncated: its data ends after 28 bytes",
        ),
        (
            H.stored("teacher.npy", _NPY[:-20]),
            r"member 'teacher' is corrupt: its header declares \(4, 3\) float32 = 48 bytes, its zip entry holds 28 bytes of data",
        ),
        (
            H.stored("teacher.npy", _NPY[:30]),
            r"member 'teacher' is corrupt: cannot read its \.npy header \(the file ends inside it\)",
        ),
        (
            H.Entry("teacher.npy", b"\xff" * 50, method=8, crc=0, file_size=len(_NPY)),
            r"member 'teacher' is corrupt \(Error -3 while decompressing data: invalid block type\)",
        ),
        (
            H.Entry("teacher.npy", _NPY, method=0, crc=1, file_size=len(_NPY)),
            r"member 'teacher' is corrupt \(Bad CRC-32 for file 'teacher\.npy'\)",
        ),
    ],
    ids=["deflated data ends early", "entry shorter than header", "header cut", "not deflate", "bad CRC"],
)
def test_a_truncated_or_damaged_npz_member_is_one_line_naming_it(tmp_path, capsys, teacher, message):
    src = H.write_zip(tmp_path / "x.npz", [teacher, H.stored("student.npy", _NPY)])
    assert re.search(rf"^x\.npz: {message}$", _import_refusal(capsys, src, tmp_path / "b"))
