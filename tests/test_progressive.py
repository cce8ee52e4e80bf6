"""Exact views, computed when a page asks: a progress bar while a pass runs, results kept in memory
(bounded in bytes, shared by sessions, one pass at a time), never served for changed files.

The progress bar is forced on a small bundle with ``CAKD_VIZ_PROGRESS_ABOVE``; passes are made to report
in many steps by shrinking the kernel's chunk. Nothing here sleeps: threads meet on events.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np
import pytest
from apptest_support import as_read
from conftest import make_logits
from streamlit.testing.v1 import AppTest

from cakd_viz.app import bundles, progressive
from cakd_viz.app import config as app_config
from cakd_viz.bundle import core, load_bundle, write_bundle
from cakd_viz.decomposition import decompose, engine
from cakd_viz.grouping import DEFAULT_GROUPING
from cakd_viz.terms import heading

APP = Path(__file__).resolve().parent.parent / "app.py"
N, C = 600, 10
STUDENTS = ("kd", "ce")
T = float(app_config.DEFAULT_TEMPERATURE)
GROUPING = DEFAULT_GROUPING


def _write(path: Path, seed: int = 4):
    student, teacher, labels = make_logits(N, C, seed=seed)
    return write_bundle(
        path,
        teacher=teacher,
        students={"kd": (0.4 * student + 0.6 * teacher).astype(np.float32), "ce": student},
        labels=labels,
        overwrite=True,
    )


@pytest.fixture
def big(tmp_path, monkeypatch):
    """A 600-sample bundle whose passes show a progress bar; a store of its own for each test."""
    path = _write(tmp_path / "data" / "big")
    monkeypatch.setenv(app_config.DATA_ROOT_ENV, str(tmp_path / "data"))
    monkeypatch.setenv("CAKD_SAMPLES_DIR", str(tmp_path / "no-samples"))
    monkeypatch.setenv(progressive.PROGRESS_ABOVE_ENV, "1000")
    monkeypatch.setattr(progressive, "STORE", progressive.Store())
    return load_bundle(path)


class Box:
    """Records what a pass draws into the placeholder under the title; ``on_draw(call)`` may block."""

    def __init__(self, on_draw=None) -> None:
        self.calls: list[tuple] = []
        self.on_draw = on_draw

    def progress(self, value, text=""):
        self.calls.append(("progress", value, text))
        if self.on_draw is not None:
            self.on_draw(self.calls[-1])

    def empty(self):
        self.calls.append(("empty",))


def _app(page: str | None = None) -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=120)
    at.query_params["bundle"] = "path:big"
    if page:
        at.switch_page(page)
    return at.run()


def _text(at: AppTest) -> str:
    return "\n".join(el.value for el in [*at.markdown, *at.caption])


def _mean_kl(at: AppTest, student: str) -> float:
    return float({m.label: m.value for m in at.metric}[f"mean KL, {student}"].split()[0])


def _key(b) -> tuple:
    return bundles.open_source(f"path:{b.path.parent.name}/{b.path.name}").key


def _exact(b, student: str, grouping: str = GROUPING, temperature: float = T):
    return decompose(b.student(student), b.teacher, b.labels, grouping=grouping, temperature=temperature)


def test_the_overview_is_exact_over_every_sample_and_says_so(big):
    at = _app()
    assert not at.exception, [e.value for e in at.exception]
    assert f"over all {N} samples." in _text(at)
    assert not at.get("progress")  # the bar is gone once the page is drawn
    for name in STUDENTS:
        assert _mean_kl(at, name) == pytest.approx(float(_exact(big, name).kl.mean()), abs=1e-4)
    at.sidebar.number_input[0].set_value(2.0).run()  # a new temperature: computed in this run
    assert not at.exception
    assert "T = 2." in _text(at)
    assert _mean_kl(at, "ce") == pytest.approx(float(_exact(big, "ce", temperature=2.0).kl.mean()), abs=1e-4)


@pytest.mark.parametrize(
    "page",
    [
        "cakd_viz/app/pages/correlation.py",
        "cakd_viz/app/pages/sample.py",
        "cakd_viz/app/pages/data.py",
        "cakd_viz/app/pages/diagnose.py",
    ],
)
def test_every_explore_page_renders_and_says_over_which_samples(big, page):
    at = _app(page)
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    assert "preview" not in _text(at).lower()
    if page.endswith("correlation.py"):
        assert f"over all {N} samples." in _text(at)


def test_diagnose_shows_its_in_s_rates_at_once(big):
    at = _app("cakd_viz/app/pages/diagnose.py")
    assert not at.exception, [e.value for e in at.exception]
    assert "'in S': how often" in _text(at)
    assert any(heading("in_strong_rate") in t.value.columns for t in at.dataframe)


def test_a_pass_shows_its_progress_under_the_title_then_clears_it(big, monkeypatch):
    monkeypatch.setattr(engine, "KERNEL_CHUNK_ELEMENTS", 100 * C)  # 6 chunks of 100 rows
    monkeypatch.setattr(progressive, "DRAW_EVERY_S", 0.0)
    box = Box()
    key = _key(big)
    got = progressive._compute(key, ["kd"], GROUPING, T, "cpu", box)
    bars = [c for c in box.calls if c[0] == "progress"]
    assert [round(v, 3) for _, v, _ in bars] == [0.0, 0.167, 0.333, 0.5, 0.667, 0.833, 1.0]
    assert all("kd under topk:5 at T = 4" in text and f"of {N:,} samples" in text for *_, text in bars)
    assert box.calls[-1] == ("empty",)
    np.testing.assert_array_equal(got["kd"].kl, _exact(big, "kd").kl)


def test_a_change_of_setting_stops_the_pass_and_keeps_nothing(big, monkeypatch):
    """Streamlit stops a page run at its next delta with a BaseException: the pass ends there, nothing is
    kept, the pass lock is free, and the next run computes the result whole."""
    monkeypatch.setattr(engine, "KERNEL_CHUNK_ELEMENTS", 100 * C)
    monkeypatch.setattr(progressive, "DRAW_EVERY_S", 0.0)

    class Rerun(BaseException):
        pass

    def stop_at_half(call):
        if call[1] >= 0.5:
            raise Rerun

    key = _key(big)
    with pytest.raises(Rerun):
        progressive._compute(key, ["ce"], GROUPING, T, "cpu", Box(stop_at_half))
    assert progressive.STORE.keys() == []
    assert not progressive._PASS.locked()
    got = progressive._compute(key, ["ce"], GROUPING, T, "cpu", Box())
    np.testing.assert_array_equal(got["ce"].kl, _exact(big, "ce").kl)


def test_two_sessions_asking_at_once_share_one_pass(big, monkeypatch):
    """The second session waits for the first one's pass (showing its progress), then reads its result."""
    calls, started, release = [], threading.Event(), threading.Event()
    real = progressive.decompose_many

    def held_decompose(*args, **kw):
        calls.append(kw["temperature"])
        started.set()
        assert release.wait(60)
        return real(*args, **kw)

    monkeypatch.setattr(progressive, "decompose_many", held_decompose)
    key = _key(big)
    out: dict[str, object] = {}
    first = threading.Thread(
        target=lambda: out.update(a=progressive.results(key, ["kd"], GROUPING, T, "cpu"))
    )
    first.start()
    assert started.wait(60)

    def waiting_drawn(call):
        if "Waiting for the pass another view started: kd under topk:5" in call[2]:
            release.set()  # the second session is seen waiting: let the first pass finish

    box = Box(waiting_drawn)
    monkeypatch.setattr(progressive.ui, "notice_box", lambda: box)
    out["b"] = progressive.results(key, ["kd"], GROUPING, T, "cpu")
    first.join(60)
    assert calls == [T]  # one pass for both
    assert out["a"]["kd"].d is out["b"]["kd"].d  # the same read-only arrays
    assert not out["b"]["kd"].d.kl.flags.writeable


