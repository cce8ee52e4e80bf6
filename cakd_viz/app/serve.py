"""Start the app as a real server and drive it with Chromium (the browser tests, benchmarks and
screenshots): Debian's Chromium through Playwright, never a downloaded one."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

REPO = Path(__file__).resolve().parents[2]  # a clone's root (the folder holding the package)
CHROMIUM = os.environ.get("CAKD_VIZ_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = "--no-sandbox --disable-gpu --disable-background-networking --no-first-run".split()
CHROMIUM_ARGS += ["--disable-component-update", "--disable-sync"]
EXCEPTION = '[data-testid="stException"]'


class Server(NamedTuple):
    """A running app: its base URL and the pid of the `streamlit run` process (its group leader)."""

    url: str
    pid: int


@contextlib.contextmanager
def running_app(*args, **kwargs) -> Iterator[str]:
    """Run the app on a free port (``running_server``'s arguments); yields its base URL. The server
    process group is killed on exit."""
    with running_server(*args, **kwargs) as server:
        yield server.url


@contextlib.contextmanager
def running_server(
    env: dict[str, str] | None = None,
    timeout: float = 90.0,
    log: Path | None = None,
    *,
    paths: tuple[str | Path, ...] = (),
    python: str | Path = sys.executable,
    cwd: str | Path | None = None,
) -> Iterator[Server]:
    """As `running_app`, yielding a `Server` (URL and pid, e.g. to read the server's memory).

    The server is started as users start it, ``python -m cakd_viz app [PATHS] --port N`` (``python``: the
    interpreter of the environment to serve from, e.g. a fresh one with the wheel installed), in ``cwd``
    (default: the folder holding the package, a clone's root). A variable set to None in ``env`` is
    removed from the server's environment."""
    with socket.socket() as s:  # a free port
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    cmd = [str(python), "-m", "cakd_viz", "app", *map(str, paths), "--port", str(port)]
    cmd += ["--address", "127.0.0.1"]
    with contextlib.ExitStack() as files:  # the log file is closed on exit, the server started or not
        out = files.enter_context(open(log, "wb")) if log else subprocess.DEVNULL
        proc = subprocess.Popen(
            cmd,
            cwd=cwd or REPO,
            env={k: v for k, v in {**os.environ, **(env or {})}.items() if v is not None},  # None: unset
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            _wait_healthy(url, proc, timeout)
            yield Server(url, proc.pid)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)


def memory_bytes(pid: int) -> dict[str, int]:
    """Resident memory of process `pid` in bytes (Linux /proc/PID/status): "rss" (VmRSS), "peak" (VmHWM,
    since the last `reset_peak_memory`), "anon" (RssAnon: heap, not memory-mapped files)."""
    fields = dict(line.partition(":")[::2] for line in Path(f"/proc/{pid}/status").read_text().splitlines())
    keys = {"VmRSS": "rss", "VmHWM": "peak", "RssAnon": "anon"}
    return {name: int(fields[key].split()[0]) * 1024 for key, name in keys.items() if key in fields}


def reset_peak_memory(pid: int) -> None:
    """Start a new peak-resident measurement of `pid` (writes 5 to /proc/PID/clear_refs; Linux >= 4.0)."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


class PeakAnon:
    """Samples a process's anonymous resident memory (RssAnon) every `every_s` seconds in a thread
    while the `with` block runs; `.peak` is the largest seen (the kernel keeps no peak of it)."""

    def __init__(self, pid: int, every_s: float = 0.005) -> None:
        self.pid, self.every_s, self.peak = pid, every_s, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        stopped = False
        while not stopped:  # one last sample once stopped
            stopped = self._stop.wait(self.every_s)
            with contextlib.suppress(OSError, KeyError):
                self.peak = max(self.peak, memory_bytes(self.pid)["anon"])

    def __enter__(self) -> PeakAnon:
        self.peak = memory_bytes(self.pid)["anon"]
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def _wait_healthy(url: str, proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"streamlit exited with code {proc.returncode} before serving {url}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"streamlit did not answer at {url} within {timeout:.0f} s")


def chromium_missing() -> str | None:
    """A message saying how to install Chromium, or None when it is there."""
    if Path(CHROMIUM).is_file() or shutil.which(CHROMIUM):
        return None
    return f"Chromium not found at {CHROMIUM}: install it with `apt-get install chromium` (never `playwright install`)"


@contextlib.contextmanager
def browser():
    """A Playwright Chromium browser (Debian's binary); closed on exit."""
    from playwright.sync_api import sync_playwright

    missing = chromium_missing()
    if missing:
        raise RuntimeError(missing)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


def wait_rendered(page, *, charts: int = 0, timeout_ms: float = 120_000, settle_ms: int = 250) -> None:
    """Wait until the script run is over (the app root says "notRunning", no stale elements) and `charts`
    Plotly charts are drawn, and still so `settle_ms` later (a rerun can follow a finished run at once)."""
    done = """(charts) => {
        const app = document.querySelector('[data-testid="stApp"]');
        if (!app || app.getAttribute('data-test-script-state') !== 'notRunning') return false;
        if (document.querySelector('[data-stale="true"]')) return false;
        return document.querySelectorAll('.js-plotly-plot .main-svg').length >= charts;
    }"""
    deadline = time.monotonic() + timeout_ms / 1000
    while True:
        left = max(1.0, (deadline - time.monotonic()) * 1000)
        page.wait_for_function(done, arg=charts, timeout=left, polling=50)
        page.wait_for_timeout(settle_ms)
        if page.evaluate(done, charts):
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"page did not settle within {timeout_ms / 1000:.0f} s")


def after_rerun(page, action, *, charts: int = 0, timeout_ms: float = 120_000) -> None:
    """Do ``action()`` (a click, a key press) and wait for the script run it starts to end: an observer on
    the app's script state, attached before the action, records that a run began (so a run that ends
    before we look is not missed, and one that has not begun yet is not taken for done)."""
    page.evaluate(
        """() => {
            window.__cakdRan = false;
            const app = document.querySelector('[data-testid="stApp"]');
            const seen = () => {
                if (app.getAttribute('data-test-script-state') !== 'notRunning') window.__cakdRan = true;
            };
            window.__cakdWatch && window.__cakdWatch.disconnect();
            window.__cakdWatch = new MutationObserver(seen);
            window.__cakdWatch.observe(app, {attributes: true, attributeFilter: ['data-test-script-state']});
        }"""
    )
    action()
    page.wait_for_function("() => window.__cakdRan === true", timeout=timeout_ms, polling=20)
    wait_rendered(page, charts=charts, timeout_ms=timeout_ms)


def full_screenshot(page, path: Path | str, *, max_height: int = 12000) -> None:
    """Screenshot the whole page: Streamlit scrolls inside its main container, so grow the viewport first."""
    size = page.viewport_size or {"width": 1400, "height": 900}
    height = page.evaluate(
        """() => {
            const main = document.querySelector('[data-testid="stMain"]');
            const side = document.querySelector('[data-testid="stSidebarContent"]');
            return Math.max(main ? main.scrollHeight : 0, side ? side.scrollHeight : 0, window.innerHeight);
        }"""
    )
    page.set_viewport_size({"width": size["width"], "height": min(int(height) + 20, max_height)})
    page.wait_for_timeout(300)  # let Plotly react to the resize
    page.screenshot(path=str(path), full_page=True)
    page.set_viewport_size(size)
