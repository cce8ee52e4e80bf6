"""The decomposition's C kernel (cakd_viz/decomposition/decompose_kernel.c) as a piece of machinery.

Its accuracy is test_decompose_accuracy.py's and its strong sets test_strong_sets.py's; here: each
instruction-set path, thread-count invariance, the pool of sleeping helpers (reused, never spinning,
safe across fork and concurrent calls), how rows are read (strides, dtypes, byte order), the rows it
leaves to float64, errors, the fallback when it cannot be built, the thread-count policy, and the
staged (CUDA-style) feeding of the tensor path, run on the CPU.
"""

from __future__ import annotations

import faulthandler
import logging
import math
import multiprocessing
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import reference as ref
import torch

from cakd_viz import native
from cakd_viz.decomposition import decompose, engine, membership, native_path, scan, tensor_path, threads
from cakd_viz.decomposition.inputs import Logits
from cakd_viz.grouping import parse_grouping

KERNEL = native_path.kernel()
ISAS = (
    ["portable"] + (["avx2"] if KERNEL.simd_level >= 1 else []) + (["auto"] if KERNEL.simd_level >= 2 else [])
)
FIELDS = (*native_path.FLOAT_OUT, *native_path.INT_OUT)


def _logits(n=300, c=64, seed=0, dtype=np.float32):
    rng = np.random.default_rng(seed)
    t = rng.standard_normal((n, c)) * 3
    s = t * 0.7 + rng.standard_normal((n, c))
    return s.astype(dtype), t.astype(dtype), rng.integers(0, c, n)


def _kernel(s, t, y, grouping, temperature, *, threads=1, isa="auto", correlated=None, redo64=True):
    """Every output of one kernel call, as {name: (N,) array}."""
    n = len(t)
    out = {name: np.empty(n) for name in native_path.FLOAT_OUT}
    out.update({name: np.zeros(n, np.int64) for name in native_path.INT_OUT})
    rule = native_path.Rule.of(parse_grouping(grouping), temperature, y, correlated)
    native_path.run_kernel_many(KERNEL, [s], t, rule, [out], threads=threads, isa=isa, redo64=redo64)
    return out


def test_the_kernel_is_built_here_and_native_status_lists_both_kernels():
    # CI installs a C compiler (scripts/test.sh), so the kernel is what the tests exercise
    assert KERNEL is not None, native_path.LIBRARY.status()
    lines = native.status()
    assert [line.split(":")[0] for line in lines] == ["cakd_kernel", "decompose_kernel"]  # by name
    assert lines[0].startswith("cakd_kernel: fused CPU kernel: ")
    assert lines[1].startswith("decompose_kernel: fused CPU kernel: dispatch build")
    assert lines[1].endswith(f"{native_path.SIMD_NAMES[KERNEL.simd_level]} path")


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("grouping", ["target", "topk:5", "topk:40", "topk+target:3", "mass:0.8", "corr:0.1"])
def test_each_instruction_set_path_matches_the_reference(isa, grouping):
    s, t, y = _logits(seed=len(grouping))
    corr = np.random.default_rng(1).random((64, 64)) < 0.2
    np.fill_diagonal(corr, True)
    got = _kernel(s, t, y, grouping, 2.0, isa=isa, correlated=corr)
    mask = ref.strong_mask(t, y, grouping, 2.0, corr)
    want = ref.terms(s, t, mask, 2.0)
    kept = got["redo"] == 0  # the rows left to float64 are test_rows_left_to_float64_are_computed_there's
    assert kept.mean() > 0.95
    np.testing.assert_array_equal(got["strong_size"], mask.sum(1))
    np.testing.assert_array_equal(got["teacher_pred"], t.argmax(1))
    np.testing.assert_array_equal(got["student_pred"], s.argmax(1))
    for name in ("kl", "bcd", "scd", "wcd"):
        assert ref.close(got[name][kept], want[name][kept]).all(), name


def test_results_do_not_depend_on_the_thread_count():
    s, t, _ = _logits(n=3000, c=100, seed=2)
    runs = [_kernel(s, t, None, "mass:0.8", 1.5, threads=k) for k in (1, 2, 3, 7)]
    for other in runs[1:]:
        for name in FIELDS:
            np.testing.assert_array_equal(other[name], runs[0][name], err_msg=name)


