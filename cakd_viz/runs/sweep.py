"""Sweeps: many runs that differ in a few values (weights, temperature, K, seed, loss), as a grid or at random.

A sweep config (JSON) names a base run config and what varies:

    {"base": {"data": "sample:glyphs", "loss": {"name": "cakd", "grouping": "topk:5"}, "epochs": 5},
     "grid": {"beta": [1, 2, 4, 8], "k": [3, 5]},           # every combination
     "cases": [{"loss": {"name": "kd"}}, {}],              # partial configs, each crossed with the grid
     "random": {"alpha": {"uniform": [0, 2]}, "temperature": [2, 4]}, "num_samples": 4,
     "engine": "local", "max_concurrent": 0}

Keys of ``grid`` and ``random``: a parameter some registered loss declares as sweepable (``w_b``,
``alpha``, ``beta``, ``temperature``, ``warmup``, ``grouping``, ...; ``cakd_viz.losses.params``) or a
setting of the run's loss section (``ce_weight``), dotted ``loss.name``, ``k`` (the K of a grouping
rule that takes one: ``topk:K``, ``topk+target:K``, ...), or a run field (``seed``, ``lr``, ``epochs``, ``batch_size``, ...).
Each trial is validated against its own loss: a key its loss does not take is refused, naming it. A
case that names another loss starts that loss's section afresh, keeping only the base's settings
that loss takes. Random draws are made here, with ``search_seed``, so both engines run exactly the
same trials.

Every trial is an ordinary run folder ``RUNS_DIR/SWEEP_ID-NNN`` whose config records ``sweep`` and
``params`` (the values set for it); the sweep's own folder ``RUNS_DIR/SWEEP_ID`` holds ``sweep.json``
(the config and trial ids) and ``status.json``. The engines (``local_engine``, ``ray_engine``) only
execute the prepared trial folders.
"""

from __future__ import annotations

import itertools
import json
import math
import re
import shutil
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np

from cakd_viz.grouping import DEFAULT_GROUPING, RULES, parse_grouping
from cakd_viz.runs import store
from cakd_viz.runs.config import LossConfig, RunConfig, check_keys, loss_names, loss_parameters

ENGINES = ("local", "ray")
_JSON_TYPES = {dict: "object", list: "list", str: "string"}
MAX_TRIALS = 2000
_RUN_KEYS = {f.name for f in fields(RunConfig)} - {"loss", "sweep", "params"}


def sweepable_loss_keys() -> set[str]:
    """Loss-section keys a sweep may vary: every setting declared sweepable for some loss, as the
    registry is now."""
    return {p.name for n in loss_names() for p in loss_parameters(n) if p.sweep}


@dataclass
class RayOptions:
    """How the Ray engine reaches Ray; the app never needs Ray."""

    address: str | None = None  # an existing cluster ("auto", "ray://HOST:10001"); None: start Ray here
    num_cpus: int | None = None  # CPUs of a Ray started here (default: all of this machine's)
    gpus_per_trial: float = 0.0  # GPUs each trial asks Ray for


