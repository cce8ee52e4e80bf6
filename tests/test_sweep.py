"""Sweeps: expansion of grids, cases and random draws; the local engine; the Ray engine; cancelling."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from runs_support import make_teacher, tiny_config, wait_for, write_json

from cakd_viz.runs import RunConfig, list_runs, read_sweep, store
from cakd_viz.runs.engine import cancel_sweep, launch_sweep
from cakd_viz.runs.sweep import SweepConfig, create_sweep, expand

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def teacher(tmp_path_factory) -> Path:
    return make_teacher(tmp_path_factory.mktemp("teacher"))


def _sweep(teacher, **kw) -> SweepConfig:
    return SweepConfig.from_dict({"base": tiny_config(teacher), **kw})


def _layout(run_dir: Path) -> set[str]:
    """The files of a trial folder that are the same whatever the engine (not Ray's own records)."""
    return {p.name for p in run_dir.iterdir() if not p.name.startswith(".")}


def test_a_grid_expands_to_every_combination_in_order(teacher):
    trials = expand(_sweep(teacher, grid={"beta": [1, 8], "k": [2, 5], "seed": [0, 1]}))
    assert len(trials) == 8
    assert trials[0].params == {"beta": 1, "k": 2, "seed": 0} and trials[-1].params == {
        "beta": 8,
        "k": 5,
        "seed": 1,
    }
    assert (trials[3].loss.beta, trials[3].loss.grouping, trials[3].seed) == (1, "topk:5", 1)


def test_cases_cross_the_grid_and_random_draws_are_seeded(teacher):
    cases = [{"name": "kd", "loss": {"name": "kd"}}, {"name": "cakd_target", "loss": {"grouping": "target"}}]
    sweep = _sweep(teacher, cases=cases, grid={"seed": [0, 1, 2]})
    trials = expand(sweep)
    assert [t.name for t in trials] == ["kd"] * 3 + ["cakd_target"] * 3
    assert trials[3].loss.name == "cakd" and trials[3].loss.grouping == "target" and trials[5].seed == 2
    rand = _sweep(teacher, random={"alpha": {"uniform": [0, 2]}, "temperature": [2, 4]}, num_samples=5)
    a, b = expand(rand), expand(rand)
    assert [t.params for t in a] == [t.params for t in b] and len(a) == 5
    assert all(0 <= t.loss.alpha <= 2 and t.loss.temperature in (2, 4) for t in a)


def test_a_loss_named_alone_is_its_section_in_a_case_and_in_the_base(teacher):
    # "loss": "kd" is short for {"name": "kd"}: a case's settings keep the base's loss, and a case
    # naming another loss alone keeps the base's settings that loss takes, as the long form does
    (kd,) = expand(
        _sweep(teacher, base=tiny_config(teacher) | {"loss": "kd"}, cases=[{"loss": {"temperature": 2}}])
    )
    assert (kd.loss.name, kd.loss.temperature) == ("kd", 2)
    base = tiny_config(teacher) | {"loss": {"name": "cakd", "temperature": 2, "beta": 4}}
    short, long = (expand(_sweep(teacher, base=base, cases=[{"loss": c}]))[0] for c in ("kd", {"name": "kd"}))
    assert short.loss.to_dict() == long.loss.to_dict() and (short.loss.name, short.loss.temperature) == (
        "kd",
        2,
    )


def test_loguniform_draws_of_small_values_stay_in_their_range(teacher):
    sweep = _sweep(teacher, random={"lr": {"loguniform": [1e-8, 1e-6]}}, num_samples=20)
    lrs = [t.lr for t in expand(sweep)]
    assert all(1e-8 <= lr <= 1e-6 for lr in lrs) and len(set(lrs)) == 20
    # draws of 0.1 and more keep their 6 decimals (as sweeps made before drew them): 12.345679, not 12.3457
    sweep = _sweep(teacher, random={"lr": {"loguniform": [10.0, 90.0]}}, num_samples=20)
    lrs = [t.lr for t in expand(sweep)]
    assert all(lr == round(lr, 6) for lr in lrs) and max(len(repr(lr).split(".")[1]) for lr in lrs) == 6


def test_uniform_draws_over_a_narrow_range_stay_in_it(teacher):
    sweep = _sweep(teacher, random={"lr": {"uniform": [1e-7, 3e-7]}}, num_samples=20)
    lrs = [t.lr for t in expand(sweep)]
    assert all(1e-7 <= lr <= 3e-7 for lr in lrs) and len(set(lrs)) == 20
    # a range of 0.1 or more keeps its 6 decimals (as sweeps made before drew them)
    sweep = _sweep(teacher, random={"lr": {"uniform": [0.01, 0.5]}}, num_samples=20)
    assert all(t.lr == round(t.lr, 6) for t in expand(sweep))


def test_a_sweep_that_fails_while_its_folders_are_made_leaves_none_behind(teacher, tmp_path, monkeypatch):
    from cakd_viz.runs import sweep as sweep_module

    made, create_run = [], store.create_run

    def full_disk(*args, **kwargs):  # the second trial's folder cannot be written
        if made:
            raise OSError(28, "No space left on device")
        made.append(create_run(*args, **kwargs))
        return made[-1]

    monkeypatch.setattr(sweep_module.store, "create_run", full_disk)
    with pytest.raises(OSError, match="No space left"):
        sweep_module.create_sweep(_sweep(teacher, grid={"beta": [1, 2]}), tmp_path)
    assert len(made) == 1 and list(tmp_path.iterdir()) == []


def test_a_sweep_whose_process_never_started_reads_failed_after_the_grace(teacher, tmp_path, monkeypatch):
    """The app creates the folder, then starts its process: a failed start (fork refused) leaves a queued
    sweep without a pid, which must not stay queued for ever (a run in that case reads failed too)."""

    def no_fork(*args, **kwargs):
        raise OSError(11, "Resource temporarily unavailable")

    monkeypatch.setattr("cakd_viz.runs.launcher.subprocess.Popen", no_fork)
    with pytest.raises(OSError, match="Resource temporarily unavailable"):
        launch_sweep(_sweep(teacher, grid={"beta": [1, 2]}), tmp_path)
    (sweep_dir,) = [p for p in tmp_path.iterdir() if (p / store.SWEEP).exists()]
    assert read_sweep(sweep_dir).state == "queued"  # its process may still be starting
    status = store.read_json(sweep_dir / store.STATUS)
    write_json(sweep_dir / store.STATUS, status | {"created": status["created"] - 120})
    info = read_sweep(sweep_dir)
    assert (info.state, info.error) == ("failed", "the sweep's process never started (no pid was recorded)")


def test_every_trial_folder_holds_a_config_its_run_accepts(teacher, tmp_path):
    # cut at 80 characters, this trial's made-up name ended in '.', a student name the bundle refuses:
    # the trial trained every epoch and failed writing bundle/ (now its config is refused before)
    grid = {"weight_decay": [0.0005], "clip_grad_norm": [0.5], "temperature": [4.5], "alpha": [1.5]}
    grid |= {"beta": [8.5], "ce_weight": [0.5], "lr": [0.05]}
    _, dirs = create_sweep(_sweep(teacher, grid=grid), tmp_path)
    for d in dirs:
        config = RunConfig.from_dict(store.read_json(d / store.CONFIG)).validated()
        assert (
            config.name == "weight_decay0.0005_clip_grad_norm0.5_temperature4.5_alpha1.5_beta8.5_ce_weight0"
        )


def test_warmup_schedule_and_the_validation_split_can_be_swept(teacher):
    sweep = _sweep(teacher, grid={"warmup_schedule": ["epoch", "step"], "val_split": [0.1, 0.2]})
    trials = expand(sweep)
    assert [(t.loss.warmup_schedule, t.val_split) for t in trials] == [
        ("epoch", 0.1),
        ("epoch", 0.2),
        ("step", 0.1),
        ("step", 0.2),
    ]
    assert all(t.val_seed == 0 for t in trials)  # one validation split for every trial of a sweep
    with pytest.raises(ValueError, match=r"trial 0 \(warmup_schedule=linear\): loss.warmup_schedule must be"):
        expand(_sweep(teacher, grid={"warmup_schedule": ["linear"]}))


def test_logit_standardization_can_be_swept(teacher):
    trials = expand(_sweep(teacher, grid={"standardize": [False, True]}))
    assert [(t.loss.standardize, t.loss.summary().split(" (")[0]) for t in trials] == [
        (False, "CAKD topk:3"),
        (True, "CAKD + LS topk:3"),
    ]
    with pytest.raises(
        ValueError, match=r"trial 0 \(standardize=1\): loss.standardize must be true or false"
    ):
        expand(_sweep(teacher, grid={"standardize": [1]}))


@pytest.mark.parametrize(
    ("sweep", "message"),
    [
        (
            {"grid": {"gamma": [1]}},
            r"grid key 'gamma' is not a setting a sweep can vary; use one of alpha, beta",
        ),
        ({"grid": {"beta": []}}, r"grid\['beta'\] must be a non-empty list of values"),
        ({"grid": {"beta": [-1]}}, r"trial 0 \(beta=-1\): loss.beta must be a finite number >= 0"),
        ({"grid": {"k": [3]}, "base_loss": {"grouping": "target"}}, r"k needs one of topk:K, topk\+target:K"),
        # a k that is no number reached the grouping's spec: format-code errors, a raw TypeError, True as 1
        ({"grid": {"k": ["x"]}}, r"k must be a whole number \(the K of the grouping\), got 'x'"),
        ({"grid": {"k": [[1]]}}, r"k must be a whole number \(the K of the grouping\), got \[1\]"),
        ({"grid": {"k": [True]}}, r"k must be a whole number \(the K of the grouping\), got True"),
        (
            {"random": {"alpha": {"uniform": [2, 1]}}, "num_samples": 2},
            r"random\['alpha'\] must be a list of choices",
        ),
        ({"random": {"alpha": [1, 2]}}, r"random is set but num_samples is 0"),
        # infinite bounds, or a range wider than a float, reached numpy as a raw OverflowError
        (
            {"random": {"lr": {"loguniform": [1e-3, float("inf")]}}, "num_samples": 2},
            r"random\['lr'\] must be a list of choices .* with finite lo < hi",
        ),
        (
            {"random": {"alpha": {"uniform": [-1e308, 1e308]}}, "num_samples": 2},
            r"random\['alpha'\] must be a list of choices",
        ),
        (  # an int beyond float's range passed 'hi - lo < inf' and failed the draw with OverflowError
            {"random": {"alpha": {"uniform": [0, 10**400]}}, "num_samples": 2},
            r"random\['alpha'\] must be a list of choices .* with finite lo < hi",
        ),
        (
            {"random": {"alpha": {"loguniform": [1, 10**400]}}, "num_samples": 2},
            r"random\['alpha'\] must be a list of choices .* with finite lo < hi",
        ),
        (
            {"random": {"seed": {"randint": [0.5, 2.5]}}, "num_samples": 2},
            r"random\['seed'\] must be a list of choices",
        ),
        (  # JSON's true and false were taken as the bounds 1 and 0
            {"random": {"seed": {"randint": [False, True]}}, "num_samples": 2},
            r"random\['seed'\] must be a list of choices",
        ),
        (  # numpy's raw 'high is out of bounds for int64', naming no key
            {"random": {"seed": {"randint": [0, 10**30]}}, "num_samples": 2},
            r"random\['seed'\] must be a list of choices .* \(64-bit whole numbers\)",
        ),
        ({"engine": "dask"}, r"engine must be one of local, ray, got 'dask'"),
        ({"name": 5}, r"name must be a JSON string"),  # it reached the folder name as a raw TypeError
        ({"ray": []}, r"ray must be an object such as \{'num_cpus': 2\}, got \[\]"),  # was taken as {}
        ({"ray": False}, r"ray must be an object such as \{'num_cpus': 2\}, got False"),
        ({"ray": {"num_cpus": True}}, r"ray.num_cpus must be a whole number >= 1, got True"),
        ({"ray": {"address": 5}}, r"ray.address must be a cluster address such as \"auto\", got 5"),
        ({"ray": {"address": " "}}, r"ray.address must be a cluster address such as \"auto\", got ' '"),
        ({"ray": {"gpus_per_trial": "1"}}, r"ray.gpus_per_trial must be a finite number >= 0, got '1'"),
        ({"ray": {"gpus_per_trial": -0.5}}, r"ray.gpus_per_trial must be a finite number >= 0, got -0.5"),
        (
            {"ray": {"gpus_per_trial": float("inf")}},
            r"ray.gpus_per_trial must be a finite number >= 0, got inf",
        ),
        (
            {"grid": {"beta": list(range(3000))}},
            r"the sweep has 3,000 trials, more than 2,000; narrow the grid",
        ),
        ({"colour": 1}, r"unknown key\(s\) 'colour' in sweep config"),
    ],
)
def test_invalid_sweeps_are_refused_precisely(teacher, sweep, message):
    base_loss = sweep.pop("base_loss", {})
    data = {"base": tiny_config(teacher, loss=base_loss), **sweep}
    with pytest.raises(ValueError, match=message):
        SweepConfig.from_dict(data).validate()


def test_a_local_sweep_runs_every_trial_as_a_run_folder(teacher, tmp_path):
    config = write_json(tmp_path / "sweep.json", {"base": tiny_config(teacher), "grid": {"beta": [1, 8]}})
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "cakd_viz",
            "sweep",
            "--config",
            str(config),
            "--runs-dir",
            str(tmp_path / "runs"),
            "-q",
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    (sweep_dir,) = [p for p in (tmp_path / "runs").iterdir() if (p / store.SWEEP).exists()]
    info = read_sweep(sweep_dir)
    assert info.state == "done" and [t.state for t in info.trials] == ["done", "done"]
    assert [t.config["params"] for t in info.trials] == [{"beta": 1}, {"beta": 8}]
    assert {t.id for t in list_runs(tmp_path / "runs", sweep=info.id)} == {t.id for t in info.trials}
    assert {"config.json", "status.json", "metrics.jsonl", "summary.json", "bundle"} <= _layout(
        info.trials[0].path
    )


def test_the_ray_engine_writes_the_same_layout_and_numbers(teacher, tmp_path):
    from cakd_viz.runs import RunConfig, read_run, run_config

    sweep = {"base": tiny_config(teacher), "grid": {"beta": [1, 8]}, "ray": {"num_cpus": 2}}
    config = write_json(tmp_path / "sweep.json", sweep)
    cmd = ["sweep", "--config", str(config), "--runs-dir", str(tmp_path / "ray"), "--engine", "ray", "-q"]
    out = subprocess.run(
        [sys.executable, "-m", "cakd_viz", *cmd], capture_output=True, text=True, cwd=REPO, timeout=600
    )
    assert out.returncode == 0, out.stderr[-3000:]
    (sweep_dir,) = [p for p in (tmp_path / "ray").iterdir() if (p / store.SWEEP).exists()]
    ray = read_sweep(sweep_dir)
    assert ray.state == "done" and [t.state for t in ray.trials] == ["done", "done"]
    assert (
        ray.status["engine"] == "ray" and (ray.path / "ray").is_dir()
    )  # Ray's records stay in the sweep folder
    for trial in ray.trials:  # the same trial run by the local runner: same files, same numbers
        local = read_run(run_config(RunConfig.from_dict(trial.config), tmp_path / "local", max_concurrent=0))
        assert _layout(local.path) == _layout(trial.path)
        assert local.summary["last_val_acc"] == trial.summary["last_val_acc"]


def test_cancelling_a_sweep_stops_its_trials(teacher, tmp_path):
    sweep = SweepConfig.from_dict({"base": tiny_config(teacher, epochs=500), "grid": {"beta": [1, 2, 4]}})
    sweep.max_concurrent = 1
    sweep_dir = launch_sweep(sweep, tmp_path / "runs")
    wait_for(lambda: read_sweep(sweep_dir).counts().get("running"), 90, "a trial to run")
    assert cancel_sweep(sweep_dir)
    info = read_sweep(sweep_dir)
    assert info.state == "cancelled", info.status
    assert [t.state for t in info.trials] == ["cancelled"] * 3, [(t.state, t.error) for t in info.trials]
    assert not cancel_sweep(sweep_dir)


def test_sweep_figures_average_cells_and_keep_the_grid_order():
    import pandas as pd

    from cakd_viz.figures.runs import curves_figure, sweep_heatmap

    trials = pd.DataFrame(
        {
            "beta": [8, 8, 1, 1, 2, 2],
            "k": [5, 3, 5, 3, 5, 3],
            "seed": 0,
            "best_acc": [0.9, 0.7, 0.5, 0.3, None, 0.4],
        }
    )
    heat = sweep_heatmap(trials, "beta", "k").data[0]
    assert list(heat.x) == ["1", "2", "8"] and list(heat.y) == ["3", "5"]
    assert heat.z[1][0] == pytest.approx(50.0) and heat.z[1][1] != heat.z[1][1]  # k=5, beta=2 never finished
    dots = sweep_heatmap(trials, "beta").data[0]
    assert list(dots.y) == pytest.approx([40.0, 40.0, 80.0]) and list(dots.error_y.array)[2] == pytest.approx(
        100 * pd.Series([0.9, 0.7]).std()
    )
    cases = pd.DataFrame({"case": ["kd", "ce", "kd"], "best_acc": [0.8, 0.7, 0.9]})
    assert list(sweep_heatmap(cases, "case").data[0].x) == ["kd", "ce"]  # names keep the sweep's order
    curves = curves_figure({"a": pd.DataFrame({"epoch": [1, 2], "val_acc": [0.5, 0.6]}), "b": pd.DataFrame()})
    assert len(curves.data) == 1 and list(curves.data[0].y) == pytest.approx([50.0, 60.0])
