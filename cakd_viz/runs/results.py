"""Reading runs back: one ``RunInfo`` per folder, tables for the app, curves and sweep grids.

Reading never raises for a broken folder and never writes: what each state means as read (``corrupt``
with its one-line reason, a dead or unproven process read as ``failed``, ``elsewhere``) is the table of
docs/architecture.md §6; only ``runner.execute`` records a crash it finds.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from cakd_viz import atomic
from cakd_viz.runs import store
from cakd_viz.runs.dynamics import VAL_TERMS
from cakd_viz.runs.recorded import is_recorded
from cakd_viz.runs.store import INT, NUMBER, OBJECT, TEXT, is_type

_START_GRACE_S = 60.0  # a queued run without a pid yet is given this long for its process to start


def _never_started(status: dict) -> bool:
    """No pid recorded, and the start grace since "created" is over."""
    return status.get("pid") is None and time.time() - (_number(status.get("created")) or 0) >= _START_GRACE_S


# The fields readers use, and their JSON types (absent or null is always fine).
_STATUS_FIELDS = (
    {"state": TEXT}
    | dict.fromkeys(("pid", "pgid", "pid_start"), INT)
    | dict.fromkeys(("host", "owner", "error"), TEXT)
    | dict.fromkeys(("created", "started", "ended", "waiting_since"), NUMBER)
    | dict.fromkeys(("epoch", "epochs"), INT)
)
_CONFIG_FIELDS = (
    dict.fromkeys(("name", "data", "test_data", "teacher", "student", "sweep"), TEXT)
    | dict.fromkeys(("loss", "params"), OBJECT)
    | dict.fromkeys(("seed", "epochs"), INT)
)
_SUMMARY_FIELDS = dict.fromkeys(("best_val_acc", "last_val_acc", "teacher_val_acc"), NUMBER) | {
    "best_epoch": INT
}


def type_error(
    data: dict, fields: dict[str, str], file: str, *, required: tuple[str, ...] = ()
) -> str | None:
    """The first field of ``data`` (a JSON object read from ``file``) of the wrong type, as one line; or None."""
    for key, kind in fields.items():
        value = data.get(key)
        if value is not None and not is_type(value, kind):
            shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."
            return f"{file}: '{key}' must be {kind}, found {shown}"
    for key in required:
        if data.get(key) is None:
            return f"{file}: '{key}' is missing"
    loss = data.get("loss")
    if isinstance(loss, dict) and loss.get("name") is not None and not isinstance(loss["name"], str):
        return f"{file}: 'loss.name' must be a string, found {loss['name']!r}"
    return None


def _number(value: object) -> float | None:
    return float(value) if is_type(value, NUMBER) else None


@dataclass(frozen=True)
class RunInfo:
    """What one run folder says, checked for consistency.

    ``config``, ``status`` and ``summary`` hold the files as written when their fields have the types
    readers expect, else ``{}`` (the folder then reads ``corrupt``); every property below copes with
    empty ones.
    """

    id: str
    path: Path
    state: str  # one of store.STATES, store.CORRUPT or store.ELSEWHERE
    error: str | None  # why it failed, reads as corrupt, or cannot be checked from here (one line)
    config: dict = field(default_factory=dict)  # config.json ({} when unreadable)
    status: dict = field(default_factory=dict)  # status.json as written ({} when unreadable)
    summary: dict = field(default_factory=dict)  # summary.json ({} until done)
    epochs: tuple = ()  # the "epoch" records of metrics.jsonl

    @property
    def active(self) -> bool:
        """Queued or running, here or (``elsewhere``) on another host sharing this folder."""
        return self.state in ("queued", "running", store.ELSEWHERE)

    @property
    def label(self) -> str:
        from cakd_viz.runs.config import describe_loss

        name = self.config.get("name")
        if isinstance(name, str) and name:
            return name
        return describe_loss(self.config.get("loss"))  # never raises: a label is never worth an error

    @property
    def eval_split(self) -> str:
        """The split every epoch was evaluated on: "validation", or "test" for a run without a
        validation split (``val_split`` 0, or made before runs had one)."""
        split = self.summary.get("eval_split")
        if split in ("validation", "test"):
            return split
        val = self.config.get("val_split")
        return "validation" if _number(val) and val > 0 else "test"

    @property
    def test_acc(self) -> float | None:
        """The final student's accuracy on the test split (evaluated once, at the end), or None."""
        return _number(self.summary.get("test_acc"))

    @property
    def duration(self) -> float | None:
        """Seconds from start to end, or to now while it is active; None when unknown (a run found dead
        has no end on record) or impossible (an end before the start: a hand-edited file, a clock set back)."""
        started, ended = _number(self.status.get("started")), _number(self.status.get("ended"))
        if not started or (ended is None and not self.active):
            return None
        seconds = (ended or time.time()) - started
        return seconds if seconds >= 0 else None

    def _accs(self) -> list[float]:
        return [v for v in (_number(e.get("val_acc")) for e in self.epochs) if v is not None]

    @property
    def best_acc(self) -> float | None:
        if "best_val_acc" in self.summary:
            return self.summary["best_val_acc"]
        accs = self._accs()
        return max(accs) if accs else None

    @property
    def last_acc(self) -> float | None:
        if "last_val_acc" in self.summary:
            return self.summary["last_val_acc"]
        accs = self._accs()
        return accs[-1] if accs else None

    @property
    def bundle_path(self) -> Path | None:
        path = self.path / store.BUNDLE
        return path if self.state == "done" and (path / "meta.json").is_file() else None


