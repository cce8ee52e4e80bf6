"""What `bench_probe_replay.py` needs besides its cases: outcomes, the case runner, subprocesses measured
one by one, and the checks that read what a page shows (AppTest's element tree) or a command prints.

An outcome is decided per case: the case function returns normally (clean), raises ``Wrong`` (it ran,
but not as documented), ``NotRun`` (this machine cannot replay it), or anything else (crashed: the
exception escaped, a process died of a signal, or it hung past its time limit).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))  # the hostile files and /proc sampling, the AppTest launcher

import hostile_files as H  # noqa: E402

MiB = 2**20


class Wrong(Exception):
    """The case ran, but its outcome is not the documented one (the message says why, in a few words)."""


class NotRun(Exception):
    """This machine cannot replay the case (the message says why); counted apart from the four figures."""


class Hang(BaseException):
    """An in-process case ran past its time limit (raised by the alarm of ``time_limit``)."""


@dataclass(frozen=True)
class Case:
    category: str
    name: str
    run: Callable[[], None]
    quick: bool = True  # part of --quick
    limit_s: float = 240.0


@dataclass(frozen=True)
class Outcome:
    case: Case
    state: str  # clean | crashed | wrong | not run
    reason: str = ""


def check(condition: object, reason: str) -> None:
    """Raise ``Wrong(reason)`` unless ``condition`` holds."""
    if not condition:
        raise Wrong(reason)


@contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Raise ``Hang`` in this (main) thread after ``seconds``: SIGALRM to this process only."""

    def ring(signum, frame):
        raise Hang(f"hung past {seconds:.0f} s")

    previous = signal.signal(signal.SIGALRM, ring)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def replay(case: Case, verbose: bool = False) -> Outcome:
    """Run one case and decide its outcome (printed with ``verbose``)."""
    t0 = time.monotonic()
    try:
        with time_limit(case.limit_s):
            case.run()
        state, reason = "clean", ""
    except Wrong as exc:
        state, reason = "wrong", str(exc)
    except NotRun as exc:
        state, reason = "not run", str(exc)
    except Hang as exc:
        state, reason = "crashed", str(exc)
    except BaseException as exc:  # noqa: BLE001 - an escaped exception is what "crashed" means
        if isinstance(exc, KeyboardInterrupt):
            raise
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        state, reason = "crashed", f"{type(exc).__name__}: {first}"
    if verbose:
        print(f"{time.monotonic() - t0:6.1f} s  {state:8s} {case.category} / {case.name}", flush=True)
    return Outcome(case, state, reason)


def refusal(fn: Callable, *args, wrong: str, text: Callable = str, **kwargs) -> str:
    """``text`` of the ValueError that ``fn(*args, **kwargs)`` raises; ``Wrong(wrong)`` when it returns."""
    try:
        fn(*args, **kwargs)
    except ValueError as exc:
        return text(exc)
    raise Wrong(wrong)


# -- subprocesses -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Finished:
    """A subprocess as it ended: its exit code (negative: the signal that killed it), output, and peak
    memory in MiB (VmHWM, and anonymous RssAnon), sampled from /proc while it ran."""

    code: int
    stdout: str
    stderr: str
    peak_mb: float
    anon_mb: float
    seconds: float


def command(args: list[str], *, cwd: Path, env: dict | None = None, timeout: float = 120) -> Finished:
    """Run ``args`` in a session (process group) of its own, output to files (a pipe nobody reads while
    sampling could fill up). Past ``timeout`` its own group is killed and ``Hang`` raised: no other
    process is ever signalled."""
    t0 = time.monotonic()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(
            args, cwd=cwd, env=env, stdout=out, stderr=err, stdin=subprocess.DEVNULL, start_new_session=True
        )
        peak = H.sample_peaks(proc, timeout=timeout)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)  # the group this call started (pgid == its pid)
            proc.wait()
            raise Hang(f"{' '.join(args[1:4])} hung past {timeout:.0f} s")
        out.seek(0), err.seek(0)
        text = [f.read().decode(errors="replace") for f in (out, err)]
    return Finished(proc.returncode, *text, peak["peak"] / MiB, peak["anon"] / MiB, time.monotonic() - t0)


def cli(*args: object, cwd: Path, env: dict | None = None, timeout: float = 120) -> Finished:
    """``python -m cakd_viz ARGS`` with this tree first on the path."""
    full = os.environ | {"PYTHONPATH": str(REPO)} | (env or {})
    return command([sys.executable, "-m", "cakd_viz", *map(str, args)], cwd=cwd, env=full, timeout=timeout)


