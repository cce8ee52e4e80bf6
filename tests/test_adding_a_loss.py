"""Adding a loss is one module and its tests: a toy loss registered for these tests only is taken by run
configs, built as a criterion, offered by the Tune form, shown by the tracker and swept, with no other
file naming it (docs/architecture.md §8). Also: what every registered loss declares."""

from __future__ import annotations

import inspect

import pandas as pd
import pytest
import torch
from apptest_support import assert_ok, open_app
from fake_runs import write_run

from cakd_viz.app import tracker, tune_form
from cakd_viz.losses import LOSSES, KDLoss
from cakd_viz.losses.params import FLOAT, Param
from cakd_viz.runs import RunConfig, list_runs, store
from cakd_viz.runs.build import make_criterion
from cakd_viz.runs.config import loss_names
from cakd_viz.runs.results import tracker_table
from cakd_viz.runs.sweep import SweepConfig, expand

BASE = {"data": "sample:digits", "teacher": "sample:digits/teacher", "student": "mlp", "epochs": 1}


class ScaledKD(KDLoss):
    """KD times a gain: the whole module a new loss needs (its parameters declared once)."""

    title = "SCALED_KD"
    own_params = (Param("gain", 1.0, FLOAT, "Factor on the KD term.", "gain", low=0.0, step=0.5),)

    def __init__(
        self,
        gain: float = 1.0,
        temperature: float = 4.0,
        *,
        warmup=0,
        warmup_schedule="epoch",
        standardize=False,
    ):
        super().__init__(temperature, warmup=warmup, warmup_schedule=warmup_schedule, standardize=standardize)
        self.gain = float(gain)

    def _base_weights(self) -> tuple[float, ...]:
        return (self.gain,)


class FixedGainKD(ScaledKD):
    """The same loss with a gain no sweep may vary."""

    title = "FIXED_KD"
    own_params = (Param("gain", 1.0, FLOAT, "Factor on the KD term.", "gain", low=0.0, sweep=False),)


@pytest.fixture
def scaled_kd():
    """ScaledKD registered as "scaled_kd" for one test, removed afterwards."""
    LOSSES["SCALED_KD"] = ScaledKD
    try:
        yield ScaledKD
    finally:
        del LOSSES["SCALED_KD"]


def test_a_run_config_with_the_new_loss_validates_and_builds_its_criterion(scaled_kd):
    cfg = RunConfig.from_dict(
        BASE | {"loss": {"name": "scaled_kd", "gain": 2.5, "temperature": 2.0}}
    ).validated()
    assert "scaled_kd" in loss_names() and cfg.loss.gain == 2.5
    assert cfg.loss.summary() == "SCALED_KD (2.5, T=2)" and cfg.student_name() == "scaled_kd"
    assert RunConfig.from_dict(cfg.to_dict()) == cfg  # the JSON form round-trips
    crit = make_criterion(cfg.loss)
    assert isinstance(crit, ScaledKD) and crit.gain == 2.5 and crit.temperature == 2.0
    s, t = torch.randn(8, 5, dtype=torch.float64), torch.randn(8, 5, dtype=torch.float64)
    torch.testing.assert_close(crit(s, t), 2.5 * KDLoss(temperature=2.0)(s, t))
    assert RunConfig.from_dict(BASE | {"loss": "scaled_kd"}).loss.gain == 1.0  # its declared default
    with pytest.raises(ValueError, match=r"^loss.gain must be a finite number >= 0, got -1"):
        RunConfig.from_dict(BASE | {"loss": {"name": "scaled_kd", "gain": -1}}).validate()
    with pytest.raises(ValueError, match=r"unknown key\(s\) 'gain' in loss \('gain' belongs to scaled_kd\)"):
        RunConfig.from_dict(BASE | {"loss": {"name": "kd", "gain": 2}})


def test_the_loss_is_gone_with_its_registration():
    with pytest.raises(ValueError, match="loss.name must be one of ce, kd, dkd, cakd, got 'scaled_kd'"):
        RunConfig.from_dict(BASE | {"loss": {"name": "scaled_kd"}})