def read_run(path: str | Path) -> RunInfo:
    """Read one run folder; never raises for a broken folder (it reads as ``corrupt``, with its reason)."""
    return _never_raising(_read_run, RunInfo, Path(path))


def _never_raising(read, info: type, path: Path):
    try:
        return read(path)
    except Exception as exc:  # a last resort: one bad folder never breaks a table or a page
        return info(path.name, path, store.CORRUPT, f"cannot be read ({type(exc).__name__}: {exc})")


def _read_run(path: Path) -> RunInfo:
    def corrupt(reason: str, config: dict | None = None) -> RunInfo:
        return RunInfo(path.name, path, store.CORRUPT, " ".join(reason.split()), config or {})

    try:
        config = store.read_json(path / store.CONFIG)
    except ValueError as exc:
        return corrupt(str(exc))
    if (why := type_error(config, _CONFIG_FIELDS, store.CONFIG)) is not None:
        return corrupt(why)
    try:
        status = store.read_json(path / store.STATUS)
    except ValueError as exc:
        return corrupt(str(exc), config)
    if (why := type_error(status, _STATUS_FIELDS, store.STATUS, required=("state",))) is not None:
        return corrupt(why, config)
    epochs = tuple(r for r in store.read_metrics(path) if r.get("kind") == "epoch")
    state, error, summary = status["state"], status.get("error"), {}
    if state not in store.STATES:
        return corrupt(f"status.json has an unknown state {state!r}", config)
    if state in ("queued", "running"):
        state, error = _liveness(status, state, error, path)
    elif state == "done":
        recorded = is_recorded(config)  # your own loop's run (runs.recorder): no weights, no bundle
        try:
            summary = store.read_json(path / store.SUMMARY)
            required = () if recorded else tuple(_SUMMARY_FIELDS)
            why = type_error(summary, _SUMMARY_FIELDS, store.SUMMARY, required=required)
            if why is not None:
                raise ValueError(why)
            if not recorded and not (path / store.BUNDLE / "meta.json").is_file():
                raise ValueError(f"{store.BUNDLE}/meta.json is missing")
            if not recorded and not (path / f"{store.WEIGHTS}.json").is_file():
                raise ValueError(f"{store.WEIGHTS}.json (the student's weights) is missing")
        except ValueError as exc:
            return corrupt(f"marked done, but {exc}", config)
    return RunInfo(path.name, path, state, error, config, status, summary, epochs)


def _liveness(status: dict, state: str, error: str | None, path: Path) -> tuple[str, str | None]:
    pid = status.get("pid")
    if pid is None:
        if not _never_started(status):
            return state, error
        return "failed", "the run's process never started (no pid was recorded)"
    live = store.process_liveness(status, path)
    if live == "alive":
        return state, error
    if live == "elsewhere":
        return store.ELSEWHERE, f"{state} elsewhere (host {status['host']}, cannot be checked from here)"
    owner = status.get("owner")
    who = f"the {owner} that queued it" if owner and state == "queued" else "the run's process"
    if live == "unproven":
        return "failed", (
            f"{who} (pid {pid}) cannot be proven to be alive: no start time was recorded and pid {pid} "
            f"is not running {path.name}; treating it as ended without recording a result"
        )
    return "failed", f"{who} (pid {pid}) ended without recording a result (killed?); see the end of log.txt"


