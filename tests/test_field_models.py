"""The field's own models (README "Models for extract and tune"): factory specs with literal keyword
arguments, and logits taken from whatever a model returns (a tensor, `(logits, features)`, a mapping
with "logits", an object with `.logits`) in extraction, training, evaluation and torchrun."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections import OrderedDict
from pathlib import Path

import field_models
import numpy as np
import pytest
import torch
from reference import strong_mask, terms

from cakd_viz.bundle import load_bundle
from cakd_viz.data import load_data
from cakd_viz.data.factories import MAX_FACTORY_SPEC_CHARS, parse_factory_spec
from cakd_viz.extract import default_student_name, extract
from cakd_viz.models import load_model, logits_of
from cakd_viz.runs import RunConfig, list_runs
from cakd_viz.runs.results import metrics_frame
from cakd_viz.train import TrainConfig, evaluate, predict_logits, train

REPO = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent
C, SIDE = 5, 8
RESNET = f"field_models:resnet8x4(num_classes={C}, width=1, in_channels=1)"


def _env() -> dict:
    path = os.pathsep.join([str(TESTS), str(REPO), os.environ.get("PYTHONPATH", "")])
    return {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1"}


def _seeded(make, seed: int):
    torch.manual_seed(seed)
    return make().eval()


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict:
    """Weights of a seeded resnet8x4 teacher and students (torch.save state dicts), and .npz data."""
    root = tmp_path_factory.mktemp("field")
    kw = dict(num_classes=C, in_channels=1)
    nets = {
        "teacher": _seeded(lambda: field_models.resnet8x4(width=1, **kw), 0),
        "hf": _seeded(lambda: field_models.hf_style(width=1, **kw), 1),
        "dict": _seeded(lambda: field_models.dict_style(width=1, **kw), 2),
    }
    for name, net in nets.items():
        torch.save(net.state_dict(), root / f"{name}.pt")
    rng = np.random.default_rng(0)
    for split, n in (("train", 60), ("test", 25)):
        images = rng.integers(0, 256, (n, SIDE, SIDE), dtype=np.uint8)
        np.savez(root / f"{split}.npz", inputs=images, labels=np.arange(n) % C)
    return {"root": root, "nets": nets}


def _direct(net: torch.nn.Module, data: str) -> np.ndarray:
    src = load_data(data)
    x = torch.stack([src.dataset[i][0] for i in range(len(src))])
    with torch.no_grad():
        return logits_of(net.eval()(x), who="reference").numpy()


# -- factory specs with literal keyword arguments -----------------------------------------------------


@pytest.mark.parametrize(
    "spec, kwargs",
    [
        ("pkg.mod:make", {}),
        ("pkg.mod:make()", {}),
        ("models.cifar:resnet32x4(num_classes=100)", {"num_classes": 100}),
        ("m:f(num_classes=100, width=2)", {"num_classes": 100, "width": 2}),
        ("m:f(lr=-0.5, scale=+2, name='wrn', flag=True, off=False, none=None)", None),
        ("m:f(sizes=(32, 32), widths=[1, 2, -3], nested=((1, 'a'), [None]))", None),
        ("  m:f( depth = 40 ,\n width=2 )  ", {"depth": 40, "width": 2}),
    ],
)
def test_factory_specs_take_literal_keyword_arguments(spec, kwargs):
    parsed = parse_factory_spec(spec, "model factory")
    expected = kwargs
    if expected is None:  # the literals as Python reads them, an independent parse
        expected = eval("dict" + spec.strip().partition(":")[2].removeprefix("f"))
    assert parsed.kwargs == expected
    assert parsed.target == spec.strip().split("(")[0].strip()


@pytest.mark.parametrize(
    "spec, refused",
    [
        ("m:f(x=g())", "argument x is a call"),
        ("m:f(x=os)", "argument x is a name"),
        ("m:f(x=os.sep)", "argument x is an attribute"),
        ("m:f(**opts)", "**kwargs is refused"),
        ("m:f(*args)", "*args is refused"),
        ("m:f(100)", "positional arguments are refused"),
        ("m:f(key=lambda: 0)", "argument key is a lambda"),
        ("m:f(x=y[0])", "argument x is a subscript"),
        ("m:f(x={'a': 1})", "argument x is a dict"),
        ("m:f(x=1 + 2)", "argument x is an expression"),
        ("m:f(x=f'{y}')", "argument x is an f-string"),
        ("m:f(x=b'raw')", "argument x is a bytes constant"),
        ("m:f(x=[1, g()])", "argument x is a call"),
        ("m:f(x=1e999)", "argument x is not a finite number"),
        ("m:f(x=1, x=2)", "argument x is given twice"),
        ("m:f(x=1)(y=2)", "expected one call"),
        ("m:f(x=1", "not valid Python syntax"),
        ("m:f(x=" + "[" * 300 + ")", "not valid Python syntax"),
        ("m:f(x='" + "a" * MAX_FACTORY_SPEC_CHARS + "')", "too long"),
    ],
)
def test_factory_arguments_that_are_not_literals_are_refused_in_one_line(spec, refused):
    with pytest.raises(ValueError) as info:
        parse_factory_spec(spec, "model factory")
    message = str(info.value)
    assert refused in message and "\n" not in message and len(message) < 400, message
    assert re.match(r"model factory ['\"]m:f\(", message), message


def test_a_refused_factory_is_never_imported_nor_called(tmp_path, monkeypatch):
    marker = tmp_path / "imported"
    (tmp_path / "cakd_marker_mod.py").write_text(
        f"open({str(marker)!r}, 'w').close()\ndef make(**kw):\n    raise AssertionError('called')\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    for spec in ("cakd_marker_mod:make(x=__import__('os'))", "cakd_marker_mod:make(1)"):
        with pytest.raises(ValueError, match="refused|is a call"):
            load_model(spec)
        with pytest.raises(ValueError, match="refused|is a call"):
            load_data(spec)
    assert not marker.exists() and "cakd_marker_mod" not in sys.modules


def test_load_model_and_load_data_call_the_factory_with_its_arguments():
    model, info = load_model("field_models:resnet8x4(num_classes=7, width=1, in_channels=1)")
    assert info["kind"] == "factory" and model.fc.out_features == 7
    assert model.stem[0].in_channels == 1 and model.stem[0].out_channels == 4 and not model.training
    wide, _ = load_model("field_models:resnet8x4(num_classes=7, width=3, in_channels=1)")
    assert wide.stem[0].out_channels == 12
    src = load_data("field_models:noise(n=12, classes=3, side=6)")
    assert (len(src), src.num_classes, src.input_shape) == (12, 3, (1, 6, 6))
    with pytest.raises(ValueError, match=r"model factory .* failed: TypeError: .*unexpected keyword"):
        load_model("field_models:resnet8x4(depth=40)")


@pytest.mark.parametrize("layout", ["plain", "model", "state_dict", "ddp", "ddp_in_model"])
def test_checkpoint_layouts_load_into_a_factory_with_arguments(files, tmp_path, layout):
    state = files["nets"]["teacher"].state_dict()
    ddp = {f"module.{k}": v for k, v in state.items()}
    saved = {
        "plain": state,
        "model": {"model": state, "epoch": torch.tensor(240)},
        "state_dict": {"state_dict": state},
        "ddp": ddp,
        "ddp_in_model": {"model": ddp},
    }[layout]
    torch.save(saved, tmp_path / "w.pth")
    model, _ = load_model(RESNET, weights=tmp_path / "w.pth")
    x = torch.randn(3, 1, SIDE, SIDE)
    with torch.no_grad():
        torch.testing.assert_close(model(x)[0], files["nets"]["teacher"](x)[0], rtol=0, atol=0)


def test_run_configs_carry_factory_specs_with_arguments_and_refuse_bad_ones(files):
    base = {
        "data": str(files["root"] / "train.npz"),
        "test_data": str(files["root"] / "test.npz"),
        "teacher": RESNET,
        "teacher_weights": str(files["root"] / "teacher.pt"),
        "student": "field_models:dict_style(num_classes=5, width=1, in_channels=1)",
    }
    cfg = RunConfig.from_dict(base).validated()
    assert cfg.to_dict()["teacher"] == RESNET  # as written
    for key, spec, why in (
        ("teacher", "field_models:resnet8x4(num_classes=len('abcde'))", "argument num_classes is a call"),
        ("student", "field_models:dict_style(**{'width': 1})", "**kwargs is refused"),
        ("data", "field_models:noise(n=[i for i in range(3)])", "argument n is a ListComp expression"),
    ):
        with pytest.raises(ValueError, match=f"^{key} .*{re.escape(why)}"):
            RunConfig.from_dict(base | {key: spec}).validated()


def test_default_student_names_of_factories_with_arguments():
    assert default_student_name("pkg.mod:resnet8x4(num_classes=100, name='a/b:c')") == "resnet8x4"


# -- logits from whatever a model returns --------------------------------------------------------------


class ModelOutputLike(OrderedDict):
    """Hugging Face's ModelOutput is an ordered dict whose keys are attributes too."""

    def __getattr__(self, key):
        return self[key]