def _helpers() -> dict[int, tuple[str, int]]:
    """This process's kernel helper threads (by name): thread id -> (state R/S/..., CPU ticks used)."""
    out = {}
    for task in Path("/proc/self/task").iterdir():
        try:
            if (task / "comm").read_text().strip() == "cakd-decompose":
                fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
                out[int(task.name)] = (fields[0], int(fields[11]) + int(fields[12]))  # state, utime + stime
        except OSError:
            continue
    return out


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc (Linux)")
def test_helper_threads_are_kept_and_sleep_between_calls():
    s, t, _ = _logits(n=4000, c=100, seed=3)
    _kernel(s, t, None, "topk:5", 2.0, threads=3)
    started = KERNEL.pool_size()
    assert started >= 2
    for _ in range(20):
        _kernel(s, t, None, "topk:5", 2.0, threads=3)
    assert KERNEL.pool_size() == started  # reused, not started per call
    deadline = time.monotonic() + 10
    while not (_helpers() and all(state == "S" for state, _ in _helpers().values())):
        assert time.monotonic() < deadline, _helpers()  # blocked on a condition variable, not spinning
    before = _helpers()
    a = np.random.default_rng(0).random((400, 400))
    for _ in range(200):  # this thread works for a while (no kernel call): the pool must not wake
        a = a @ a.T / 400
    after = _helpers()
    assert after.keys() == before.keys()
    assert all(after[tid][1] - before[tid][1] <= 1 for tid in before), (before, after)  # no CPU used


def test_concurrent_calls_from_several_python_threads_give_the_same_results():
    s, t, _ = _logits(n=2000, c=200, seed=4)
    want = _kernel(s, t, None, "topk:5", 3.0)
    results, errors = [], []

    def work():
        try:
            for _ in range(5):
                results.append(_kernel(s, t, None, "topk:5", 3.0, threads=2))
        except Exception as exc:  # reported below
            errors.append(exc)

    workers = [threading.Thread(target=work) for _ in range(3)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=120)
    assert not errors and len(results) == 15
    for got in results:
        for name in FIELDS:
            np.testing.assert_array_equal(got[name], want[name])


def _child_decomposes(queue) -> None:
    faulthandler.dump_traceback_later(90, exit=True)  # a hang shows where it is, then the child ends
    # torch's own OpenMP pool does not survive a fork once the parent has used it (libgomp; torch's
    # DataLoader workers set one thread for this reason): decompose's float64 redo rows use torch ops
    torch.set_num_threads(1)
    s, t, _ = _logits(n=500, c=50, seed=5)
    pooled = _kernel(s, t, None, "topk:3", 2.0, threads=2)["kl"]  # a new pool in the child: 1 helper
    queue.put((pooled, decompose(s, t, grouping="topk:3", temperature=2.0, device="cpu").kl))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="fork")
def test_a_forked_child_can_use_the_kernel():
    """The parent's helpers do not exist in a child: it starts an empty pool (pthread_atfork)."""
    s, t, _ = _logits(n=500, c=50, seed=5)
    _kernel(s, t, None, "topk:3", 2.0, threads=2)  # the pool exists in the parent
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_child_decomposes, args=(queue,))
    child.start()
    pooled, kl = queue.get(timeout=120)
    child.join(timeout=60)
    assert child.exitcode == 0
    np.testing.assert_array_equal(pooled, _kernel(s, t, None, "topk:3", 2.0, threads=2)["kl"])
    np.testing.assert_array_equal(kl, decompose(s, t, grouping="topk:3", temperature=2.0, device="cpu").kl)


