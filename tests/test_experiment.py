"""scripts/experiment.py: its statistics, its plan, its resumable stages, and the README's copy of its table."""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "results" / "experiment"


def _script():
    spec = importlib.util.spec_from_file_location("experiment_script", REPO / "scripts" / "experiment.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


exp = _script()

# made-up accuracies (%) of two methods over six seeds
A = [81.2, 83.4, 82.0, 80.9, 84.1, 82.7]
B = [80.1, 82.9, 82.2, 79.8, 82.6, 81.9]


def test_summary_mean_sd_and_interval():
    s = exp.summarize(A)
    assert s["n"] == 6 and s["mean"] == pytest.approx(sum(A) / 6)
    assert s["sd"] == pytest.approx(math.sqrt(sum((a - s["mean"]) ** 2 for a in A) / 5))
    lo, hi = stats.t.interval(0.95, 5, loc=np.mean(A), scale=stats.sem(A))
    assert (s["ci_low"], s["ci_high"]) == pytest.approx((lo, hi))


def test_paired_comparison_is_scipys_paired_t_test():
    c = exp.paired(A, B)
    d = np.subtract(A, B)
    t = d.mean() / (d.std(ddof=1) / math.sqrt(len(d)))  # the paired t statistic by hand
    assert c["t"] == pytest.approx(t) and c["mean_diff"] == pytest.approx(d.mean())
    assert c["p"] == pytest.approx(2 * stats.t.sf(abs(t), len(d) - 1))
    assert c["p"] == pytest.approx(stats.ttest_rel(A, B).pvalue)
    lo, hi = stats.t.interval(0.95, len(d) - 1, loc=d.mean(), scale=stats.sem(d))
    assert (c["ci_low"], c["ci_high"]) == pytest.approx((lo, hi))
    # the p-value does not depend on the order of the pair; an unpaired test would see less
    assert exp.paired(B, A)["p"] == pytest.approx(c["p"]) and c["p"] < stats.ttest_ind(A, B).pvalue
    same = exp.paired(A, [a - 1.0 for a in A])  # every difference equal: no variance to test with
    assert math.isnan(same["p"]) and same["mean_diff"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="two equal-length samples"):
        exp.paired(A, B[:3])


def test_grid_points_cross_the_grid_with_the_cases():
    method = {
        "grid": {"grouping": ["target", "topk:3"]},
        "cases": [{"alpha": 1, "beta": 8}, {"alpha": 4, "beta": 2}],
    }
    assert exp.grid_points(method) == [
        {"grouping": "target", "alpha": 1, "beta": 8},
        {"grouping": "target", "alpha": 4, "beta": 2},
        {"grouping": "topk:3", "alpha": 1, "beta": 8},
        {"grouping": "topk:3", "alpha": 4, "beta": 2},
    ]
    assert exp.grid_points({"grid": {"beta": [1, 2], "temperature": [2, 4]}})[1] == {
        "beta": 1,
        "temperature": 4,
    }
    assert exp.grid_points({"loss": {"name": "ce"}}) == []  # no grid: nothing to select


def test_holm_adjustment():
    # by hand: sorted p 0.01, 0.03, 0.04 are multiplied by 3, 2, 1 and made non-decreasing:
    # 0.03, max(0.03, 0.06) = 0.06, max(0.06, 0.04) = 0.06
    assert exp.holm([0.04, 0.01, 0.03]) == pytest.approx([0.06, 0.03, 0.06])
    assert exp.holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])  # capped at 1
    adjusted = exp.holm([0.02, math.nan, 0.04])  # NaN is not a test: a family of two
    assert (
        adjusted[0] == pytest.approx(0.04) and math.isnan(adjusted[1]) and adjusted[2] == pytest.approx(0.04)
    )