def test_logits_of_reads_every_form_the_field_writes():
    z, f = torch.randn(4, C), torch.randn(4, 3)
    forms = [
        z,
        (z, f),
        [z, {"feats": [f]}],
        {"logits": z, "features": f},
        ModelOutputLike(logits=z, hidden_states=f),
        field_models.Output(logits=z, hidden_states=f),
    ]
    for output in forms:
        assert logits_of(output, who="m", batch=4) is z


@pytest.mark.parametrize(
    "kind, says",
    [
        ("none", "returned None;"),
        ("features_first", "returned a tuple of 2 whose first item is a list, not a tensor;"),
        ("empty_tuple", "returned an empty tuple;"),
        ("dict_without_logits", "returned a dict without 'logits' (keys: 'out', 'features');"),
        ("logits_not_a_tensor", "returned a dict whose 'logits' is a list, not a tensor;"),
        ("three_dims", "returned shape (4, 10, 1) for a batch of 4; expected logits (batch, C) = (4, C)"),
        ("integers", "returned int64 logits; expected floats"),
        ("a_number", "returned a value of type int;"),
    ],
)
def test_outputs_without_logits_are_one_line_naming_the_model_and_what_came_back(kind, says):
    net = field_models.bad(kind).eval()
    with torch.no_grad(), pytest.raises(ValueError) as info:
        logits_of(net(torch.randn(4, 1, SIDE, SIDE)), who="student 'bad'", batch=4)
    message = str(info.value)
    assert message.startswith("student 'bad' returned ") and says in message and "\n" not in message