def test_rows_are_read_where_they_lie_whatever_their_layout(tmp_path):
    s, t, y = _logits(n=80, c=33, seed=6)
    plain = decompose(s, t, y, grouping="topk+target:2", temperature=2.0, device="cpu")

    def same(student, teacher, what):
        d = decompose(student, teacher, y, grouping="topk+target:2", temperature=2.0, device="cpu")
        for name in ("kl", "bcd", "scd", "wcd", "strong_size"):
            np.testing.assert_array_equal(getattr(d, name), getattr(plain, name), err_msg=f"{what}: {name}")

    same(np.repeat(s, 2, axis=0)[::2], np.repeat(t, 2, axis=0)[::2], "every other row")
    same(np.asfortranarray(s), np.asfortranarray(t), "column-major")
    same(s.astype(">f4"), t.astype(">f4"), "big-endian")
    same(torch.from_numpy(s), torch.from_numpy(t), "torch tensors")
    np.save(tmp_path / "t.npy", t.astype(">f4"))
    same(s, np.load(tmp_path / "t.npy", mmap_mode="r"), "big-endian memory map")
    rev = decompose(s[::-1], t[::-1], y[::-1], grouping="topk+target:2", temperature=2.0, device="cpu")
    np.testing.assert_array_equal(rev.kl, plain.kl[::-1])  # a negative row stride
    # float64 goes the tensor path: read backwards, in chunks of one row (numpy calls such a row
    # contiguous, torch refused its negative stride) and of several
    s64, t64 = s.astype(np.float64), t.astype(np.float64)
    whole = decompose(s64, t64, y, grouping="topk:3", temperature=2.0, device="cpu")
    for rows in (1, 7, None):
        back = decompose(s64[::-1], t64[::-1], y[::-1], grouping="topk:3", temperature=2.0, chunk_rows=rows)
        np.testing.assert_array_equal(back.kl, whole.kl[::-1], err_msg=f"chunk_rows={rows}")
    mixed = decompose(s.astype(np.float16), t, y, grouping="topk:3", temperature=2.0, device="cpu")
    want = ref.terms(s.astype(np.float16), t, ref.strong_mask(t, grouping="topk:3"), 2.0)
    assert ref.close(mixed.kl, want["kl"]).all() and ref.close(mixed.bcd, want["bcd"]).all()


@pytest.mark.parametrize("isa", ISAS)
def test_rows_float32_cannot_give_are_redone_in_double(isa):
    """Rows whose BCD float32 arithmetic cannot give to 1e-4 (students matching the group masses but not
    the groups' insides) are redone in double by the kernel itself: none is left to the caller, every term
    meets the accuracy guarantee, and they agree with the float64 tensor ops."""
    rng = np.random.default_rng(7)
    t = (rng.standard_normal((100, 100)) * 3).astype(np.float32)
    mask = ref.strong_mask(t, grouping="topk:5", temperature=0.5)
    s = t.astype(np.float64)
    for i in range(100):  # students matching the group masses exactly, the groups' insides shuffled
        for group in (mask[i], ~mask[i]):
            idx = np.flatnonzero(group)
            s[i, idx] = s[i, rng.permutation(idx)]
    s = (s + rng.standard_normal(s.shape) * 1e-4).astype(np.float32)
    marked = np.flatnonzero(_kernel(s, t, None, "topk:5", 0.5, isa=isa, redo64=False)["redo"])
    assert 0 < marked.size < 100  # the float32 passes alone would leave these rows to the caller
    got = _kernel(s, t, None, "topk:5", 0.5, isa=isa)
    assert not got["redo"].any()
    want = ref.terms(s, t, mask, 0.5)
    for name in ("kl", "bcd", "scd", "wcd"):
        assert ref.close(got[name], want[name]).all(), name
    redone = tensor_path.rows_terms(s[marked], t[marked], None, parse_grouping("topk:5"), 0.5, None)
    for name in ("kl", "bcd", "scd", "wcd"):
        np.testing.assert_allclose(got[name][marked], redone[name], rtol=1e-9, atol=1e-15, err_msg=name)
    d = decompose(s, t, grouping="topk:5", temperature=0.5, device="cpu")  # the kernel's own results
    np.testing.assert_array_equal(d.bcd, _kernel(s, t, None, "topk:5", 0.5)["bcd"])


def test_rows_beyond_the_double_redo_are_computed_by_the_tensor_ops():
    """A row the double redo cannot take either (teacher logits spanning more than 700 T) is left to the
    caller, and decompose fills it from the float64 tensor ops."""
    rng = np.random.default_rng(8)
    t = (rng.standard_normal((20, 50)) * 3).astype(np.float32)
    mask = ref.strong_mask(t, grouping="topk:5", temperature=0.5)
    s = t.astype(np.float64)
    for i in range(20):
        for group in (mask[i], ~mask[i]):
            idx = np.flatnonzero(group)
            s[i, idx] = s[i, rng.permutation(idx)]
    s = (s + rng.standard_normal(s.shape) * 1e-4).astype(np.float32)
    t[:, 49] = -400.0  # a span of more than 700 T at T = 0.5, in W, far below every other class
    s[:, 49] = -400.0
    left = np.flatnonzero(_kernel(s, t, None, "topk:5", 0.5)["redo"])
    assert left.size > 0
    d = decompose(s, t, grouping="topk:5", temperature=0.5, device="cpu")
    redone = tensor_path.rows_terms(s[left], t[left], None, parse_grouping("topk:5"), 0.5, None)
    for name in ("kl", "bcd", "scd", "wcd", "student_strong_mass"):
        np.testing.assert_array_equal(getattr(d, name)[left], redone[name], err_msg=name)


