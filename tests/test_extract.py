"""Extraction (`cakd_viz.extract`, `cakd-viz extract`): every model and data form, every error, and
that a failed or interrupted run leaves no bundle. The torchrun tests are in test_extract_dist.py."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from cakd_viz.bundle import load_bundle
from cakd_viz.data import load_data
from cakd_viz.extract import default_student_name, extract, parse_named_model

REPO = Path(__file__).resolve().parents[1]
TOYS = "cakd_extract_toys"  # the module written by the `toys` fixture
C, N, SIDE = 6, 45, 8  # classes, samples, image side of the toy data

TOYS_SOURCE = f'''
"""Toy architectures and data sets for the extraction tests (written by tests/test_extract.py)."""
import torch
from torch import nn
from torch.utils.data import Dataset


class Net(nn.Module):
    def __init__(self, classes={C}, width=4):
        super().__init__()
        self.conv = nn.Conv2d(1, width, 3, padding=1)
        self.fc = nn.Linear(width * {SIDE} * {SIDE}, classes)

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).flatten(1))


class NoBatch(Net):
    def forward(self, x):
        return super().forward(x).unsqueeze(-1)  # (B, C, 1): not logits


def teacher():
    torch.manual_seed(0)
    return Net()


def student():
    torch.manual_seed(1)
    return Net()


def wide():
    torch.manual_seed(2)
    return Net(width=5)


def four_classes():
    torch.manual_seed(3)
    return Net(classes=4)


def no_batch():
    torch.manual_seed(4)
    return NoBatch()


class Noise(Dataset):
    classes = [str(i) for i in range({C})]

    def __init__(self, n={N}, fail_at=None, interrupt_at=None, label_offset=0, error=OSError):
        self.n, self.fail_at, self.interrupt_at, self.label_offset = n, fail_at, interrupt_at, label_offset
        self.error = error

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        if i == self.fail_at:
            raise self.error(f"disk on fire at item {{i}}")
        if i == self.interrupt_at:
            raise KeyboardInterrupt
        g = torch.Generator().manual_seed(i)
        return torch.randn(1, {SIDE}, {SIDE}, generator=g), i % {C} + self.label_offset


def noise():
    return Noise()


def noise_failing():
    return Noise(fail_at=30)


def noise_interrupted():
    return Noise(interrupt_at=30)


def noise_failing_last():
    return Noise(fail_at={N - 1})


def noise_key_error_first():
    return Noise(fail_at=0, error=KeyError)


def noise_key_error_second():
    return Noise(fail_at=1, error=KeyError)


def noise_half_labels():
    return Noise(label_offset=0.5)


def noise_half_labels_unnamed():  # no class names: the labels are read first, to count the classes
    ds = Noise(label_offset=0.5)
    ds.classes = None
    return ds
'''


@pytest.fixture(scope="module")
def toys(tmp_path_factory) -> dict:
    """A module of toy nets/data sets on sys.path, their weights, an .npz, a TorchScript file."""
    root = tmp_path_factory.mktemp("toys")
    (root / f"{TOYS}.py").write_text(textwrap.dedent(TOYS_SOURCE))
    sys.path.insert(0, str(root))
    mod = __import__(TOYS)
    save_file(mod.teacher().state_dict(), str(root / "teacher.safetensors"))
    torch.save(mod.student().state_dict(), root / "student.pt")
    torch.jit.save(torch.jit.script(mod.wide().eval()), str(root / "wide_ts.pt"))
    rng = np.random.default_rng(0)
    images, labels = rng.integers(0, 256, (N, SIDE, SIDE), dtype=np.uint8), np.arange(N) % C
    np.savez(root / "data.npz", inputs=images, labels=labels)
    np.savez(root / "big_labels.npz", inputs=images, labels=labels + 4)
    yield {"root": root, "mod": mod, "npz": root / "data.npz", "images": images, "labels": labels}
    sys.path.remove(str(root))
    sys.modules.pop(TOYS, None)


def _models(toys) -> dict:
    root = toys["root"]
    return {
        "teacher": f"{TOYS}:teacher",
        "students": {"s": f"{TOYS}:Net", "ts": str(root / "wide_ts.pt")},
        "weights": {"teacher": root / "teacher.safetensors", "s": root / "student.pt"},
    }


def _reference(toys, data: str, **data_kw) -> tuple[dict, np.ndarray]:
    """Logits (N, C) of each toy model computed directly, and the labels."""
    src = load_data(data, **data_kw)
    x = torch.stack([src.dataset[i][0] for i in range(len(src))])
    y = np.array([src.dataset[i][1] for i in range(len(src))])
    mod = toys["mod"]
    nets = {"teacher": mod.teacher(), "s": mod.student(), "ts": mod.wide()}
    with torch.no_grad():
        return {k: m.eval()(x).numpy() for k, m in nets.items()}, y


def _no_leftovers(out: Path) -> None:
    assert not out.exists()
    assert not list(out.parent.glob(f"{out.name}.partial-*"))


# --- every model and data form ---------------------------------------------------------------------


def test_factory_weights_torchscript_and_npz_match_a_direct_forward(toys, tmp_path):
    m = _models(toys)
    out = extract(
        m["teacher"],
        m["students"],
        str(toys["npz"]),
        tmp_path / "b",
        weights=m["weights"],
        device="cpu",
        batch_size=7,
        dtype="float32",
    )
    b = load_bundle(out)
    ref, labels = _reference(toys, str(toys["npz"]))
    np.testing.assert_allclose(b.teacher, ref["teacher"], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(b.student("s"), ref["s"], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(b.student("ts"), ref["ts"], rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(b.labels, labels)
    assert b.inputs is None and b.dtype == "float32"
    meta = b.meta
    assert meta["teacher"]["spec"].startswith(f"{TOYS}:teacher (weights ")
    assert meta["students"]["ts"]["spec"] == m["students"]["ts"]
    assert meta["data"]["spec"] == str(toys["npz"])
    run = meta["extract"]
    assert (run["device"], run["batch_size"], run["dtype"], run["world_size"]) == ("cpu", 7, "float32", 1)
    assert run["seconds"] > 0 and run["samples_per_s"] > 0
    acc = (ref["s"].argmax(1) == labels).mean()
    assert meta["students"]["s"]["accuracy"] == pytest.approx(acc)


def test_float16_storage_and_batch_size_do_not_change_the_logits(toys, tmp_path):
    m = _models(toys)
    ref, _ = _reference(toys, str(toys["npz"]))
    for bs in (1, 16, 1000):
        out = extract(
            m["teacher"],
            m["students"],
            str(toys["npz"]),
            tmp_path / f"b{bs}",
            weights=m["weights"],
            device="cpu",
            batch_size=bs,
        )
        b = load_bundle(out)
        assert b.teacher.dtype == np.float16
        np.testing.assert_allclose(b.teacher, ref["teacher"], rtol=2e-3, atol=2e-3)


def test_data_loader_workers_give_the_same_bundle(toys, tmp_path):
    m = _models(toys)
    bundles = [
        load_bundle(
            extract(
                m["teacher"],
                m["students"],
                f"{TOYS}:noise",
                tmp_path / f"b{w}",
                weights=m["weights"],
                device="cpu",
                batch_size=8,
                num_workers=w,
                store_inputs=True,
            )
        )
        for w in (0, 2)
    ]
    a, b = bundles
    np.testing.assert_array_equal(a.teacher, b.teacher)
    for name in ("s", "ts"):
        np.testing.assert_array_equal(a.student(name), b.student(name))
    np.testing.assert_array_equal(bundles[0].inputs, bundles[1].inputs)


def test_data_factory(toys, tmp_path):
    m = _models(toys)
    out = extract(
        m["teacher"],
        m["students"],
        f"{TOYS}:noise",
        tmp_path / "b",
        weights=m["weights"],
        device="cpu",
        batch_size=8,
        dtype="float32",
        store_inputs=True,
    )
    b = load_bundle(out)
    ref, labels = _reference(toys, f"{TOYS}:noise")
    np.testing.assert_allclose(b.teacher, ref["teacher"], rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(b.labels, labels)
    assert b.inputs.shape == (N, 1, SIDE, SIDE) and b.inputs.dtype == np.float32  # the model inputs


def test_image_folder_of_pngs_with_resize_and_normalisation(toys, tmp_path):
    from PIL import Image

    rng = np.random.default_rng(1)
    for c in range(C):
        (tmp_path / "imgs" / f"class_{c}").mkdir(parents=True)
        for k in range(2):
            Image.fromarray(rng.integers(0, 256, (12, 10), dtype=np.uint8)).save(
                tmp_path / "imgs" / f"class_{c}" / f"{k}.png"
            )
    m, data = _models(toys), str(tmp_path / "imgs")
    out = extract(
        m["teacher"],
        m["students"],
        data,
        tmp_path / "b",
        weights=m["weights"],
        device="cpu",
        image_size=SIDE,
        normalize="0.5/0.25",
        dtype="float32",
        store_inputs=True,
    )
    b = load_bundle(out)
    ref, labels = _reference(toys, data, image_size=SIDE, normalize="0.5/0.25")
    np.testing.assert_allclose(b.teacher, ref["teacher"], rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(b.labels, np.repeat(np.arange(C), 2))
    assert b.class_names == [f"class_{c}" for c in range(C)]
    assert b.inputs.shape == (2 * C, SIDE, SIDE) and b.inputs.dtype == np.uint8  # the images, resized


def test_a_checkpoints_class_names_that_are_no_list_are_not_used(tmp_path):
    """The data names 3 classes, the models output 10: the teacher checkpoint's class_names are taken when
    they are a list of 10; a number there raised len()'s TypeError ('internal error' on the command line)."""
    import shutil

    for suffix in (".json", ".safetensors"):
        shutil.copy(REPO / "sample_checkpoints" / "digits" / f"teacher{suffix}", tmp_path / f"t{suffix}")
    config = json.loads((tmp_path / "t.json").read_text())
    (tmp_path / "t.json").write_text(json.dumps({**config, "class_names": 5}))
    np.savez(tmp_path / "d.npz", inputs=np.zeros((3, 8, 8), np.float32), labels=np.arange(3))
    out = extract(
        tmp_path / "t.json", ["sample:digits/student"], tmp_path / "d.npz", tmp_path / "b", device="cpu"
    )
    assert load_bundle(out).class_names == [str(c) for c in range(10)]


