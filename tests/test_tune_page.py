"""The Tune page through Streamlit's AppTest: launch, watch, compare, cancel, crash, refuse, open in explorer.

Runs go to a tmp_path runs directory (CAKD_VIZ_RUNS_DIR), trained by real processes the page starts.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest
from apptest_support import as_read
from runs_support import make_teacher, write_factory
from streamlit.testing.v1 import AppTest

from cakd_viz.app import config as app_config
from cakd_viz.runs import list_runs, store

APP = Path(__file__).resolve().parent.parent / "app.py"


@pytest.fixture(scope="module")
def teacher(tmp_path_factory) -> Path:
    return make_teacher(tmp_path_factory.mktemp("teacher"))


@pytest.fixture
def runs(tmp_path, monkeypatch, teacher) -> Path:
    """A runs folder; the app runs as an operator who opted in to own model files and factories
    (CAKD_VIZ_ALLOW_CODE_SPECS=1) with the teacher's folder and the runs folder as data roots.
    tests/test_app_security.py checks what a browser may do without the opt-in."""
    root = tmp_path / "runs"
    root.mkdir()
    monkeypatch.setenv(store.RUNS_DIR_ENV, str(root))
    roots = [str(root), str(teacher.parent)]  # run bundles may open in the explorer
    monkeypatch.setenv(app_config.DATA_ROOT_ENV, os.pathsep.join(roots))
    monkeypatch.setenv(app_config.ALLOW_CODE_ENV, "1")
    monkeypatch.setenv("CAKD_SAMPLES_DIR", str(tmp_path / "no-samples"))
    return root


def _page() -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=60)
    at.switch_page("cakd_viz/app/pages/tune.py")
    return at.run()


def _fill(at: AppTest, teacher: Path, **values) -> AppTest:
    at.selectbox(key="tune_data").set_value("sample:digits").run()
    at.text_input(key="tune_teacher").set_value(str(teacher))
    at.text_input(key="tune_student").set_value("mlp")
    at.number_input(key="tune_epochs").set_value(values.pop("epochs", 1))
    for key, value in values.items():
        widget = (
            at.text_input(key=key) if key in ("tune_grouping", "tune_own_data", "tune_own_test") else None
        )
        (widget or at.number_input(key=key)).set_value(value)
    return at


def _click(at: AppTest, label: str) -> AppTest:
    next(b for b in at.button if b.label == label).click()
    return at.run()


def _poll(at: AppTest, until, timeout: float = 90.0) -> AppTest:
    """Rerun the page (as the polling fragment does) until ``until(at)`` holds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        at.run()
        assert not at.exception, at.exception
        if until(at):
            return at
        time.sleep(0.5)
    raise AssertionError("timed out waiting for the page to show the run's end")


def _table(at: AppTest):
    return next(d.value for d in at.dataframe if "best acc (%)" in d.value)


def test_launch_watch_until_done_and_the_accuracy_shows(teacher, runs):
    at = _click(_fill(_page(), teacher, epochs=2), "Launch run")
    assert not at.exception and not at.error
    assert at.success[0].value.startswith("Started run ")
    _poll(at, lambda at: at.dataframe and (_table(at)["state"] == "done").all())
    (run,) = list_runs(runs)
    at.toggle(key="tune_all_columns").set_value(True).run()
    row = _table(at).iloc[0]
    assert row["run id"] == run.id and (row["done"], row["epochs"]) == (2, 2)
    # validation first: 10% of the training split per class, every epoch on it, the test split once
    assert (run.config["val_split"], run.config["val_seed"]) == (0.1, 0)
    assert run.summary["eval_split"] == "validation" and run.summary["eval_samples"] < 200
    assert row["epochs on"] == "validation" and row["best acc (%)"] > 20  # percent points
    assert row["best acc (%)"] == pytest.approx(100 * run.summary["best_val_acc"])
    assert row["test acc (%)"] == pytest.approx(100 * run.summary["test_acc"])
    assert any(c.proto.spec for c in at.get("plotly_chart"))  # the overlaid curves
    at.selectbox(key="curve").set_value("train_acc").run()
    assert not at.exception


