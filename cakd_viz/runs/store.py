"""The run folder on disk (docs/architecture.md §6: its files, and how they are published): written by the
run's own process, read by anyone.

Status changes go through ``update_status``, which holds a lock and never leaves a final state (done,
failed, cancelled). Whether the process a status names still runs is :func:`process_liveness`'s
(``cakd_viz.processes``): a run on another host cannot be checked from here, and a pid without a
recorded start time proves nothing unless the process is visibly this run.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import math
import os
import re
import secrets
import shutil
import stat
import time
from pathlib import Path

from cakd_viz import atomic, processes
from cakd_viz.locations import RUNS_DIR_ENV, runs_dir  # noqa: F401 (re-exported)

STATES = ("queued", "running", "done", "failed", "cancelled")
FINAL = ("done", "failed", "cancelled")
CORRUPT = "corrupt"  # read-only state of a folder that cannot be trusted (never written)
ELSEWHERE = "elsewhere"  # read-only state of a queued/running run of another host (never written)
CONFIG, STATUS, METRICS, LOG = "config.json", "status.json", "metrics.jsonl", "log.txt"
SUMMARY, ENV, CANCEL, BUNDLE, WEIGHTS = "summary.json", "env.json", "cancel.request", "bundle", "student"
SWEEP = "sweep.json"  # marks a sweep's folder (it holds no run of its own)
# state -> the states it may change into (a same-state write updates the other fields)
_NEXT = {
    None: {"queued", "running", "failed"},
    "queued": {"queued", "running", "failed", "cancelled"},
    "running": {"running", "done", "failed", "cancelled"},
}


def new_run_id(label: str = "") -> str:
    """A sortable, unique folder name: ``20250101-120000-LABEL-1a2b``."""
    slug = re.sub(r"[^A-Za-z0-9]+", "-", label).strip("-").lower()[:32]
    parts = [time.strftime("%Y%m%d-%H%M%S"), slug, secrets.token_hex(2)]
    return "-".join(p for p in parts if p)


def write_json(path: Path, obj: object) -> None:
    """Write ``obj`` as JSON, published whole (``cakd_viz.atomic``)."""
    atomic.write_json(path, obj)


def open_regular(path: Path):
    """Open a regular file for reading in binary, without blocking: a FIFO (or a device) where a run
    file should be raises OSError instead of hanging the reader."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file", str(path))
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


MAX_JSON_BYTES = 16 * 2**20  # a config or status is a few KB; anything this big is not one of ours
MAX_METRICS_BYTES = 64 * 2**20  # metrics.jsonl beyond this is read from its end


def read_json(path: Path) -> dict:
    """A JSON object from ``path``; ValueError (one line, naming the file) when it is missing,
    unreadable, too large, malformed, or not an object."""
    try:
        with open_regular(path) as handle:
            raw = handle.read(MAX_JSON_BYTES + 1)
    except FileNotFoundError:
        raise ValueError(f"{path.name} is missing") from None
    except OSError as exc:
        raise ValueError(f"{path.name} is unreadable ({exc.strerror or exc})") from None
    if len(raw) > MAX_JSON_BYTES:
        raise ValueError(f"{path.name} is larger than {MAX_JSON_BYTES // 2**20} MiB; not a run file")
    try:
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ValueError(f"{path.name} is not text (binary data)") from None
    except (ValueError, RecursionError) as exc:  # JSONDecodeError is a ValueError
        raise ValueError(f"{path.name} is not valid JSON ({' '.join(str(exc).split())[:200]})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path.name} does not hold a JSON object (found {type(data).__name__})")
    return data


def number(value: object) -> float | None:
    """A JSON number as a float; None for anything else, a whole number beyond float's range included
    (JSON reads 1 and 400 zeros as an int, which float() refuses)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        return float(value)
    except OverflowError:
        return None


NUMBER, INT, TEXT, OBJECT = "a number", "a whole number", "a string", "an object"  # JSON types readers take


def is_type(value: object, kind: str) -> bool:
    """Whether a JSON value is of ``kind``: a finite number, a whole number within 64 bits (as every
    count, id and seed a run writes, and a table column holds), a string or an object."""
    if kind == TEXT:
        return isinstance(value, str)
    if kind == OBJECT:
        return isinstance(value, dict)
    if isinstance(value, bool):
        return False
    if kind == INT:
        return isinstance(value, int) and -(2**63) <= value < 2**63
    try:
        return isinstance(value, int | float) and math.isfinite(value)
    except OverflowError:  # an int beyond float's range is no number a reader can use
        return False


def read_state(run_dir: Path) -> str | None:
    """The state a run or sweep folder's status.json records (None when it cannot be read)."""
    try:
        return read_json(run_dir / STATUS).get("state")
    except ValueError:
        return None