def _folders(root: Path) -> list[Path]:
    """The visible sub-folders of ``root``, newest name first ([] when it cannot be listed)."""
    try:
        entries = sorted(root.iterdir(), reverse=True)
    except OSError:
        return []
    out = []
    for path in entries:
        try:
            if path.is_dir() and not path.name.startswith("."):
                out.append(path)
        except OSError:
            continue
    return out


def _is_sweep(path: Path) -> bool:
    try:
        return (path / store.SWEEP).exists()
    except OSError:
        return False


def list_runs(root: str | Path | None = None, *, sweep: str | None = None) -> list[RunInfo]:
    """Every run under ``root`` (default ``store.runs_dir()``), newest first; ``sweep`` keeps one sweep's.

    Never raises for a broken folder: it is listed as ``corrupt`` with its reason.
    """
    root = store.runs_dir(root)
    out = []
    for path in _folders(root):
        if _is_sweep(path):
            continue
        info = read_run(path)
        if sweep is None or info.config.get("sweep") == sweep:
            out.append(info)
    return out


TABLE_COLUMNS = tuple(
    "id state run data student loss seed epochs best_acc last_acc duration_s sweep error".split()
)


def runs_table(runs: list[RunInfo]) -> pd.DataFrame:
    """One row per run: id, state, label, data, student, loss, seed, epochs, best/last accuracy, duration.

    Every column is present for every run; a corrupt run's unknown values are None (its reason is in
    "error").
    """
    rows = []
    for r in runs:
        c = r.config
        total = c.get("epochs")
        rows.append(
            {
                "id": r.id,
                "state": r.state,
                "run": r.label,
                "data": c.get("data"),
                "student": c.get("student"),
                "loss": (c.get("loss") or {}).get("name"),
                "seed": c.get("seed"),
                "epochs": None if total is None else f"{len(r.epochs)}/{total}",
                "best_acc": r.best_acc,
                "last_acc": r.last_acc,
                "duration_s": r.duration,
                "sweep": c.get("sweep") or "",
                "error": r.error or "",
            }
        )
    return pd.DataFrame(rows, columns=list(TABLE_COLUMNS))


def metrics_frame(run: RunInfo | str | Path, kind: str = "epoch") -> pd.DataFrame:
    """The run's metrics records of one kind ("epoch" or "step") as a frame; values that are not numbers
    (a damaged or hand-edited file) become NaN, so curves and tables never meet a string."""
    path = run.path if isinstance(run, RunInfo) else Path(run)
    records = [r for r in store.read_metrics(path) if r.get("kind") == kind]
    frame = pd.DataFrame(records)
    for column in frame.columns:
        if column != "kind":
            frame[column] = pd.to_numeric(frame[column].map(_number), errors="coerce")
    return frame


def sweep_frame(runs: list[RunInfo]) -> pd.DataFrame:
    """One row per trial of a sweep: its swept values (one column each), its case (the run's name or loss
    summary), state, best and last accuracy per epoch, the split they are on ("eval_split": validation
    or test) and the final test accuracy."""
    rows = []
    for r in runs:
        params = {str(k): v for k, v in dict(r.config.get("params") or {}).items()}
        rows.append(
            params
            | {"case": r.label, "id": r.id, "state": r.state, "best_acc": r.best_acc, "last_acc": r.last_acc}
            | {"eval_split": r.eval_split, "test_acc": r.test_acc}
        )
    return pd.DataFrame(rows)


