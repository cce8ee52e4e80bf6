"""Exact results when they are ready, a marked preview until then: how pages get decompositions.

A view whose models hold at most ``preview_above()`` logits each (N x C; 50 million by default, e.g.
50,000 x 1,000) is decomposed exactly, at once, as before. A bigger one is answered in two steps:

1. at once, a **preview**: the decomposition of a fixed subsample of ``preview_size(C)`` rows (20,000 at
   1,000 classes), stratified by true class when the bundle has labels (``cakd_viz.subsample``); the
   subsample's logits are read once per bundle and kept in memory, shared by every session;
2. in the background (``cakd_viz.app.jobs``, one worker thread for the whole server), the **exact** pass over
   every sample, stored in the results cache (``cakd_viz.results_cache``, on disk, shared by every
   session and process): computed once per (bundle, student, grouping, T), read back memory-mapped.

While a page shows a preview, ``banner`` (drawn by ``ui.finish`` under the page title) says so, with its
size, how it was drawn and what the exact view will be, and a progress bar per exact pass; it polls the
jobs every ``POLL_S`` seconds and reruns the page when they are done, so the exact charts replace the
preview by themselves. A page never mixes the two: ``results`` gives every student asked for exactly, or
every one on the same preview rows.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import streamlit as st

from cakd_viz import diagnose
from cakd_viz.app import bundles, jobs, ui, views
from cakd_viz.app.results_store import cache
from cakd_viz.decomposition import Decomposition, decompose
from cakd_viz.grouping import parse_grouping
from cakd_viz.results_cache import (
    cached_correlation,
    cached_decompose,
    cached_predictions,
    decomposition_key,
    load_decomposition,
    make_key,
)
from cakd_viz.results_cache.decompositions import ARRAYS as _ARRAYS
from cakd_viz.subsample import Subsample, preview_rows

PREVIEW_ABOVE_ENV = "CAKD_VIZ_PREVIEW_ABOVE"  # logits per model (N x C) above which pages preview first
PREVIEW_ROWS_ENV = "CAKD_VIZ_PREVIEW_ROWS"  # rows of the preview (default: PREVIEW_LOGITS // C)
DEFAULT_PREVIEW_ABOVE = 50_000_000
PREVIEW_LOGITS = 20_000_000  # the preview's size in logits: 20,000 rows at 1,000 classes
MIN_PREVIEW_ROWS = 2_000
WARM_ABOVE = 5_000_000  # logits per model above which a bundle's correlation and predictions are warmed
POLL_S = 1.0  # how often a page showing a preview asks about its exact passes
_K_PENDING = "_progressive_pending"  # this page run's exact passes in the background: {job key: title}
_K_SCOPE = "_progressive_scope"  # this page run's preview, described (for the banner)


@dataclass(frozen=True)
class Result:
    """A decomposition as a page gets it: exact over every sample, or a preview on fixed rows."""

    d: Decomposition  # per-sample results: all N samples, or the preview's n rows
    sub: Subsample | None  # the preview's rows (None: exact, row i of d is sample i)
    ident: tuple  # hashable identity of d, for caches of what is derived from it
    job: str | None = None  # key of the exact pass running in the background (previews only)
    ck: str | None = None  # the results cache key of an exact result on a big view
    student: str = ""

    @property
    def exact(self) -> bool:
        return self.sub is None

    @property
    def index(self) -> np.ndarray:
        """The bundle's sample index of each row of ``d``."""
        return np.arange(len(self.d)) if self.sub is None else self.sub.rows

    def scope(self) -> str:
        """Which samples the numbers cover, in words: "all 1,280,000 samples" or "a preview on 20,000 of
        1,280,000 samples, stratified by true class"."""
        if self.sub is None:
            return f"all {len(self.d):,} samples"
        return f"a preview on {self.sub.describe()}"


# -- settings ------------------------------------------------------------------------------------------


def preview_above() -> int:
    """Logits per model (N x C) above which pages show a preview first (``$CAKD_VIZ_PREVIEW_ABOVE``)."""
    return _env_int(PREVIEW_ABOVE_ENV, DEFAULT_PREVIEW_ABOVE)


