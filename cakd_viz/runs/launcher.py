"""Start runs as separate processes, cancel them, and bound how many train at once.

``launch(config)`` creates the run folder and starts ``python -m cakd_viz tune --run-dir DIR`` in its
own session (``start_new_session=True``: a new process group whose id is the child's pid), with its
output going to the folder's log.txt. Nothing is kept in memory that the run needs later: the app can
restart and read every run back from disk (``cakd_viz.runs.results``).

``cancel(run_dir)`` asks the run to stop (a cancel file, for runs without a group of their own such as
Ray trials), then kills its whole process group (SIGTERM, then SIGKILL after a grace period) and marks
it ``cancelled``.

Concurrency: a run holds one of ``limit`` slot files (``RUNS_DIR/.slots/N.lock``, an exclusive
``flock``) while it trains; the others wait in state ``queued``, oldest first. The operating system
drops a dead process's lock, so a crash never leaks a slot.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from cakd_viz import settings
from cakd_viz.runs import store
from cakd_viz.runs.config import RunConfig

MAX_RUNS_ENV = "CAKD_VIZ_MAX_RUNS"
SLOTS = ".slots"


class Cancelled(BaseException):
    """The run was asked to stop (cancel file, SIGTERM, or its state became final) before it finished.

    A BaseException, like KeyboardInterrupt: it can arrive (from the SIGTERM handler) inside any code,
    and the ``except Exception`` wrappers that turn a user's broken model or data into a ValueError
    must not turn a cancel into a failure.
    """


_signalled: list[str] = []  # the signals sigterm_cancels turned into Cancelled in this process


def record_signal(name: str) -> None:
    """Note that this process was asked to stop by a signal (see cancel_reason)."""
    _signalled.append(name)


def cancel_reason(exc: BaseException) -> str | None:
    """Why ``exc`` means "cancelled", or None when it is a real failure.

    A SIGTERM can land inside C code or an import; the Cancelled it raises may come back wrapped (a C
    extension's "ImportError: initialization failed", a library's own error type) or be lost. So: a
    Cancelled anywhere in the cause/context chain, or any error after this process was signalled.
    """
    seen: set[int] = set()
    link: BaseException | None = exc
    while link is not None and id(link) not in seen:
        if isinstance(link, Cancelled):
            return str(link)
        seen.add(id(link))
        link = link.__cause__ or link.__context__
    if _signalled:
        return f"stopped by signal {_signalled[-1]} (it surfaced as {type(exc).__name__}: {exc})"
    return None


def default_max_concurrent() -> int:
    """``$CAKD_VIZ_MAX_RUNS``, else half the CPU cores (at least 1): each run uses one or more threads."""
    value = settings.number(MAX_RUNS_ENV)
    return int(value) if value is not None else max(1, (os.cpu_count() or 1) // 2)


def launch(config: RunConfig, root: str | Path | None = None, *, max_concurrent: int | None = None) -> Path:
    """Validate ``config``, create its run folder under ``root`` and start it in the background.

    Returns the run folder at once (the run may wait, ``queued``, for a slot). An invalid config
    raises ValueError before anything is created.
    """
    config.validate()
    run_dir = store.create_run(store.runs_dir(root), config.to_dict())
    spawn(run_dir, max_concurrent=max_concurrent)
    return run_dir


def spawn(run_dir: Path, *, max_concurrent: int | None = None) -> subprocess.Popen:
    """Start the process that executes the prepared folder ``run_dir``, in a new process group."""
    limit = max_concurrent or default_max_concurrent()
    return spawn_cli(run_dir, ["tune", "--run-dir", str(run_dir), "--max-concurrent", str(limit)])


def spawn_cli(folder: Path, args: list[str]) -> subprocess.Popen:
    """Run ``python -m cakd_viz ARGS -q`` for a run or sweep folder, detached in its own process group.

    Its output goes to the folder's log; the folder's status records it as ``queued`` with its pid.
    """
    cmd = [sys.executable, "-m", "cakd_viz", *args, "-q"]
    with open(folder / store.LOG, "ab") as log:
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
        )
    # The child is its own group leader (pgid == pid). Refused if it already left "queued".
    store.update_status(folder, "queued", **store.process_identity(proc.pid), pgid=proc.pid)
    threading.Thread(target=proc.wait, name=f"reap-{proc.pid}", daemon=True).start()  # no zombies
    return proc


def stop_folder(folder: Path, *, grace_s: float) -> bool:
    """Ask the process of a run or sweep folder to stop, then kill its whole group; False when it had ended."""
    try:
        status = store.read_json(folder / store.STATUS)
    except ValueError:
        return False
    if status.get("state") in store.FINAL:
        return False
    store.request_cancel(folder)
    pgid = run_group(status, folder)
    if pgid is not None:
        kill_group(pgid, grace_s=grace_s)
    return True


def run_group(status: dict, folder: Path) -> int | None:
    """The process group to signal for a run or sweep, or None: only when the process that status.json
    names provably is this folder's (pid, start time and host, ``store.process_liveness``) AND leads the
    group status.json names (a run is started in a session of its own, so its pid is its group's id).
    A folder naming a live pid and some other group never gets that group signalled."""
    pid, pgid = status.get("pid"), status.get("pgid")
    if not all(isinstance(v, int) and not isinstance(v, bool) and v > 1 for v in (pid, pgid)):
        return None
    if pid != pgid or store.process_liveness(status, folder) != "alive":
        return None
    try:
        return pgid if os.getpgid(pid) == pgid else None
    except OSError:  # gone since
        return None


def cancel(run_dir: str | Path, *, grace_s: float = 3.0) -> bool:
    """Stop a queued or running run and mark it ``cancelled``; False when it had already ended."""
    run_dir = Path(run_dir)
    if not stop_folder(run_dir, grace_s=grace_s):
        return False
    if store.update_status(run_dir, "cancelled", error=None) is not None:
        return True
    # its SIGTERM handler may have recorded "cancelled" itself before it went
    return store.read_json(run_dir / store.STATUS).get("state") == "cancelled"


def kill_group(pgid: int, *, grace_s: float = 3.0) -> None:
    """SIGTERM the process group, wait up to ``grace_s`` for it to go, then SIGKILL what is left."""
    for sig, wait in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not group_alive(pgid):
                return
            time.sleep(0.05)


def group_alive(pgid: int) -> bool:
    """Whether any process of the group still runs (zombies do not count)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    proc = Path("/proc")
    if not proc.is_dir():
        return True
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            rest = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if len(rest) > 2 and int(rest[2]) == pgid and rest[0] not in ("Z", "X"):
            return True
    return False


@contextlib.contextmanager
def run_slot(root: Path, limit: int, run_dir: Path, *, should_stop: Callable[[], bool]) -> Iterator[int]:
    """Hold one of ``limit`` slots under ``root`` for the run ``run_dir`` while the block runs; waits
    (oldest first, looked at every 0.5 s) when all are taken.

    Raises Cancelled when ``should_stop()`` turns true while waiting. Yields the slot number.
    """
    folder = root / SLOTS
    folder.mkdir(parents=True, exist_ok=True)
    while True:
        if should_stop():
            raise Cancelled("cancelled while queued")
        if not _older_waiting(root, run_dir):
            for i in range(limit):
                handle = open(folder / f"{i}.lock", "a")
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    handle.close()
                    continue
                try:
                    yield i
                finally:
                    fcntl.flock(handle, fcntl.LOCK_UN)
                    handle.close()
                return
        time.sleep(0.5)


def _older_waiting(root: Path, run_dir: Path) -> bool:
    """Whether a run queued before ``run_dir`` is itself waiting for a slot (first come, first served)."""
    try:
        mine = store.number(store.read_json(run_dir / store.STATUS).get("waiting_since")) or 0.0
        others = [p for p in root.iterdir() if p != run_dir and not p.name.startswith(".") and p.is_dir()]
    except (ValueError, OSError):
        return False
    for other in others:
        try:
            status = store.read_json(other / store.STATUS)
        except ValueError:
            continue  # a broken folder never holds up the queue
        since = store.number(status.get("waiting_since"))
        if status.get("state") == "queued" and since and since < mine:
            if store.process_liveness(status, other) == "alive":
                return True
    return False