def test_npz_inputs_are_stored_as_they_are(toys, tmp_path):
    m = _models(toys)
    out = extract(
        m["teacher"],
        m["students"],
        str(toys["npz"]),
        tmp_path / "b",
        weights=m["weights"],
        device="cpu",
        store_inputs=True,
    )
    np.testing.assert_array_equal(load_bundle(out).inputs, toys["images"])


def test_modules_and_default_student_names(toys, tmp_path):
    mod = toys["mod"]
    out = extract(
        mod.teacher(), [mod.student(), mod.student()], str(toys["npz"]), tmp_path / "b", device="cpu"
    )
    assert load_bundle(out).student_names == ["net", "net_2"]


def test_spec_parsing(tmp_path):
    assert parse_named_model("kd=sample:glyphs/student_kd") == ("kd", "sample:glyphs/student_kd")
    assert parse_named_model("sample:glyphs/student_kd") == (None, "sample:glyphs/student_kd")
    assert parse_named_model("pkg.mod:make") == (None, "pkg.mod:make")
    odd = tmp_path / "a=b.pt"
    odd.write_bytes(b"")
    assert parse_named_model(str(odd)) == (None, str(odd))  # an existing file is never split
    assert default_student_name("sample:glyphs/student_kd") == "student_kd"
    assert default_student_name("nets/resnet8_ts.pt") == "resnet8_ts"
    assert default_student_name("pkg.zoo:make_resnet") == "make_resnet"
    assert default_student_name("sample:glyphs/teacher") == "teacher_copy"


