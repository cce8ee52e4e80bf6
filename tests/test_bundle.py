"""Logit bundles on disk: round trips, memory maps, validation errors, accuracy and agreement."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys

import hostile_files as H
import numpy as np
import pytest
import torch

from cakd_viz.bundle import FORMAT, Bundle, BundleError, load_bundle, write_bundle
from cakd_viz.bundle.imports import import_file
from cakd_viz.bundle.writer import BundleWriter


def _write(tmp_path, logits, **kw):
    student, teacher, labels = logits
    args = {"teacher": teacher, "students": {"kd": student, "dkd": 0.5 * student}, "labels": labels}
    return write_bundle(tmp_path / "b", **{**args, **kw})


def _edit_meta(path, **changes):
    meta = json.loads((path / "meta.json").read_text())
    meta.update(changes)
    (path / "meta.json").write_text(json.dumps(meta))


# ---------------------------------------------------------------- round trips


@pytest.mark.parametrize("dtype", ["float16", "float32"])
@pytest.mark.parametrize("with_labels", [True, False])
@pytest.mark.parametrize("with_extras", [True, False])
def test_round_trip(tmp_path, logits, dtype, with_labels, with_extras):
    student, teacher, labels = logits
    inputs = np.arange(200 * 3 * 4, dtype=np.uint8).reshape(200, 3, 4) if with_extras else None
    names = [f"class {i}" for i in range(10)] if with_extras else None
    path = write_bundle(
        tmp_path / "b",
        teacher=teacher,
        students={"kd": student},
        labels=labels if with_labels else None,
        class_names=names,
        inputs=inputs,
        dtype=dtype,
    )
    b = load_bundle(path)
    assert isinstance(b, Bundle) and b.path == path
    assert isinstance(b.teacher, np.memmap) and isinstance(b.students["kd"], np.memmap)
    assert b.dtype == dtype and b.teacher.dtype == dtype and b.student().dtype == dtype
    np.testing.assert_array_equal(b.teacher, teacher.astype(dtype))
    np.testing.assert_array_equal(b.student("kd"), student.astype(dtype))
    assert (b.num_samples, b.num_classes, b.student_names) == (200, 10, ["kd"])
    assert b.class_names == (names or [str(i) for i in range(10)])
    if with_labels:
        assert isinstance(b.labels, np.memmap) and b.labels.dtype == np.int64
        np.testing.assert_array_equal(b.labels, labels)
    else:
        assert b.labels is None and b.accuracy() is None
    if with_extras:
        assert isinstance(b.inputs, np.memmap)
        np.testing.assert_array_equal(b.inputs, inputs)
    else:
        assert b.inputs is None
    assert b.meta["format"] == FORMAT and b.meta["num_samples"] == 200 and b.meta["num_classes"] == 10
    assert b.meta["students"]["kd"]["file"] == "students/kd.npy"
    assert not list(tmp_path.glob("*.partial-*"))


@pytest.mark.parametrize(
    ("source", "expected"),
    [(np.float16, "float16"), (np.float32, "float32"), (np.float64, "float32"), (np.int32, "float32")],
)
def test_default_dtype_keeps_float16_and_float32(tmp_path, logits, source, expected):
    student, teacher, _ = logits
    path = write_bundle(
        tmp_path / "b", teacher=teacher.astype(source), students={"s": student.astype(source)}
    )
    assert load_bundle(path).dtype == expected


def test_write_accepts_torch_tensors(tmp_path, logits):
    student, teacher, labels = logits
    path = write_bundle(
        tmp_path / "b",
        teacher=torch.from_numpy(teacher).requires_grad_(True),
        students={"kd": torch.from_numpy(student)},
        labels=torch.from_numpy(labels),
    )
    b = load_bundle(path)
    np.testing.assert_array_equal(b.teacher, teacher)
    np.testing.assert_array_equal(b.labels, labels)


def test_students_keep_their_order_and_user_meta_is_merged(tmp_path, logits):
    student, teacher, _ = logits
    meta = {"dataset": "glyphs", "teacher": {"model": "resnet"}, "students": {"b": {"loss": "cakd"}}}
    path = write_bundle(
        tmp_path / "b", teacher=teacher, students={"z": student, "b": student, "m": student}, meta=meta
    )
    b = load_bundle(path)
    assert b.student_names == ["z", "b", "m"]
    assert b.meta["dataset"] == "glyphs" and b.meta["teacher"]["model"] == "resnet"
    assert b.meta["students"]["b"]["loss"] == "cakd" and b.meta["students"]["b"]["file"] == "students/b.npy"


def test_float16_overflow_is_refused(tmp_path, logits):
    student, teacher, _ = logits
    teacher = teacher.copy()
    teacher[3, 2] = 1e5
    with pytest.raises(BundleError, match=r"teacher has values up to 100000 .* beyond float16's range"):
        write_bundle(tmp_path / "b", teacher=teacher, students={"kd": student}, dtype="float16")
    assert not (tmp_path / "b").exists() and not list(tmp_path.iterdir())


def test_extreme_float16_logits_round_trip(tmp_path):
    teacher = np.array([[1e4, -1e4, 0.0], [65504.0, -65504.0, 1.0]], np.float32)
    b = load_bundle(write_bundle(tmp_path / "b", teacher=teacher, students={"s": -teacher}, dtype="float16"))
    np.testing.assert_array_equal(b.teacher, teacher.astype(np.float16))


# ---------------------------------------------------------------- accuracy, agreement, summary


def test_accuracy_and_agreement_match_numpy(tmp_path, logits):
    student, teacher, labels = logits
    b = load_bundle(_write(tmp_path, logits, dtype="float32"))
    assert b.accuracy() == pytest.approx(np.mean(teacher.argmax(1) == labels))
    assert b.accuracy("teacher") == b.accuracy()
    assert b.accuracy("kd") == pytest.approx(np.mean(student.argmax(1) == labels))
    assert b.agreement("kd") == pytest.approx(np.mean(student.argmax(1) == teacher.argmax(1)))
    assert b.agreement("dkd") == pytest.approx(np.mean((0.5 * student).argmax(1) == teacher.argmax(1)))
    np.testing.assert_array_equal(b.predictions("kd"), student.argmax(1))


def test_accuracy_in_float16_matches_numpy_on_the_stored_values(tmp_path, logits):
    b = load_bundle(_write(tmp_path, logits, dtype="float16"))
    stored = np.asarray(b.teacher).astype(np.float32)
    assert b.accuracy() == pytest.approx(np.mean(stored.argmax(1) == logits[2]))


def test_student_lookup(tmp_path, logits):
    b = load_bundle(_write(tmp_path, logits))
    assert b.student() is b.students["kd"]
    with pytest.raises(BundleError, match="unknown student 'cakd'; this bundle has: kd, dkd"):
        b.student("cakd")
    with pytest.raises(BundleError, match="unknown student 'cakd'"):
        b.accuracy("cakd")


def test_summary(tmp_path, logits):
    b = load_bundle(_write(tmp_path, logits))
    s = b.summary()
    assert (s["num_samples"], s["num_classes"], s["dtype"], s["format"]) == (200, 10, "float32", FORMAT)
    assert list(s["students"]) == ["kd", "dkd"]
    assert s["students"]["kd"]["agreement"] == b.agreement("kd")
    assert s["teacher"]["accuracy"] == b.accuracy() and s["has_labels"] is True
    assert s["size_bytes"] == sum(f.stat().st_size for f in b.path.rglob("*") if f.is_file()) > 3 * 8000
    json.dumps(s)  # printable as JSON


# ---------------------------------------------------------------- writing: refusals


def test_write_refuses_mismatched_students(tmp_path, logits):
    student, teacher, _ = logits
    with pytest.raises(BundleError, match="^student 'kd' has 5 classes, teacher has 10$"):
        write_bundle(tmp_path / "b", teacher=teacher, students={"kd": student[:, :5]})
    with pytest.raises(BundleError, match="^student 'kd' has 100 samples, teacher has 200$"):
        write_bundle(tmp_path / "b", teacher=teacher, students={"kd": student[:100]})
    assert not list(tmp_path.iterdir())


def test_write_refuses_bad_labels(tmp_path, logits):
    student, teacher, labels = logits
    bad = labels.copy()
    bad[5] = 12
    with pytest.raises(BundleError, match=r"labels: label 12 at row 5 is outside 0..9"):
        write_bundle(tmp_path / "b", teacher=teacher, students={"kd": student}, labels=bad)


@pytest.mark.parametrize("name", ["../x", "a/b", "", ".."])
def test_write_refuses_unsafe_student_names(tmp_path, logits, name):
    student, teacher, _ = logits
    with pytest.raises(BundleError, match="invalid student name"):
        write_bundle(tmp_path / "b", teacher=teacher, students={name: student})
    assert not list(tmp_path.iterdir())


def test_write_needs_a_student_and_a_known_dtype(tmp_path, logits):
    _, teacher, _ = logits
    with pytest.raises(BundleError, match="at least one student"):
        write_bundle(tmp_path / "b", teacher=teacher, students={})
    with pytest.raises(BundleError, match="dtype must be 'float16' or 'float32', got 'int8'"):
        write_bundle(tmp_path / "b", teacher=teacher, students={"s": teacher}, dtype="int8")


def test_overwrite(tmp_path, logits):
    student, teacher, _ = logits
    path = _write(tmp_path, logits)
    with pytest.raises(BundleError, match="already exists; pass overwrite=True"):
        _write(tmp_path, logits)
    write_bundle(path, teacher=teacher[:50], students={"new": student[:50]}, overwrite=True)
    b = load_bundle(path)
    assert (b.num_samples, b.student_names) == (50, ["new"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]


def test_overwrite_never_replaces_something_that_is_not_a_bundle(tmp_path, logits):
    student, teacher, _ = logits
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "precious.txt").write_text("keep me")
    with pytest.raises(BundleError, match="is not a cakd bundle; refusing to replace it"):
        write_bundle(tmp_path / "b", teacher=teacher, students={"kd": student}, overwrite=True)
    assert (tmp_path / "b" / "precious.txt").read_text() == "keep me"


# ---------------------------------------------------------------- loading: refusals


def test_load_refuses_a_missing_or_non_directory_path(tmp_path):
    with pytest.raises(BundleError, match="no such bundle directory"):
        load_bundle(tmp_path / "nope")
    (tmp_path / "f.npz").write_bytes(b"x")
    with pytest.raises(BundleError, match="is a file, not a bundle directory"):
        load_bundle(tmp_path / "f.npz")


def test_load_refuses_a_missing_meta_json(tmp_path, logits):
    path = _write(tmp_path, logits)
    (path / "meta.json").unlink()
    with pytest.raises(BundleError, match="meta.json is missing, so this is not a cakd bundle"):
        load_bundle(path)


def test_load_refuses_a_wrong_format_string(tmp_path, logits):
    path = _write(tmp_path, logits)
    _edit_meta(path, format="cakd-bundle/99")
    with pytest.raises(BundleError, match="meta.json: format is 'cakd-bundle/99', expected 'cakd-bundle/1'"):
        load_bundle(path)


def test_load_refuses_invalid_meta_json(tmp_path, logits):
    path = _write(tmp_path, logits)
    (path / "meta.json").write_text("{not json")
    with pytest.raises(BundleError, match="meta.json is not valid JSON"):
        load_bundle(path)
    (path / "meta.json").write_text("[]")
    with pytest.raises(BundleError, match="meta.json must hold a JSON object"):
        load_bundle(path)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"num_samples": 100}, "meta.json says num_samples=100, but teacher.npy has 200 rows"),
        ({"num_classes": 11}, "meta.json says num_classes=11, but teacher.npy has 10 classes"),
        ({"num_classes": "10"}, "meta.json: num_classes must be an integer, found '10'"),
        (
            {"class_names": ["a", "b"]},
            "meta.json class_names has 2 class names, but the logits have 10 classes",
        ),
        ({"students": {}}, "meta.json: 'students' must be a non-empty object"),
        (
            {"students": {"kd": {}, "dkd": {}, "ghost": {}}},
            r"students/ghost.npy is missing \(meta.json lists",
        ),
        ({"students": {"kd": {}}}, r"students/dkd.npy is not listed in meta.json 'students'"),
        ({"students": {"../kd": {}}}, "meta.json: invalid student name '../kd'"),
        ({"labels": False}, "meta.json says the bundle has no labels, but labels.npy is present"),
        ({"inputs": {"shape": [200, 2]}}, "inputs.npy is missing, but meta.json says the bundle has inputs"),
    ],
)
def test_load_refuses_meta_that_disagrees_with_the_arrays(tmp_path, logits, changes, message):
    path = _write(tmp_path, logits)
    _edit_meta(path, **changes)
    with pytest.raises(BundleError, match=message):
        load_bundle(path)


def test_load_refuses_a_missing_student_file(tmp_path, logits):
    path = _write(tmp_path, logits)
    (path / "students" / "kd.npy").unlink()
    with pytest.raises(BundleError, match=r"^students/kd.npy is missing \(meta.json lists student 'kd'\)$"):
        load_bundle(path)


def test_load_refuses_missing_labels_that_meta_promises(tmp_path, logits):
    path = _write(tmp_path, logits)
    (path / "labels.npy").unlink()
    with pytest.raises(BundleError, match="labels.npy is missing, but meta.json says the bundle has labels"):
        load_bundle(path)


def test_load_refuses_a_truncated_npy(tmp_path, logits):
    path = _write(tmp_path, logits)
    data = (path / "teacher.npy").read_bytes()
    (path / "teacher.npy").write_bytes(data[: len(data) - 100])
    with pytest.raises(BundleError, match=r"^teacher.npy is truncated: its header says \(200, 10\) float32"):
        load_bundle(path)
    (path / "teacher.npy").write_bytes(data[:20])
    with pytest.raises(BundleError, match="teacher.npy is corrupt: cannot read its .npy header"):
        load_bundle(path)


def test_load_refuses_a_corrupt_npy(tmp_path, logits):
    path = _write(tmp_path, logits)
    (path / "students" / "kd.npy").write_bytes(b"PK\x03\x04 this is a zip, not an npy")
    with pytest.raises(BundleError, match=r"students/kd.npy is not a .npy file \(bad magic bytes\)"):
        load_bundle(path)
    data = (path / "teacher.npy").read_bytes()
    (path / "teacher.npy").write_bytes(data[:10] + b"{'descr': garbage" + data[27:])
    with pytest.raises(BundleError, match="teacher.npy is corrupt: cannot read its .npy header"):
        load_bundle(path)
    (path / "teacher.npy").write_bytes(data + b"extra")
    with pytest.raises(BundleError, match="teacher.npy is corrupt: 5 unexpected bytes after the"):
        load_bundle(path)


def test_load_refuses_pickled_object_arrays(tmp_path, logits):
    path = _write(tmp_path, logits)
    np.save(path / "labels.npy", np.array([object()] * 200, dtype=object), allow_pickle=True)
    with pytest.raises(BundleError, match="labels.npy holds Python objects .*refusing to unpickle"):
        load_bundle(path)


@pytest.mark.parametrize(
    ("file", "array", "message"),
    [
        ("teacher.npy", np.zeros(200, np.float32), r"teacher.npy: expected a 2-D \(N, C\) array.*got 1-D"),
        ("students/kd.npy", np.zeros((200, 10, 2), np.float32), r"students/kd.npy: expected a 2-D.*got 3-D"),
        ("students/kd.npy", np.zeros((200, 10), bool), "students/kd.npy: dtype bool is not numeric"),
        (
            "students/kd.npy",
            np.zeros((200, 100), np.float32),
            "^students/kd.npy has 100 classes, teacher.npy has 10$",
        ),
        (
            "students/kd.npy",
            np.zeros((150, 10), np.float32),
            "^students/kd.npy has 150 samples, teacher.npy has 200$",
        ),
        ("teacher.npy", np.zeros((200, 1), np.float32), "teacher.npy has 1 class; logits need at least 2"),
        ("teacher.npy", np.zeros((0, 10), np.float32), r"teacher.npy is empty \(shape \(0, 10\)\)"),
        ("labels.npy", np.full(200, 3.5), "labels.npy: label 3.5 at row 0 is not an integer"),
        ("labels.npy", np.arange(200), "labels.npy: label 10 at row 10 is outside 0..9"),
        ("labels.npy", np.zeros(199, int), "labels.npy has 199 samples, teacher.npy has 200"),
    ],
)
def test_load_refuses_bad_arrays(tmp_path, logits, file, array, message):
    path = _write(tmp_path, logits)
    np.save(path / file, array)
    with pytest.raises(BundleError, match=message):
        load_bundle(path)


def test_load_reports_nan_and_inf_unless_told_not_to_scan(tmp_path, logits):
    path = _write(tmp_path, logits)
    student = np.load(path / "students" / "kd.npy")
    student[17, 4] = student[30, 1] = student[31, 1] = np.nan
    student[40, 0] = np.inf
    np.save(path / "students" / "kd.npy", student)
    msg = r"^students/kd.npy has 3 NaN values \(first at row 17, class 4\) and 1 infinite value \(first at row 40"
    with pytest.raises(BundleError, match=msg):
        load_bundle(path)
    assert np.isnan(load_bundle(path, check_values=False).student("kd")[17, 4])


# ---------------------------------------------------------------- streaming writer


def _arrays(path):
    """Every array and meta.json of a bundle (without the creation time), for comparisons."""
    meta = json.loads((path / "meta.json").read_text())
    meta.pop("created")
    files = sorted(p.relative_to(path).as_posix() for p in path.rglob("*.npy"))
    return meta, {f: np.load(path / f) for f in files}


def _assert_same_bundle(a, b):
    meta_a, arrays_a = _arrays(a)
    meta_b, arrays_b = _arrays(b)
    assert meta_a == meta_b and list(arrays_a) == list(arrays_b)
    for f in arrays_a:
        assert arrays_a[f].dtype == arrays_b[f].dtype
        np.testing.assert_array_equal(arrays_a[f], arrays_b[f])


@pytest.mark.parametrize("dtype", ["float16", "float32"])
def test_streaming_in_chunks_equals_write_bundle(tmp_path, logits, dtype):
    student, teacher, labels = logits
    inputs = np.random.default_rng(1).random((200, 2, 3)).astype(np.float32)
    names = [f"c{i}" for i in range(10)]
    expected = write_bundle(
        tmp_path / "one",
        teacher=teacher,
        students={"kd": student},
        labels=labels,
        inputs=inputs,
        class_names=names,
        dtype=dtype,
    )
    with BundleWriter(
        tmp_path / "streamed",
        num_samples=200,
        num_classes=10,
        student_names=["kd"],
        dtype=dtype,
        class_names=names,
        inputs_shape=(2, 3),
        inputs_dtype="float32",
    ) as w:
        assert isinstance(w.teacher, np.memmap) and w.partial_dir.name.startswith("streamed.partial-")
        for start in range(0, 200, 64):  # uneven last chunk, out of order does not matter
            rows = slice(start, start + 64)
            w.write(
                start,
                teacher=teacher[rows],
                students={"kd": student[rows]},
                labels=labels[rows],
                inputs=inputs[rows],
            )
        assert not (tmp_path / "streamed").exists()  # nothing at `path` before commit
        path = w.commit()
    _assert_same_bundle(expected, path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one", "streamed"]


def test_writer_accepts_torch_batches_and_merges_meta_at_commit(tmp_path, logits):
    student, teacher, labels = logits
    with BundleWriter(tmp_path / "b", num_samples=200, num_classes=10, student_names=["kd"]) as w:
        for start in range(0, 200, 50):
            rows = slice(start, start + 50)
            t, s = torch.from_numpy(teacher[rows]), torch.from_numpy(student[rows])
            w.write(start, teacher=t, students={"kd": s}, labels=torch.from_numpy(labels[rows]))
        w.commit(
            {
                "teacher": {"model": "sample:glyphs/teacher"},
                "students": {"kd": {"acc": 0.5}},
                "num_samples": 3,
            }
        )
    b = load_bundle(tmp_path / "b")
    assert b.dtype == "float16" and b.num_samples == 200
    assert b.meta["teacher"]["model"] == "sample:glyphs/teacher" and b.meta["students"]["kd"]["acc"] == 0.5
    assert not [p for p in b.path.rglob(".*")]  # no writer bookkeeping left in the bundle


def test_writer_with_direct_memmap_writes_and_mark_written(tmp_path, logits):
    student, teacher, _ = logits
    with BundleWriter(
        tmp_path / "b", num_samples=200, num_classes=10, student_names=["kd"], with_labels=False
    ) as w:
        w.teacher[:] = teacher
        w.students["kd"][:] = student
        w.mark_written(0, 200)
        w.commit()
    assert load_bundle(tmp_path / "b").labels is None


@pytest.mark.parametrize("start, stop", [(100, 250), (-1, 10), (50, 20)])
def test_mark_written_refuses_rows_outside_the_bundle(tmp_path, start, stop):
    w = BundleWriter(tmp_path / "b", num_samples=200, num_classes=10, student_names=["kd"])
    with pytest.raises(
        BundleError, match=rf"^mark_written\({start}, {stop}\): not a range of rows within 0..199$"
    ):
        w.mark_written(start, stop)
    w.mark_written(0, 100)  # the refused range left nothing recorded: rows 100.. are still missing
    with pytest.raises(BundleError, match=r"rows 100..199 were never written"):
        w.commit()
    w.abort()
    assert not (tmp_path / "b").exists()


@pytest.mark.parametrize("dtype", ["garbage", "complex64", "U3"])
def test_writer_refuses_inputs_of_no_numeric_dtype_by_name(tmp_path, dtype):
    with pytest.raises(BundleError, match=f"inputs_dtype must be numeric .*got '{dtype}'"):
        BundleWriter(
            tmp_path / "b",
            num_samples=4,
            num_classes=3,
            student_names=["kd"],
            inputs_shape=(2,),
            inputs_dtype=dtype,
        )
    assert not list(tmp_path.iterdir())


def test_interrupted_writer_leaves_no_bundle(tmp_path, logits):
    student, teacher, labels = logits
    with pytest.raises(KeyboardInterrupt):
        with BundleWriter(tmp_path / "b", num_samples=200, num_classes=10, student_names=["kd"]) as w:
            w.write(0, teacher=teacher[:100], students={"kd": student[:100]}, labels=labels[:100])
            raise KeyboardInterrupt
    assert not list(tmp_path.iterdir())


def test_writer_left_without_commit_saves_nothing(tmp_path, logits):
    student, teacher, labels = logits
    with pytest.raises(BundleError, match="left its with-block without commit"):
        with BundleWriter(tmp_path / "b", num_samples=200, num_classes=10, student_names=["kd"]) as w:
            w.write(0, teacher=teacher, students={"kd": student}, labels=labels)
    assert not list(tmp_path.iterdir())


def test_commit_refuses_rows_that_were_never_written(tmp_path, logits):
    student, teacher, labels = logits
    w = BundleWriter(tmp_path / "b", num_samples=200, num_classes=10, student_names=["kd"])
    w.write(0, teacher=teacher[:100], students={"kd": student[:100]}, labels=labels[:100])
    w.write(150, teacher=teacher[150:], students={"kd": student[150:]}, labels=labels[150:])
    with pytest.raises(BundleError, match=r"commit: rows 100..149 were never written \(of 0..199\)"):
        w.commit()
    assert not (tmp_path / "b").exists()
    w.abort()
    assert not list(tmp_path.iterdir())


def test_writer_write_refusals(tmp_path, logits):
    student, teacher, labels = logits
    w = BundleWriter(tmp_path / "b", num_samples=200, num_classes=10, student_names=["kd"])
    with pytest.raises(BundleError, match=r"write\(start=150\): rows 150..249 are outside 0..199"):
        w.write(150, teacher=teacher[:100], students={"kd": student[:100]}, labels=labels[:100])
    with pytest.raises(BundleError, match=r"students must be exactly \['kd'\], got \['dkd'\]"):
        w.write(0, teacher=teacher[:10], students={"dkd": student[:10]}, labels=labels[:10])
    with pytest.raises(BundleError, match="labels= is required"):
        w.write(0, teacher=teacher[:10], students={"kd": student[:10]})
    with pytest.raises(BundleError, match="this writer has no inputs"):
        w.write(
            0, teacher=teacher[:10], students={"kd": student[:10]}, labels=labels[:10], inputs=teacher[:10]
        )
    bad = teacher[:10].copy()
    bad[3, 7] = np.nan
    with pytest.raises(BundleError, match=r"^teacher has 1 NaN value \(first at row 23, class 7\)$"):
        w.write(20, teacher=bad, students={"kd": student[:10]}, labels=labels[:10])
    with pytest.raises(BundleError, match="student 'kd' has 5 samples, teacher has 10"):
        w.write(0, teacher=teacher[:10], students={"kd": student[:5]}, labels=labels[:10])
    w.abort()
    with pytest.raises(BundleError, match="is aborted; it cannot write any more"):
        w.write(0, teacher=teacher[:10], students={"kd": student[:10]}, labels=labels[:10])


def test_writer_refuses_bad_settings(tmp_path):
    with pytest.raises(BundleError, match="invalid student name '../x'"):
        BundleWriter(tmp_path / "b", num_samples=5, num_classes=3, student_names=["../x"])
    with pytest.raises(BundleError, match="duplicates"):
        BundleWriter(tmp_path / "b", num_samples=5, num_classes=3, student_names=["a", "a"])
    with pytest.raises(BundleError, match="num_classes >= 2"):
        BundleWriter(tmp_path / "b", num_samples=5, num_classes=1, student_names=["a"])
    with pytest.raises(BundleError, match="dtype must be 'float16' or 'float32'"):
        BundleWriter(tmp_path / "b", num_samples=5, num_classes=3, student_names=["a"], dtype="float64")
    assert not list(tmp_path.iterdir())


_RANK1 = """
import sys
import numpy as np
from cakd_viz.bundle.writer import BundleWriter