@dataclass
class SweepConfig:
    """A base run config and what varies between its trials."""

    base: dict = field(default_factory=dict)  # the run config every trial starts from (JSON form)
    grid: dict = field(default_factory=dict)  # KEY -> list of values: every combination
    cases: list = field(default_factory=list)  # partial run configs, each crossed with the grid
    # KEY -> {"uniform"|"loguniform": [lo, hi]} or a list of choices
    random: dict = field(default_factory=dict)
    num_samples: int = 0  # random draws from `random`
    search_seed: int = 0  # seed of the random draws
    engine: str = "local"  # "local" (processes on this machine) | "ray" (Ray Tune)
    max_concurrent: int = 0  # trials at once; 0: this machine's cores / threads per trial (Ray: its CPUs)
    name: str = ""  # a label for the sweep
    ray: RayOptions = field(default_factory=RayOptions)

    @classmethod
    def from_dict(cls, data: dict) -> SweepConfig:
        if not isinstance(data, dict):
            raise ValueError(f"a sweep config is a JSON object, got {type(data).__name__}")
        check_keys(data, cls, "sweep config")
        ray = data.get("ray", {})  # null is no settings; [], 0 or false is a wrong type, refused below
        ray = {} if ray is None else ray
        if not isinstance(ray, dict):
            raise ValueError(f"ray must be an object such as {{'num_cpus': 2}}, got {ray!r}")
        check_keys(ray, RayOptions, "ray")
        return cls(**{k: v for k, v in data.items() if k != "ray"}, ray=RayOptions(**ray))

    def validate(self) -> list[RunConfig]:
        """Check the sweep's own fields and every trial's run config; ValueError naming what is wrong.
        Returns the trials (``expand``), each validated."""
        for key, kind in (("base", dict), ("grid", dict), ("cases", list), ("random", dict), ("name", str)):
            if not isinstance(getattr(self, key), kind):
                raise ValueError(f"{key} must be a JSON {_JSON_TYPES[kind]}")
        if self.engine not in ENGINES:
            raise ValueError(f"engine must be one of {', '.join(ENGINES)}, got {self.engine!r}")
        for key in ("num_samples", "search_seed", "max_concurrent"):
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"{key} must be a whole number >= 0, got {value!r}")
        if self.random and self.num_samples < 1:
            raise ValueError("random is set but num_samples is 0: say how many random draws to make")
        ray = self.ray
        if ray.num_cpus is not None and (
            not isinstance(ray.num_cpus, int) or isinstance(ray.num_cpus, bool) or ray.num_cpus < 1
        ):
            raise ValueError(f"ray.num_cpus must be a whole number >= 1, got {ray.num_cpus!r}")
        if ray.address is not None and (not isinstance(ray.address, str) or not ray.address.strip()):
            raise ValueError(f'ray.address must be a cluster address such as "auto", got {ray.address!r}')
        gpus = ray.gpus_per_trial
        if not isinstance(gpus, int | float) or isinstance(gpus, bool) or not 0 <= gpus < math.inf:
            raise ValueError(f"ray.gpus_per_trial must be a finite number >= 0, got {gpus!r}")
        for key, values in self.grid.items():
            _check_key(key, "grid")
            if not isinstance(values, list) or not values:
                raise ValueError(f"grid[{key!r}] must be a non-empty list of values, got {values!r}")
        for key, spec in self.random.items():
            _check_key(key, "random")
            _check_distribution(key, spec)
        for i, case in enumerate(self.cases):
            if not isinstance(case, dict):
                raise ValueError(f"cases[{i}] must be an object (a partial run config), got {case!r}")
        return expand(self)


def trial_count(sweep: SweepConfig) -> int:
    """How many trials the sweep makes (cases x grid combinations x random draws), from the fields'
    lengths alone: nothing is expanded, so a grid of 1e12 combinations costs nothing to count."""
    count = max(1, len(sweep.cases))
    for values in sweep.grid.values():
        count *= len(values) if isinstance(values, list) else 1
    return count * (sweep.num_samples if sweep.random else 1)


def _check_key(key: str, where: str) -> None:
    short = key.removeprefix("loss.")
    loss_keys = sweepable_loss_keys() | {"name"}
    ok = key == "k" or key in _RUN_KEYS or short in loss_keys
    if not ok or key in ("sweep", "params", "name") or (key.startswith("loss.") and short not in loss_keys):
        names = sorted(loss_keys - {"name"}) + ["loss.name", "k"] + sorted(_RUN_KEYS)
        raise ValueError(
            f"{where} key {key!r} is not a setting a sweep can vary; use one of {', '.join(names)}"
        )


