"""How many threads the decomposition kernel runs on: the CPUs this process may use that are free now.

    threads = default_threads(requested, new_pass=start == 0)  # for every kernel call (a chunk of rows)

The smallest of ``requested`` (``decompose`` passes ``torch.get_num_threads()``, so a run that set one
thread per trial keeps one), the affinity CPUs, the cgroup v2 quota, and the CPUs free now: the affinity
CPUs less those other processes keep busy on average over a window of at least ``WINDOW_S`` within one
pass (``others_busy``; the last pass's average stands until a new window holds ``WINDOW_S``), a CPU counted
from ``TAKEN`` of it, or from ``SHARED`` where another process's thread is runnable at that instant (a
CPU-bound neighbour that shared a core with two threads of ours kept only two thirds of it, yet it is
always runnable, so it costs one thread; a neighbour busy in bursts, a browser drawing the page beside
the pass, costs none unless caught in a burst). Where no recent window exists (``MAX_AGE_S``), the threads
of other processes runnable at this instant (``other_runnable``: torch's OpenMP workers spin for a moment
after each parallel region and are no competition). Not the load averages: they lag by a minute. Only
where the affinity mask covers every online CPU, since both counts are machine-wide.

Why a window never spans two passes: the time between them is when others run most. In the app it is
when the browser draws the last pass's result, and it stops as the next pass starts. Windows that held
that time left one thread on 5-20% of the chunks of a temperature change's pass over 1.28M rows, all in
its first second, with the browser beside the server; a CPU-bound neighbour is as busy during a pass as
between passes, and the last pass's window shows it.

Why fit the free CPUs: beside one CPU-bound process on two cores, two threads of ours would share the
machine three ways and slow that process (a tuning run, say) for a gain of a third; one thread gets a
whole core. Beside a bursty neighbour, two threads still get more than one core's worth: in the app, a
browser on the same two cores left one thread on 13-18% of each pass's chunks when half a core
counted as taken outright. The kernel's dynamic scheduling keeps a wrong guess cheap either way: a
thread that the OS deschedules holds up nobody, and the next call decides again.
"""

from __future__ import annotations

import math
import os
import threading
import time
from pathlib import Path

LOADAVG = Path("/proc/loadavg")
CPU_MAX = Path("/sys/fs/cgroup/cpu.max")
STAT = Path("/proc/stat")
WINDOW_S = 0.5  # others' CPU use is averaged over at least this long
MAX_AGE_S = 5.0  # a window longer than this (the first call after a pause) is not used
TAKEN = 0.75  # others' average CPU use counts as one CPU taken from this much of it on
SHARED = 0.5  # and from this much where another process's thread is runnable at that instant
TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def affinity_cpus() -> int:
    """CPUs this process may run on (its affinity mask), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return max(1, os.cpu_count() or 1)


def quota_cpus(path: Path = CPU_MAX) -> int | None:
    """The cgroup v2 CPU quota in whole CPUs (rounded up), or None where none is set or readable."""
    try:
        quota, period = path.read_text().split()[:2]
        return None if quota == "max" else max(1, math.ceil(int(quota) / int(period)))
    except (OSError, ValueError, ZeroDivisionError):
        return None


def other_runnable(path: Path = LOADAVG) -> int | None:
    """Threads of other processes that are runnable now (machine-wide), or None if unknown."""
    try:
        running = int(path.read_text().split()[3].split("/")[0])
    except (OSError, IndexError, ValueError):
        return None
    if running <= 1:  # only the thread reading the file
        return 0
    return max(0, running - 1 - own_runnable())


def own_runnable(tasks: Path = Path("/proc/self/task")) -> int:
    """This process's threads other than the calling one in state R (running or runnable) now."""
    me, count = threading.get_native_id(), 0
    try:
        entries = list(tasks.iterdir())
    except OSError:
        return 0
    for entry in entries:
        if entry.name == str(me):
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # the thread ended meanwhile
            continue
        count += stat[stat.rfind(")") + 2 : stat.rfind(")") + 3] == "R"  # the state follows "(comm) "
    return count


def _machine_busy_s(path: Path) -> float | None:
    """CPU seconds the whole machine has spent busy (user, nice, system, irq, softirq, steal), or None."""
    try:
        fields = path.read_text().split("\n", 1)[0].split()
        user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[1:9])
    except (OSError, ValueError):
        return None
    return (user + nice + system + irq + softirq + steal) / TICKS


class _Window:
    """The window's first sample (monotonic time, machine busy s, own CPU s); the last average (CPUs) of
    others and the time it was taken."""

    lock = threading.Lock()
    sample: tuple[float, float, float] | None = None
    average: float | None = None
    taken = -math.inf


def others_busy(path: Path = STAT, now: float | None = None, *, new_pass: bool = False) -> float | None:
    """CPUs other processes kept busy on average over the last window (between this call and the sample
    at least WINDOW_S before it, both in one pass: ``new_pass``, a pass's first call, starts a window), or
    None where there is none yet or it ended more than MAX_AGE_S ago."""
    busy = _machine_busy_s(path)
    if busy is None:
        return None
    times = os.times()
    sample = (time.monotonic() if now is None else now, busy, times.user + times.system)
    with _Window.lock:
        prev = _Window.sample
        if new_pass or prev is None or sample[0] - prev[0] > MAX_AGE_S:  # a window starts
            _Window.sample = sample
        elif sample[0] - prev[0] >= WINDOW_S:
            others = (sample[1] - prev[1]) - (sample[2] - prev[2])
            _Window.sample, _Window.average = sample, max(0.0, others / (sample[0] - prev[0]))
            _Window.taken = sample[0]
        return _Window.average if sample[0] - _Window.taken <= MAX_AGE_S else None


def default_threads(requested: int, *, new_pass: bool = False) -> int:
    """Threads for one kernel call: min(requested, affinity CPUs, cgroup quota, free CPUs), at least 1.
    new_pass: this is the first call of a pass over rows (see ``others_busy``)."""
    cpus = affinity_cpus()
    limit = min(max(1, int(requested)), cpus, quota_cpus() or cpus)  # (a quota is at least 1 CPU)
    if cpus >= (os.cpu_count() or cpus):  # the counts are machine-wide: only meaningful then
        average = others_busy(new_pass=new_pass)
        if average is None:
            others = other_runnable()
        else:
            others = math.floor(average + 1 - TAKEN)
            if average - others >= SHARED and (other_runnable() or 0) > others:
                others += 1
        if others is not None:
            limit = min(limit, max(1, cpus - others))
    return max(1, limit)