def create_run(root: Path, config: dict, *, run_id: str | None = None, **status: object) -> Path:
    """Create ``root/RUN_ID`` holding config.json and a "queued" status.json, all at once; returns it."""
    root.mkdir(parents=True, exist_ok=True)
    run_id = run_id or new_run_id(config.get("name") or config.get("loss", {}).get("name", ""))
    final = root / run_id
    if final.exists():
        raise FileExistsError(f"{final}: a run with this id exists already")
    tmp = root / f".{run_id}.partial-{secrets.token_hex(3)}"
    tmp.mkdir()
    try:
        write_json(tmp / CONFIG, config)
        unset = dict.fromkeys(("pid", "started", "ended", "error"))
        write_json(tmp / STATUS, {"state": "queued", "created": time.time()} | unset | status)
        (tmp / LOG).touch()
        os.rename(tmp, final)  # an existing non-empty folder makes this fail rather than merge
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)  # no partial folder left behind
        if isinstance(exc, OSError) and exc.errno in (errno.ENOTEMPTY, errno.EEXIST):
            raise FileExistsError(f"{final}: a run with this id exists already") from None
        raise
    return final


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
    a "cancelled" run's late "done" is refused. ``state=None`` updates fields of a live run only. A
    status.json that exists but cannot be read (the folder reads ``corrupt``) is never overwritten.
    """
    with _locked(run_dir):
        try:
            current = read_json(run_dir / STATUS)
        except ValueError:
            if (run_dir / STATUS).exists():
                return None
            current = {}
        now = current.get("state")
        if now is not None and now not in STATES:
            return None
        new = state or now
        if new not in _NEXT.get(now, set()):
            return None
        status = current | fields | {"state": new}
        if new == "running" and now != "running":
            status["started"] = status.get("started") or time.time()
        if new in FINAL:
            status["ended"] = time.time()
        write_json(run_dir / STATUS, status)
        return status


def process_identity(pid: int | None = None) -> dict:
    """{"pid", "pid_start", "host"} of a process (default: this one), for telling later if it still runs."""
    return processes.identity(pid)


def process_liveness(status: dict, folder: Path) -> str:
    """Whether the process ``status`` names runs: "alive", "gone", "elsewhere" or "unproven" (``processes``).
    Only "alive" is proof: nothing may be killed or waited for on any other answer's account.

    Without a recorded start time the process counts as alive only when ``folder``'s name is on its
    command line (``tune --run-dir RUNS/RUN_ID``), so pid 1 or a reused pid never reads alive forever.
    """
    return processes.liveness(
        status.get("pid"), status.get("pid_start"), status.get("host"), hint=folder.name
    )


def append_metrics(run_dir: Path, record: dict) -> None:
    """Append one JSON line to metrics.jsonl (a reader skips a torn last line)."""
    with open(run_dir / METRICS, "a") as handle:
        handle.write(json.dumps(record, default=float) + "\n")
        handle.flush()


def read_metrics(run_dir: Path) -> list[dict]:
    """Every complete record of metrics.jsonl, in order; unreadable lines are skipped (a file larger
    than ``MAX_METRICS_BYTES`` is read from its end)."""
    path = run_dir / METRICS
    try:
        with open_regular(path) as handle:
            size = os.fstat(handle.fileno()).st_size
            handle.seek(max(0, size - MAX_METRICS_BYTES))
            raw = handle.read(MAX_METRICS_BYTES)
    except OSError:
        return []
    lines = raw.decode("utf-8", "replace").splitlines()
    if size > MAX_METRICS_BYTES:
        lines = lines[1:]  # the first line was cut
    out = []
    for line in lines:
        try:
            record = json.loads(line)
        except (ValueError, RecursionError):
            continue
        if isinstance(record, dict):
            out.append(record)
    return out


def append_log(run_dir: Path, line: str) -> None:
    """Append one line to log.txt, after the time of day ("[12:00:00] line")."""
    with open(run_dir / LOG, "a") as handle:
        handle.write(f"[{time.strftime('%H:%M:%S')}] {line}\n")


def log_tail(run_dir: Path, lines: int = 30, max_bytes: int = 64_000) -> str:
    """The last ``lines`` lines of log.txt ('' when there is none)."""
    path = run_dir / LOG
    try:
        with open_regular(path) as handle:
            handle.seek(max(0, os.fstat(handle.fileno()).st_size - max_bytes))
            text = handle.read().decode("utf-8", "replace")
    except OSError:
        return ""
    # keep only the final state of progress-bar lines; a CRLF line end is a line end
    text = re.sub(r"[^\n]*\r(?!\n)", "", text).replace("\r\n", "\n")
    return "\n".join(text.splitlines()[-lines:])


def request_cancel(run_dir: Path) -> None:
    """Ask the run to stop at its next step (how runs without their own process group are cancelled)."""
    (run_dir / CANCEL).touch()


def cancel_requested(run_dir: Path) -> bool:
    return (run_dir / CANCEL).exists()