def test_non_finite_logits_name_the_first_culprit():
    s, t, _ = _logits(n=50, c=10)
    t[31, 4] = np.inf
    s[17, 2] = np.nan
    with pytest.raises(ValueError, match=r"student_logits has a non-finite value \(nan\) at row 17, class 2"):
        decompose(s, t, grouping="topk:3", device="cpu")
    s[17, 2] = 0
    with pytest.raises(ValueError, match=r"teacher_logits has a non-finite value \(inf\) at row 31, class 4"):
        decompose(s, t, grouping="topk:3", device="cpu", chunk_rows=7)


@pytest.fixture
def fresh_library(monkeypatch, tmp_path):
    """The decomposition kernel with a cache of its own, forgotten before and after the test."""
    monkeypatch.setenv(native.ENV_CACHE, str(tmp_path / "cache"))
    native_path.LIBRARY.reset()
    yield tmp_path / "cache" / "native"
    native_path.LIBRARY.reset()


def test_without_a_compiler_decompose_uses_tensor_ops_and_says_so_once(fresh_library, monkeypatch, caplog):
    s, t, y = _logits(n=100, c=20, seed=8)
    with_kernel = decompose(s, t, y, grouping="mass:0.7", temperature=2.0, device="cpu")
    native_path.LIBRARY.reset()
    monkeypatch.setattr(native, "_compiler", lambda: None)
    with caplog.at_level(logging.WARNING, logger="cakd_viz.native"):
        first = decompose(s, t, y, grouping="mass:0.7", temperature=2.0, device="cpu")
        decompose(s, t, y, grouping="mass:0.7", temperature=2.0, device="cpu")
    said = [r.getMessage() for r in caplog.records if "fused decomposition kernel" in r.getMessage()]
    assert said == [
        "cakd-viz: the fused decomposition kernel is not available "
        "(no C compiler found (set CC, or install gcc)); using tensor ops"
    ]
    assert "tensor-op kernel: no C compiler found" in native_path.LIBRARY.status()
    for name in ("kl", "bcd", "scd", "wcd"):
        np.testing.assert_allclose(getattr(first, name), getattr(with_kernel, name), rtol=1e-5, atol=1e-12)