def preview_size(num_classes: int) -> int:
    """Rows of the preview subsample for C classes (``$CAKD_VIZ_PREVIEW_ROWS``, else 25M logits' worth)."""
    return _env_int(PREVIEW_ROWS_ENV, max(MIN_PREVIEW_ROWS, PREVIEW_LOGITS // max(1, num_classes)))


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip().replace("_", "")
    try:
        return max(1, int(float(raw))) if raw else default
    except ValueError:
        return default


def previewed(key: tuple) -> bool:
    """Whether views of ``key`` start with a preview (their exact pass runs in the background)."""
    b = views.load(key)
    return b.num_samples * b.num_classes > preview_above() and preview_size(b.num_classes) < b.num_samples


# -- exact results -------------------------------------------------------------------------------------

_OPENED: OrderedDict[str, Decomposition] = OrderedDict()  # exact results read back (memory-mapped)
_OPENED_MAX = 24
_OPENED_LOCK = threading.Lock()
_KEYS: dict[tuple, str] = {}  # (view key, student, grouping, T) -> the results cache key


def _remember(ck: str, d: Decomposition) -> Decomposition:
    with _OPENED_LOCK:
        _OPENED[ck] = d
        _OPENED.move_to_end(ck)
        while len(_OPENED) > _OPENED_MAX:
            _OPENED.popitem(last=False)
    return d


def _exact_key(key: tuple, student: str, grouping: str, temperature: float, corr) -> str:
    # The view key names the bundle's files and their meta.json time (cakd_viz.app.views), and the correlation
    # is a function of it: the cache key (which reads the files' identities) is worked out once per view.
    memo = (key, student, grouping, temperature)
    ck = _KEYS.get(memo)
    if ck is None:
        b = views.load(key)
        ck = decomposition_key(
            b.student(student),
            b.teacher,
            b.labels,
            grouping=grouping,
            temperature=temperature,
            correlation=corr,
        )
        if len(_KEYS) > 4096:
            _KEYS.clear()
        _KEYS[memo] = ck
    return ck


def _stored(ck: str) -> Decomposition | None:
    """The exact result under cache key ``ck``, if it is there (opened, in the cache, or held by a job)."""
    with _OPENED_LOCK:
        d = _OPENED.get(ck)
        if d is not None:
            _OPENED.move_to_end(ck)
            return d
    store = cache()
    d = load_decomposition(store, ck) if store is not None else None
    if d is None:
        job = jobs.runner().get(ck)
        if job is not None and job.state == "done" and isinstance(job.result, Decomposition):
            d = job.result
    return None if d is None else _remember(ck, d)


def exact_now(key: tuple, student: str, grouping: str, temperature: float, device: str) -> Decomposition:
    """The exact decomposition, computed here and now when it is not stored (through the results cache, so
    computed once for every session and process)."""
    corr = _correlation(key, grouping)
    ck = _exact_key(key, student, grouping, temperature, corr)
    d = _stored(ck)
    if d is not None:
        return d
    b = views.load(key)
    args = (b.student(student), b.teacher, b.labels)
    kw = dict(grouping=grouping, temperature=temperature, device=device, correlation=corr)
    store = cache()
    with st.spinner(f"Decomposing the KL of every sample ({student}, {grouping}, T = {temperature:g})…"):
        d = cached_decompose(store, *args, **kw) if store is not None else decompose(*args, **kw)
    return _remember(ck, _read_only(d))


def _job(key: tuple, student: str, grouping: str, temperature: float, device: str, ck: str) -> jobs.Job:
    """Submit (or renew) the background exact pass of one student."""
    b = views.load(key)
    corr = _correlation(key, grouping)
    args = (b.student(student), b.teacher, b.labels)
    kw = dict(grouping=grouping, temperature=temperature, device=device, correlation=corr)

    runner = jobs.runner()
    if (old := runner.get(ck)) is not None and old.state == "done":
        runner.forget(ck)  # done, yet its result is gone (evicted from the cache since): compute it again

    def run(report):
        store = cache()
        if store is None:  # no cache folder: the job keeps the result in memory
            return _read_only(decompose(*args, **kw, progress=report))
        cached_decompose(
            store, *args, **kw, progress=report, waiting=lambda done, total: report(done, total, True)
        )
        return None

    return runner.submit(ck, f"{student} under {grouping} at T = {temperature:g}", run)


def warm(key: tuple) -> None:
    """For a view of more than ``WARM_ABOVE`` logits per model: compute in the background, before any
    exact pass, what other pages need once per bundle (the teacher's class correlation, every model's
    predictions), kept in the results cache; a page that needs one first waits for it (or computes it)."""
    b = views.load(key)
    store = cache()
    if store is None or b.num_samples * b.num_classes <= WARM_ABOVE:
        return

    def run(report):
        report(0, 1 + len(b.student_names) + 1)
        cached_correlation(store, b.teacher, max_rows=bundles.CORRELATION_ROWS)
        for i, who in enumerate(["teacher", *b.student_names]):
            report(1 + i, 1 + len(b.student_names) + 1)
            cached_predictions(store, b, who)
        return None

    jobs.runner().submit(
        f"warm:{key!r}", "the class correlation and every model's predictions", run, priority=1
    )


# -- previews ------------------------------------------------------------------------------------------


@st.cache_resource(max_entries=4, show_spinner="Reading the preview's samples…")
def _preview_base(key: tuple, size: int) -> tuple[Subsample, np.ndarray, np.ndarray | None]:
    """(the preview subsample, the teacher's logits on it (n, C), the labels on it or None); shared."""
    b = views.load(key)
    labels = None if b.labels is None else np.asarray(b.labels)
    sub = preview_rows(b.num_samples, labels, size)
    teacher = np.asarray(b.teacher[sub.rows])
    teacher.flags.writeable = False
    y = None if labels is None else labels[sub.rows]
    return sub, teacher, y


@st.cache_resource(max_entries=16, show_spinner=False)
def _preview_student(key: tuple, student: str, size: int) -> np.ndarray:
    sub, _, _ = _preview_base(key, size)
    logits = np.asarray(views.load(key).student(student)[sub.rows])
    logits.flags.writeable = False
    return logits


@st.cache_resource(max_entries=64, show_spinner="Decomposing the preview's samples…")
def _preview(key: tuple, student: str, grouping: str, temperature: float, device: str, size: int):
    sub, teacher, y = _preview_base(key, size)
    d = decompose(
        _preview_student(key, student, size),
        teacher,
        y,
        grouping=grouping,
        temperature=temperature,
        device=device,
        correlation=_correlation(key, grouping),
    )
    return sub, _read_only(d)


def preview_teacher(key: tuple) -> np.ndarray:
    """The teacher's logits (n, C) on the preview's rows (what a preview's strong sets come from)."""
    return _preview_base(key, preview_size(views.load(key).num_classes))[1]


# -- what pages call -----------------------------------------------------------------------------------


def results(key: tuple, students, grouping: str, temperature: float, device: str) -> dict[str, Result]:
    """Each student's decomposition under (grouping, T): all exact when every one is stored (or the view
    is small enough to compute at once), else all on the same preview rows, with the missing exact passes
    started in the background and registered for this page's banner."""
    students = list(dict.fromkeys(students))
    grouping = str(parse_grouping(grouping))
    temperature = float(temperature)
    base = (key, grouping, temperature, device)
    if not previewed(key):
        return {
            s: Result(exact_now(key, s, grouping, temperature, device), None, (*base, s, "exact"), student=s)
            for s in students
        }
    corr = _correlation(key, grouping)
    keys = {s: _exact_key(key, s, grouping, temperature, corr) for s in students}
    exact = {s: _stored(ck) for s, ck in keys.items()}
    if all(d is not None for d in exact.values()):
        return {s: Result(d, None, (*base, s, "exact"), ck=keys[s], student=s) for s, d in exact.items()}
    size = preview_size(views.load(key).num_classes)
    out = {}
    for s in students:
        job = None
        if exact[s] is None:
            job = _job(key, s, grouping, temperature, device, keys[s])
            _pending(job)
        sub, d = _preview(key, s, grouping, temperature, device, size)
        out[s] = Result(
            d, sub, (*base, s, f"preview:{sub.size}"), None if job is None else job.key, student=s
        )
    scope = next(iter(out.values())).scope()
    st.session_state[_K_SCOPE] = scope
    ui.report().context["computed on"] = scope  # tables downloaded from this page say so too
    return out


def result(key: tuple, student: str, grouping: str, temperature: float, device: str) -> Result:
    """One student's decomposition (``results`` for one)."""
    return results(key, [student], grouping, temperature, device)[student]


def in_strong_exact(r: Result, key: tuple, rows: np.ndarray) -> np.ndarray | None:
    """For an exact result ``r`` on a big view: per sample (N,) whether the student's prediction lies in
    its strong set S, True only on ``rows``; computed once over every sample by a background pass and
    kept in the results cache. None while that pass runs (registered for this page's notice)."""
    d = r.d
    ik = make_key("in-strong/1", r.ck)
    store = cache()
    entry = store.get(ik) if store is not None else None
    every = entry.arrays["in_strong"] if entry is not None else None
    runner = jobs.runner()
    job = runner.get(ik)
    if every is None and job is not None and job.state == "done" and isinstance(job.result, np.ndarray):
        every = job.result
    if every is not None:
        out = np.zeros(len(d), dtype=bool)
        out[rows] = every[rows]
        return out
    if job is not None and job.state == "done":
        runner.forget(ik)  # done, yet its result is gone from the cache: compute it again
    teacher = views.load(key).teacher
    corr = _correlation(key, d.grouping)

    def compute(report):
        n = len(d)
        found = np.zeros(n, dtype=bool)
        step = 65_536
        for start in range(0, n, step):
            part = np.arange(start, min(n, start + step))
            found[part] = diagnose.prediction_in_strong(d, teacher, part, correlation=corr)[part]
            report(part[-1] + 1, n)
        return {"in_strong": found}, {"kind": "in-strong/1"}

    def run(report):
        if store is None:
            return compute(report)[0]["in_strong"]
        store.compute_once(
            ik, compute, progress=report, waiting=lambda done, total: report(done, total, True)
        )
        return None

    title = f"which of {r.student}'s predictions lie in S under {d.grouping} at T = {d.temperature:g}"
    _pending(runner.submit(ik, title, run))
    return None


def _pending(job: jobs.Job) -> None:
    """Show ``job`` in this page run's notice until it is done."""
    st.session_state.setdefault(_K_PENDING, {})[job.key] = job.title


def begin() -> None:
    """Start a page run: no exact pass is registered for its banner yet."""
    st.session_state[_K_PENDING] = {}
    st.session_state[_K_SCOPE] = None


def banner(box) -> None:
    """Fill ``box`` (a placeholder under the page title) with the preview notice and the exact passes'
    progress, when this page run showed a preview; it refreshes itself and reruns the page once the
    exact results are stored."""
    pending = tuple((st.session_state.get(_K_PENDING) or {}).items())
    if not pending or box is None:
        return
    with box.container():
        _poll(pending, st.session_state.get(_K_SCOPE))


@st.fragment(run_every=POLL_S)
def _poll(pending: tuple[tuple[str, str], ...], scope: str | None) -> None:
    runner = jobs.runner()
    runner.touch(k for k, _ in pending)
    states = []
    for ck, title in pending:
        job = runner.get(ck)
        if job is not None and job.state == "cancelled":  # abandoned while nobody looked: start again
            job = runner.submit(ck, job.title, job.fn)
        states.append((title, job))
    if all(job is None or job.state == "done" for _, job in states):
        st.rerun()  # the exact results are stored: draw the page from them
    with st.container(border=True, key="preview_banner"):
        if scope is not None:
            st.markdown(
                f":material/hourglass_top: **Preview.** The numbers and charts on this page are computed "
                f"on {scope.removeprefix('a preview on ')}. The exact view over every sample replaces them "
                "by itself when the background pass below is done."
            )
        else:
            st.markdown(
                ":material/hourglass_top: **Still computing.** Part of this page waits for the background "
                "pass below, over every sample; the page completes itself when it is done."
            )
        for title, job in states:
            if job.state == "failed":
                st.error(f"The exact pass for {title} failed: {job.error}. The page stays on the preview.")
            elif job.state == "running" and job.elsewhere:
                done = f", {job.fraction:.0%} done" if job.total else ""
                st.progress(
                    job.fraction,
                    text=f"Exact pass, {title}: another process sharing the results cache computes it"
                    f"{done}; waiting for it ({job.elapsed():.0f} s)",
                )
            elif job.state == "running" and job.total:
                st.progress(
                    job.fraction,
                    text=f"Exact pass, {title}: {job.fraction:.0%} of {job.total:,} samples "
                    f"({job.elapsed():.0f} s)",
                )
            elif job.state == "running":
                st.progress(0.0, text=f"Exact pass, {title}: starting")
            elif job.state == "queued":
                st.progress(0.0, text=f"Exact pass, {title}: queued behind another pass")
            else:
                st.progress(1.0, text=f"Exact pass, {title}: done")


# -- helpers -------------------------------------------------------------------------------------------


def _correlation(key: tuple, grouping: str):
    return views.correlation(key) if parse_grouping(grouping).needs_correlation else None


def _read_only(d: Decomposition) -> Decomposition:
    """``d`` with every array read-only (it is shared by every session)."""
    for name in (*_ARRAYS, "labels"):
        arr = getattr(d, name)
        if isinstance(arr, np.ndarray) and arr.flags.writeable:
            arr.flags.writeable = False
    return d
