"""Model registry, checkpoints and every model spec form, with their errors."""

from __future__ import annotations

import json
import sys
import textwrap

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from cakd_viz.models import (
    ARCHS,
    MODEL_SPEC_FORMS,
    build_arch,
    count_params,
    load_checkpoint,
    load_model,
    save_checkpoint,
)

torch.set_num_threads(2)


@pytest.mark.parametrize("name", list(ARCHS))
@pytest.mark.parametrize("shape", [(1, 8, 8), (3, 32, 32), (1, 28, 20)])
def test_every_arch_maps_images_to_logits(name, shape):
    model = build_arch(name, in_channels=shape[0], num_classes=7, image_size=shape[1:]).eval()
    assert model(torch.zeros(2, *shape)).shape == (2, 7)


def test_students_are_smaller_than_the_teacher_arch():
    size = {n: count_params(build_arch(n, in_channels=1, num_classes=62, image_size=32)) for n in ARCHS}
    assert size["cnn_l"] > 1.4 * size["cnn_s"] > 1.4 * size["cnn_xs"]


def test_unknown_arch_lists_names():
    with pytest.raises(ValueError, match="cnn_l"):
        build_arch("resnet", in_channels=1, num_classes=3, image_size=8)


def _trained_like(name="cnn_s", classes=5, shape=(1, 12, 12), seed=0):
    torch.manual_seed(seed)
    model = build_arch(name, in_channels=shape[0], num_classes=classes, image_size=shape[1:])
    with torch.no_grad():  # non-trivial BN statistics
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    return model.eval()


@pytest.mark.parametrize("dtype, tol", [(torch.float32, 0.0), (torch.float16, 2e-2)])
def test_checkpoint_round_trip(tmp_path, dtype, tol):
    model, x = _trained_like(), torch.randn(4, 1, 12, 12)
    path = save_checkpoint(
        tmp_path / "m",
        model,
        arch="cnn_s",
        class_names=list("abcde"),
        input_shape=(1, 12, 12),
        normalization={"mean": [0.2], "std": [0.3]},
        accuracy=0.75,
        train_config={"epochs": 3},
        dtype=dtype,
    )
    assert path.name == "m.json" and (tmp_path / "m.safetensors").is_file()
    info = json.loads(path.read_text())
    assert info["arch"] == "cnn_s" and info["num_classes"] == 5 and info["accuracy"] == 0.75
    loaded, info = load_checkpoint(tmp_path / "m.safetensors")
    assert not loaded.training and info["class_names"] == list("abcde")
    assert next(loaded.parameters()).dtype == torch.float32
    torch.testing.assert_close(loaded(x), model(x), atol=tol, rtol=tol)
    via_spec, spec_info = load_model(str(path))
    assert spec_info["kind"] == "checkpoint" and spec_info["normalization"] == {"mean": [0.2], "std": [0.3]}
    torch.testing.assert_close(via_spec(x), loaded(x))


@pytest.mark.parametrize(
    "change",
    [
        {"arch_kwargs": [1]},
        {"arch_kwargs": {"bogus": 1}},
        {"arch_kwargs": {"widths": [-1, 2]}},  # torch's RuntimeError: 'internal error' on the command line
        {"arch_kwargs": {"widths": [1.5]}},  # torch's ValueError, which named no file
        {"arch": "resnet9000"},  # build_arch's ValueError, which named no file
        {"input_shape": [1]},
        {"input_shape": [1, 12, 12, 12]},
        {"input_shape": "abc"},
        {"input_shape": [1, 0, 12]},
        {"num_classes": "5"},
    ],
)
def test_a_malformed_checkpoint_config_is_one_line_naming_the_file(tmp_path, change):
    """A checkpoint's json comes from anyone: a field of the wrong kind is a ValueError naming the file
    and the field, never a TypeError (an "internal error" on the command line) or an unpacking message."""
    path = save_checkpoint(
        tmp_path / "m", _trained_like(), arch="cnn_s", class_names=list("abcde"), input_shape=(1, 12, 12)
    )
    path.write_text(json.dumps({**json.loads(path.read_text()), **change}))
    with pytest.raises(ValueError, match=r"m\.json: ") as err:
        load_checkpoint(path)
    assert str(err.value).count("\n") == 0


@pytest.mark.parametrize(
    "content, said",
    [(b"\xff\xfe{}", "not UTF-8 text"), (b"[" * 100_000, "JSON nested too deeply"), (b"{", "not valid JSON")],
)
def test_a_checkpoint_config_that_is_no_json_text_is_one_line_naming_the_file(tmp_path, content, said):
    path = save_checkpoint(
        tmp_path / "m", _trained_like(), arch="cnn_s", class_names=list("abcde"), input_shape=(1, 12, 12)
    )
    path.write_bytes(content)
    with pytest.raises(ValueError, match=rf"^{tmp_path}/m\.json: {said}") as err:
        load_checkpoint(path)
    assert str(err.value).count("\n") == 0