# -- extraction ------------------------------------------------------------------------------------------


def test_extract_command_with_factory_specs_with_arguments_matches_a_direct_forward(files, tmp_path):
    root, out = files["root"], tmp_path / "bundle"
    hf = "field_models:hf_style(num_classes=5, width=1, in_channels=1)"
    dct = "field_models:dict_style(num_classes=5, width=1, in_channels=1)"
    args = ["--teacher", RESNET, "--teacher-weights", str(root / "teacher.pt")]
    args += ["--student", f"hf={hf}", "--student-weights", f"hf={root / 'hf.pt'}"]
    args += ["--student", dct, "--student-weights", f"dict_style={root / 'dict.pt'}"]
    args += ["--data", str(root / "test.npz"), "--out", str(out), "--device", "cpu", "--dtype", "float32"]
    done = subprocess.run(
        [sys.executable, "-m", "cakd_viz", "extract", *args, "-q"],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    b = load_bundle(out)
    data, nets = str(root / "test.npz"), files["nets"]
    np.testing.assert_allclose(b.teacher, _direct(nets["teacher"], data), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(b.student("hf"), _direct(nets["hf"], data), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(b.student("dict_style"), _direct(nets["dict"], data), rtol=1e-5, atol=1e-6)
    assert b.meta["teacher"]["spec"].startswith(RESNET)


def test_extraction_refuses_outputs_without_logits_in_one_line(files, tmp_path):
    root = files["root"]
    bad = "field_models:bad(kind='features_first', num_classes=5)"
    done = subprocess.run(
        [sys.executable, "-m", "cakd_viz", "extract", "--teacher", RESNET, "--student", bad]
        + ["--data", str(root / "test.npz"), "--out", str(tmp_path / "b"), "--device", "cpu", "-q"],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=300,
    )
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1, done.stderr
    assert lines[0].startswith("cakd-viz extract: error: student 'bad' (") and bad in lines[0]
    assert "returned a tuple of 2 whose first item is a list, not a tensor" in lines[0]
    assert not (tmp_path / "b").exists()
    with pytest.raises(ValueError, match=r"teacher \(.*\) returned None"):
        extract(
            "field_models:bad(num_classes=5)", [RESNET], str(root / "test.npz"), tmp_path / "c", device="cpu"
        )


def test_torchrun_extraction_accepts_models_returning_logits_and_features(files, tmp_path):
    root = files["root"]
    models = ["--teacher", RESNET, "--teacher-weights", str(root / "teacher.pt")]
    models += ["--student", f"s={RESNET}", "--student-weights", f"s={root / 'teacher.pt'}"]
    models += ["--student", "d=field_models:dict_style(num_classes=5, width=1, in_channels=1)"]
    models += ["--student-weights", f"d={root / 'dict.pt'}", "--data", str(root / "test.npz")]
    common = [*models, "--device", "cpu", "--batch-size", "4", "--dtype", "float32", "-q"]
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2"]
    done = subprocess.run(
        [*torchrun, "-m", "cakd_viz", "extract", *common, "--out", str(tmp_path / "dist")],
        capture_output=True,
        text=True,
        env=_env(),
        cwd=tmp_path,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    dist = load_bundle(tmp_path / "dist")
    assert dist.meta["extract"]["world_size"] == 2
    data, nets = str(root / "test.npz"), files["nets"]
    np.testing.assert_allclose(dist.teacher, _direct(nets["teacher"], data), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(dist.student("s"), _direct(nets["teacher"], data), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(dist.student("d"), _direct(nets["dict"], data), rtol=1e-5, atol=1e-6)


# -- training and evaluation ------------------------------------------------------------------------------


def test_training_and_evaluation_take_logits_from_every_form(files):
    train_src, test_src = (
        load_data(str(files["root"] / "train.npz")),
        load_data(str(files["root"] / "test.npz")),
    )
    from cakd_viz.losses import CAKDLoss

    teacher = _seeded(lambda: field_models.dict_style(num_classes=C, width=1, in_channels=1), 3)
    student = _seeded(lambda: field_models.hf_style(num_classes=C, width=1, in_channels=1), 4)
    seen = []
    history = train(
        student,
        train_src.dataset,
        test_src.dataset,
        cfg=TrainConfig(epochs=1, batch_size=16, lr=0.01, device="cpu"),
        teacher=teacher,
        criterion=CAKDLoss(grouping="topk:2", temperature=4.0),
        val_metrics=lambda logits, epoch: seen.append(logits) or {"n": float(len(logits))},
    )
    assert len(history) == 1 and np.isfinite([history[0][k] for k in ("loss", "bcd", "val_acc")]).all()
    direct = _direct(student, str(files["root"] / "test.npz"))
    np.testing.assert_allclose(seen[0], direct, rtol=1e-5, atol=1e-6)  # the epoch's evaluation pass
    np.testing.assert_allclose(predict_logits(student, test_src.dataset), direct, rtol=1e-5, atol=1e-6)
    acc = float((direct.argmax(1) == np.asarray(test_src.labels)).mean())
    assert evaluate(student, test_src.dataset)["acc"] == pytest.approx(acc)
    with pytest.raises(ValueError, match=r"^student returned a dict without 'logits' \(keys: 'out'"):
        train(
            field_models.bad("dict_without_logits", num_classes=C),
            train_src.dataset,
            None,
            cfg=TrainConfig(epochs=1, device="cpu"),
        )


def test_tune_with_factory_teacher_and_student_with_arguments_records_its_held_out_terms(files, tmp_path):
    root = files["root"]
    config = {
        "data": str(root / "train.npz"),
        "test_data": str(root / "test.npz"),
        "teacher": RESNET,
        "teacher_weights": str(root / "teacher.pt"),
        "student": "field_models:dict_style(num_classes=5, width=1, in_channels=1)",
        "loss": {"name": "cakd", "grouping": "topk:2", "temperature": 4.0},
        "epochs": 1,
        "batch_size": 16,
        "lr": 0.01,
        "device": "cpu",
    }
    (tmp_path / "run.json").write_text(json.dumps(config))
    done = subprocess.run(
        [sys.executable, "-m", "cakd_viz", "tune", "--config", str(tmp_path / "run.json")]
        + ["--runs-dir", str(tmp_path / "runs"), "-q"],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    (run,) = list_runs(tmp_path / "runs")
    run_dir = run.path
    assert (
        run.state == "done" and run.config["teacher"] == RESNET and run.config["student"] == config["student"]
    )
    (epoch,) = metrics_frame(run).to_dict("records")
    # the held-out terms of epoch 1 against an independent float64 reference on the run's own bundle
    # (the test split, float32: the final student is the epoch-1 student)
    b = load_bundle(run_dir / "bundle")
    student, teacher = np.asarray(b.student(b.student_names[0])), np.asarray(b.teacher)
    ref = terms(student, teacher, strong_mask(teacher, grouping="topk:2"), 4.0)
    want = {
        "val_kl": ref["kl"].mean(),
        "val_bcd": ref["bcd"].mean(),
        "val_scd": ref["scd"].mean(),
        "val_wcd": ref["wcd"].mean(),
        "val_scd_part": (ref["teacher_strong_mass"] * ref["scd"]).mean(),
        "val_wcd_part": (ref["teacher_weak_mass"] * ref["wcd"]).mean(),
    }
    for key, value in want.items():
        assert epoch[key] == pytest.approx(value, rel=1e-4, abs=1e-9), key
    np.testing.assert_allclose(
        teacher, _direct(files["nets"]["teacher"], str(root / "test.npz")), rtol=1e-5, atol=1e-6
    )
    assert (run_dir / "student.safetensors").is_file()