def test_the_tune_form_offers_the_new_loss_with_its_parameter(scaled_kd):
    at = open_app(page="cakd_viz/app/pages/tune.py")
    assert_ok(at)
    assert "SCALED_KD" in at.selectbox(key="tune_lossname").options  # names shown in capitals
    at.selectbox(key="tune_lossname").set_value("scaled_kd").run()
    assert_ok(at)
    gain = at.number_input(key="tune_gain")
    assert (gain.label, gain.value) == ("gain", 1.0) and "Factor on the KD term. Range: >= 0." == gain.help
    shown = {w.key for w in at.number_input} | {w.key for w in at.text_input}
    assert {"tune_temperature", "tune_warmup", "tune_grid_gain"} <= shown
    assert not shown & {"tune_alpha", "tune_beta", "tune_w_b", "tune_grouping"}  # CAKD's are not its
    at.session_state["tune_gain"] = 3.0  # what the form holds once submitted
    at.run()
    assert at.number_input(key="tune_gain").value == 3.0
    form = {k: v for k, v in at.session_state.to_dict().items() if k.startswith("tune_")}
    config = tune_form.launch_config(form, allow_code=False)
    assert config["loss"] == {  # T and warm-up are every loss's: the first preset's values stay
        "name": "scaled_kd",
        "gain": 3.0,
        "temperature": 4.0,
        "warmup": 2.0,
        "warmup_schedule": "epoch",
        "standardize": False,
    }
    assert (config["val_split"], config["val_seed"]) == (0.1, 0)
    RunConfig.from_dict(config).validate()
    assert tune_form.sweep_grid(form | {"tune_grid_gain": "1, 2"}) == {"gain": [1.0, 2.0]}


def test_the_tracker_shows_its_column_and_its_name(scaled_kd, tmp_path, monkeypatch):
    root = tmp_path / "runs"
    write_run(root, "20260102-000000-skd-aaaa", loss={"name": "scaled_kd", "gain": 2.0}, created=1)
    write_run(root, "20260102-000001-kd-bbbb", loss={"name": "kd"}, created=2)
    table = tracker_table(list_runs(root)).set_index("id")
    toy, kd = table.loc["20260102-000000-skd-aaaa"], table.loc["20260102-000001-kd-bbbb"]
    assert (toy["loss"], toy["gain"], toy["temperature"]) == ("scaled_kd", 2.0, 4.0)
    assert pd.isna(kd["gain"])  # KD takes no gain
    assert tracker.columns()["gain"].help.startswith("SCALED_KD: Factor on the KD term.")
    assert "gain" in tracker.default_columns()
    assert list_runs(root)[1].label == "SCALED_KD (2, T=4)"
    monkeypatch.setenv(store.RUNS_DIR_ENV, str(root))
    at = open_app(page="cakd_viz/app/pages/tune.py")
    assert_ok(at)
    shown = next(d.value for d in at.dataframe if "best acc (%)" in d.value).set_index("run")
    assert (
        shown.loc["SCALED_KD (2, T=4)", "gain"] == 2.0
        and shown.loc["SCALED_KD (2, T=4)", "loss"] == "scaled_kd"
    )


def test_a_sweep_over_its_parameter_expands(scaled_kd):
    base = BASE | {"loss": {"name": "scaled_kd"}}
    trials = expand(SweepConfig(base=base, grid={"gain": [1, 2], "temperature": [2, 4]}))
    assert [(t.loss.gain, t.loss.temperature) for t in trials] == [(1, 2), (1, 4), (2, 2), (2, 4)]
    assert trials[2].params == {"gain": 2, "temperature": 2}
    # a case switching to KD does not inherit the gain; the grid's gain is then refused, naming it
    with pytest.raises(
        ValueError, match=r"trial 0 \(loss.name=kd, gain=1\): unknown key\(s\) 'gain' in loss"
    ):
        expand(SweepConfig(base=base, cases=[{"loss": {"name": "kd"}}], grid={"gain": [1]}))
    kd = expand(SweepConfig(base=base | {"loss": {"name": "scaled_kd", "gain": 3}}, cases=[{"loss": "kd"}]))
    assert kd[0].loss.name == "kd" and "gain" not in kd[0].loss.settings


def test_a_parameter_declared_not_sweepable_is_refused_by_a_sweep():
    LOSSES["FIXED_KD"] = FixedGainKD
    try:
        base = BASE | {"loss": {"name": "fixed_kd", "gain": 2}}
        assert RunConfig.from_dict(base).validated().loss.gain == 2.0
        with pytest.raises(ValueError, match="grid key 'gain' is not a setting a sweep can vary"):
            SweepConfig.from_dict({"base": base, "grid": {"gain": [1, 2]}}).validate()
        assert "gain" not in {p.name for p in tune_form.sweep_params("fixed_kd")}
    finally:
        del LOSSES["FIXED_KD"]


@pytest.mark.parametrize(
    ("name", "label"),
    [("KD", "KD (T=4)"), ("DKD", "DKD (1/8, T=4)"), ("CAKD", "CAKD topk:5 (1/1/8, T=4)")],
)
def test_a_loss_declares_every_keyword_its_constructor_takes_with_the_same_default(name, label):
    cls = LOSSES[name]
    signature = inspect.signature(cls.__init__).parameters
    takes = {k: p.default for k, p in signature.items() if k not in ("self", "correlation")}
    assert takes == {p.name: p.default for p in cls.params()}
    assert cls.describe({}) == label  # the declared defaults, labelled


def test_no_loss_parameter_shadows_a_run_field():
    from dataclasses import fields

    run_fields = {f.name for f in fields(RunConfig)}
    assert not {p.name for cls in LOSSES.values() for p in cls.params()} & run_fields