@dataclass(frozen=True)
class SweepInfo:
    """A sweep's folder and its trials."""

    id: str
    path: Path
    state: str  # queued | running | done | failed | cancelled | corrupt | elsewhere
    error: str | None
    config: dict = field(default_factory=dict)  # the SweepConfig (JSON form; {} when unreadable)
    status: dict = field(default_factory=dict)
    trials: tuple[RunInfo, ...] = ()

    @property
    def name(self) -> str:
        name = self.config.get("name")
        return name if isinstance(name, str) and name else self.id

    def counts(self) -> dict[str, int]:
        return dict(Counter(t.state for t in self.trials))

    def counts_text(self) -> str:
        return ", ".join(f"{n} {s}" for s, n in sorted(self.counts().items())) or "no trials"


_SWEEP_CONFIG_FIELDS = {"name": TEXT, "grid": OBJECT, "random": OBJECT, "engine": TEXT}


def read_sweep(path: str | Path) -> SweepInfo:
    """Read a sweep folder and its trials; never raises (a broken folder reads as ``corrupt``)."""
    return _never_raising(_read_sweep, SweepInfo, Path(path))


def _read_sweep(path: Path) -> SweepInfo:
    def corrupt(reason: str) -> SweepInfo:
        return SweepInfo(path.name, path, store.CORRUPT, " ".join(reason.split()))

    try:
        info = store.read_json(path / store.SWEEP)
        status = store.read_json(path / store.STATUS)
    except ValueError as exc:
        return corrupt(str(exc))
    config, names = info.get("config"), info.get("trials", [])
    if not isinstance(config, dict):
        return corrupt(f"{store.SWEEP}: 'config' must be an object, found {type(config).__name__}")
    if (why := type_error(config, _SWEEP_CONFIG_FIELDS, f"{store.SWEEP} config")) is not None:
        return corrupt(why)
    if not isinstance(config.get("cases", []), list):
        return corrupt(f"{store.SWEEP} config: 'cases' must be a list")
    # trial names are folder names beside the sweep: nothing else is ever read through them
    if not isinstance(names, list) or not all(
        isinstance(t, str) and t and "/" not in t and "\\" not in t and not t.startswith(".") for t in names
    ):
        return corrupt(f"{store.SWEEP}: 'trials' must be a list of run folder names")
    if (why := type_error(status, _STATUS_FIELDS, store.STATUS, required=("state",))) is not None:
        return corrupt(why)
    trials = tuple(read_run(path.parent / t) for t in names)
    state, error = status["state"], status.get("error")
    if state not in store.STATES:
        return corrupt(f"status.json has an unknown state {state!r}")
    if state == "queued" and _never_started(status):  # created, its process not started within the grace
        state, error = "failed", "the sweep's process never started (no pid was recorded)"
    elif state in ("queued", "running") and status.get("pid") is not None:
        live = store.process_liveness(status, path)
        if live == "elsewhere":
            error = f"{state} elsewhere (host {status['host']}, cannot be checked from here)"
            state = store.ELSEWHERE
        elif live != "alive" and all(t.state in store.FINAL or t.state == store.CORRUPT for t in trials):
            state = "done"
        elif live != "alive":
            state = "failed"
            error = (
                f"the sweep's process (pid {status['pid']}) ended without recording a result (killed?); "
                "see its log.txt"
            )
    return SweepInfo(path.name, path, state, error, config, status, trials)


def list_sweeps(root: str | Path | None = None) -> list[SweepInfo]:
    """Every sweep under ``root`` (default ``store.runs_dir()``), newest first; never raises."""
    return [read_sweep(p) for p in _folders(store.runs_dir(root)) if _is_sweep(p)]


# -- the runs tracker: hyperparameter columns, trial labels, notes, archive and delete ---------------

NOTE = "note.txt"  # a person's note on a run, in the run folder
NOTE_MAX_CHARS = 2000
ARCHIVE = ".archive"  # archived runs move here (a hidden folder, so list_runs leaves them out)
_RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,127}")
# run config fields -> tracker column, after the loss's columns (``loss_columns``)
_RUN_HYPER = dict(lr="lr", epochs="epochs", batch_size="batch", seed="seed", student="student", data="data")


def loss_columns() -> dict:
    """The tracker's loss columns, ``{key: Param}``: every parameter of every registered loss (in the
    registry's order, the first declaration of a name), then the run's ``ce_weight``."""
    from cakd_viz.losses import LOSSES
    from cakd_viz.losses.params import by_name
    from cakd_viz.runs.config import RUN_LOSS_PARAMS

    run_only = [p for p in RUN_LOSS_PARAMS if p.name == "ce_weight"]
    return by_name([*(p for cls in LOSSES.values() for p in cls.params()), *run_only])


