"""The Ray Tune engine: the prepared trial folders of a sweep run as Ray Tune trials.

``ray.init(address=...)`` joins an existing cluster (``ray.address`` in the sweep config, e.g.
"auto"); without an address Ray starts on this machine with ``ray.num_cpus`` CPUs. Each trial asks
Ray for ``threads`` CPUs (and ``ray.gpus_per_trial`` GPUs) and executes its folder with
``runner.execute`` inside a Ray worker, reporting every epoch through ``tune.report``. The folders
are written exactly as by the local engine; Ray's own records go to ``SWEEP_DIR/ray/``. On a
multi-node cluster the runs directory and any data paths must be on storage every node sees.

Ray is optional: it is imported only here, and only when a sweep asks for it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from cakd_viz.runs import store
from cakd_viz.runs.config import RunConfig


def _require_ray():
    try:
        import ray
        from ray import tune
    except ImportError:
        raise ValueError(
            "the 'ray' engine needs Ray Tune, which is not installed: pip install 'ray[tune]' "
            "(or use the 'local' engine)"
        ) from None
    return ray, tune


def run_trials(sweep, sweep_dir: Path, trials: list[Path], *, log: Callable[[str], None] = print) -> None:
    """Execute ``trials`` (prepared run folders) as one Ray Tune experiment; returns when all have ended."""
    ray, tune = _require_ray()
    pending = [str(d.resolve()) for d in trials if store.read_state(d) not in store.FINAL]
    if not pending:
        return
    threads = RunConfig.from_dict(store.read_json(trials[0] / store.CONFIG)).threads
    opts = sweep.ray
    # trials keep this working directory (relative paths)
    os.environ.setdefault("RAY_CHDIR_TO_TRIAL_DIR", "0")
    started = not ray.is_initialized()
    if started:
        if opts.address:
            ray.init(address=opts.address, log_to_driver=False)
        else:
            ray.init(num_cpus=opts.num_cpus, include_dashboard=False, log_to_driver=False)
    try:
        log(
            f"sweep {sweep_dir.name}: {len(pending)} trial(s) on Ray ({ray.cluster_resources().get('CPU', 0):g} CPUs)"
        )
        trainable = tune.with_resources(_trial, {"cpu": threads, "gpu": opts.gpus_per_trial})
        tuner = tune.Tuner(
            trainable,
            param_space={"run_dir": tune.grid_search(pending)},
            tune_config=tune.TuneConfig(max_concurrent_trials=sweep.max_concurrent or None),
            run_config=tune.RunConfig(
                name="ray",
                storage_path=str(sweep_dir.resolve()),
                verbose=0,
                failure_config=tune.FailureConfig(max_failures=0),
            ),
        )
        results = tuner.fit()
        log(f"sweep {sweep_dir.name}: Ray finished, {results.num_errors} trial(s) with errors")
    finally:
        if started:
            ray.shutdown()


def _trial(config: dict) -> None:
    """One Ray trial: execute its run folder here, reporting each epoch to Tune."""
    from ray import tune

    from cakd_viz.runs.runner import execute

    execute(config["run_dir"], max_concurrent=0, report=tune.report)