def test_results_are_kept_within_a_byte_budget_least_recently_used_out_first(big):
    d = _exact(big, "kd")
    size = progressive.nbytes(d)
    assert size == sum(getattr(d, n).nbytes for n in progressive.PER_SAMPLE)  # the labels are the bundle's
    copied = decompose(
        big.student("kd"), big.teacher, big.labels.astype(np.int32), grouping=GROUPING, temperature=T
    )
    assert progressive.nbytes(copied) == size + copied.labels.nbytes
    store = progressive.Store(budget=lambda: 2 * size)
    for k in "abc":
        store.put((k,), _exact(big, "kd"))
        if k == "b":
            assert store.get(("a",)) is not None  # renewed: "b" is now the least recently used
    assert store.keys() == [("a",), ("c",)] and store.nbytes() == 2 * size
    alone = progressive.Store(budget=lambda: 0)
    alone.put(("x",), d)
    alone.put(("y",), _exact(big, "ce"))
    assert alone.keys() == [("y",)]  # the newest is kept even when it alone is over the budget


def test_the_budget_and_threshold_settings_are_checked(monkeypatch):
    monkeypatch.setenv(progressive.RESULTS_MB_ENV, "256")
    assert progressive.results_budget() == 256 * 2**20
    for bad in ("lots", "-1", "inf"):
        monkeypatch.setenv(progressive.RESULTS_MB_ENV, bad)
        with pytest.raises(ValueError, match=f"CAKD_VIZ_RESULTS_MB='{bad}' is not understood"):
            progressive.results_budget()
    monkeypatch.setenv(progressive.PROGRESS_ABOVE_ENV, "1e6")
    with pytest.raises(ValueError, match="CAKD_VIZ_PROGRESS_ABOVE='1e6' is not understood .*a whole number"):
        progressive.progress_above()