partial, src = sys.argv[1], sys.argv[2]
data = np.load(src)
with BundleWriter.attach(partial) as w:  # leaving the block closes (flushes, records rows); no commit
    rows = slice(120, 200)
    w.write(120, teacher=data["teacher"][rows], students={"kd": data["student"][rows]}, labels=data["labels"][rows])
"""


def test_attach_lets_another_process_write_its_rows(tmp_path, logits):
    student, teacher, labels = logits
    expected = write_bundle(
        tmp_path / "one", teacher=teacher, students={"kd": student}, labels=labels, dtype="float16"
    )
    src = tmp_path / "src.npz"
    np.savez(src, teacher=teacher, student=student, labels=labels)
    out = tmp_path / "two"
    w = BundleWriter(out, num_samples=200, num_classes=10, student_names=["kd"], partial_id="run42")
    partial = BundleWriter.partial_path(out, "run42")
    assert w.partial_dir == partial
    subprocess.run([sys.executable, "-c", _RANK1, str(partial), str(src)], check=True, timeout=60)
    w.write(0, teacher=teacher[:120], students={"kd": student[:120]}, labels=labels[:120])
    w.commit()
    _assert_same_bundle(expected, out)


def test_attached_writer_cannot_commit_and_partial_ids_do_not_collide(tmp_path, logits):
    w = BundleWriter(tmp_path / "b", num_samples=200, num_classes=10, student_names=["kd"], partial_id="r1")
    other = BundleWriter.attach(w.partial_dir)
    with pytest.raises(
        BundleError, match=r"only the writer that created the partial directory \(rank 0\) can commit"
    ):
        other.commit()
    with pytest.raises(BundleError, match="already exists"):
        BundleWriter(tmp_path / "b", num_samples=200, num_classes=10, student_names=["kd"], partial_id="r1")
    with pytest.raises(BundleError, match="not a partial bundle directory"):
        BundleWriter.attach(tmp_path / "nothing")
    other.close()
    w.abort()


def test_predictions_are_safe_when_many_threads_ask_at_once(tmp_path, logits):
    """The app shares one cached Bundle between sessions: concurrent first calls must all get the one
    published, complete, read-only array (a dict filled in place could hand out a half-filled entry)."""
    import threading

    student, teacher, labels = logits
    b = load_bundle(_write(tmp_path, logits))
    barrier = threading.Barrier(16)
    results: list = [None] * 16
    errors: list = []

    def ask(i: int) -> None:
        try:
            barrier.wait()
            who = "teacher" if i % 2 else "kd"
            results[i] = (who, b.predictions(who))
        except Exception as exc:  # collected: a thread's exception would otherwise vanish
            errors.append(exc)

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    expected = {"teacher": np.argmax(teacher, axis=1), "kd": np.argmax(student, axis=1)}
    for who, pred in results:
        np.testing.assert_array_equal(pred, expected[who])
        assert pred is b.predictions(who) and not pred.flags.writeable
    assert b.accuracy() == float(np.mean(expected["teacher"] == labels))


# ---------------------------------------------------------------- refusals no other test reaches


def _teacher_file_refusal(path, raw: bytes, tmp_path) -> tuple[str, str]:
    """(what load_bundle says of teacher.npy holding ``raw`` followed by its data, what an import says of
    an .npz member 'teacher' holding the same bytes): both read the header with npy.read_header."""
    data = np.load(path / "teacher.npy").tobytes()
    (path / "teacher.npy").write_bytes(raw + data)
    with pytest.raises(BundleError) as in_bundle:
        load_bundle(path)
    student = H.npy_bytes(np.load(path / "students" / "kd.npy"))
    src = H.write_zip(
        tmp_path / "x.npz", [H.stored("teacher.npy", raw + data), H.stored("student.npy", student)]
    )
    with pytest.raises(BundleError) as in_npz:
        import_file(src, tmp_path / "imported")
    assert not (tmp_path / "imported").exists()
    return str(in_bundle.value), str(in_npz.value)


_PLAIN = "'descr': '<f4', 'fortran_order': False"


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        (
            b"\x93NUMPY\x09\x00" + H.npy_header((200, 10))[8:],
            "is corrupt: unknown .npy format version (9, 0)",
        ),
        (
            H.npy_header_text("[200, 10]"),
            "is corrupt: its .npy header is not {'descr', 'fortran_order', 'shape'}",
        ),
        (
            H.npy_header_text("{'descr': '<f4', 'shape': (200, 10)}"),
            "is corrupt: its .npy header is not {'descr', 'fortran_order', 'shape'}",
        ),
        (
            H.npy_header_text(f"{{{_PLAIN}, 'shape': [200, 10]}}"),
            "is corrupt: its .npy shape [200, 10] is not a tuple of whole numbers",
        ),
        (
            H.npy_header_text(f"{{{_PLAIN}, 'shape': (200, 10.0)}}"),
            "is corrupt: its .npy shape (200, 10.0) is not a tuple of whole numbers",
        ),
        (
            H.npy_header_text(f"{{{_PLAIN}, 'shape': (-200, 10)}}"),
            "is corrupt: impossible .npy shape (-200, 10)",
        ),
        (H.npy_header((1,) * 33), f"is corrupt: impossible .npy shape {(1,) * 33}"),
        (
            H.npy_header_text("{'descr': '<f4', 'fortran_order': 0, 'shape': (200, 10)}"),
            "is corrupt: its .npy fortran_order is 0",
        ),
        (
            H.npy_header((200, 10), descr="<q7"),
            "is corrupt: unknown .npy dtype '<q7' (data type '<q7' not understood)",
        ),
        (
            H.npy_header_text("{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (200, 10)}"),
            "has dtype [('a', '<f4')]; only plain numbers (or text for names) are supported",
        ),
        (
            H.npy_header((200, 10), descr="<M8[s]"),
            "has dtype datetime64[s]; only plain numbers (or text for names) are supported",
        ),
    ],
    ids=[
        "version",
        "not a dict",
        "lacks a key",
        "shape a list",
        "shape of floats",
        "negative shape",
        "33 dimensions",
        "fortran_order not a bool",
        "unknown dtype",
        "structured dtype",
        "datetime dtype",
    ],
)
def test_a_bad_npy_header_is_one_line_in_a_bundle_and_in_an_npz(tmp_path, logits, raw, says):
    path = _write(tmp_path, logits)
    in_bundle, in_npz = _teacher_file_refusal(path, raw, tmp_path)
    assert in_bundle == f"teacher.npy {says}"
    assert in_npz == f"x.npz: member 'teacher' {says}"


def test_fortran_order_arrays_are_read_in_a_bundle_and_in_an_npz(tmp_path, logits):
    student, teacher, labels = logits
    path = _write(tmp_path, logits)
    np.save(path / "teacher.npy", np.asfortranarray(teacher))
    assert np.load(path / "teacher.npy").flags.f_contiguous  # the file says fortran_order: True
    np.testing.assert_array_equal(load_bundle(path).teacher, teacher)
    src = tmp_path / "f.npz"
    np.savez(src, teacher=np.asfortranarray(teacher), student=student, labels=labels)
    np.testing.assert_array_equal(load_bundle(import_file(src, tmp_path / "imported")).teacher, teacher)


@pytest.mark.parametrize(
    ("where", "message"),
    [
        ("loop", "loop is a link that cannot be resolved (a loop?); refusing it"),
        ("students/loop", "students/loop is a link that cannot be resolved (a loop?); refusing it"),
    ],
)
def test_a_link_loop_in_a_bundle_is_refused(tmp_path, logits, where, message):
    path = _write(tmp_path, logits)
    (path / where).symlink_to((path / where).name)  # a link to itself
    with pytest.raises(BundleError, match=f"^{re.escape(message)}$"):
        load_bundle(path)


def test_a_students_entry_that_is_not_a_folder_is_refused(tmp_path, logits):
    path = _write(tmp_path, logits)
    shutil.rmtree(path / "students")
    (path / "students").write_text("not a folder")
    with pytest.raises(BundleError, match=r"^students/: cannot list this directory \(Not a directory\)$"):
        load_bundle(path)


def test_an_unreadable_meta_json_is_one_line(tmp_path, logits, monkeypatch):
    """Root reads any file whatever its mode, so the failure is injected where core opens meta.json."""
    from cakd_viz.bundle import core

    path = _write(tmp_path, logits)

    def denied(file, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(file))

    monkeypatch.setattr(core, "open", denied, raising=False)
    with pytest.raises(BundleError, match=r"^meta.json cannot be read \(Permission denied\)$"):
        load_bundle(path)


def test_a_writer_without_students_is_refused(tmp_path):
    with pytest.raises(BundleError, match="^student_names: a bundle needs at least one student$"):
        BundleWriter(tmp_path / "b", num_samples=5, num_classes=3, student_names=[])
    assert not list(tmp_path.iterdir())


_META_SHAPES = r"^meta: 'teacher' must be an object and 'students' an object \{NAME: \{\.\.\.\}\}$"


@pytest.mark.parametrize(
    ("meta", "message"),
    [
        ({"teacher": "resnet"}, _META_SHAPES),
        ({"students": ["kd"]}, _META_SHAPES),
        ({"students": {"kd": "resnet8"}}, _META_SHAPES),
        ("resnet", r"^meta must be an object \{KEY: value\}, got a str$"),
        ([1, 2], r"^meta must be an object \{KEY: value\}, got a list$"),
        (
            {"x": object()},
            r"^meta must hold JSON values only \(Object of type object is not JSON serializable\)$",
        ),
        ({"x": {1j}}, r"^meta must hold JSON values only \(Object of type set is not JSON serializable\)$"),
    ],
)
def test_a_bad_meta_is_refused_before_anything_is_written(tmp_path, logits, meta, message):
    student, teacher, _ = logits
    with pytest.raises(BundleError, match=message):
        write_bundle(tmp_path / "b", teacher=teacher, students={"kd": student}, meta=meta)
    assert not list(tmp_path.iterdir())