def test_switched_off_by_the_environment():
    code = (
        "from cakd_viz import native, decompose; import numpy as np;"
        "d = decompose(np.eye(3, dtype=np.float32), np.ones((3, 3), np.float32), device='cpu');"
        "print(native.status()[1])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        env={**__import__("os").environ, native.ENV_SWITCH: "0"},
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("decompose_kernel: tensor-op kernel: switched off by CAKD_VIZ_NATIVE=0")


def test_each_pass_starts_a_window_of_cpu_use_at_its_first_chunk(monkeypatch):
    """decompose, the scan and the strong sets tell the thread fitting which kernel call is a pass's first
    (its window of others' CPU use starts there), and only that one."""
    calls = []
    real = threads.default_threads

    def record(requested, **kw):
        calls.append(kw.get("new_pass"))
        return real(requested, **kw)

    for module in (engine, scan, membership):
        monkeypatch.setattr(module, "default_threads", record)
    monkeypatch.setattr(scan, "CHUNK_ELEMENTS", 20 * 7)
    monkeypatch.setattr(membership, "SIZE_CHUNK_ROWS", 20)
    rng = np.random.default_rng(3)
    t, s = (rng.standard_normal((50, 7)).astype(np.float32) for _ in range(2))
    for run in (
        lambda: decompose(s, t, grouping="topk:2", temperature=2.0, device="cpu", chunk_rows=20),
        lambda: scan.scan_logits(t, "teacher"),
        lambda: list(membership.strong_sets(t, grouping="topk:2", temperature=2.0, chunk_rows=20)),
        lambda: membership.strong_sizes(t, grouping="topk:2", temperature=2.0),
    ):
        calls.clear()
        run()
        assert calls == [True, False, False], calls


def test_threads_fit_the_cpus_free_now(monkeypatch, tmp_path):
    """Without a recent window of CPU use: the other processes' threads runnable at this instant."""
    loadavg = tmp_path / "loadavg"
    monkeypatch.setattr(threads, "others_busy", lambda **_: None)
    monkeypatch.setattr(threads, "affinity_cpus", lambda: 4)
    monkeypatch.setattr(threads.os, "cpu_count", lambda: 4)
    monkeypatch.setattr(threads, "quota_cpus", lambda: None)
    monkeypatch.setattr(threads, "own_runnable", lambda: 0)
    monkeypatch.setattr(threads, "LOADAVG", loadavg)
    monkeypatch.setattr(threads.other_runnable, "__defaults__", (loadavg,))
    for running, requested, want in ((1, 8, 4), (2, 8, 3), (3, 2, 2), (4, 8, 1), (9, 8, 1), (1, 1, 1)):
        loadavg.write_text(f"0.50 0.40 0.30 {running}/300 12345\n")
        assert threads.default_threads(requested) == want, (running, requested)
    monkeypatch.setattr(threads, "own_runnable", lambda: 2)  # our own spinning threads are no competition
    loadavg.write_text("0.50 0.40 0.30 3/300 12345\n")
    assert threads.default_threads(8) == 4
    monkeypatch.setattr(threads, "quota_cpus", lambda: 2)  # a cgroup quota of 1.5 CPUs, rounded up
    assert threads.default_threads(8) == 2
    loadavg.write_text("garbage")  # unreadable: no limit from it
    assert threads.default_threads(3) == 2


def test_threads_fit_the_cpus_others_kept_busy_over_the_last_window(monkeypatch, tmp_path):
    """A neighbour busy in bursts costs no thread, a CPU-bound one costs one (also where it shared a core
    with our threads and kept two thirds of it: it is runnable at every instant): the machine's busy time
    less this process's own, averaged between calls at least WINDOW_S apart within one pass (the time
    between passes, when a browser draws the last result, never enters a window)."""
    stat = tmp_path / "stat"
    own = {"s": 0.0}

    def machine(busy_s: float) -> None:  # /proc/stat's first line, in clock ticks
        ticks = round(busy_s * threads.TICKS)
        stat.write_text(f"cpu  {ticks} 0 0 999999 0 0 0 0 0 0\ncpu0 0 0 0 0 0 0 0 0 0 0\n")

    monkeypatch.setattr(threads.os, "times", lambda: os.times_result((own["s"], 0.0, 0.0, 0.0, 0.0)))
    monkeypatch.setattr(threads._Window, "sample", None)
    monkeypatch.setattr(threads._Window, "average", None)
    monkeypatch.setattr(threads._Window, "taken", -math.inf)
    machine(100.0)
    assert threads.others_busy(stat, now=1000.0, new_pass=True) is None  # the first sample: no window yet
    machine(100.5)  # 0.5 s busy over the next second, 0.2 s of it this process's own
    own["s"] = 0.2
    assert threads.others_busy(stat, now=1000.2) is None  # too soon: no window yet
    assert threads.others_busy(stat, now=1001.0) == pytest.approx(0.3)
    machine(102.5)  # then 2 s busy in 1 s, none of it ours: a CPU-bound neighbour beside our own thread
    own["s"] = 1.2
    assert threads.others_busy(stat, now=1002.0) == pytest.approx(1.0)
    machine(104.5)  # between two passes: a browser busy on both CPUs, drawing the last pass's result
    assert threads.others_busy(stat, now=1003.0, new_pass=True) == pytest.approx(1.0)  # the last pass's
    machine(104.6)  # the new pass's first half second: 0.1 s busy, none of it ours
    assert threads.others_busy(stat, now=1003.2) == pytest.approx(1.0)  # too soon: still the last pass's
    assert threads.others_busy(stat, now=1003.5) == pytest.approx(0.2)  # the window began with the pass
    machine(105.0)  # a pause longer than MAX_AGE_S: no average until a window holds WINDOW_S again
    assert threads.others_busy(stat, now=1003.5 + threads.MAX_AGE_S + 1) is None
    assert threads.others_busy(stat, now=1003.5 + threads.MAX_AGE_S + 1.2) is None
    stat.write_text("garbage")
    assert threads.others_busy(stat) is None
    monkeypatch.setattr(threads, "affinity_cpus", lambda: 2)
    monkeypatch.setattr(threads.os, "cpu_count", lambda: 2)
    monkeypatch.setattr(threads, "quota_cpus", lambda: None)
    for runnable, average, want in (
        (1, 0.3, 2),  # a burst at this instant, a third of a core over the window
        (0, 0.6, 2),  # a browser drawing: busy 60% of the window, not at this instant
        (1, 0.67, 1),  # a CPU-bound neighbour that shared a core three ways with our two threads
        (0, 0.8, 1),
        (1, 0.9, 1),
        (2, 1.6, 1),
        (1, None, 1),  # no window yet: the threads runnable now
    ):
        monkeypatch.setattr(threads, "other_runnable", lambda r=runnable: r)
        monkeypatch.setattr(threads, "others_busy", lambda a=average, **_: a)
        assert threads.default_threads(8) == want, (runnable, average)


def test_cgroup_quota_is_read_in_whole_cpus(tmp_path):
    cpu_max = tmp_path / "cpu.max"
    for text, want in (("max 100000", None), ("150000 100000", 2), ("50000 100000", 1), ("400000 100000", 4)):
        cpu_max.write_text(text + "\n")
        assert threads.quota_cpus(cpu_max) == want
    assert threads.quota_cpus(tmp_path / "missing") is None


def test_mps_requests_are_computed_on_the_cpu_and_say_so(monkeypatch, caplog):
    s, t, y = _logits(n=50, c=10, seed=9)
    monkeypatch.setattr(engine, "resolve_device", lambda device: torch.device("mps"))
    engine._warn_mps.cache_clear()  # the warning is logged once a process
    with caplog.at_level(logging.WARNING, logger="cakd_viz.decomposition.engine"):
        d = decompose(s, t, y, grouping="target", temperature=2.0, device="mps")
    assert "MPS has no float64, so this decomposition is computed on the CPU" in caplog.text
    np.testing.assert_array_equal(
        d.kl, decompose(s, t, y, grouping="target", temperature=2.0, device="cpu").kl
    )


def test_staged_feeding_as_on_cuda_gives_the_same_results():
    """The tensor path's double-buffered staging (pinned buffers and a copy stream on CUDA) run on the
    CPU: chunks of changing dtype and a short last chunk through the same two buffers per source."""
    s, t, y = _logits(n=203, c=30, seed=10, dtype=np.float16)
    zs, zt = Logits(s, "student_logits"), Logits(torch.from_numpy(t.astype(np.float32)), "teacher_logits")
    g = parse_grouping("topk+target:2")
    args = (zs, zt, y, g, 2.0, None, torch.device("cpu"), 16)
    staged = tensor_path.decompose_tensors(*args, stage=True)
    direct = tensor_path.decompose_tensors(*args, stage=False)
    whole = tensor_path.decompose_tensors(*args[:-1], 10**12, stage=True)  # buffers of the rows there are
    for name, values in direct.items():
        np.testing.assert_array_equal(staged[name], values, err_msg=name)
        np.testing.assert_array_equal(whole[name], values, err_msg=name)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("c", [2, 7, 17, 1000])
def test_each_instruction_set_path_over_sizes_temperatures_and_students(isa, c):
    """The accuracy guarantee (test_decompose_accuracy.py) on every path the kernel has, not only the one
    this CPU picks: AVX2 and plain C serve other machines."""
    rng = np.random.default_rng(c)
    n = 6 if c == 1000 else 20
    for temperature in (0.1, 4.0, 100.0):
        for kind in ("indep", "near", "offset"):
            t = rng.standard_normal((n, c)) * 3
            s = {
                "indep": rng.standard_normal((n, c)) * 3,
                "near": t + rng.standard_normal((n, c)) * 0.001,
                "offset": t + rng.uniform(-20, 20, (n, 1)) + rng.standard_normal((n, c)) * 0.01,
            }[kind]
            y = rng.integers(0, c, n)
            for dtype in (np.float32, np.float16):
                tt, ss = t.astype(dtype), s.astype(dtype)
                for grouping in ("topk:1", "topk:5", "topk+target:2", "mass:0.9"):
                    got = _kernel(ss, tt, y, grouping, temperature, isa=isa)
                    kept = got["redo"] == 0
                    want = ref.terms(ss, tt, ref.strong_mask(tt, y, grouping, temperature), temperature)
                    for name in ("kl", "bcd", "scd", "wcd"):
                        ok = ref.close(got[name][kept], want[name][kept])
                        assert ok.all(), (isa, c, temperature, kind, np.dtype(dtype).name, grouping, name)


# -- several students in one pass ---------------------------------------------------------------------


def _students(rng, t: np.ndarray) -> list[np.ndarray]:
    """Students of every kind on one teacher: independent, near-identical, offset by a constant (rows the
    kernel leaves to float64 among them), a noisy copy and a far one (other pass-4 ways per row)."""
    n, c = t.shape
    return [
        rng.standard_normal((n, c)) * 3,
        t + rng.standard_normal((n, c)) * 0.001,
        t + rng.uniform(-20, 20, (n, 1)) + rng.standard_normal((n, c)) * 0.01,
        t * 0.7 + rng.standard_normal((n, c)),
        t * 4.0,
    ]


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize(
    "grouping", ["target", "topk:1", "topk:5", "topk:40", "topk+target:2", "mass:0.5", "mass:0.9", "corr:0.1"]
)
def test_students_in_one_pass_are_separate_passes_bit_for_bit(isa, grouping):
    """What each row's students share (its strong set, and on AVX-512 the teacher's weights) depends on
    the teacher only: every output equals that student's own call, bit for bit, on every path."""
    rng = np.random.default_rng(len(grouping))
    for c, temperature, dtype in [(7, 0.1, np.float32), (64, 1.0, np.float16), (1000, 4.0, np.float32)]:
        n = 40 if c == 1000 else 150
        t = rng.standard_normal((n, c)) * 3
        students = [s.astype(dtype) for s in _students(rng, t)]
        students[1] = students[1].astype(np.float32)  # dtypes may differ between students
        t = t.astype(dtype)
        y = rng.integers(0, c, n)
        corr = rng.random((c, c)) < 0.2
        np.fill_diagonal(corr, True)
        correlated = corr if grouping.startswith("corr") else None
        rule = native_path.Rule.of(parse_grouping(grouping), temperature, y, correlated)
        outs = [
            {name: np.full(n, -7.0 if name in native_path.FLOAT_OUT else -7) for name in FIELDS}
            for _ in students
        ]
        for out in outs:
            for name in native_path.INT_OUT:
                out[name] = out[name].astype(np.int64)
        native_path.run_kernel_many(KERNEL, students, t, rule, outs, threads=2, isa=isa)
        for j, s in enumerate(students):
            alone = _kernel(s, t, y, grouping, temperature, threads=1, isa=isa, correlated=correlated)
            for name in FIELDS:
                np.testing.assert_array_equal(
                    outs[j][name], alone[name], err_msg=f"{isa} {c} student {j} {name}"
                )


def test_decompose_many_equals_decompose_for_each_student():
    rng = np.random.default_rng(5)
    t = rng.standard_normal((500, 50)) * 3
    wide = _students(rng, t)
    students = [x.astype(np.float32) for x in wide]
    y = rng.integers(0, 50, 500)
    seen = []
    many = engine.decompose_many(
        students,
        t.astype(np.float32),
        y,
        grouping="topk:3",
        temperature=0.5,
        chunk_rows=128,
        progress=lambda done, total: seen.append((done, total)),
    )
    assert seen == [(128, 500), (256, 500), (384, 500), (500, 500)]  # one pass for all five students
    for s, d in zip(students, many, strict=True):
        alone = decompose(s, t.astype(np.float32), y, grouping="topk:3", temperature=0.5)
        for name in ("kl", "bcd", "scd", "wcd", "teacher_strong_mass", "student_pred", "strong_size"):
            np.testing.assert_array_equal(getattr(d, name), getattr(alone, name), err_msg=name)
    # float64 students (or no kernel) fall back to one pass each, with the same results
    kept = engine.decompose_many(wide[:2], t, y, grouping="topk:3", temperature=0.5)
    for s, d in zip(wide[:2], kept, strict=True):
        np.testing.assert_array_equal(d.kl, decompose(s, t, y, grouping="topk:3", temperature=0.5).kl)


def test_decompose_many_names_the_student_holding_a_non_finite_value():
    s, t, y = _logits(n=50, c=8)
    bad = s.copy()
    bad[31, 2] = np.inf
    with pytest.raises(
        ValueError, match=r"student_logits\[1\] has a non-finite value \(inf\) at row 31, class 2"
    ):
        engine.decompose_many([s, bad], t, y, grouping="topk:2", temperature=1.0)
    with pytest.raises(
        ValueError, match=r"student_logits\[1\] has shape \(49, 8\), teacher_logits \(50, 8\)"
    ):
        engine.decompose_many([s, s[:49]], t, y, grouping="topk:2", temperature=1.0)


# -- logit standardization (LS): each row's own scales, in the kernel ----------------------------------


def _kernel_ls(s, t, y, grouping, temperature, *, threads=1, isa="auto"):
    n = len(t)
    out = {name: np.empty(n) for name in native_path.FLOAT_OUT}
    out.update({name: np.zeros(n, np.int64) for name in native_path.INT_OUT})
    rule = native_path.Rule.of(parse_grouping(grouping), temperature, y, None, standardize=True)
    native_path.run_kernel_many(KERNEL, [s], t, rule, [out], threads=threads, isa=isa)
    return out


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("c", [2, 7, 17, 1000])
def test_each_instruction_set_path_standardizes_each_row(isa, c):
    """The LS way of every path (its statistics passes and pass 4's P4_SCALED) against the float64
    reference of the logits standardized by tests/reference.py."""
    rng = np.random.default_rng(50 + c)
    n = 6 if c == 1000 else 20
    for temperature in (0.1, 4.0, 100.0):
        for kind in ("indep", "near", "offset", "scaled"):
            t = rng.standard_normal((n, c)) * 3
            s = {
                "indep": rng.standard_normal((n, c)) * 3,
                "near": t + rng.standard_normal((n, c)) * 0.001,
                "offset": t + rng.uniform(-20, 20, (n, 1)) + rng.standard_normal((n, c)) * 0.01,
                "scaled": t * rng.uniform(0.2, 3.0, (n, 1)),
            }[kind]
            y = rng.integers(0, c, n)
            for dtype in (np.float32, np.float16):
                tt, ss = t.astype(dtype), s.astype(dtype)
                zt, zs = ref.standardized(tt), ref.standardized(ss)
                for grouping in ("topk:1", "topk:5", "topk+target:2", "mass:0.9"):
                    got = _kernel_ls(ss, tt, y, grouping, temperature, isa=isa)
                    kept = got["redo"] == 0
                    mask = ref.strong_mask(ref.standardized(tt, center=False), y, grouping, temperature)
                    want = ref.terms(zs, zt, mask, temperature)
                    np.testing.assert_array_equal(got["strong_size"], mask.sum(1))
                    for name in ("kl", "bcd", "scd", "wcd"):
                        ok = ref.close(got[name][kept], want[name][kept])
                        assert ok.all(), (isa, c, temperature, kind, np.dtype(dtype).name, grouping, name)


@pytest.mark.parametrize("isa", ISAS)
def test_standardized_students_in_one_pass_are_separate_passes_bit_for_bit(isa):
    rng = np.random.default_rng(60)
    t = rng.standard_normal((150, 64)) * 3
    students = [s.astype(np.float32) for s in _students(rng, t)]
    t = t.astype(np.float32)
    y = rng.integers(0, 64, 150)
    for grouping in ("topk:5", "mass:0.9", "target"):
        rule = native_path.Rule.of(parse_grouping(grouping), 1.0, y, None, standardize=True)
        outs = [
            {name: np.zeros(150, np.int64 if name in native_path.INT_OUT else float) for name in FIELDS}
            for _ in students
        ]
        native_path.run_kernel_many(KERNEL, students, t, rule, outs, threads=2, isa=isa)
        for j, s in enumerate(students):
            alone = _kernel_ls(s, t, y, grouping, 1.0, isa=isa)
            for name in FIELDS:
                np.testing.assert_array_equal(
                    outs[j][name], alone[name], err_msg=f"{isa} {grouping} {j} {name}"
                )


def test_standardized_results_do_not_depend_on_the_thread_count_and_decompose_many_equals_decompose():
    s, t, y = _logits(n=2000, c=100, seed=61)
    runs = [_kernel_ls(s, t, None, "mass:0.8", 1.5, threads=k) for k in (1, 2, 3)]
    for other in runs[1:]:
        for name in FIELDS:
            np.testing.assert_array_equal(other[name], runs[0][name], err_msg=name)
    students = [s, (t * 0.4).astype(np.float32)]
    many = engine.decompose_many(students, t, y, grouping="topk:3", temperature=2.0, standardize=True)
    for x, d in zip(students, many, strict=True):
        alone = decompose(x, t, y, grouping="topk:3", temperature=2.0, standardize=True)
        assert d.standardize and alone.standardize
        for name in ("kl", "bcd", "scd", "wcd", "teacher_strong_mass", "student_pred", "strong_size"):
            np.testing.assert_array_equal(getattr(d, name), getattr(alone, name), err_msg=name)
