"""Exact decompositions for the pages: computed when asked (one ``decompose_many`` pass for the missing
students, its progress drawn under the page title), kept in memory and shared by every session
(docs/architecture.md §3, "Exact results at any size")."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from cakd_viz import settings
from cakd_viz.app import ui, views
from cakd_viz.decomposition import Decomposition, decompose_many
from cakd_viz.decomposition.result import PER_SAMPLE
from cakd_viz.grouping import parse_grouping
from cakd_viz.standardize import setting

RESULTS_MB_ENV = "CAKD_VIZ_RESULTS_MB"
PROGRESS_ABOVE_ENV = "CAKD_VIZ_PROGRESS_ABOVE"  # logits per model (N x C) above which a pass shows a bar
DRAW_EVERY_S = 0.25  # a progress bar is redrawn at most this often (each redraw lets a rerun stop the pass,
# and is work for a browser that may share the server's cores)


@dataclass(frozen=True)
class Result:
    """A page's decomposition of one student: exact, row i of ``d`` is sample i of the bundle."""

    d: Decomposition
    ident: tuple  # hashable identity of d (view, settings, student), for caches of what is derived from it
    student: str

    def scope(self) -> str:
        """Which samples the numbers cover, in words: "all 1,280,000 samples"."""
        return f"all {len(self.d):,} samples"


def progress_above() -> int:
    """Logits per model (N x C) above which a pass draws a progress bar (default 10 million)."""
    return int(settings.number(PROGRESS_ABOVE_ENV))


def results_budget() -> int:
    """The most bytes of results kept between page runs (``$CAKD_VIZ_RESULTS_MB``, default 1,536 MB)."""
    return int(settings.number(RESULTS_MB_ENV) * 2**20)


# -- the store ---------------------------------------------------------------------------------------


class Store:
    """Decompositions under keys, at most ``budget()`` bytes (the newest is kept even when it alone is
    more), least recently used out first; thread-safe."""

    def __init__(self, budget=results_budget) -> None:
        self.budget = budget
        self._items: OrderedDict[tuple, Decomposition] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple) -> Decomposition | None:
        with self._lock:
            d = self._items.get(key)
            if d is not None:
                self._items.move_to_end(key)
            return d

    def put(self, key: tuple, d: Decomposition) -> Decomposition:
        """Keep ``d`` (its arrays made read-only: it is shared) and evict beyond the budget."""
        for arr in (getattr(d, name) for name in (*PER_SAMPLE, "labels")):
            if isinstance(arr, np.ndarray):
                arr.flags.writeable = False
        limit = self.budget()
        with self._lock:
            self._items[key] = d
            self._items.move_to_end(key)
            while len(self._items) > 1 and sum(map(nbytes, self._items.values())) > limit:
                self._items.popitem(last=False)
        return d

    def nbytes(self) -> int:
        with self._lock:
            return sum(map(nbytes, self._items.values()))

    def keys(self) -> list[tuple]:
        with self._lock:
            return list(self._items)


def nbytes(d: Decomposition) -> int:
    """Bytes held by a decomposition's per-sample arrays (its labels too where they are its own copy,
    not the bundle's array)."""
    own_labels = d.labels is not None and d.labels.flags.owndata
    return int(sum(getattr(d, name).nbytes for name in PER_SAMPLE) + (d.labels.nbytes if own_labels else 0))


STORE = Store()
_PASS = threading.Lock()  # one pass at a time in this process: two side by side only slow each other down
_RUNNING: dict = {}  # what the pass holding _PASS computes: {"title", "done", "total"} (read by waiters)


# -- what pages call -----------------------------------------------------------------------------------


def results(
    key: tuple, students, grouping: str, temperature: float, device: str, standardize: bool = False
) -> dict[str, Result]:
    """Each student's exact decomposition under (grouping, T, standardize): from the store, or computed now
    (one pass for every missing student, a progress bar under the page title meanwhile)."""
    students = list(dict.fromkeys(students))
    grouping = str(parse_grouping(grouping))
    temperature = float(temperature)
    b = views.load(key)
    box = ui.notice_box() if b.num_samples * b.num_classes > progress_above() else None
    found = _compute(key, students, grouping, temperature, device, box, standardize)
    base = _setting(key, grouping, temperature, device, standardize)
    return {s: Result(found[s], (*base, s), s) for s in students}