def _check_distribution(key: str, spec: object) -> None:
    if isinstance(spec, list) and spec:
        return
    if isinstance(spec, dict) and len(spec) == 1:
        ((kind, bounds),) = spec.items()
        if kind in ("uniform", "loguniform", "randint") and isinstance(bounds, list) and len(bounds) == 2:
            lo, hi = bounds
            if (
                all(isinstance(b, int | float) and not isinstance(b, bool) for b in (lo, hi))  # true is no 1
                # randint draws whole numbers: its bounds must be whole too (0.5 would draw 0), and
                # 64-bit integers (numpy draws no others)
                and (kind != "randint" or all(isinstance(b, int) or b.is_integer() for b in (lo, hi)))
                and (kind != "randint" or -(2**63) <= lo and hi < 2**63)
                and lo < hi
                and _span(lo, hi) < math.inf  # finite bounds, a range numpy can draw from
                and (kind != "loguniform" or lo > 0)
            ):
                return
    raise ValueError(
        f"random[{key!r}] must be a list of choices or one of {{'uniform': [lo, hi]}}, "
        f"{{'loguniform': [lo, hi]}} (lo > 0), {{'randint': [lo, hi]}} (64-bit whole numbers) with finite lo < hi; "
        f"got {spec!r}"
    )


def _span(lo: float, hi: float) -> float:
    """``hi - lo`` in floats, as numpy draws it: inf for a bound beyond float's range (JSON reads 1 and
    400 zeros as an int, which Python would subtract exactly)."""
    try:
        return float(hi) - float(lo)
    except OverflowError:
        return math.inf


def expand(sweep: SweepConfig) -> list[RunConfig]:
    """The trials, in a fixed order: cases x grid combinations x random draws, each a validated RunConfig."""
    total = trial_count(sweep)  # before anything is built: 6 fields of 100 values would be 1e12 combinations
    if total > MAX_TRIALS:
        raise ValueError(f"the sweep has {total:,} trials, more than {MAX_TRIALS:,}; narrow the grid")
    grid_keys = list(sweep.grid)
    combos = [dict(zip(grid_keys, values, strict=True)) for values in itertools.product(*sweep.grid.values())]
    draws = _draws(sweep) or [{}]
    cases = sweep.cases or [{}]
    trials = []
    for case, combo, draw in itertools.product(cases, combos, draws):
        params = _flatten(case) | combo | draw
        data = _with_case(sweep.base, case)
        for key, value in (combo | draw).items():
            _set(data, key, value)
        data["params"] = params
        try:
            trials.append(RunConfig.from_dict(data).validated())
        except ValueError as exc:
            shown = ", ".join(f"{k}={v}" for k, v in params.items()) or "the base config"
            raise ValueError(f"trial {len(trials)} ({shown}): {exc}") from None
    return trials


def _draws(sweep: SweepConfig) -> list[dict]:
    rng = np.random.default_rng(sweep.search_seed)
    out = []
    for _ in range(sweep.num_samples if sweep.random else 0):
        draw = {}
        for key, spec in sweep.random.items():
            if isinstance(spec, list):
                draw[key] = spec[int(rng.integers(len(spec)))]
                continue
            ((kind, (lo, hi)),) = spec.items()
            if kind == "randint":
                draw[key] = int(rng.integers(int(lo), int(hi) + 1))
            elif kind == "loguniform":  # 6 decimals, and 6 significant digits below 0.1 (1e-7 is no 0)
                x = float(math.exp(rng.uniform(math.log(lo), math.log(hi))))
                draw[key] = round(x, max(6, 5 - math.floor(math.log10(x))))
            else:  # 6 decimals, and 6 significant digits of a range below 0.1 (1e-7..3e-7 is no 0)
                span = float(hi) - float(lo)
                decimals = max(6, 5 - math.floor(math.log10(span))) if math.isfinite(span) else 6
                draw[key] = round(float(rng.uniform(lo, hi)), decimals)
        out.append(draw)
    return out


def _set(data: dict, key: str, value: object) -> None:
    """Put one swept value into a run config dict (``_with_case``'s: its loss is a section)."""
    loss = data.setdefault("loss", {})
    if key == "k":  # the K of the grouping's rule, for every registered rule that takes one
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"k must be a whole number (the K of the grouping), got {value!r}")
        grouping = str(loss.get("grouping", DEFAULT_GROUPING))
        rule = parse_grouping(grouping)
        if rule.symbol != "K":
            takes = ", ".join(r.form for r in RULES.values() if r.symbol == "K")
            raise ValueError(f"k is swept, but the grouping is {grouping!r}; k needs one of {takes}")
        loss["grouping"] = rule.spec(value)
    elif key.startswith("loss.") or (key in sweepable_loss_keys() and key not in _RUN_KEYS):
        loss[key.removeprefix("loss.")] = value
    else:
        data[key] = value