def _timestamp(value: object) -> pd.Timestamp:
    """A status time (seconds since 1970) as a timestamp; NaT for anything that is not a time between 1970
    and 2200 (a run folder holding ``"created": -1e300`` must not take a table of every run down)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < 7.3e9:
        return pd.NaT
    return pd.Timestamp(float(value), unit="s")


def hyperparameters(run: RunInfo) -> dict:
    """The run's settings by tracker column: "loss" (its name as written), every ``loss_columns()`` key
    (None where the run's loss does not take that parameter, or holds it in a wrong type; a missing one
    is its declared default), then lr, epochs, batch, seed, student, data."""
    from cakd_viz.losses import loss_class

    c = run.config
    loss = c.get("loss") if isinstance(c.get("loss"), dict) else {}
    name = loss.get("name") if isinstance(loss.get("name"), str) else None
    cls = loss_class(name) if name else None
    takes = {p.name for p in cls.params()} | {"ce_weight"} if cls else {"ce_weight"}
    out: dict = {"loss": name}
    for key, param in loss_columns().items():
        out[key] = _setting(param, loss.get(key, param.default)) if key in takes and name else None
    for path, column in _RUN_HYPER.items():
        value = c.get(path)
        if column in ("student", "data"):
            out[column] = value if isinstance(value, str) else None
        else:  # a finite number, a whole one within 64 bits (a table column cannot hold 10**400)
            number = is_type(value, INT) if isinstance(value, int) else is_type(value, NUMBER)
            out[column] = value if number else None
    return out


def _setting(param, value: object) -> object:
    try:
        return param.coerce(value)
    except ValueError:
        return None


def varied_params(runs: list[RunInfo]) -> dict[str, list[str]]:
    """For each sweep among ``runs``: the swept keys whose values differ between its trials (in order)."""
    values: dict[str, dict[str, set]] = {}
    for r in runs:
        sweep, params = r.config.get("sweep"), r.config.get("params")
        if not sweep or not isinstance(params, dict):
            continue
        per = values.setdefault(str(sweep), {})
        for key, value in params.items():
            per.setdefault(str(key), set()).add(json.dumps(value, sort_keys=True, default=str))
    return {s: [k for k, v in per.items() if len(v) > 1] for s, per in values.items()}


def trial_label(run: RunInfo, varied: dict[str, list[str]]) -> str:
    """A sweep trial's label: the values it varies ("alpha=2 · beta=8 · seed=1"); "" for a plain run."""
    params = run.config.get("params")
    keys = varied.get(str(run.config.get("sweep") or ""), [])
    if not isinstance(params, dict) or not keys:
        return ""
    return " · ".join(f"{k}={_short(params[k])}" for k in keys if k in params)


def _short(value) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, dict):
        return ",".join(f"{k}:{_short(v)}" for k, v in value.items())
    return str(value)


def tracker_table(runs: list[RunInfo]) -> pd.DataFrame:
    """One row per run, for a runs tracker: id, state, run (its label; for a sweep trial, the sweep's name
    and the values the trial varies), sweep, the hyperparameters (see ``hyperparameters``), epochs done,
    best and last accuracy per epoch and the split they are on ("eval_split": validation, or test for a
    run without a validation split), the final test accuracy, duration (s), created (time), note, and
    whether its epochs carry held-out terms (``dynamics.VAL_TERMS``)."""
    varied = varied_params(runs)
    rows = []
    for r in runs:
        label = trial_label(r, varied) or r.label  # a sweep's trials differ by what they vary
        created = r.status.get("created")
        row = {"id": r.id, "state": r.state, "run": label, "sweep": str(r.config.get("sweep") or "")}
        row |= hyperparameters(r)
        row |= {
            "epochs_done": len(r.epochs),
            "best_acc": _number(r.best_acc),
            "last_acc": _number(r.last_acc),
            "eval_split": r.eval_split,
            "test_acc": r.test_acc,
            "duration_s": _number(r.duration),
            "created": _timestamp(created),
            "note": read_note(r.path),
            "held_out_terms": any(all(k in e for k in VAL_TERMS[:4]) for e in r.epochs),
            "error": r.error or "",
        }
        rows.append(row)
    columns = ["id", "state", "run", "sweep", "loss", *loss_columns(), *_RUN_HYPER.values()]
    columns += ["epochs_done", "best_acc", "last_acc", "eval_split", "test_acc"]
    columns += ["duration_s", "created", "note", "held_out_terms"]
    return pd.DataFrame(rows, columns=[*columns, "error"])