def test_the_form_shows_only_the_chosen_losss_parameters_with_their_ranges(runs):
    at = _page()
    assert at.selectbox(key="tune_lossname").value == "cakd"  # the first preset's loss
    shown = {w.key for w in [*at.number_input, *at.text_input, *at.selectbox]}
    assert {
        "tune_grouping",
        "tune_w_b",
        "tune_alpha",
        "tune_beta",
        "tune_temperature",
        "tune_warmup",
    } <= shown
    assert at.number_input(key="tune_beta").help == "Weight of WCD. Range: >= 0."
    assert {"tune_grid_beta", "tune_grid_k", "tune_grid_grouping", "tune_grid_seed"} <= shown
    at.selectbox(key="tune_lossname").set_value("kd").run()
    shown = {w.key for w in [*at.number_input, *at.text_input, *at.selectbox]}
    assert {"tune_temperature", "tune_warmup", "tune_warmup_schedule"} <= shown
    assert not shown & {
        "tune_grouping",
        "tune_w_b",
        "tune_alpha",
        "tune_beta",
        "tune_grid_k",
        "tune_grid_beta",
    }
    assert at.number_input(key="tune_temperature").help.endswith("Range: > 0.")
    assert any(c.value == "Your own settings: the loss is no longer the preset's (CAKD)." for c in at.caption)
    at.selectbox(key="tune_lossname").set_value("ce").run()
    assert any(m.value == "**CE**: no distillation, nothing to set" for m in at.markdown)
    assert not {w.key for w in at.number_input} & {"tune_temperature", "tune_warmup"}
    at.selectbox(key="tune_lossname").set_value("cakd").run()
    assert at.number_input(key="tune_beta").value == 8.0  # a field not drawn since is back at a value


def test_presets_set_their_loss_and_hold_out_a_validation_split(runs):
    at = _page()
    assert (at.number_input(key="tune_val_split").value, at.number_input(key="tune_val_seed").value) == (
        0.1,
        0,
    )
    assert any("Weights are picked on validation" in c.value for c in at.caption)
    at.session_state["tune_val_split"] = 0.0  # as the form holds it once submitted
    at.run()
    assert at.number_input(key="tune_val_split").value == 0.0
    at.selectbox(key="tune_preset").set_value("DKD defaults").run()
    assert at.selectbox(key="tune_lossname").value == "dkd"
    values = {k: at.number_input(key=f"tune_{k}").value for k in ("alpha", "beta", "temperature", "warmup")}
    assert values == {"alpha": 1.0, "beta": 8.0, "temperature": 4.0, "warmup": 2.0}
    assert at.number_input(key="tune_val_split").value == 0.1  # every preset holds out 10%


def test_the_page_states_how_many_runs_and_trials_run_at_once(runs, monkeypatch):
    monkeypatch.setenv("CAKD_VIZ_MAX_RUNS", "1")
    monkeypatch.setattr(os, "cpu_count", lambda: 4)
    at = _page()
    intro = at.markdown[0].value
    assert "one of 1 run slot is free" in intro and "a sweep runs 4 trials at a time" in intro
    assert "at most 1 at once" not in intro


def test_a_refusal_quoting_the_form_says_it_as_text(teacher, runs):
    """The library's refusal of a launch quotes what the form holds (here its grouping): the line says
    it as text, never as a link or bold text."""
    typed = "[click](javascript:alert(1)) **bold**"
    at = _click(_fill(_page(), teacher, tune_grouping=typed), "Launch run")
    line = at.error[0].value
    assert as_read(line).startswith(f"Not launched: loss.grouping: unknown grouping '{typed}'"), line
    assert not re.search(r"(?<!\\)[\[\]()*]", line), line


def test_an_invalid_config_is_refused_before_launch(teacher, runs):
    at = _click(_fill(_page(), teacher, tune_grouping="topk:x"), "Launch run")
    assert at.error and as_read(at.error[0].value).startswith("Not launched: loss.grouping: ")
    assert [p.name for p in runs.iterdir() if p.name != ".launch.lock"] == []  # no run folder
    at = _click(_fill(_page(), teacher), "Launch sweep")
    assert "a sweep needs values to try" in at.error[0].value


def test_cancel_from_the_page(teacher, runs):
    at = _click(_fill(_page(), teacher, epochs=500), "Launch run")
    at = _poll(
        at, lambda at: any(b.label == "Cancel" for b in at.button) and list_runs(runs)[0].state == "running"
    )
    at = _click(at, "Cancel")
    (run,) = list_runs(runs)
    assert run.state == "cancelled"
    _poll(at, lambda at: (_table(at)["state"] == "cancelled").all())
    assert not any(b.label == "Cancel" for b in at.button)


def test_a_grouping_asking_for_too_many_strong_classes_is_warned_of_at_launch(teacher, runs):
    at = _click(_fill(_page(), teacher, tune_grouping="topk:10"), "Launch run")  # the digits have 10 classes
    assert at.success and not at.error
    (warning,) = [as_read(w.value) for w in at.warning if "strong classes" in w.value]
    assert warning == (
        "topk:10 asks for 10 strong classes, and there are 10: using topk:9 (K at most C − 1, so that W is "
        "not empty)."
    )
    at = _click(_fill(_page(), teacher, tune_grouping="topk:9"), "Launch run")
    assert not [w for w in at.warning if "strong classes" in w.value]