def test_a_rewritten_or_edited_file_is_never_served_old_results(big):
    key = _key(big)
    old = progressive.results(key, ["ce"], GROUPING, T, "cpu")["ce"].d
    _write(big.path, seed=9)  # cakd-viz's writer replaces the files
    new_key = _key(big)
    assert new_key != key
    b = load_bundle(big.path)
    got = progressive.results(new_key, ["ce"], GROUPING, T, "cpu")["ce"].d
    np.testing.assert_array_equal(got.kl, _exact(b, "ce").kl)
    assert not np.array_equal(got.kl, old.kl)
    student = big.path / "students" / "ce.npy"  # an edit in place: same inode, a new modification time
    arr = np.load(student, mmap_mode="r+")
    arr[0, 0] += 1.0
    arr.flush()
    del arr
    os.utime(student, ns=(student.stat().st_atime_ns, student.stat().st_mtime_ns + 1_000_000))
    assert _key(big) not in (key, new_key)


def test_opening_a_bundle_checks_every_value_and_takes_the_predictions(big, monkeypatch):
    b = bundles.load(*_key(big))

    def no_second_pass(*args, **kw):
        raise AssertionError("predictions computed again after the bundle was opened")

    monkeypatch.setattr(core, "iter_row_chunks", no_second_pass)
    for who in ("teacher", *STUDENTS):
        logits = b.teacher if who == "teacher" else b.student(who)
        np.testing.assert_array_equal(b.predictions(who), np.argmax(np.asarray(logits), axis=1))
    summary = b.summary()
    assert summary["teacher"]["accuracy"] == pytest.approx(
        float(np.mean(np.argmax(np.asarray(b.teacher), 1) == b.labels))
    )


def test_an_edit_that_keeps_inode_size_and_mtime_is_still_seen(big):
    """The probe's edit: a value changed in place, then the modification time set back (`touch -r`).
    The status-change time moves on every write and cannot be set back, so the bundle's stamp is new:
    the NaN/inf scan runs again (and finds the NaN) and no old result is served."""
    key = _key(big)
    stamp = bundles.files_stamp(big.path)
    student = big.path / "students" / "ce.npy"
    before = student.stat()
    arr = np.load(student, mmap_mode="r+")
    arr[3, 2] = np.nan
    arr.flush()
    del arr
    os.utime(student, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = student.stat()
    assert (after.st_ino, after.st_size, after.st_mtime_ns) == (
        before.st_ino,
        before.st_size,
        before.st_mtime_ns,
    )
    assert bundles.files_stamp(big.path) != stamp
    with pytest.raises(ValueError) as err:
        _key(big)  # opening it again scans it again
    assert "students/ce.npy has 1 NaN value (first at row 3, class 2)" in as_read(str(err.value))
    assert key[1] == stamp