def _with_case(base: dict, case: dict) -> dict:
    """``base`` with ``case`` merged in, a loss named alone (``"kd"``) read as its section
    (``{"name": "kd"}``) in both; a case that names another loss keeps only the base's loss settings
    that loss takes (a KD case does not inherit a CAKD base's alpha)."""
    base, case = _loss_section(base), _loss_section(case)
    loss = base.get("loss") if isinstance(base.get("loss"), dict) else {}
    name = case["loss"].get("name") if isinstance(case.get("loss"), dict) else None
    if isinstance(name, str) and name != loss.get("name", LossConfig.name) and name in loss_names():
        takes = {p.name for p in loss_parameters(name)}
        base["loss"] = {k: v for k, v in loss.items() if k in takes}
    return _merge(base, case)


def _loss_section(config: dict) -> dict:
    """A copy of ``config`` whose loss, when named alone (``"kd"``), is its section ``{"name": "kd"}``."""
    out = json.loads(json.dumps(config))
    if isinstance(out.get("loss"), str):
        out["loss"] = {"name": out["loss"]}
    return out


def _merge(base: dict, case: dict) -> dict:
    out = json.loads(json.dumps(base))
    for key, value in case.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _flatten(case: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in case.items():
        if isinstance(value, dict):
            out |= _flatten(value, f"{prefix}{key}.")
        else:
            out[f"{prefix}{key}"] = value
    return out


# -- the sweep's folder ---------------------------------------------------------------------------------


def create_sweep(
    sweep: SweepConfig, root: str | Path | None = None, **status: object
) -> tuple[Path, list[Path]]:
    """Validate, then create the sweep folder and one queued run folder per trial; returns (sweep dir, trial dirs)."""
    trials = sweep.validate()
    root = store.runs_dir(root)
    root.mkdir(parents=True, exist_ok=True)
    sweep_id = store.new_run_id(sweep.name or f"sweep-{sweep.engine}")
    owner = status | {"owner": f"sweep {sweep_id}"}
    dirs: list[Path] = []
    tmp = root / f".{sweep_id}.partial"
    try:
        for i, trial in enumerate(trials):
            trial.sweep = sweep_id
            trial.name = trial.name or _trial_name(trial)
            dirs.append(store.create_run(root, trial.to_dict(), run_id=f"{sweep_id}-{i:03d}", **owner))
        tmp.mkdir()
        queued = {"state": "queued", "created": time.time(), "error": None}
        store.write_json(tmp / store.STATUS, queued | status)
        info = {"id": sweep_id, "config": asdict(sweep), "trials": [d.name for d in dirs]}
        store.write_json(tmp / store.SWEEP, info | {"engine": sweep.engine})
        (tmp / store.LOG).touch()
        sweep_dir = root / sweep_id
        tmp.rename(sweep_dir)  # appears complete, with sweep.json marking it as a sweep
    except BaseException:  # no trial folders of a sweep that never appeared, no partial sweep folder
        for path in [*dirs, tmp]:
            shutil.rmtree(path, ignore_errors=True)
        raise
    return sweep_dir, dirs


def _trial_name(trial: RunConfig) -> str:
    """E.g. "kd_beta2_k5" from the swept values (a loss name or grouping shows as its value alone), a
    name the run's bundle takes for its student (``validate.check_student_name``): ASCII letters, digits
    and _ . + - only, never ending in '.' (nor starting with '.' or '-')."""
    parts = [
        str(v) if k in ("loss.name", "loss.grouping", "grouping") else f"{k.removeprefix('loss.')}{v}"
        for k, v in trial.params.items()
    ]
    return re.sub(r"[^A-Za-z0-9_.+-]", "", "_".join(parts))[:80].lstrip(".-").rstrip(".")


def sweep_trials(sweep_dir: Path) -> list[Path]:
    """The trial folders of a sweep, in order."""
    info = store.read_json(sweep_dir / store.SWEEP)
    return [sweep_dir.parent / t for t in info.get("trials", [])]