def test_the_plan_gives_every_method_the_same_budget_and_equal_grids():
    from cakd_viz.runs.config import RunConfig, loss_parameters

    plan = json.loads((RESULTS / "plan.json").read_text())
    methods = plan["methods"]
    # a method may set only its loss and its grid: budget, optimiser, schedule and clipping come from base
    assert all(set(m) <= {"loss", "grid", "cases", "from"} for m in methods.values())
    for name in methods:  # a method varies only settings its own loss takes
        takes = {p.name for p in loss_parameters(exp.method_loss(plan, name, {})["name"])}
        assert all(set(p) <= takes for p in exp.grid_points(methods[name]))
    plain = [n for n, m in methods.items() if not exp.variant_of(m)]
    sizes = {name: len(exp.grid_points(methods[name])) for name in plain if exp.grid_points(methods[name])}
    assert set(sizes) == {"KD", "DKD", "CAKD"} and len(set(sizes.values())) == 1
    varied = {name: set().union(*exp.grid_points(methods[name])) for name in sizes}
    assert varied == {
        "KD": {"temperature"},
        "DKD": {"beta", "temperature"},
        "CAKD": {"grouping", "alpha", "beta"},
    }
    groupings = {p["grouping"] for p in exp.grid_points(methods["CAKD"])}
    assert groupings == {"target", "topk:3", "topk:5", "topk:10"}
    assert methods["KD"]["loss"].get("warmup", 0) == 0  # KD's recipe has no warm-up
    # each distillation method has its LS variant: the same loss with standardized logits, T searched again
    variants = {n: m for n, m in methods.items() if exp.variant_of(m)}
    assert {m["from"]: n for n, m in variants.items()} == {
        "KD": "KD + LS",
        "DKD": "DKD + LS",
        "CAKD": "CAKD + LS",
    }
    assert all(m["loss"] == {"standardize": True} for m in variants.values())
    assert all(set().union(*exp.grid_points(m)) == {"temperature"} for m in variants.values())
    assert len({len(exp.grid_points(m)) for m in variants.values()}) == 1
    assert all([n, m["from"]] in plan["compare"] for n, m in variants.items())  # tested against plain
    assert len(plan["seeds"]) >= 5 and plan["selection_seed"] not in plan["seeds"]
    assert plan["base"]["val_split"] > 0
    trials = exp.selection_trials(plan) + exp.selection_trials(plan, {}, variants=True)
    trials += exp.final_trials(plan, {})
    for _, case in trials:  # every trial is a valid run config
        RunConfig.from_dict(exp._merge(plan["base"], case)).validate()
    assert all(not case["evaluate_test"] for _, case in exp.selection_trials(plan))
    assert all(not case["evaluate_test"] for _, case in exp.selection_trials(plan, {}, variants=True))


def test_a_variant_starts_from_its_methods_selection():
    plan = json.loads((RESULTS / "plan.json").read_text())
    selected = {"DKD": {"beta": 2.0, "temperature": 4.0}}
    trials = exp.selection_trials(plan, selected, variants=True)
    dkd_ls = [case["loss"] for name, case in trials if name == "DKD + LS"]
    assert [loss["temperature"] for loss in dkd_ls] == [1, 2, 4, 8]  # its own grid replaces the selected T
    assert all(loss["beta"] == 2.0 and loss["standardize"] is True for loss in dkd_ls)  # the rest: DKD's
    assert all(loss["name"] == "dkd" and loss["grouping"] == "target" for loss in dkd_ls)
    final = dict(exp.final_trials(plan, selected | {"DKD + LS": {"temperature": 2}}, variants=True))
    assert final["DKD + LS"]["loss"] == plan["methods"]["DKD"]["loss"] | {
        "beta": 2.0,
        "temperature": 2,
        "standardize": True,
    }
    assert set(final) == {"KD + LS", "DKD + LS", "CAKD + LS"}


def test_the_readme_embeds_the_generated_table():
    table = (RESULTS / "results.md").read_text()
    assert exp.readme_table(REPO / "README.md") == table
    # and the table is what the script makes of its own results file
    result = json.loads((RESULTS / "results.json").read_text())
    assert exp.markdown(result) == table