def read_note(path: str | Path) -> str:
    """The run's note ('' when there is none or it cannot be read), at most NOTE_MAX_CHARS characters."""
    try:
        with store.open_regular(Path(path) / NOTE) as handle:  # a FIFO is refused, never waited on
            raw = handle.read(4 * (NOTE_MAX_CHARS + 1))  # at most 4 bytes a character
    except OSError:
        return ""
    text = raw.decode("utf-8", "replace").replace("\r\n", "\n").replace("\r", "\n")  # as text mode reads
    return text[: NOTE_MAX_CHARS + 1].rstrip("\n")[:NOTE_MAX_CHARS]


def write_note(path: str | Path, text: str) -> str:
    """Replace the run's note (written to a temporary file and renamed over); an empty text removes it.

    Control characters other than newlines and tabs are dropped; ValueError when the text is longer than
    NOTE_MAX_CHARS. Returns the note as stored.
    """
    text = "".join(ch for ch in str(text) if ch in "\n\t" or ch.isprintable()).strip()
    if len(text) > NOTE_MAX_CHARS:
        raise ValueError(f"a note may hold at most {NOTE_MAX_CHARS:,} characters; this one has {len(text):,}")
    target = Path(path) / NOTE
    if not text:
        target.unlink(missing_ok=True)
        return ""
    atomic.write_text(target, text + "\n")
    return text


def run_folder(root: str | Path | None, run_id: str, *, archived: bool = False) -> Path:
    """The folder of run ``run_id`` under ``root`` (or its archive); ValueError when the id is malformed
    (a name, never a path) or names no run folder there."""
    run_id = str(run_id)
    if not _RUN_ID.fullmatch(run_id):
        raise ValueError(f"{run_id[:60]!r} is not a run id")
    base = store.runs_dir(root) / (ARCHIVE if archived else "")
    path = base / run_id
    if not path.is_dir() or path.is_symlink() or (path / store.SWEEP).exists():
        where = "archived runs" if archived else "runs directory"
        raise ValueError(f"there is no run {run_id} in the {where}")
    return path


def _refuse_active(path: Path) -> None:
    info = read_run(path)
    if info.active:
        raise ValueError(f"run {info.id} is {info.state}: cancel it first")


def archive_run(root: str | Path | None, run_id: str) -> Path:
    """Move a run that is not queued or running into ROOT/.archive/ (out of every list); returns its new path."""
    path = run_folder(root, run_id)
    _refuse_active(path)
    target = store.runs_dir(root) / ARCHIVE / path.name
    target.parent.mkdir(exist_ok=True)
    if target.exists():
        raise ValueError(f"an archived run named {path.name} exists already")
    os.rename(path, target)
    return target


def restore_run(root: str | Path | None, run_id: str) -> Path:
    """Move an archived run back among the runs; returns its path."""
    path = run_folder(root, run_id, archived=True)
    target = store.runs_dir(root) / path.name
    if target.exists():
        raise ValueError(f"a run named {path.name} exists already")
    os.rename(path, target)
    return target


def delete_run(root: str | Path | None, run_id: str, *, archived: bool = False) -> None:
    """Delete a run folder that is not queued or running, with everything in it."""
    path = run_folder(root, run_id, archived=archived)
    _refuse_active(path)
    # Renamed away first, so that a half-deleted folder never reads as a (corrupt) run.
    doomed = path.parent / f".deleting-{path.name}-{secrets.token_hex(3)}"
    os.rename(path, doomed)
    shutil.rmtree(doomed, ignore_errors=True)


def list_archived(root: str | Path | None = None) -> list[RunInfo]:
    """The archived runs, newest first."""
    return [read_run(p) for p in _folders(store.runs_dir(root) / ARCHIVE) if _RUN_ID.fullmatch(p.name)]