def _setting(key: tuple, grouping: str, temperature: float, device: str, standardize: bool) -> tuple:
    """The store's key of a setting, its students' keys appended: (view, grouping, T, device), and "LS"
    after the device under logit standardization (the plain keys are as they were)."""
    return (key, grouping, temperature, device, *(("LS",) if standardize else ()))


# -- computing -----------------------------------------------------------------------------------------


def _compute(
    key: tuple, students: list[str], grouping: str, temperature: float, device: str, box, standardize=False
):
    """{student: decomposition} for ``students``: kept, computed here (one pass at a time in the process)
    or by the pass another session runs, which this one waits for."""
    base = _setting(key, grouping, temperature, device, standardize)
    bar = Bar(box)
    try:
        while True:
            got = {s: STORE.get((*base, s)) for s in students}
            if None not in got.values():
                return got
            if _PASS.acquire(timeout=DRAW_EVERY_S):
                try:
                    got = {s: STORE.get((*base, s)) for s in students}  # the pass waited for may have some
                    todo = [s for s, d in got.items() if d is None]
                    if todo:
                        done = _one_pass(key, todo, grouping, temperature, device, standardize, bar)
                        got |= {s: STORE.put((*base, s), d) for s, d in zip(todo, done, strict=True)}
                    return got
                finally:
                    _RUNNING.clear()
                    _PASS.release()
            bar.waiting(dict(_RUNNING))
    finally:
        bar.close()


def _one_pass(
    key: tuple, students: list[str], grouping: str, temperature: float, device: str, standardize: bool, bar
) -> list[Decomposition]:
    """The students' decompositions in one pass over the rows (one strong set per row for all of them:
    ``decompose_many``), its progress drawn by ``bar`` and published for the sessions waiting for it."""
    b = views.load(key)
    who = students[0] if len(students) == 1 else f"{', '.join(students[:-1])} and {students[-1]}"
    title = f"{who} under {grouping} at {setting(temperature, standardize)}"
    _RUNNING.update(title=title, done=0, total=b.num_samples)

    def progress(done: int, total: int) -> None:
        _RUNNING.update(done=done, total=total)
        bar.computing(title, done, total)

    bar.computing(title, 0, b.num_samples)
    return decompose_many(
        [b.student(s) for s in students],
        b.teacher,
        b.labels,
        grouping=grouping,
        temperature=temperature,
        device=device,
        correlation=views.correlation(key, standardize, grouping),
        progress=progress,
        standardize=standardize,
    )


class Bar:
    """The progress of a pass, drawn into ``box`` (the placeholder under the page title; None outside a
    page run): at most every ``DRAW_EVERY_S`` seconds, and emptied when the pass is over."""

    def __init__(self, box) -> None:
        self.box = box
        self.start = time.monotonic()
        self.drawn = -1.0

    def computing(self, title: str, done: int, total: int) -> None:
        fraction = done / total if total else 0.0
        self._draw(
            fraction, f"Decomposing the KL of every sample: {title}, {fraction:.0%} of {total:,} samples"
        )

    def waiting(self, running: dict) -> None:
        total = running.get("total") or 0
        fraction = running.get("done", 0) / total if total else 0.0
        what = running.get("title", "another view")
        self._draw(fraction, f"Waiting for the pass another view started: {what}, {fraction:.0%}")

    def _draw(self, fraction: float, text: str) -> None:
        now = time.monotonic()
        if self.box is None or (now - self.drawn < DRAW_EVERY_S and fraction < 1.0):
            return
        self.drawn = now
        self.box.progress(min(1.0, max(0.0, fraction)), text=f"{text} ({now - self.start:.1f} s)")

    def close(self) -> None:
        if self.box is not None and self.drawn >= 0:
            self.box.empty()