def test_the_results_file_agrees_with_its_trials():
    result = json.loads((RESULTS / "results.json").read_text())
    plan = result["plan"]
    for name, m in result["methods"].items():
        finals = sorted((r for r in result["final"] if r["method"] == name), key=lambda r: r["seed"])
        assert [r["seed"] for r in finals] == plan["seeds"] == m["seeds"]
        assert m["test"]["mean"] == pytest.approx(100 * np.mean([r["test_acc"] for r in finals]))
        assert all(r["finite_loss"] for r in finals)
    selection = result["selection"]
    assert all(r["test_acc"] is None for r in selection)  # never evaluated on the test split
    for name, point in result["selected"].items():
        rows = [r for r in selection if r["method"] == name]
        best = max(r["val_acc"] for r in rows)
        chosen = next(r for r in rows if r["val_acc"] == best)
        assert all(chosen["loss"][k] == v for k, v in point.items())


TINY_PLAN = {
    "name": "tiny",
    "title": "digits",
    "base": {
        "data": "sample:digits",
        "teacher": "sample:digits/teacher",
        "student": "mlp",
        "epochs": 1,
        "batch_size": 64,
        "lr": 0.05,
        "val_split": 0.2,
        "device": "cpu",
        "threads": 1,
    },
    "methods": {
        "CE only": {"loss": {"name": "ce"}},
        "KD": {"loss": {"name": "kd"}, "grid": {"temperature": [2, 4]}},
        "KD + LS": {"from": "KD", "loss": {"standardize": True}, "grid": {"temperature": [1, 2]}},
    },
    "selection_seed": 0,
    "seeds": [1, 2],
    "compare": [["KD", "CE only"], ["KD + LS", "KD"]],
}


def test_the_script_runs_a_plan_through_the_sweep_engine_and_resumes(tmp_path):
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps(TINY_PLAN))
    args = [
        "--plan",
        str(plan),
        "--runs-dir",
        str(tmp_path / "runs"),
        "--out",
        str(tmp_path / "out"),
        "--workers",
        "2",
    ]
    cmd = [sys.executable, str(REPO / "scripts" / "experiment.py"), *args]
    first = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=300)
    assert first.returncode == 0, first.stderr
    assert "selection: 2 trials, 0 already finished, 2 to run" in first.stderr
    assert "variants' selection and final: 6 trials, 0 already finished, 6 to run" in first.stderr
    assert "variants' final: 2 trials, 0 already finished, 2 to run" in first.stderr
    result = json.loads((tmp_path / "out" / "results.json").read_text())
    assert first.stdout.strip() == (tmp_path / "out" / "results.md").read_text().strip()
    assert [r["method"] for r in result["final"]] == ["CE only"] * 2 + ["KD"] * 2 + ["KD + LS"] * 2
    assert all(r["test_acc"] is not None for r in result["final"]) and result["run"]["trials"] == 10
    # the variant trained KD's selected loss with standardized logits, at the T its own selection chose
    kd_t = result["selected"]["KD"]["temperature"]
    (ls,) = {json.dumps(r["loss"], sort_keys=True) for r in result["final"] if r["method"] == "KD + LS"}
    assert (
        json.loads(ls)["standardize"] is True
        and json.loads(ls)["temperature"] == (result["selected"]["KD + LS"]["temperature"])
    )
    assert all(
        not r["loss"].get("standardize") and r["loss"]["temperature"] == kd_t for r in result["final"][2:4]
    )
    assert "KD + LS take their method's selected configuration with the logits standardized" in first.stdout
    assert "| KD + LS − KD |" in first.stdout
    sweeps = [p for p in (tmp_path / "runs").iterdir() if (p / "sweep.json").is_file()]
    assert len(sweeps) == 3  # every stage ran through the sweep engine
    # a second call finds every trial finished and runs nothing
    again = subprocess.run([*cmd, "--report-only"], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert again.returncode == 0, again.stderr
    assert "selection: 2 trials, 2 already finished, 0 to run" in again.stderr
    assert json.loads((tmp_path / "out" / "results.json").read_text())["final"] == result["final"]
