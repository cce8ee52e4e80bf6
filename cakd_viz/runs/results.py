"""Reading runs back: one ``RunInfo`` per folder, tables for the app, curves and sweep grids.

Reading never trusts a folder more than its files allow: a folder whose config or status is missing
or malformed reads as ``corrupt``; a "done" run without its summary, weights or bundle reads as
``corrupt``; a "queued" or "running" run whose process is gone reads as ``failed`` with an error
saying so (the files on disk are left as they are).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from cakd_viz.runs import store

_START_GRACE_S = 60.0  # a queued run without a pid yet is given this long for its process to start


@dataclass(frozen=True)
class RunInfo:
    """What one run folder says, checked for consistency."""

    id: str
    path: Path
    state: str  # one of store.STATES, or store.CORRUPT
    error: str | None  # why it failed or reads as corrupt
    config: dict = field(default_factory=dict)  # config.json ({} when unreadable)
    status: dict = field(default_factory=dict)  # status.json as written
    summary: dict = field(default_factory=dict)  # summary.json ({} until done)
    epochs: tuple = ()  # the "epoch" records of metrics.jsonl

    @property
    def active(self) -> bool:
        return self.state in ("queued", "running")

    @property
    def label(self) -> str:
        from cakd_viz.runs.config import LossConfig

        loss = self.config.get("loss") or {}
        try:
            summary = LossConfig(**loss).summary()
        except TypeError:
            summary = str(loss.get("name", "?"))
        return self.config.get("name") or summary

    @property
    def duration(self) -> float | None:
        started = self.status.get("started")
        if not started:
            return None
        return (self.status.get("ended") or time.time()) - started

    @property
    def best_acc(self) -> float | None:
        if "best_val_acc" in self.summary:
            return self.summary["best_val_acc"]
        accs = [e["val_acc"] for e in self.epochs if e.get("val_acc") is not None]
        return max(accs) if accs else None

    @property
    def last_acc(self) -> float | None:
        if "last_val_acc" in self.summary:
            return self.summary["last_val_acc"]
        accs = [e["val_acc"] for e in self.epochs if e.get("val_acc") is not None]
        return accs[-1] if accs else None

    @property
    def bundle_path(self) -> Path | None:
        path = self.path / store.BUNDLE
        return path if self.state == "done" and (path / "meta.json").is_file() else None

    def log_tail(self, lines: int = 30) -> str:
        return store.log_tail(self.path, lines)


def read_run(path: str | Path) -> RunInfo:
    """Read one run folder (never raises for a broken folder: it reads as ``corrupt``)."""
    path = Path(path)
    try:
        config = store.read_json(path / store.CONFIG)
        status = store.read_json(path / store.STATUS)
    except ValueError as exc:
        return RunInfo(path.name, path, store.CORRUPT, str(exc))
    epochs = tuple(r for r in store.read_metrics(path) if r.get("kind") == "epoch")
    state, error, summary = status.get("state"), status.get("error"), {}
    if state not in store.STATES:
        state, error = store.CORRUPT, f"status.json has an unknown state {state!r}"
    elif state in ("queued", "running"):
        state, error = _liveness(status, state, error)
    elif state == "done":
        try:
            summary = store.read_json(path / store.SUMMARY)
            _check_outputs(path)
        except ValueError as exc:
            state, error = store.CORRUPT, f"marked done, but {exc}"
    return RunInfo(path.name, path, state, error, config, status, summary, epochs)


def _liveness(status: dict, state: str, error: str | None) -> tuple[str, str | None]:
    if status.get("pid") is None:
        if time.time() - float(status.get("created") or 0) < _START_GRACE_S:
            return state, error
        return "failed", "the run's process never started (no pid was recorded)"
    if store.process_alive(status):
        return state, error
    owner = status.get("owner")
    who = f"the {owner} that queued it" if owner and state == "queued" else "the run's process"
    return "failed", (
        f"{who} (pid {status['pid']}) is gone without a final status: it was killed or crashed; "
        "see the end of log.txt"
    )


def _check_outputs(path: Path) -> None:
    if not (path / store.BUNDLE / "meta.json").is_file():
        raise ValueError(f"{store.BUNDLE}/meta.json is missing")
    if not (path / f"{store.WEIGHTS}.json").is_file():
        raise ValueError(f"{store.WEIGHTS}.json (the student's weights) is missing")


def list_runs(root: str | Path | None = None, *, sweep: str | None = None) -> list[RunInfo]:
    """Every run under ``root`` (default ``store.runs_dir()``), newest first; ``sweep`` keeps one sweep's."""
    root = store.runs_dir(root)
    if not root.is_dir():
        return []
    out = []
    for path in sorted(root.iterdir(), reverse=True):
        if not path.is_dir() or path.name.startswith(".") or (path / store.SWEEP).exists():
            continue
        info = read_run(path)
        if sweep is None or info.config.get("sweep") == sweep:
            out.append(info)
    return out