def test_a_crashing_run_shows_failed_with_the_error_and_log(teacher, runs, tmp_path, monkeypatch):
    module = write_factory(tmp_path)
    monkeypatch.setenv("PYTHONPATH", f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    at = _fill(_page(), teacher, tune_own_data=f"{module}:crash", tune_own_test="sample:digits:test")
    at = _click(at, "Launch run")
    at = _poll(at, lambda at: (_table(at)["state"] == "failed").all())
    assert any(as_read(e.value) == "RuntimeError: boom: a deliberate crash in the data" for e in at.error)
    (log,) = [c.value for c in at.code if "boom" in c.value]  # the end of the log, with no frame
    assert "RuntimeError: boom" in log and 'File "' not in log
    assert at.title[0].value == "Tune"  # the page keeps working


def test_a_sweep_from_the_page_fills_its_grid(teacher, runs):
    at = _fill(_page(), teacher)
    at.text_input(key="tune_grid_beta").set_value("1, 8")
    at = _click(at, "Launch sweep")
    assert at.success[0].value.endswith(": 2 trials.")
    _poll(at, lambda at: at.dataframe and (_table(at)["state"] == "done").sum() == 2, timeout=150)
    at.run()
    assert at.selectbox(key="tune_hx").value == "beta"
    assert at.get("plotly_chart")


def test_open_a_finished_run_in_the_explorer(teacher, runs):
    at = _click(_fill(_page(), teacher), "Launch run")
    _poll(at, lambda at: at.dataframe and (_table(at)["state"] == "done").all())
    (run,) = list_runs(runs)
    at = _click(at, "Open in explorer")
    assert not at.exception
    bundle = at.query_params["bundle"]
    bundle = bundle[0] if isinstance(bundle, list) else bundle
    assert bundle == f"path:runs/{run.id}/bundle"  # the explorer opened the run's bundle ...
    assert any(run.id in t.value for t in at.sidebar.text) and not at.sidebar.error
    assert at.title[0].value != "Tune"  # ... on another page


def test_the_form_becomes_a_run_config_and_a_checked_sweep_grid():
    from cakd_viz.app import tune_form
    from cakd_viz.runs import RunConfig

    form: dict = {}
    tune_form.start(form)  # the first preset: top-k CAKD, validation 10%
    tune_form.prepare(form)
    config = RunConfig.from_dict(tune_form.run_config(form)).validated()
    assert config.loss.name == "cakd" and config.loss.grouping == "topk:5" and config.val_split == 0.1
    form |= {"tune_grid_beta": "1, 8", "tune_grid_k": "3", "tune_grid_warmup_schedule": "epoch, step"}
    assert tune_form.sweep_grid(form) == {"beta": [1.0, 8.0], "warmup_schedule": ["epoch", "step"], "k": [3]}
    bad = {
        "tune_grid_beta": ("1, x", "sweep values for β: `x` is not a finite number >= 0"),
        "tune_grid_k": ("0", "sweep values for K (top-k): `0` is not a whole number >= 1"),
        "tune_grid_seed": ("1.5", "sweep values for seed: `1.5` is not a whole number >= 0"),
        "tune_grid_warmup_schedule": (
            "linear",
            "sweep values for warm-up schedule: `linear` is not one of epoch, step",
        ),
    }
    for field, (text, message) in bad.items():
        with pytest.raises(ValueError) as err:
            tune_form.sweep_grid(form | {field: text})
        assert str(err.value) == message
    form["tune_lossname"] = "kd"  # another loss: CAKD's sweep fields are not its own, and are not read
    with pytest.raises(ValueError, match="a sweep needs values to try"):
        tune_form.sweep_grid({k: v for k, v in form.items() if k != "tune_grid_warmup_schedule"})
    assert "alpha" not in RunConfig.from_dict(tune_form.run_config(form)).loss.settings


def test_a_sweep_field_of_commas_only_holds_no_values():
    from cakd_viz.app import tune_form

    form: dict = {}
    tune_form.start(form)
    tune_form.prepare(form)
    with pytest.raises(ValueError, match="a sweep needs values to try"):
        tune_form.sweep_grid(form | {"tune_grid_seed": " , ,"})
    assert tune_form.sweep_grid(form | {"tune_grid_seed": ",", "tune_grid_k": "3,"}) == {"k": [3]}


def test_open_in_explorer_names_the_runs_bundle_in_its_public_form(tmp_path, monkeypatch):
    """The Overview is opened with the bundle's data-root form ("path:runs/ID/bundle"), never its absolute
    server path: that goes into the browser's address, and a sidebar line repeats it if it cannot open."""
    from fake_runs import write_run

    from cakd_viz.app import config as app_config
    from cakd_viz.app import run_actions, state
    from cakd_viz.runs import read_run, store

    runs = tmp_path / "runs"
    runs.mkdir()
    monkeypatch.setenv(app_config.DATA_ROOT_ENV, str(runs))
    monkeypatch.setenv(store.RUNS_DIR_ENV, str(runs))
    run = read_run(write_run(runs, "20260101-000000-kd-aaaa"))
    asked = []
    monkeypatch.setattr(state, "goto_overview", lambda source, **kwargs: asked.append(source))
    run_actions.open_in_explorer(run)
    assert asked == [f"path:runs/20260101-000000-kd-aaaa/{run.bundle_path.name}"]
