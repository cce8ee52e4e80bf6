"""The sample build (quick mode): loadable checkpoints and bundles that match re-running the models."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from cakd_viz.bundle import load_bundle
from cakd_viz.data import ArrayDataset, parse_normalize
from cakd_viz.models import load_model
from cakd_viz.samples import build_samples, sample_plans
from cakd_viz.train import evaluate, predict_logits

MODELS = {"digits": ["teacher", "student"], "glyphs": ["teacher", "student_ce", "student_kd"]}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: one thread is fastest on a shared machine
    out = tmp_path_factory.mktemp("samples")
    lines: list[str] = []
    results = build_samples(out, quick=True, progress=lines.append)
    torch.set_num_threads(before)
    return out, results, lines


def test_plans_ship_the_promised_models():
    for quick in (False, True):
        plans = {p.data: p for p in sample_plans(quick)}
        assert {d: [m.name for m in p.models] for d, p in plans.items()} == MODELS
        ce, kd = plans["glyphs"].models[1:]
        assert (ce.arch, ce.loss, kd.loss) == (kd.arch, "ce", "kd") and ce.init_seed == kd.init_seed
    assert max(m.cfg.epochs for p in sample_plans(True) for m in p.models) <= 2


def test_quick_build_writes_checkpoints_bundles_and_readme(built):
    out, results, lines = built
    assert set(results) == set(MODELS) and all(set(results[d]) == set(MODELS[d]) for d in MODELS)
    assert any("held-out accuracy" in line for line in lines) and any("epoch" in line for line in lines)
    readme = (out / "README.md").read_text()
    for data, names in MODELS.items():
        for name in names:
            assert f"sample:{data}/{name}" in readme
            info = json.loads((out / data / f"{name}.json").read_text())
            assert info["accuracy"] == results[data][name] and info["weights_dtype"] == "float16"
        assert (out / data / "bundle" / "meta.json").is_file()


@pytest.mark.parametrize("data", list(MODELS))
def test_checkpoints_load_by_spec_and_reproduce_their_accuracy(built, data, monkeypatch):
    out, results, _ = built
    monkeypatch.setenv("CAKD_SAMPLES_DIR", str(out))
    bundle = load_bundle(out / data / "bundle")
    for name in MODELS[data]:
        model, info = load_model(f"sample:{data}/{name}")
        assert info["kind"] == "sample" and info["num_classes"] == bundle.num_classes
        ds = ArrayDataset(
            np.asarray(bundle.inputs),
            np.asarray(bundle.labels),
            normalization=parse_normalize(info["normalization"], None),
        )
        assert evaluate(model, ds)["acc"] == pytest.approx(results[data][name])


@pytest.mark.parametrize("data", list(MODELS))
def test_bundle_logits_equal_rerunning_the_models_on_the_stored_split(built, data, monkeypatch):
    out, results, _ = built
    monkeypatch.setenv("CAKD_SAMPLES_DIR", str(out))
    bundle = load_bundle(out / data / "bundle")
    assert bundle.inputs.dtype == np.uint8 and bundle.inputs.shape[0] == bundle.num_samples
    assert bundle.meta["accuracy"] == results[data]
    assert bundle.meta["teacher"]["model"] == f"sample:{data}/teacher"
    assert sorted(bundle.students) == sorted(MODELS[data][1:])
    norm = parse_normalize(bundle.meta["normalization"], None)
    ds = ArrayDataset(np.asarray(bundle.inputs), np.asarray(bundle.labels), normalization=norm)
    for name in MODELS[data]:
        model, _ = load_model(f"sample:{data}/{name}")
        stored = np.asarray(bundle.teacher if name == "teacher" else bundle.students[name], dtype=np.float32)
        fresh = predict_logits(model, ds, batch_size=97)
        np.testing.assert_allclose(stored, fresh, rtol=2e-3, atol=2e-3)  # float16 storage
