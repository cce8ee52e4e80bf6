"""Background jobs of the app's server: long computations that no page waits for.

One worker thread per server process runs the jobs one at a time, the most recently wanted first (on a
small machine two exact passes side by side would only slow each other down), at a lower CPU priority
(``NICE``) than the pages, so a page's preview is drawn while a pass runs. A page that shows a
job's preview "wants" it: ``submit`` (or ``touch``) renews the job's time; a queued job nobody has
wanted for ``ABANDON_S`` is dropped, and a running one is cancelled at its next progress report (its
work so far is lost, nothing is stored). A job's function gets ``report(done, total, elsewhere=False)``
(``elsewhere``: another process computes it and this job waits), which raises ``Cancelled`` once the
job is abandoned. Finished jobs are kept (``KEEP_FINISHED``, newest last) so
that every session can read how they ended. No Streamlit here: the runner is plain threads.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from cakd_viz.results_cache import Cancelled

LOG = logging.getLogger("cakd_viz.app.jobs")
NICE = 10  # the worker thread's niceness: pages (script threads) and the browser come first on a busy CPU
ABANDON_S = 60.0  # a job no page has asked about for this long is dropped (queued) or cancelled (running)
KEEP_FINISHED = 256
STATES = ("queued", "running", "done", "failed", "cancelled")


@dataclass
class Job:
    """One background computation and what it has said about itself (read by any session)."""

    key: str
    title: str  # what it computes, in words: "kd under topk:5 at T = 4"
    fn: Callable[[Callable[[int, int], None]], object] = field(repr=False)
    state: str = "queued"
    done: int = 0
    total: int = 0
    error: str = ""
    elsewhere: bool = False  # waiting for another process that computes the same result
    result: object = field(default=None, repr=False)  # what fn returned (for results kept in memory)
    priority: int = 0  # higher runs first (before any more recently wanted job of a lower priority)
    submitted: float = field(default_factory=time.monotonic)
    wanted: float = field(default_factory=time.monotonic)
    started: float | None = None
    ended: float | None = None

    @property
    def finished(self) -> bool:
        return self.state in ("done", "failed", "cancelled")

    @property
    def fraction(self) -> float:
        return 0.0 if self.total <= 0 else min(1.0, self.done / self.total)

    def elapsed(self) -> float:
        """Seconds since it started (until it ended); 0 while queued."""
        if self.started is None:
            return 0.0
        return (self.ended or time.monotonic()) - self.started


class Runner:
    """Runs submitted jobs on one worker thread (started on the first submit)."""

    def __init__(self, *, abandon_s: float = ABANDON_S) -> None:
        self.abandon_s = abandon_s
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._thread: threading.Thread | None = None
        self._closing = False

    def submit(
        self, key: str, title: str, fn: Callable[[Callable[[int, int], None]], object], *, priority: int = 0
    ) -> Job:
        """The job under ``key``: the one already queued, running or done, or a new one running ``fn``.
        A job that failed or was cancelled is started again. Renews the job's "wanted" time."""
        with self._lock:
            job = self._jobs.get(key)
            if job is None or job.state in ("failed", "cancelled"):
                job = Job(key, title, fn, priority=priority)
                self._jobs.pop(key, None)
                self._jobs[key] = job
                self._prune()
                self._start()
                self._wake.notify_all()
            job.wanted = time.monotonic()
            return job

    def get(self, key: str) -> Job | None:
        with self._lock:
            return self._jobs.get(key)

    def touch(self, keys) -> None:
        """Renew the "wanted" time of these jobs (a page still shows their previews)."""
        now = time.monotonic()
        with self._lock:
            for key in keys:
                job = self._jobs.get(key)
                if job is not None:
                    job.wanted = now

    def forget(self, key: str) -> None:
        """Drop a finished job (its result is read from elsewhere now, or must be computed anew)."""
        with self._lock:
            job = self._jobs.get(key)
            if job is not None and job.finished:
                del self._jobs[key]

    def jobs(self) -> list[Job]:
        with self._lock:
            return list(self._jobs.values())

    def wait(self, key: str, timeout: float) -> Job | None:
        """Block until the job under ``key`` has finished (or ``timeout`` seconds); for tests and scripts."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                job = self._jobs.get(key)
                if job is None or job.finished or time.monotonic() >= deadline:
                    return job
                self._wake.wait(min(0.2, max(0.0, deadline - time.monotonic())))

    # -- the worker ------------------------------------------------------------------------------------

    def _start(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._work, name="cakd-viz-jobs", daemon=True)
            self._thread.start()

    def _next(self) -> Job | None:
        """The queued job of the highest priority wanted most recently; queued jobs nobody wants any more
        are dropped."""
        now = time.monotonic()
        queued = []
        for job in self._jobs.values():
            if job.state != "queued":
                continue
            if now - job.wanted > self.abandon_s:
                job.state, job.error, job.ended = "cancelled", "no page asked for it any more", now
            else:
                queued.append(job)
        return max(queued, key=lambda j: (j.priority, j.wanted), default=None)

    def shut_down(self, timeout: float = 10.0) -> None:
        """Cancel every job and wait (at most ``timeout`` s) for the running one to stop: called when the
        server exits, so that no computation is cut off inside native code."""
        with self._lock:
            self._closing = True
            for job in self._jobs.values():
                if job.state == "queued":
                    job.state, job.error, job.ended = (
                        "cancelled",
                        "the server is shutting down",
                        time.monotonic(),
                    )
            self._wake.notify_all()
            thread = self._thread
        if thread is not None and thread.is_alive():
            thread.join(timeout)

    def _work(self) -> None:
        # Linux keeps a niceness per thread, and the threads torch starts from this one inherit it: the
        # exact passes then take the CPU only when the pages (and everything else) leave it idle.
        with contextlib.suppress(OSError, AttributeError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), NICE)
        while True:
            with self._lock:
                job = None if self._closing else self._next()
                while job is None:
                    if self._closing:
                        return
                    self._wake.wait(timeout=5.0)
                    job = self._next()
                job.state, job.started = "running", time.monotonic()
            self._run(job)

    def _run(self, job: Job) -> None:
        def report(done: int, total: int, elsewhere: bool = False) -> None:
            job.done, job.total, job.elsewhere = int(done), int(total), elsewhere
            if self._closing or time.monotonic() - job.wanted > self.abandon_s:
                raise Cancelled

        state, error, result = "done", "", None
        try:
            result = job.fn(report)
        except Cancelled:
            state, error = "cancelled", "no page asked for it any more"
        except Exception as exc:  # a job's failure is shown on the pages that wanted it
            LOG.exception("background job %s failed", job.title)
            state, error = "failed", _one_line(exc)
        with self._lock:
            job.result = result
            job.state, job.error, job.ended = state, error, time.monotonic()
            self._wake.notify_all()

    def _prune(self) -> None:
        finished = [k for k, j in self._jobs.items() if j.finished]
        for key in finished[: max(0, len(finished) - KEEP_FINISHED)]:
            del self._jobs[key]


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 300 else text[:299] + "…"


_RUNNER: Runner | None = None
_RUNNER_LOCK = threading.Lock()


def runner() -> Runner:
    """This server process's runner (one for every session); it is shut down when the process exits."""
    global _RUNNER
    with _RUNNER_LOCK:
        if _RUNNER is None:
            _RUNNER = Runner()
            atexit.register(_RUNNER.shut_down)
        return _RUNNER


@contextlib.contextmanager
def private_runner(**kwargs):
    """Use a fresh runner for the ``with`` block (tests), then put the previous one back."""
    global _RUNNER
    with _RUNNER_LOCK:
        previous, _RUNNER = _RUNNER, Runner(**kwargs)
    try:
        yield _RUNNER
    finally:
        with _RUNNER_LOCK:
            _RUNNER = previous
