"""The app's background job runner: one at a time, most recently wanted first, abandoned jobs dropped."""

from __future__ import annotations

import threading
import time

from cakd_viz.app.jobs import Runner


def _blocker():
    gate = threading.Event()

    def fn(report):
        report(0, 1)
        gate.wait(10)
        report(1, 1)
        return "first"

    return gate, fn


def test_jobs_run_one_at_a_time_the_most_recently_wanted_first():
    runner = Runner()
    order = []
    gate, blocker = _blocker()
    runner.submit("block", "blocker", blocker)
    while runner.get("block").state != "running":
        time.sleep(0.01)
    for name in ("a", "b", "c"):
        runner.submit(name, name, lambda report, name=name: order.append(name))
        time.sleep(0.01)
    runner.touch(["a"])  # a page asked about "a" again: it is now the most recently wanted
    assert [runner.get(k).state for k in "abc"] == ["queued"] * 3
    gate.set()
    for name in "abc":
        assert runner.wait(name, 10).state == "done"
    assert order == ["a", "c", "b"]
    assert runner.get("block").result == "first"


def test_submitting_again_returns_the_same_job_and_a_failed_one_restarts():
    runner = Runner()
    calls = []

    def fail(report):
        calls.append(1)
        raise ValueError("teacher.npy has a non-finite value (nan) at row 3,\nclass 2")

    job = runner.submit("k", "k", fail)
    assert runner.wait("k", 10).state == "failed"
    assert job.error == "teacher.npy has a non-finite value (nan) at row 3, class 2"  # one line
    again = runner.submit("k", "k", lambda report: 42)
    assert again is not job and runner.wait("k", 10).result == 42
    assert runner.submit("k", "k", fail) is again and len(calls) == 1  # done: not run again


def test_abandoned_jobs_are_dropped_or_cancelled():
    runner = Runner(abandon_s=0.3)
    started = threading.Event()
    gate, blocker = _blocker()
    runner.submit("block", "blocker", blocker)  # holds the worker while the others queue

    def long(report):
        started.set()
        for i in range(200):
            time.sleep(0.02)
            report(i, 200)  # raises Cancelled once nobody has wanted the job for abandon_s
        return "finished"

    runner.submit("later", "later", lambda report: "ran")
    runner.submit("long", "long", long)  # wanted more recently: runs first
    gate.set()
    started.wait(5)
    job = runner.wait("long", 10)
    assert job.state == "cancelled" and job.result is None and 0 < job.done < 200
    assert runner.wait("later", 10).state == "cancelled"  # queued, and nobody wanted it any more
    kept = runner.submit("kept", "kept", long)
    for _ in range(60):  # a page polling every 0.1 s keeps it going
        runner.touch(["kept"])
        if kept.finished:
            break
        time.sleep(0.1)
    assert runner.wait("kept", 10).state == "done"
