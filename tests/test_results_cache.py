"""The on-disk results cache: keys, entries, eviction, one computation per key across threads and
processes, torn files, changed bundles, remembered checks, predictions and correlations; subsamples."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import make_logits

from cakd_viz import processes
from cakd_viz.bundle import load_bundle, write_bundle
from cakd_viz.decomposition import decompose
from cakd_viz.grouping import class_correlation
from cakd_viz.results_cache import (
    Cancelled,
    ResultsCache,
    array_identity,
    cached_correlation,
    cached_decompose,
    cached_predictions,
    decomposition_key,
    load_decomposition,
    make_key,
    open_checked,
    save_decomposition,
)
from cakd_viz.results_cache import decompositions as cached_module
from cakd_viz.results_cache.store import LEFTOVER_AGE_S
from cakd_viz.subsample import preview_rows, stratified_rows, uniform_rows
from cakd_viz.validate import BundleError

REPO = Path(__file__).resolve().parent.parent
FIELDS = ("kl", "bcd", "scd", "wcd", "teacher_strong_mass", "teacher_weak_mass", "student_strong_mass")


@pytest.fixture
def cache(tmp_path) -> ResultsCache:
    return ResultsCache(tmp_path / "cache", 1 << 30)


@pytest.fixture
def bundle(tmp_path):
    student, teacher, labels = make_logits(300, 12, seed=3)
    path = write_bundle(
        tmp_path / "b",
        teacher=teacher,
        students={"s": student, "t": (0.5 * student + 0.5 * teacher).astype(np.float32)},
        labels=labels,
    )
    return load_bundle(path)


def _key(i: int) -> str:
    return make_key("test", i)


# -- the store ---------------------------------------------------------------------------------------


def test_an_entry_comes_back_memory_mapped_read_only_with_its_info(cache):
    arrays = {"a": np.arange(10, dtype=np.float64), "b": np.array([[1, 2], [3, 4]], dtype=np.int32)}
    cache.put(_key(1), arrays, {"what": "numbers"})
    entry = cache.get(_key(1))
    assert entry.info == {"what": "numbers"}
    for name, arr in arrays.items():
        np.testing.assert_array_equal(entry.arrays[name], arr)
        assert entry.arrays[name].dtype == arr.dtype and not entry.arrays[name].flags.writeable
    assert isinstance(entry.arrays["a"], np.memmap)
    assert cache.get(_key(2)) is None


def test_keys_follow_their_parts_and_bad_keys_are_refused(cache):
    assert make_key("x", {"a": 1, "b": 2.5}) == make_key("x", {"b": 2.5, "a": 1})
    assert make_key("x", 1.0) != make_key("x", 1.0000000001)
    for bad in ("../etc", "A" * 64, "0" * 63, 5):
        with pytest.raises(ValueError, match="not a cache key"):
            cache.get(bad)


def test_the_folder_is_private_and_another_users_folder_is_refused(tmp_path, monkeypatch):
    store = ResultsCache(tmp_path / "c", 1000)
    assert (store.root.stat().st_mode & 0o777) == 0o700
    monkeypatch.setattr(os, "getuid", lambda: os.stat(tmp_path).st_uid + 1)
    with pytest.raises(ValueError, match="belongs to another user"):
        ResultsCache(tmp_path / "c", 1000)
    (tmp_path / "file").write_text("x")
    monkeypatch.undo()
    with pytest.raises(ValueError, match="not a folder|cannot be used"):
        ResultsCache(tmp_path / "file", 1000)


def test_torn_and_foreign_entries_read_as_missing_and_are_removed(cache):
    arrays = {"a": np.arange(1000, dtype=np.float64)}
    for i in range(4):
        cache.put(_key(i), arrays)
    folder = cache.root / "entries"
    with open(folder / _key(0) / "a.npy", "r+b") as fh:  # a writer killed mid-file (truncated)
        fh.truncate(500)
    (folder / _key(1) / "meta.json").write_text("{not json")
    meta = json.loads((folder / _key(2) / "meta.json").read_text())
    meta["key"] = _key(9)  # an entry copied under another key
    (folder / _key(2) / "meta.json").write_text(json.dumps(meta))
    np.save(folder / _key(3) / "a.npy", np.arange(1000, dtype=np.float32))  # same size, other dtype
    for i in range(4):
        assert cache.get(_key(i)) is None
        assert not (folder / _key(i)).exists()


def test_a_killed_writers_temporary_folder_is_cleaned_and_never_read(cache):
    dead = cache.root / "tmp" / f"{_key(5)}.999999999-12345-{processes.host_tag()}-abcd0123"  # pid gone
    dead.mkdir()
    (dead / "a.npy").write_bytes(b"junk")
    old = time.time() - 2 * LEFTOVER_AGE_S
    os.utime(dead, (old, old))
    assert cache.get(_key(5)) is None
    cache.put(_key(6), {"a": np.zeros(3)})  # every put evicts, and evicting removes leftovers
    assert not dead.exists()


def test_eviction_removes_the_least_recently_used_entries_beyond_the_bound(tmp_path):
    one = np.zeros(10_000, dtype=np.float64)  # 80 kB (+ header and meta.json) per entry
    store = ResultsCache(tmp_path / "c", 1 << 30)
    store.put(_key(9), {"a": one})
    size = store.entries()[0][2]
    store.clear()
    store.max_bytes = 3 * size + 100  # room for three entries
    for i in range(3):
        store.put(_key(i), {"a": one})
        t = 1_000_000 + i
        os.utime(store.root / "entries" / _key(i), (t, t))
    assert store.get(_key(0)) is not None  # used now: the most recent
    store.put(_key(3), {"a": one})
    kept = {k for k, _, _ in store.entries()}
    assert kept == {_key(0), _key(2), _key(3)}  # key 1 was the least recently used
    assert store.size_bytes() <= store.max_bytes


def test_an_entry_larger_than_the_bound_is_kept_until_the_next_one(tmp_path):
    store = ResultsCache(tmp_path / "c", 100)
    store.put(_key(0), {"a": np.zeros(1000)})
    assert store.get(_key(0)) is not None
    store.put(_key(1), {"a": np.zeros(1000)})
    assert store.get(_key(0)) is None and store.get(_key(1)) is not None


def test_a_reader_keeps_its_arrays_when_the_entry_is_evicted(tmp_path):
    store = ResultsCache(tmp_path / "c", 1 << 20)
    store.put(_key(0), {"a": np.arange(100_000, dtype=np.float64)})
    held = store.get(_key(0)).arrays["a"]
    store.clear()
    assert store.get(_key(0)) is None
    assert float(held.sum()) == float(np.arange(100_000).sum())


def test_threads_asking_for_one_key_compute_it_once(cache):
    calls = []

    def compute(report):
        calls.append(1)
        time.sleep(0.3)
        report(1, 1)
        return {"a": np.arange(5)}, {"n": 5}

    got, errors = [], []

    def ask():
        try:
            got.append(cache.compute_once(_key(7), compute).arrays["a"].tolist())
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(calls) == 1
    assert got == [[0, 1, 2, 3, 4]] * 8


_WORKER = textwrap.dedent(
    """
    import sys, time, numpy as np
    sys.path.insert(0, {repo!r})
    from cakd_viz.results_cache import ResultsCache
    store = ResultsCache({root!r}, 1 << 30)

    def compute(report):
        with open({log!r}, "a") as fh:
            fh.write("computed\\n")
        time.sleep(0.5)
        return {{"a": np.arange(1000, dtype=np.float64)}}, {{}}

    entry = store.compute_once({key!r}, compute)
    print(float(entry.arrays["a"].sum()))
    """
)


def test_processes_asking_for_one_key_compute_it_once(cache, tmp_path):
    log = tmp_path / "log.txt"
    code = _WORKER.format(repo=str(REPO), root=str(cache.root), log=str(log), key=_key(8))
    procs = [
        subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True) for _ in range(4)
    ]
    outs = [p.communicate(timeout=120)[0].strip() for p in procs]
    assert [p.returncode for p in procs] == [0] * 4
    assert outs == [str(float(np.arange(1000).sum()))] * 4
    assert log.read_text().splitlines() == ["computed"]


def test_a_killed_computation_leaves_the_key_to_the_next_one(cache, tmp_path):
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                f"""
                import sys, time
                sys.path.insert(0, {str(REPO)!r})
                from cakd_viz.results_cache import ResultsCache
                store = ResultsCache({str(cache.root)!r}, 1 << 30)
                with store.lock({_key(9)!r}) as mine:
                    store.write_progress({_key(9)!r}, 3, 10)
                    print("locked", mine, flush=True)
                    time.sleep(600)
                """
            ),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked True"
        seen = []
        with cache.lock(_key(9)) as mine:
            assert not mine  # held by the other process
        waiter = threading.Thread(
            target=lambda: seen.append(
                cache.compute_once(
                    _key(9), lambda r: ({"a": np.ones(2)}, {}), progress=lambda d, t: seen.append((d, t))
                )
            )
        )
        waiter.start()
        time.sleep(0.6)
        assert (3, 10) in seen  # the other process's progress, while waiting for it
        os.kill(holder.pid, signal.SIGKILL)
        waiter.join(timeout=30)
        assert not waiter.is_alive()
        np.testing.assert_array_equal(seen[-1].arrays["a"], np.ones(2))
    finally:
        holder.kill()
        holder.wait()


def test_a_cancelled_computation_stores_nothing(cache):
    def compute(report):
        report(1, 10)
        raise AssertionError("report should have raised")  # pragma: no cover

    with pytest.raises(Cancelled):
        cache.compute_once(_key(10), compute, cancelled=lambda: True)
    assert cache.get(_key(10)) is None
    with cache.lock(_key(10)) as mine:
        assert mine  # released


def test_an_unwritable_cache_still_returns_the_computed_arrays(cache, monkeypatch):
    def fail(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(cache, "put", fail)
    entry = cache.compute_once(_key(11), lambda r: ({"a": np.arange(3)}, {}))
    assert entry.path is None
    np.testing.assert_array_equal(entry.arrays["a"], np.arange(3))


# -- decompositions ----------------------------------------------------------------------------------


def test_cached_decompose_equals_decompose_and_computes_once(cache, bundle, monkeypatch):
    calls = []
    real = cached_module.decompose
    monkeypatch.setattr(cached_module, "decompose", lambda *a, **k: calls.append(1) or real(*a, **k))
    kw = dict(grouping="topk:3", temperature=2.0)
    expected = decompose(bundle.student("s"), bundle.teacher, bundle.labels, **kw)
    for _ in range(3):
        d = cached_decompose(cache, bundle.student("s"), bundle.teacher, bundle.labels, **kw)
        for name in (*FIELDS, "strong_size", "teacher_pred", "student_pred", "labels"):
            np.testing.assert_array_equal(getattr(d, name), getattr(expected, name))
        assert (d.grouping, d.temperature) == ("topk:3", 2.0) and not d.kl.flags.writeable
    assert len(calls) == 1


def test_the_key_names_every_input_that_changes_the_result(bundle):
    s, t, y = bundle.student("s"), bundle.teacher, bundle.labels
    base = decomposition_key(s, t, y, grouping="topk:3", temperature=2.0)
    assert base == decomposition_key(s, t, y, grouping="topk : 3", temperature=2)  # the same spec
    others = {
        decomposition_key(bundle.student("t"), t, y, grouping="topk:3", temperature=2.0),
        decomposition_key(s, t, None, grouping="topk:3", temperature=2.0),
        decomposition_key(s, t, y, grouping="topk:4", temperature=2.0),
        decomposition_key(s, t, y, grouping="topk:3", temperature=2.5),
        decomposition_key(s, np.asarray(t) + 1, y, grouping="topk:3", temperature=2.0),
    }
    assert base not in others and len(others) == 5
    corr = class_correlation(t)
    c1 = decomposition_key(s, t, y, grouping="corr:0.5", temperature=2.0, correlation=corr)
    c2 = decomposition_key(s, t, y, grouping="corr:0.5", temperature=2.0, correlation=corr * 0.99)
    assert c1 != c2
    with pytest.raises(ValueError, match="correlation"):
        decomposition_key(s, t, y, grouping="corr:0.5", temperature=2.0)


def test_a_rewritten_or_touched_bundle_is_not_served_old_results(cache, tmp_path):
    student, teacher, labels = make_logits(200, 8, seed=1)
    path = tmp_path / "rw"
    write_bundle(path, teacher=teacher, students={"s": student}, labels=labels)
    b = load_bundle(path)
    first = cached_decompose(cache, b.student("s"), b.teacher, b.labels, grouping="topk:2", temperature=1.0)
    write_bundle(path, teacher=teacher, students={"s": student * 0.5}, labels=labels, overwrite=True)
    b2 = load_bundle(path)
    second = cached_decompose(
        cache, b2.student("s"), b2.teacher, b2.labels, grouping="topk:2", temperature=1.0
    )
    fresh = decompose(student * 0.5, teacher, labels, grouping="topk:2", temperature=1.0)
    np.testing.assert_allclose(second.kl, fresh.kl, rtol=1e-12)
    assert not np.allclose(first.kl, second.kl)
    key = decomposition_key(b2.student("s"), b2.teacher, b2.labels, grouping="topk:2", temperature=1.0)
    later = time.time() + 5
    os.utime(path / "students" / "s.npy", (later, later))  # edited in place: the time tells
    b3 = load_bundle(path)
    assert (
        decomposition_key(b3.student("s"), b3.teacher, b3.labels, grouping="topk:2", temperature=1.0) != key
    )


def test_identity_of_a_whole_file_and_of_anything_else(bundle):
    whole = array_identity(bundle.teacher)
    assert whole["file"].endswith("teacher.npy") and "sha256" not in whole
    part = array_identity(bundle.teacher[10:])
    assert "file" not in part and part["sha256"] != array_identity(bundle.teacher[11:])["sha256"]
    copy = np.array(bundle.teacher)
    assert array_identity(copy)["sha256"] == array_identity(np.array(bundle.teacher))["sha256"]


def test_save_and_load_a_decomposition_without_labels(cache):
    student, teacher, _ = make_logits(50, 5)
    d = decompose(student, teacher, None, grouping="topk:2", temperature=3.0)
    save_decomposition(cache, _key(20), d)
    back = load_decomposition(cache, _key(20))
    assert back.labels is None and back.grouping == "topk:2" and back.temperature == 3.0
    np.testing.assert_array_equal(back.kl, d.kl)
    assert load_decomposition(cache, _key(21)) is None


# -- bundles -----------------------------------------------------------------------------------------


def test_a_bundles_value_scan_runs_once_per_file(cache, tmp_path):
    student, teacher, labels = make_logits(100, 6)
    path = write_bundle(tmp_path / "chk", teacher=teacher, students={"s": student}, labels=labels)
    _, scanned = open_checked(path, cache)
    assert scanned == ["teacher.npy", "students/s.npy"]
    _, scanned = open_checked(path, cache)
    assert scanned == []
    _, scanned = open_checked(path, None)  # no cache: always scanned
    assert scanned == ["teacher.npy", "students/s.npy"]


def test_a_bad_value_is_found_and_never_recorded_as_checked(cache, tmp_path):
    student, teacher, labels = make_logits(100, 6)
    path = write_bundle(tmp_path / "nan", teacher=teacher, students={"s": student}, labels=labels)
    open_checked(path, cache)
    time.sleep(0.02)  # file times have a resolution of a few ms
    edit = np.load(path / "students" / "s.npy", mmap_mode="r+")  # edited in place (writers refuse NaN)
    edit[42, 3] = np.nan
    edit.flush()
    del edit
    for _ in range(2):  # the edited file is another file: scanned, and scanned again after failing
        with pytest.raises(BundleError, match="NaN") as info:
            open_checked(path, cache)
        assert "students/s.npy" in str(info.value) and "42" in str(info.value)


def test_predictions_are_kept_and_published_into_the_bundle(cache, bundle, tmp_path):
    expected = np.argmax(np.asarray(bundle.student("s")), axis=1)
    np.testing.assert_array_equal(cached_predictions(cache, bundle, "s"), expected)
    fresh = load_bundle(bundle.path)
    pred = cached_predictions(cache, fresh, "s")  # read back from the cache: nothing computed
    assert isinstance(pred, np.memmap)
    assert np.shares_memory(fresh.predictions("s"), pred)  # published: the bundle does not recompute
    assert fresh.accuracy("s") == float(np.mean(expected == np.asarray(bundle.labels)))


def test_correlation_over_all_rows_or_a_stated_subsample(cache, bundle, monkeypatch):
    full = cached_correlation(cache, bundle.teacher)
    np.testing.assert_allclose(full.matrix, class_correlation(bundle.teacher))
    assert full.complete and full.describe() == "over all 300 samples" and not full.matrix.flags.writeable
    part = cached_correlation(cache, bundle.teacher, max_rows=120)
    rows = uniform_rows(300, 120, 0)
    np.testing.assert_allclose(part.matrix, class_correlation(np.asarray(bundle.teacher)[rows]))
    assert part.describe() == "over a fixed random subsample of 120 of 300 samples"
    from cakd_viz.results_cache import bundles as module

    monkeypatch.setattr(module, "class_correlation", lambda *a, **k: pytest.fail("computed again"))
    again = cached_correlation(cache, bundle.teacher, max_rows=120)
    np.testing.assert_array_equal(again.matrix, part.matrix)


# -- subsamples --------------------------------------------------------------------------------------


def test_stratified_rows_keep_every_class_in_proportion():
    labels = np.repeat(np.arange(5), [400, 300, 200, 90, 10])
    np.random.default_rng(0).shuffle(labels)
    rows = stratified_rows(labels, 100, seed=1)
    assert len(rows) == 100 and np.all(np.diff(rows) > 0)
    np.testing.assert_array_equal(np.bincount(labels[rows], minlength=5), [40, 30, 20, 9, 1])
    np.testing.assert_array_equal(rows, stratified_rows(labels, 100, seed=1))
    assert not np.array_equal(rows, stratified_rows(labels, 100, seed=2))


def test_stratified_remainders_go_to_the_largest_fractions():
    labels = np.repeat(np.arange(3), [5, 3, 2])  # 7 of 10: exact shares 3.5, 2.1, 1.4
    counts = np.bincount(labels[stratified_rows(labels, 7)], minlength=3)
    np.testing.assert_array_equal(counts, [4, 2, 1])


def test_preview_rows_say_how_they_were_drawn():
    labels = np.arange(1000) % 7
    assert preview_rows(1000, labels, 70).describe() == "70 of 1,000 samples, stratified by true class"
    assert preview_rows(1000, None, 70).describe() == "70 of 1,000 samples, uniformly at random"
    whole = preview_rows(1000, labels, 5000)
    assert whole.complete and whole.describe() == "all 1,000 samples" and len(whole.rows) == 1000