def test_sample_spec_reads_the_samples_dir(tmp_path, monkeypatch):
    model = _trained_like()
    save_checkpoint(
        tmp_path / "toy" / "teacher", model, arch="cnn_s", class_names=list("abcde"), input_shape=(1, 12, 12)
    )
    monkeypatch.setenv("CAKD_SAMPLES_DIR", str(tmp_path))
    loaded, info = load_model("sample:toy/teacher")
    assert info["kind"] == "sample" and info["spec"] == "sample:toy/teacher"
    x = torch.randn(2, 1, 12, 12)
    torch.testing.assert_close(loaded(x), model(x))
    with pytest.raises(ValueError, match="available: sample:toy/teacher"):
        load_model("sample:toy/student")


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch.jit.trace/save, still supported
def test_torchscript_round_trip(tmp_path):
    model, x = _trained_like(), torch.randn(3, 1, 12, 12)
    path = tmp_path / "scripted.pt"
    torch.jit.save(torch.jit.trace(model, x), str(path))
    loaded, info = load_model(path)
    assert info["kind"] == "torchscript"
    torch.testing.assert_close(loaded(x), model(x))


def test_pickled_module_is_never_loaded(tmp_path):
    path = tmp_path / "whole_model.pt"
    torch.save(_trained_like(), path)  # a pickled nn.Module, not TorchScript
    with pytest.raises(ValueError, match="not a TorchScript archive"):
        load_model(path)


def test_a_damaged_zip_model_file_is_refused_in_one_line(tmp_path):
    """A zip whose end records zipfile cannot read (a zip64 locator claiming two disks) is not a
    TorchScript archive: a ValueError, not zipfile's BadZipFile (an 'internal error' on the command line)."""
    import struct

    path = tmp_path / "damaged.pt"
    torch.save({"w": torch.zeros(2)}, path)
    data = path.read_bytes()
    at = data.rfind(b"PK\x05\x06")
    path.write_bytes(data[:at] + struct.pack("<4sLQL", b"PK\x06\x07", 0, 0, 2) + data[at:])
    with pytest.raises(ValueError, match="not a TorchScript archive"):
        load_model(path)


@pytest.fixture
def factory_module(tmp_path, monkeypatch):
    (tmp_path / "my_models_mod.py").write_text(
        textwrap.dedent("""
        from torch import nn

        def tiny():
            return nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 3))

        def not_a_module():
            return 42
    """)
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "my_models_mod"
    sys.modules.pop("my_models_mod", None)


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_factory_plus_weights(tmp_path, factory_module, suffix):
    torch.manual_seed(1)
    reference = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 3))
    path = tmp_path / f"w{suffix}"
    state = {k: v.contiguous() for k, v in reference.state_dict().items()}
    save_file(state, str(path)) if suffix == ".safetensors" else torch.save(state, path)
    model, info = load_model(f"{factory_module}:tiny", weights=path)
    assert info["kind"] == "factory" and not model.training
    x = torch.randn(5, 1, 4, 4)
    torch.testing.assert_close(model(x), reference(x))


def test_mismatched_weights_name_the_keys(tmp_path, factory_module):
    path = tmp_path / "bad.safetensors"
    save_file(
        {"1.weight": torch.zeros(8, 9), "1.bias": torch.zeros(8), "9.weight": torch.zeros(1)}, str(path)
    )
    with pytest.raises(ValueError) as err:
        load_model(f"{factory_module}:tiny", weights=path)
    msg = str(err.value)
    assert "bad.safetensors" in msg and "missing keys [3.bias, 3.weight]" in msg
    assert "unexpected keys [9.weight]" in msg and "1.weight (file (8, 9) vs model (8, 16))" in msg


def test_factory_errors(tmp_path, factory_module):
    with pytest.raises(ValueError, match="not a torch.nn.Module"):
        load_model(f"{factory_module}:not_a_module")
    with pytest.raises(ValueError, match="cannot import module 'no_such_models_xyz'"):
        load_model("no_such_models_xyz:net", weights=tmp_path / "w.safetensors")
    with pytest.raises(ValueError, match="does not exist"):
        load_model(f"{factory_module}:tiny", weights=tmp_path / "missing.safetensors")
    pickled = tmp_path / "obj.pt"
    torch.save({"layer": nn.Linear(2, 2)}, pickled)
    with pytest.raises(ValueError, match="weights_only"):
        load_model(f"{factory_module}:tiny", weights=pickled)


def test_bare_safetensors_needs_an_architecture(tmp_path):
    path = tmp_path / "w.safetensors"
    save_file({"a": torch.zeros(1)}, str(path))
    with pytest.raises(ValueError, match="package.module:factory"):
        load_model(path)


@pytest.mark.parametrize("spec", ["nothing_here.pt", "sample:glyphs", "just words", "dir/x.json"])
def test_bad_model_specs(spec):
    with pytest.raises(ValueError, match="valid|sample:DATA/NAME"):
        load_model(spec)


def test_bad_spec_error_lists_forms():
    with pytest.raises(ValueError) as err:
        load_model("just words")
    assert MODEL_SPEC_FORMS in str(err.value)


@pytest.mark.parametrize("name", list(ARCHS))
def test_arch_defaults_rebuild_the_same_model(name):
    from cakd_viz.models import arch_defaults

    plain = build_arch(name, in_channels=1, num_classes=5, image_size=16).state_dict()
    explicit = build_arch(
        name, in_channels=1, num_classes=5, image_size=16, **arch_defaults(name)
    ).state_dict()
    assert {k: v.shape for k, v in plain.items()} == {k: v.shape for k, v in explicit.items()}
