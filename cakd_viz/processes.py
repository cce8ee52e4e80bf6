"""Who wrote a file, and whether that process still runs: pid, start time and host.

A pid alone proves nothing: pids are reused, and a folder on a shared disk may have been written on
another machine. So a writer records ``identity()`` = {"pid", "pid_start", "host"} (the start time in
clock ticks since boot, from Linux's /proc), and a reader asks :func:`liveness`, which answers

    "alive"      this host, the pid runs, and it is the same process (start time matches)
    "gone"       this host, and the pid is free, a zombie, or now another process
    "elsewhere"  another host: it cannot be checked from here
    "unproven"   this host, the pid runs, but nothing shows it is the writer (no start time was
                 recorded and no argument on its command line names ``hint``): not proof of life

Writers' temporary files and folders carry their owner (in their name, :func:`owner_tag`, or in a
small file), so that the next writer to the same target can remove what a killed writer left behind
(:func:`abandoned`) and never what a live one is still writing. Used by run folders
(``cakd_viz.runs.store``) and by the bundle and table writers (``cakd_viz.bundle.writer``,
``cakd_viz.cli._common``).
"""

from __future__ import annotations

import hashlib
import os
import re
import socket
from pathlib import Path

__all__ = [
    "FOREIGN_STALE_AFTER_S",
    "STALE_AFTER_S",
    "abandoned",
    "host_tag",
    "identity",
    "liveness",
    "owner_tag",
    "parse_owner_tag",
    "start_ticks",
]

STALE_AFTER_S = 60.0  # a leftover whose owner cannot be checked is removed after this long
FOREIGN_STALE_AFTER_S = 24 * 3600.0  # ... and after this long when its owner ran on another host
_TAG_RE = re.compile(r"(\d+)-(\d+|x)-([0-9a-f]{8})$")


def start_ticks(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (Linux /proc); -1 for a zombie; None if unknown."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (OSError, ValueError):
        return None
    rest = text[text.rfind(")") + 2 :].split()  # fields after "pid (comm)"
    if rest and rest[0] in ("Z", "X"):
        return -1
    try:
        return int(rest[19]) if len(rest) > 19 else None
    except ValueError:
        return None


def identity(pid: int | None = None) -> dict:
    """{"pid", "pid_start", "host"} of a process (default: this one)."""
    pid = os.getpid() if pid is None else pid
    return {"pid": pid, "pid_start": start_ticks(pid), "host": socket.gethostname()}


def host_tag(host: str | None = None) -> str:
    """A short file-name-safe tag of a host name (8 hex digits), for names like ``.x.tmp-PID-START-TAG``."""
    return hashlib.sha1((host or socket.gethostname()).encode()).hexdigest()[:8]


def liveness(pid: object, pid_start: object = None, host: object = None, *, hint: str | None = None) -> str:
    """Whether the process a file names runs: "alive", "gone", "elsewhere" or "unproven" (module docstring).

    ``pid_start`` None means none was recorded; then the process counts as alive only when one of its
    command-line arguments names ``hint`` (e.g. the run folder's name, as in ``--run-dir RUNS/ID``),
    since a reused pid (or pid 1) would otherwise read alive forever.
    """
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return "gone"
    if host is not None and host != socket.gethostname():
        return "elsewhere"
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):
        return "gone"
    except PermissionError:
        pass  # it exists, owned by someone else
    start = start_ticks(pid)
    if start == -1:  # a zombie: exited, not yet reaped
        return "gone"
    if pid_start is not None:  # without /proc (start None) the pid exists, and that is all we can tell
        return "alive" if start is None or pid_start == start else "gone"
    if hint and any(_last_part(arg) == hint for arg in _argv(pid)):
        return "alive"
    return "unproven"


def _argv(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return raw.decode("utf-8", "replace").split("\0")


def _last_part(arg: str) -> str:
    """The last path component of an argument's value: "--run-dir=/runs/ID/" -> "ID"."""
    return arg.rpartition("=")[2].rstrip("/").rpartition("/")[2]


def owner_tag() -> str:
    """This process as a file-name part, ``PID-START-HOSTTAG`` (START "x" when unknown)."""
    start = start_ticks(os.getpid())
    return f"{os.getpid()}-{'x' if start is None or start < 0 else start}-{host_tag()}"


def parse_owner_tag(text: str) -> dict | None:
    """{"pid", "pid_start", "host"} from a name ending in an :func:`owner_tag` (host: "" when it is not
    this host's tag, None when this host's); None when ``text`` carries no tag."""
    m = _TAG_RE.search(text)
    if m is None or m.end() != len(text):
        return None
    pid, start, tag = m.groups()
    return {
        "pid": int(pid),
        "pid_start": None if start == "x" else int(start),
        "host": None if tag == host_tag() else "",
    }


def abandoned(owner: dict | None, age_s: float) -> bool:
    """Whether a writer's leftover may be removed: its owner ({"pid", "pid_start", "host"}) is gone.

    A leftover with no owner on record, or whose owner runs but cannot be proven to be the writer, is
    abandoned once older than ``STALE_AFTER_S``; one written on another host (which cannot be
    checked), once older than ``FOREIGN_STALE_AFTER_S``. A proven live writer's never is.
    """
    if owner is None:
        return age_s > STALE_AFTER_S
    live = liveness(owner.get("pid"), owner.get("pid_start"), owner.get("host"))
    if live in ("gone", "alive"):
        return live == "gone"
    return age_s > (FOREIGN_STALE_AFTER_S if live == "elsewhere" else STALE_AFTER_S)