def test_default_student_names_are_always_valid_names():
    """A name the user did not give must never be refused: a file stem ending in '.' (net..pt), a long
    stem cut after a '.', and a long stem's _2 for a second model of the same name were all refused by
    check_student_name (names end in no '.' and hold at most 100 characters)."""
    from cakd_viz.extract.models import name_students
    from cakd_viz.validate import check_student_name

    assert default_student_name("nets/net..pt") == "net"
    long = "a" * 99 + ".b"
    assert default_student_name(f"{long}.pt") == "a" * 99
    named = name_students([(None, f"x/{'a' * 120}.pt"), (None, f"y/{'a' * 120}.pt")])
    assert list(named) == ["a" * 100, "a" * 98 + "_2"]
    for name in named:
        check_student_name(name)


def test_autocast_on_auto_without_a_gpu_falls_back_with_a_note(toys, tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    m, notes = _models(toys), []
    out = extract(
        m["teacher"],
        m["students"],
        str(toys["npz"]),
        tmp_path / "b",
        weights=m["weights"],
        device="auto",
        autocast="bf16",
        log=notes.append,
    )
    assert any("autocast 'bf16' ignored" in n for n in notes)
    meta = load_bundle(out).meta["extract"]
    assert meta["autocast"] is None and meta["device"] == "cpu" and meta["notes"] == notes


def test_progress_reports_rows(toys, tmp_path):
    m, calls = _models(toys), []
    extract(
        m["teacher"],
        m["students"],
        str(toys["npz"]),
        tmp_path / "b",
        weights=m["weights"],
        device="cpu",
        batch_size=20,
        progress=lambda done, total: calls.append((done, total)),
    )
    assert calls == [(0, N), (20, N), (40, N), (N, N)]


def test_overwrite(toys, tmp_path):
    m = _models(toys)
    args = (m["teacher"], m["students"], str(toys["npz"]), tmp_path / "b")
    extract(*args, weights=m["weights"], device="cpu")
    with pytest.raises(ValueError, match="already exists"):
        extract(*args, weights=m["weights"], device="cpu")
    extract(*args, weights=m["weights"], device="cpu", dtype="float32", overwrite=True)
    assert load_bundle(tmp_path / "b").dtype == "float32"


# --- the shipped samples ----------------------------------------------------------------------------


def _shipped(data: str):
    from cakd_viz.models import samples_dir

    return load_bundle(samples_dir() / data / "bundle")


def test_extracting_the_shipped_digits_checkpoints_reproduces_their_bundle(tmp_path):
    shipped = _shipped("digits")
    students = {s: f"sample:digits/{s}" for s in shipped.student_names}
    b = load_bundle(
        extract(
            "sample:digits/teacher",
            students,
            "sample:digits:test",
            tmp_path / "b",
            device="cpu",
            store_inputs=True,
        )
    )
    _assert_same_bundle(b, shipped, slice(None))


def test_extracting_the_shipped_glyphs_checkpoints_reproduces_their_bundle(tmp_path):
    """Every 10th held-out glyph (5 per class), to keep the test fast; the code path is the same."""
    from torch.utils.data import Subset

    from cakd_viz.data import sample_data

    shipped = _shipped("glyphs")
    rows = np.arange(0, shipped.num_samples, 10)
    # the split `sample:glyphs:test` names (50 per class); a `samples build --quick` bundle has fewer
    src = sample_data("glyphs", "test", per_class=shipped.num_samples // 62)
    assert shipped.meta["data"] == "sample:glyphs:test" and len(src) == shipped.num_samples
    sub = dataclasses.replace(
        src, dataset=Subset(src.dataset, rows), inputs=src.inputs[rows], labels=src.labels[rows]
    )
    students = {s: f"sample:glyphs/{s}" for s in shipped.student_names}
    assert sorted(students) == ["student_ce", "student_kd"]
    b = load_bundle(
        extract("sample:glyphs/teacher", students, sub, tmp_path / "b", device="cpu", store_inputs=True)
    )
    _assert_same_bundle(b, shipped, rows)


def _assert_same_bundle(b, shipped, rows) -> None:
    """Equal up to float16 rounding of slightly different float32 sums (batching, kernels)."""
    assert b.student_names == shipped.student_names and b.class_names == shipped.class_names
    assert b.dtype == shipped.dtype
    tol = dict(rtol=2e-3, atol=2e-2)
    np.testing.assert_allclose(b.teacher.astype(np.float32), shipped.teacher[rows].astype(np.float32), **tol)
    for s in b.student_names:
        np.testing.assert_allclose(
            b.student(s).astype(np.float32), shipped.student(s)[rows].astype(np.float32), **tol
        )
    np.testing.assert_array_equal(b.labels, shipped.labels[rows])
    np.testing.assert_array_equal(b.inputs, shipped.inputs[rows])


# --- errors ----------------------------------------------------------------------------------------


class _OutOfMemory(torch.nn.Module):
    def forward(self, x):
        if x.shape[0] > 4:  # small batches fit
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        return torch.zeros(x.shape[0], C)


class _TypeErrorInForward(torch.nn.Module):
    def forward(self, x):
        return x.reshape(-1).sum(
            dim="no"
        )  # a mistake in the user's own code: a TypeError, not a RuntimeError


def _error_cases(toys) -> dict:
    root = toys["root"]
    t, npz, w = f"{TOYS}:teacher", str(toys["npz"]), {"teacher": root / "teacher.safetensors"}
    return {
        "not_batch_c": (
            dict(teacher=t, students=[f"{TOYS}:no_batch"]),
            r"returned shape \(\d+, 6, 1\).*\(batch, C\)",
        ),
        "classes_differ": (
            dict(teacher=t, students=[f"{TOYS}:four_classes"]),
            "outputs 4 classes, the teacher 6",
        ),
        "labels_exceed": (
            dict(teacher=t, students=[t], data=str(root / "big_labels.npz")),
            r"label 6 at row 2 is outside 0..5",
        ),
        "no_import": (
            dict(teacher=t, students=["no_such_pkg.nets:make"]),
            "student 'make'.*cannot import module 'no_such_pkg.nets'",
        ),
        "weights_misfit": (
            dict(teacher=t, students={"w": f"{TOYS}:wide"}, weights={**w, "w": root / "student.pt"}),
            r"student 'w'.*does not fit Net:.*mis-shaped \[conv.bias",
        ),
        "weights_unknown": (
            dict(teacher=t, students=[t], weights={"nobody": root / "student.pt"}),
            "weights given for \\['nobody'\\]",
        ),
        "oom": (
            dict(teacher=t, students={"big": _OutOfMemory()}),
            r"out of memory .* student 'big' on a batch of 16.*smaller --batch-size \(e.g. 8\)",
        ),
        "model_type_error": (  # any failure of the user's model is named, not only a RuntimeError
            dict(teacher=t, students={"buggy": _TypeErrorInForward()}),
            r"student 'buggy' \(<_TypeErrorInForward>\) failed on inputs of shape \(2, 1, 8, 8\): ",
        ),
        "data_item_0": (  # the data set's own error in the items read before the pass, named as in it
            dict(teacher=t, students=[t], data=f"{TOYS}:noise_key_error_first"),
            rf"data factory '{TOYS}:noise_key_error_first': reading item 0 failed: KeyError: 'disk on fire",
        ),
        "data_item_1": (
            dict(teacher=t, students=[t], data=f"{TOYS}:noise_key_error_second"),
            rf"data '{TOYS}:noise_key_error_second': reading rows 0..1 failed: KeyError: 'disk on fire",
        ),
        "labels_not_whole": (  # were cut to whole numbers (0.5 -> 0) and written as such
            dict(teacher=t, students=[t], data=f"{TOYS}:noise_half_labels"),
            rf"data '{TOYS}:noise_half_labels': label 0.5 at row 0 is not an integer",
        ),
        "labels_not_whole_normalised": (  # the same, through the factory's resize and normalisation
            dict(teacher=t, students=[t], data=f"{TOYS}:noise_half_labels", normalize="unit"),
            rf"data factory '{TOYS}:noise_half_labels': reading item 0 failed: ValueError: label 0.5 of item 0 is",
        ),
        "labels_not_whole_unnamed": (
            dict(teacher=t, students=[t], data=f"{TOYS}:noise_half_labels_unnamed"),
            rf"data factory '{TOYS}:noise_half_labels_unnamed' labels: label 0.5 at row 0 is not an integer",
        ),
        "unknown_device": (dict(teacher=t, students=[t], device="tpu"), "unknown device 'tpu'"),
        "autocast_on_cpu": (
            dict(teacher=t, students=[t], autocast="fp16"),
            "autocast 'fp16' runs on a GPU only",
        ),
        "autocast_name": (dict(teacher=t, students=[t], autocast="int8"), "unknown autocast 'int8'"),
        "no_students": (dict(teacher=t, students=[]), "at least one student"),
        "bad_data": (dict(teacher=t, students=[t], data="nowhere/data.npz"), "no such file or folder"),
    }, npz


@pytest.mark.parametrize(
    "case",
    [
        "not_batch_c",
        "classes_differ",
        "labels_exceed",
        "no_import",
        "weights_misfit",
        "weights_unknown",
        "oom",
        "model_type_error",
        "data_item_0",
        "data_item_1",
        "labels_not_whole",
        "labels_not_whole_normalised",
        "labels_not_whole_unnamed",
        "unknown_device",
        "autocast_on_cpu",
        "autocast_name",
        "no_students",
        "bad_data",
    ],
)
def test_errors_are_clear_value_errors_and_leave_nothing(toys, tmp_path, case):
    cases, npz = _error_cases(toys)
    kw, pattern = cases[case]
    kw = {"data": npz, "device": "cpu", "batch_size": 16, **kw}
    out = tmp_path / "b"
    with pytest.raises(ValueError, match=pattern):
        extract(kw.pop("teacher"), kw.pop("students"), kw.pop("data"), out, **kw)
    _no_leftovers(out)


@pytest.mark.parametrize(
    "data, error", [("noise_failing", ValueError), ("noise_interrupted", KeyboardInterrupt)]
)
def test_a_run_that_fails_midway_leaves_no_bundle(toys, tmp_path, data, error):
    m, out = _models(toys), tmp_path / "b"
    with pytest.raises(error) as info:
        extract(
            m["teacher"],
            m["students"],
            f"{TOYS}:{data}",
            out,
            weights=m["weights"],
            device="cpu",
            batch_size=8,
        )
    if error is ValueError:
        assert "reading rows 24..31 failed: OSError: disk on fire at item 30" in str(info.value)
    _no_leftovers(out)


def test_a_failure_in_the_last_short_batch_names_the_rows_it_holds(toys, tmp_path):
    """45 rows in batches of 8: the last batch is rows 40..44, not 40..47 (there is no row 47)."""
    m = _models(toys)
    with pytest.raises(ValueError) as info:
        extract(
            m["teacher"],
            m["students"],
            f"{TOYS}:noise_failing_last",
            tmp_path / "b",
            weights=m["weights"],
            device="cpu",
            batch_size=8,
        )
    assert f"reading rows 40..{N - 1} failed: OSError: disk on fire at item {N - 1}" in str(info.value)


def test_nan_logits_midway_leave_no_bundle(toys, tmp_path):
    class NanAfter(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net, self.calls = toys["mod"].teacher(), 0

        def forward(self, x):
            self.calls += 1
            out = self.net(x)
            return out * float("nan") if self.calls > 3 else out

    out = tmp_path / "b"
    with pytest.raises(ValueError, match="NaN"):
        extract(toys["mod"].teacher(), {"nan": NanAfter()}, str(toys["npz"]), out, device="cpu", batch_size=8)
    _no_leftovers(out)


# --- the command line ------------------------------------------------------------------------------


def _cli(args: list[str], toys) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(toys["root"]), str(REPO)])}
    return subprocess.run(
        [sys.executable, "-m", "cakd_viz", "extract", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=toys["root"],
        timeout=120,
    )


def test_cli_end_to_end(toys, tmp_path):
    root, out = toys["root"], tmp_path / "cli_bundle"
    r = _cli(
        [
            "--teacher",
            f"{TOYS}:teacher",
            "--teacher-weights",
            str(root / "teacher.safetensors"),
            "--student",
            f"s={TOYS}:Net",
            "--student-weights",
            f"s={root / 'student.pt'}",
            "--student",
            str(root / "wide_ts.pt"),
            "--data",
            str(toys["npz"]),
            "--out",
            str(out),
            "--device",
            "cpu",
            "--batch-size",
            "16",
            "--dtype",
            "float32",
            "--store-inputs",
        ],
        toys,
    )
    assert r.returncode == 0, r.stderr
    assert f"wrote {out}: {N} samples x {C} classes, float32; accuracy teacher" in r.stdout
    b = load_bundle(out)
    assert b.student_names == ["s", "wide_ts"] and b.inputs.shape == (N, SIDE, SIDE)
    ref, _ = _reference(toys, str(toys["npz"]))
    np.testing.assert_allclose(b.student("wide_ts"), ref["ts"], rtol=1e-5, atol=1e-5)
    assert json.loads((out / "meta.json").read_text())["extract"]["batch_size"] == 16


def test_cli_errors_are_one_line_with_exit_code_2(toys, tmp_path):
    out = tmp_path / "b"
    r = _cli(
        [
            "--teacher",
            f"{TOYS}:teacher",
            "--student",
            f"{TOYS}:four_classes",
            "--data",
            str(toys["npz"]),
            "--out",
            str(out),
            "--device",
            "cpu",
        ],
        toys,
    )
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        f"cakd-viz extract: error: student 'four_classes' ({TOYS}:four_classes) outputs 4 classes, the teacher 6"
    ]
    _no_leftovers(out)