def one_line_refusal(done: Finished, *, codes=(1, 2), says: str = "") -> str:
    """The one stderr line of a refused command; ``Wrong`` unless it exited with one of ``codes`` (not a
    signal), printed exactly one line without a traceback, containing ``says``."""
    if done.code < 0:
        raise Wrong(f"killed by signal {-done.code}")
    lines = done.stderr.strip().splitlines()
    check(done.code in codes, f"exit code {done.code}, expected one of {codes}: {lines[-1:]}")
    check(len(lines) == 1, f"{len(lines)} lines on stderr, not one: {lines[:2]}")
    check("Traceback" not in done.stderr, "a traceback on stderr")
    check(says in lines[0], f"the line does not say {says!r}: {lines[0][:160]!r}")
    return lines[0]


def run_folder(root: Path, run_id: str, status: dict, log: str = "", /, **config) -> Path:
    """A run folder written by hand, as a forger or a broken run would leave it: config.json (a 1-epoch KD
    run on the digits named ``run_id``, updated by ``config``), status.json and log.txt."""
    folder = root / run_id
    folder.mkdir(parents=True)
    config = {
        "name": run_id,
        "data": "sample:digits",
        "student": "mlp",
        "loss": {"name": "kd"},
        "epochs": 1,
    } | config
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "status.json").write_text(json.dumps({"created": time.time()} | status))
    (folder / "log.txt").write_text(log)
    return folder


# -- what a page shows ---------------------------------------------------------------------------------------

# Streamlit renders these fields of these elements as Markdown; code blocks, plain text, dataframes and
# option lists are literal.
MARKDOWN_FIELDS = ("body", "label", "help", "placeholder", "caption")
LITERAL_TYPES = ("code", "text", "json", "dataframe", "arrow_data_frame", "exception")


def page_texts(at) -> Iterator[tuple[str, str, str]]:
    """(element type, field, string) of every string field of every element and block of an AppTest run."""
    stack = [at._tree]
    while stack:
        node = stack.pop()
        stack.extend(getattr(node, "children", {}).values())
        proto = getattr(node, "proto", None)
        if proto is None or not hasattr(proto, "ListFields"):
            continue
        for name, value in _strings(proto):
            yield getattr(node, "type", "?"), name, value


def _strings(message) -> Iterator[tuple[str, str]]:
    for field, value in message.ListFields():
        repeated = isinstance(value, Sequence) and not isinstance(value, str | bytes)
        values = value if repeated else [value]
        for item in values:
            if isinstance(item, str):
                yield field.name, item
            elif hasattr(item, "ListFields"):
                yield from _strings(item)


LIVE = {
    "a Markdown image": "![pwned](",
    "a Markdown link": "[pwned](",
    "LaTeX": "$$\\huge",
    "raw HTML": "<img src=x",
    "an escape sequence": "\x1b",
    "a BEL byte": "\x07",
}
_CODE_SPAN = re.compile(r"`[^`\n]*`")


def live_markup(text: str) -> list[str]:
    """What in a Markdown source would render as markup from the hostile strings: outside code spans
    (shown literally, ``cakd_viz.text.code``), any of them verbatim; ``cakd_viz.text.markdown`` puts a
    backslash before every punctuation character, so an escaped one is never verbatim."""
    outside = _CODE_SPAN.sub("", text)  # control bytes count inside code spans too
    return [what for what, mark in LIVE.items() if mark in (text if mark in "\x1b\x07" else outside)]


def markup_problems(at, seen_word: str) -> tuple[list[str], int]:
    """([element: what renders live], how many Markdown strings show ``seen_word``)."""
    problems, seen = [], 0
    for kind, field, value in page_texts(at):
        if kind in LITERAL_TYPES or field not in MARKDOWN_FIELDS:
            continue
        seen += seen_word in value
        problems += [f"{kind}.{field}: {what}" for what in live_markup(value)]
    return problems, seen


def as_read(markdown: str) -> str:
    """A Markdown line as a person reads it: the backslash escapes of ``cakd_viz.text.markdown`` out, and
    the zero-width spaces it puts into addresses."""
    return re.sub(r"\\(.)", r"\1", markdown).replace("\u200b", "")


def shows(text: str, forbidden: list[str]) -> list[str]:
    """The server paths of ``forbidden`` that ``text`` shows, also as a person reads it, and "a traceback"."""
    text += "\n" + as_read(text)
    return [p for p in forbidden if p in text] + ["a traceback"] * (
        "Traceback (most recent" in text or 'File "' in text
    )


def leaks(at, forbidden: list[str]) -> list[str]:
    """Every element string showing a server path from ``forbidden`` or a traceback."""
    return [
        f"{kind}.{field} shows {what}"
        for kind, field, value in page_texts(at)
        for what in shows(value, forbidden)
    ]


def page_ok(at) -> None:
    """An exception box on the page is a crash: RuntimeError naming the first."""
    if at.exception:
        raise RuntimeError(f"the page raised: {str(at.exception[0].value)[:160]}")
