"""The run folder on disk (docs/architecture.md §6): written by the run's own process, read by anyone.

    RUN_ID/config.json     the RunConfig (everything needed to rerun it)
    RUN_ID/status.json     {"state": "queued|running|done|failed|cancelled", "pid", "started", "ended", "error", ...}
    RUN_ID/metrics.jsonl   one JSON object per logged step ("kind": "step") or epoch ("kind": "epoch")
    RUN_ID/log.txt         the run's own output
    RUN_ID/env.json        seed, device, batch size, world size, library versions, host
    RUN_ID/summary.json    best and last held-out accuracy (written just before "done")
    RUN_ID/student.*       final student weights (a cakd-viz checkpoint: .safetensors + .json)
    RUN_ID/bundle/         the student's logit bundle on the held-out split (opens in the explorer)

Every JSON file is written to a temporary name and renamed over (``os.replace``), so a reader sees
the old or the new file, never half of one. A folder is created under a hidden temporary name and
renamed into place once config.json and status.json are in it. "done" is written last, after the
weights, bundle and summary, and is trusted only when they are present. Status changes go through
``update_status``, which holds a lock and never leaves a final state (done, failed, cancelled).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import secrets
import socket
import time
from pathlib import Path

RUNS_DIR_ENV = "CAKD_VIZ_RUNS_DIR"
STATES = ("queued", "running", "done", "failed", "cancelled")
FINAL = ("done", "failed", "cancelled")
CORRUPT = "corrupt"  # read-only state of a folder that cannot be trusted (never written)
CONFIG, STATUS, METRICS, LOG = "config.json", "status.json", "metrics.jsonl", "log.txt"
SUMMARY, ENV, CANCEL, BUNDLE, WEIGHTS = "summary.json", "env.json", "cancel.request", "bundle", "student"
SWEEP = "sweep.json"  # marks a sweep's folder (it holds no run of its own)
# state -> the states it may change into (a same-state write updates the other fields)
_NEXT = {
    None: {"queued", "running", "failed"},
    "queued": {"queued", "running", "failed", "cancelled"},
    "running": {"running", "done", "failed", "cancelled"},
}


def runs_dir(path: str | Path | None = None) -> Path:
    """Where runs live: ``path``, else ``$CAKD_VIZ_RUNS_DIR``, else ``runs/`` at the repository root."""
    if path is not None:
        return Path(path).expanduser()
    env = os.environ.get(RUNS_DIR_ENV, "").strip()
    return Path(env).expanduser() if env else Path(__file__).resolve().parents[2] / "runs"


def new_run_id(label: str = "") -> str:
    """A sortable, unique folder name: ``20250101-120000-LABEL-1a2b``."""
    slug = re.sub(r"[^A-Za-z0-9]+", "-", label).strip("-").lower()[:32]
    parts = [time.strftime("%Y%m%d-%H%M%S"), slug, secrets.token_hex(2)]
    return "-".join(p for p in parts if p)


def write_json(path: Path, obj: object) -> None:
    """Write ``obj`` as JSON to a temporary file beside ``path``, then rename it over ``path``."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{secrets.token_hex(3)}")
    try:
        tmp.write_text(json.dumps(obj, indent=2, default=str) + "\n")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def read_json(path: Path) -> dict:
    """A JSON object from ``path``; ValueError naming the file when it is missing or malformed."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ValueError(f"{path.name} is missing") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path.name} is unreadable ({exc})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path.name} does not hold a JSON object")
    return data


def create_run(root: Path, config: dict, *, run_id: str | None = None, **status: object) -> Path:
    """Create ``root/RUN_ID`` holding config.json and a "queued" status.json, all at once; returns it."""
    root.mkdir(parents=True, exist_ok=True)
    run_id = run_id or new_run_id(config.get("name") or config.get("loss", {}).get("name", ""))
    final = root / run_id
    if final.exists():
        raise FileExistsError(f"{final}: a run with this id exists already")
    tmp = root / f".{run_id}.partial-{secrets.token_hex(3)}"
    tmp.mkdir()
    write_json(tmp / CONFIG, config)
    write_json(tmp / STATUS, {"state": "queued", "created": time.time()} | _ERROR_FIELDS | status)
    (tmp / LOG).touch()
    os.rename(tmp, final)  # an existing non-empty folder makes this fail rather than merge
    return final


_ERROR_FIELDS = {"pid": None, "started": None, "ended": None, "error": None}


@contextlib.contextmanager
def _locked(run_dir: Path):
    with open(run_dir / ".status.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def update_status(run_dir: Path, state: str | None = None, **fields: object) -> dict | None:
    """Change the state (and/or other fields) under a lock; returns the new status, or None if refused.

    A final state is never left: e.g. a run that finished a moment before a cancel stays "done", and
    a "cancelled" run's late "done" is refused. ``state=None`` updates fields of a live run only.
    """
    with _locked(run_dir):
        try:
            current = read_json(run_dir / STATUS)
        except ValueError:
            current = {}
        now = current.get("state")
        new = state or now
        if new not in _NEXT.get(now, set()):
            return None
        status = current | fields | {"state": new}
        if new == "running" and now != "running":
            status.setdefault("started", None)
            status["started"] = status["started"] or time.time()
        if new in FINAL:
            status["ended"] = time.time()
        write_json(run_dir / STATUS, status)
        return status


def process_identity(pid: int | None = None) -> dict:
    """{"pid", "pid_start", "host"} of a process (default: this one), for telling later if it still runs."""
    pid = os.getpid() if pid is None else pid
    return {"pid": pid, "pid_start": _start_ticks(pid), "host": socket.gethostname()}


def process_alive(status: dict) -> bool:
    """Whether the process named by ``status`` (pid, pid_start, host) still runs.

    A process on another host is assumed alive (it cannot be checked from here); a zombie, or a pid
    that now belongs to a process started at another time, counts as gone.
    """
    pid = status.get("pid")
    if not isinstance(pid, int):
        return False
    if status.get("host") not in (None, socket.gethostname()):
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    start = _start_ticks(pid)
    if start == -1:  # a zombie: exited, not yet reaped
        return False
    return status.get("pid_start") in (None, start) or start is None


def _start_ticks(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (Linux /proc); -1 for a zombie; None if unknown."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    rest = text[text.rfind(")") + 2 :].split()  # fields after "pid (comm)"
    if rest and rest[0] in ("Z", "X"):
        return -1
    return int(rest[19]) if len(rest) > 19 else None


def append_metrics(run_dir: Path, record: dict) -> None:
    """Append one JSON line to metrics.jsonl (a reader skips a torn last line)."""
    with open(run_dir / METRICS, "a") as handle:
        handle.write(json.dumps(record, default=float) + "\n")
        handle.flush()


def read_metrics(run_dir: Path) -> list[dict]:
    """Every complete record of metrics.jsonl, in order; unreadable lines are skipped."""
    try:
        lines = (run_dir / METRICS).read_text().splitlines()
    except OSError:
        return []
    out = []
    for line in lines:
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict):
            out.append(record)
    return out


def log_tail(run_dir: Path, lines: int = 30, max_bytes: int = 64_000) -> str:
    """The last ``lines`` lines of log.txt ('' when there is none)."""
    path = run_dir / LOG
    try:
        with open(path, "rb") as handle:
            handle.seek(max(0, path.stat().st_size - max_bytes))
            text = handle.read().decode("utf-8", "replace")
    except OSError:
        return ""
    text = re.sub(r"[^\n]*\r", "", text)  # keep only the final state of progress-bar lines
    return "\n".join(text.splitlines()[-lines:])


def request_cancel(run_dir: Path) -> None:
    """Ask the run to stop at its next step (how runs without their own process group are cancelled)."""
    (run_dir / CANCEL).touch()


def cancel_requested(run_dir: Path) -> bool:
    return (run_dir / CANCEL).exists()