def runs_table(runs: list[RunInfo]) -> pd.DataFrame:
    """One row per run: id, state, label, data, student, loss, seed, epochs, best/last accuracy, duration."""
    rows = []
    for r in runs:
        c = r.config
        done = len(r.epochs)
        rows.append(
            {
                "id": r.id,
                "state": r.state,
                "run": r.label,
                "data": c.get("data"),
                "student": c.get("student"),
                "loss": (c.get("loss") or {}).get("name"),
                "seed": c.get("seed"),
                "epochs": f"{done}/{c.get('epochs', '?')}",
                "best_acc": r.best_acc,
                "last_acc": r.last_acc,
                "duration_s": r.duration,
                "sweep": c.get("sweep") or "",
                "error": r.error or "",
            }
        )
    return pd.DataFrame(rows)


def metrics_frame(run: RunInfo | str | Path, kind: str = "epoch") -> pd.DataFrame:
    """The run's metrics records of one kind ("epoch" or "step") as a frame."""
    path = run.path if isinstance(run, RunInfo) else Path(run)
    records = [r for r in store.read_metrics(path) if r.get("kind") == kind]
    return pd.DataFrame(records)


def sweep_frame(runs: list[RunInfo]) -> pd.DataFrame:
    """One row per trial of a sweep: its swept values (one column each), its case (the run's name or loss
    summary), state, best and last held-out accuracy."""
    rows = []
    for r in runs:
        params = dict(r.config.get("params") or {})
        rows.append(
            params
            | {"case": r.label, "id": r.id, "state": r.state, "best_acc": r.best_acc, "last_acc": r.last_acc}
        )
    return pd.DataFrame(rows)


@dataclass(frozen=True)
class SweepInfo:
    """A sweep's folder and its trials."""

    id: str
    path: Path
    state: str  # queued | running | done | failed | cancelled | corrupt
    error: str | None
    config: dict = field(default_factory=dict)  # the SweepConfig (JSON form)
    status: dict = field(default_factory=dict)
    trials: tuple[RunInfo, ...] = ()

    @property
    def name(self) -> str:
        return self.config.get("name") or self.id

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for t in self.trials:
            out[t.state] = out.get(t.state, 0) + 1
        return out

    def counts_text(self) -> str:
        return ", ".join(f"{n} {s}" for s, n in sorted(self.counts().items())) or "no trials"


def read_sweep(path: str | Path) -> SweepInfo:
    """Read a sweep folder and its trials (a broken folder reads as ``corrupt``)."""
    path = Path(path)
    try:
        info = store.read_json(path / store.SWEEP)
        status = store.read_json(path / store.STATUS)
    except ValueError as exc:
        return SweepInfo(path.name, path, store.CORRUPT, str(exc))
    trials = tuple(read_run(path.parent / t) for t in info.get("trials", []))
    state, error = status.get("state"), status.get("error")
    if state in ("queued", "running") and status.get("pid") is not None and not store.process_alive(status):
        if all(t.state in store.FINAL or t.state == store.CORRUPT for t in trials):
            state = "done"
        else:
            state, error = "failed", f"the sweep's process (pid {status['pid']}) is gone; see its log.txt"
    return SweepInfo(path.name, path, state, error, info.get("config", {}), status, trials)


def list_sweeps(root: str | Path | None = None) -> list[SweepInfo]:
    """Every sweep under ``root`` (default ``store.runs_dir()``), newest first."""
    root = store.runs_dir(root)
    if not root.is_dir():
        return []
    return [read_sweep(p) for p in sorted(root.iterdir(), reverse=True) if (p / store.SWEEP).is_file()]
