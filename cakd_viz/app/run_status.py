"""What the Tune page's live view says about runs in progress, without layout: progress lines, how many
runs and sweep trials train at once (two numbers, never one for both)."""

from __future__ import annotations

import time

from cakd_viz.app import config as app_config
from cakd_viz.app.config import plain
from cakd_viz.runs import engine, launcher, store
from cakd_viz.runs.results import RunInfo


def public_log(run: RunInfo, lines: int = 40) -> str:
    """The end of a run's log.txt as a browser may see it: server paths in their public form, and each
    traceback (a Python error's frames name the server's files and code) replaced by one line saying
    where the operator finds it. The run's error line is shown beside it."""
    text = app_config.scrub(store.log_tail(run.path, lines=lines * 4))
    marker = f"[a traceback: its frames are in {app_config.public_path(run.path / store.LOG)} on the server]"
    rows = text.splitlines()
    # a traceback longer than the tail: the tail starts among its frames (indented, one "File ..." at least)
    lead = next(
        (i for i, line in enumerate(rows) if line.strip() and not line.startswith((" ", "\t"))), len(rows)
    )
    in_traceback = any(line.lstrip().startswith('File "') for line in rows[:lead])
    out = [marker] if in_traceback else []
    for line in rows:
        if "Traceback (most recent call last):" in line:  # the log's lines start with their time
            in_traceback = True
            out.append(marker)
        elif in_traceback and (line.startswith((" ", "\t")) or not line.strip()):
            continue  # a frame, or the source line under it
        else:
            in_traceback = False
            out.append(line)
    return "\n".join(out[-lines:]) or "(log.txt is empty)"


def progress(run: RunInfo) -> tuple[float, str]:
    """An active run's progress bar: (fraction done, its one-line markdown text): "epoch 2/5", or until its
    first epoch ends what it waits for."""
    status, total = run.status.get("epoch"), run.config.get("epochs")  # 0 and 1 when the folder does not say
    done = max(status if isinstance(status, int) and not isinstance(status, bool) else 0, len(run.epochs))
    total = total if isinstance(total, int) and not isinstance(total, bool) and total > 0 else 1
    head, tail = f"**{plain(run.label)}**", f"`{run.id}`"
    if run.state == store.ELSEWHERE:
        return min(done / total, 1.0), f"{head} · running elsewhere · epoch {done}/{total} · {tail}"
    if run.state == "queued":
        return 0.0, f"{head} · queued: waiting for a free run slot · {tail}"
    if done == 0:
        started = run.status.get("started")
        known = isinstance(started, int | float) and not isinstance(started, bool)
        since = f", started {max(0.0, time.time() - started):.0f} s ago" if known else ""
        return 0.0, f"{head} · running: waiting for the first epoch to end{since} · {tail}"
    return min(done / total, 1.0), f"{head} · running · epoch {done}/{total} · {tail}"


def concurrency_text() -> str:
    """How many runs train at the same time, as the launcher and the sweep engine decide it."""
    runs, trials = launcher.default_max_concurrent(), engine.default_workers()
    return (
        f"A run trains when one of {runs} run slot{'s' if runs != 1 else ''} is free "
        f"(`{launcher.MAX_RUNS_ENV}`, else half the CPU cores) and waits queued until then; "
        f"a sweep runs {trials} trial{'s' if trials != 1 else ''} at a time "
        "(the CPU cores divided by each trial's threads)"
    )
