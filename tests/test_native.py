"""The fused C kernel of the CAKD loss (cakd_viz.native, cakd_viz.losses.native_kernel) and its fallback.

Its results are checked against the tensor-op kernel and the per-sample reference of test_losses.py;
here: that it is built on this machine, ties and NaN in its own top-k, bad labels, gradcheck, and that
a machine without a compiler still trains (tensor-op kernel, with the reason said).
"""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from test_losses import _dkd_reference, _grad, _reference_loss, _strong, _tensors

from cakd_viz import native
from cakd_viz.grouping import parse_grouping
from cakd_viz.losses import CAKDLoss, DKDLoss, KDLoss
from cakd_viz.losses.native_kernel import LIBRARY, NativeCAKDFunction, rule_of


@pytest.fixture
def tensor_ops(monkeypatch):
    """The losses as on a machine without the fused kernel."""
    monkeypatch.setitem(LIBRARY._state, "kernel", None)
    monkeypatch.setitem(LIBRARY._state, "reason", "off for this test")


@pytest.fixture
def fresh_native(monkeypatch, tmp_path):
    """A cache of its own, forgotten before and after the test."""
    monkeypatch.setenv(native.ENV_CACHE, str(tmp_path / "cache"))
    LIBRARY.reset()
    yield tmp_path / "cache" / "native"
    LIBRARY.reset()


def test_the_kernel_is_built_here_and_says_so():
    # CI installs a C compiler (scripts/test.sh), so the fast path is what the tests exercise
    assert LIBRARY.get() is not None, LIBRARY.status()
    assert LIBRARY.status().startswith("fused CPU kernel: ")


def test_a_fresh_cache_builds_once_and_then_reuses_the_library(fresh_native):
    first = LIBRARY.get()
    assert first is not None and first.path.parent == fresh_native
    built = sorted(p.name for p in fresh_native.iterdir())
    LIBRARY.reset()
    assert LIBRARY.get().path == first.path
    assert sorted(p.name for p in fresh_native.iterdir()) == built  # nothing rebuilt, no temporaries left


@pytest.mark.parametrize("kind", ["ties", "random", "nan"])
@pytest.mark.parametrize("grouping", ["topk:1", "topk:3", "topk:9", "topk+target:2", "target"])
@pytest.mark.parametrize("c", [10, 40])  # 40: K at most C / 8, where the kernel pre-screens by block maxima
def test_the_kernels_own_strong_sets_match_grouping(kind, grouping, c):
    gen = torch.Generator().manual_seed(11)
    t = torch.randn(200, c, generator=gen, dtype=torch.float64) * 3
    if kind == "ties":  # many equal values at the top-k boundary: the lower class index wins
        t = torch.randint(0, 4, (200, c), generator=gen).double()
    s = (0.5 * t + torch.randn(200, c, generator=gen, dtype=torch.float64)).requires_grad_()
    y = torch.randint(0, c, (200,), generator=gen)
    crit = CAKDLoss(grouping, 0.7, 1.3, 2.5, temperature=2.0)
    if kind == "nan":  # a NaN in a teacher row ranks above everything, as in torch.topk; the loss is NaN
        t[5, 3] = float("nan")
        assert torch.isnan(crit(s, t, y))
        t, s, y = t[6:], s[6:].detach().requires_grad_(), y[6:]
    strong = _strong(grouping, t, y, 2.0)
    loss, ref = crit(s, t, y), _reference_loss(s, t, strong, 2.0, 0.7, 1.3, 2.5)
    torch.testing.assert_close(loss, ref, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("grouping", ["target", "topk:2", "mass:0.8"])
@pytest.mark.parametrize("natural", [(False, False), (True, False), (False, True)])
def test_native_gradient_passes_gradcheck(grouping, natural):
    s, t, y = _tensors(n=6, c=5, seed=3)
    g = parse_grouping(grouping)
    rule, k = rule_of(g, 5)
    mask = _strong(grouping, t, y, 2.0) if grouping.startswith("mass") else None
    kern = LIBRARY.get()

    def fn(student):
        loss, terms = NativeCAKDFunction.apply(
            kern, student, t, rule, k, y, mask, 2.0, (0.7, 1.3, 2.5), natural, True
        )
        return loss, terms

    assert torch.autograd.gradcheck(fn, (s,), eps=1e-6, atol=1e-8)


def test_float32_results_agree_with_the_tensor_op_kernel(monkeypatch):
    gen = torch.Generator().manual_seed(2)
    t = torch.randn(256, 100, generator=gen) * 3
    s = (0.6 * t + torch.randn(256, 100, generator=gen) * 1.5).requires_grad_()
    y = torch.randint(0, 100, (256,), generator=gen)
    crit = CAKDLoss("topk:5", 1.0, 1.0, 8.0, temperature=4.0)
    fast = crit.loss_and_terms(s, t, y)
    (g_fast,) = torch.autograd.grad(crit(s, t, y), s)
    monkeypatch.setitem(LIBRARY._state, "kernel", None)
    monkeypatch.setitem(LIBRARY._state, "reason", "off for this test")
    slow = crit.loss_and_terms(s, t, y)
    (g_slow,) = torch.autograd.grad(crit(s, t, y), s)
    torch.testing.assert_close(fast[0], slow[0], rtol=2e-6, atol=1e-6)
    for name in crit.term_names:
        torch.testing.assert_close(fast[1][name], slow[1][name], rtol=2e-6, atol=1e-6)
    torch.testing.assert_close(g_fast, g_slow, rtol=1e-4, atol=1e-9)


def test_strided_inputs_and_labels_give_the_contiguous_result():
    s, t, y = _tensors(n=40, c=7, seed=5)
    crit = CAKDLoss("topk+target:2", temperature=2.0)
    wide_y = torch.stack((y, y.flip(0)), 1)  # column 0 is y, strided
    loss = crit(s.t().contiguous().t(), t.t().contiguous().t(), wide_y[:, 0])
    torch.testing.assert_close(loss, crit(s, t, y), rtol=0, atol=0)


@pytest.mark.parametrize("use_native", [True, False])
def test_a_teacher_in_another_dtype_is_computed_in_the_students(use_native, monkeypatch):
    if not use_native:
        monkeypatch.setitem(LIBRARY._state, "kernel", None)
    s, t, y = _tensors(n=20, c=6, seed=6, dtype=torch.float32)
    for crit in (CAKDLoss("topk:2", temperature=2.0), DKDLoss(temperature=2.0), KDLoss(2.0)):
        same = crit(s, t, y)
        torch.testing.assert_close(crit(s, t.double(), y), same, rtol=0, atol=0)
        torch.testing.assert_close(crit(s, t.half(), y), crit(s, t.half().float(), y), rtol=0, atol=0)


def test_labels_out_of_range_are_a_clear_error():
    s, t, y = _tensors(n=8, c=5)
    y[3] = 7
    with pytest.raises(ValueError, match=r"labels: label 7 at row 3 is outside 0..4$"):
        CAKDLoss("target")(s, t, y)


def test_the_portable_build_gives_the_same_losses(fresh_native, monkeypatch):
    # machines without glibc's libmvec (or not x86-64) get the build with the kernel's own exp
    monkeypatch.setattr(native, "VARIANTS", tuple(v for v in native.VARIANTS if v[0] == "portable"))
    assert LIBRARY.get() is not None and LIBRARY.status().startswith("fused CPU kernel: portable build")
    gen = torch.Generator().manual_seed(3)
    t = torch.randn(64, 50, generator=gen) * 3
    s = (0.6 * t + torch.randn(64, 50, generator=gen)).requires_grad_()
    y = torch.randint(0, 50, (64,), generator=gen)
    crit = CAKDLoss("topk:5", 1.0, 1.0, 8.0, temperature=4.0)
    portable = crit(s, t, y)
    (g_portable,) = torch.autograd.grad(portable, s)
    reference = _reference_loss(s.double(), t.double(), _strong("topk:5", t, y, 4.0), 4.0, 1.0, 1.0, 8.0)
    torch.testing.assert_close(portable.double(), reference, rtol=2e-6, atol=1e-7)
    (g_reference,) = torch.autograd.grad(reference, s)
    torch.testing.assert_close(g_portable, g_reference, rtol=1e-4, atol=1e-8)


def test_without_a_compiler_the_losses_fall_back_and_say_why(fresh_native, monkeypatch):
    monkeypatch.setattr(native, "_compiler", lambda: None)
    assert LIBRARY.get() is None
    assert "no C compiler found" in LIBRARY.status()
    s, t, y = _tensors()
    crit = CAKDLoss("topk:3", alpha="natural", beta="natural", temperature=2.0)
    torch.testing.assert_close(crit(s, t, y), KDLoss(2.0)(s, t), rtol=1e-10, atol=1e-12)


def test_a_failing_build_is_reported_and_not_retried_by_every_process(fresh_native, monkeypatch):
    monkeypatch.setattr(native, "_compiler", lambda: "false")  # a "compiler" that always fails
    assert LIBRARY.get() is None
    assert "failed" in LIBRARY.status()
    assert not any(fresh_native.glob("*.so"))
    assert not any(p.name.startswith(".build-") for p in fresh_native.iterdir())  # no temporaries left


def test_a_build_that_timed_out_is_tried_again_by_the_next_process(fresh_native, monkeypatch):
    """The 2-minute limit of a build is the machine's load as often as the compiler's: no '.failed' mark
    (which keeps every later process off that build for good) is written for it."""
    monkeypatch.setattr(native, "_has_libmvec", lambda: True)  # two variants, the first one marked on failure

    def slow(cmd, **kwargs):
        raise subprocess.TimeoutExpired(cmd, kwargs.get("timeout"))

    monkeypatch.setattr(subprocess, "run", slow)
    assert LIBRARY.get() is None and "TimeoutExpired" in LIBRARY.status()
    assert not list(fresh_native.glob("*.failed"))


def test_switched_off_by_the_environment():
    code = "from cakd_viz.losses.native_kernel import LIBRARY as L; print(L.get() is None, L.status())"
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        env={**__import__("os").environ, native.ENV_SWITCH: "0"},
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("True tensor-op kernel: switched off by CAKD_VIZ_NATIVE=0")


def test_switched_off_by_every_off_word_of_the_setting(monkeypatch):
    # the setting is a flag (cakd_viz.settings: 0/false/no/off); the library only heeded "0"
    for word in ("off", "False", "no"):
        monkeypatch.setenv(native.ENV_SWITCH, word)
        LIBRARY.reset()
        assert LIBRARY.get() is None
        assert LIBRARY.status() == f"tensor-op kernel: switched off by CAKD_VIZ_NATIVE={word}"
    monkeypatch.setenv(native.ENV_SWITCH, "maybe")  # not understood: refused, never a silent default
    LIBRARY.reset()
    with pytest.raises(ValueError, match="CAKD_VIZ_NATIVE='maybe' is not understood"):
        LIBRARY.get()
    monkeypatch.delenv(native.ENV_SWITCH)
    LIBRARY.reset()


@pytest.mark.parametrize("temperature", [0.5, 4.0])
def test_dkd_matches_the_published_formula_on_both_kernels(temperature, monkeypatch):
    s, t, y = _tensors()
    ref = _dkd_reference(s, t, y, 1.5, 6.0, temperature)
    for fused in (True, False):
        if not fused:
            monkeypatch.setitem(LIBRARY._state, "kernel", None)
        crit = DKDLoss(alpha=1.5, beta=6.0, temperature=temperature)
        loss, terms = crit.loss_and_terms(s, t, y)
        torch.testing.assert_close(loss, ref, rtol=1e-9, atol=1e-12)
        torch.testing.assert_close(_grad(crit(s, t, y), s), _grad(ref, s), rtol=1e-8, atol=1e-12)
        assert torch.equal(loss, 1.5 * terms["tckd"] + 6.0 * terms["nckd"])
        named = crit.terms(s, t, y)  # each term differentiable on its own: alpha*d(TCKD) + beta*d(NCKD)
        both = 1.5 * _grad(named["tckd"], s) + 6.0 * _grad(crit.terms(s, t, y)["nckd"], s)
        torch.testing.assert_close(both, _grad(ref, s), rtol=1e-8, atol=1e-12)


def test_the_tensor_op_kernels_agree_with_the_fused_one(tensor_ops):
    s, t, y = _tensors(n=30, c=12, seed=4)
    crits = [CAKDLoss("topk:3", 1.0, 0.5, 4.0, temperature=3.0), DKDLoss(1.0, 8.0, temperature=3.0)]
    slow = [(c(s, t, y), _grad(c(s, t, y), s)) for c in crits]
    LIBRARY._state.clear()  # the fixture's monkeypatch restores its own keys afterwards
    fast = [(c(s, t, y), _grad(c(s, t, y), s)) for c in crits]
    assert LIBRARY.get() is not None
    for (ls, gs), (lf, gf) in zip(slow, fast, strict=True):
        torch.testing.assert_close(lf, ls, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(gf, gs, rtol=1e-8, atol=1e-13)


def test_threads_split_rows_without_changing_results():
    gen = torch.Generator().manual_seed(8)
    n, c = 1500, 600  # 900,000 entries: three threads of at least 262,144 entries each
    t = torch.randn(n, c, generator=gen, dtype=torch.float64) * 3
    s = (0.5 * t + torch.randn(n, c, generator=gen, dtype=torch.float64)).requires_grad_()
    y = torch.randint(0, c, (n,), generator=gen)
    crit = CAKDLoss("topk+target:4", 1.0, "natural", 3.0, temperature=2.0)
    before = torch.get_num_threads()
    results = {}
    try:
        for threads in (1, 3):
            torch.set_num_threads(threads)
            loss, terms = crit.loss_and_terms(s, t, y)
            results[threads] = (loss, torch.stack(list(terms.values())), _grad(crit(s, t, y), s))
        y_bad = y.clone()
        y_bad[-1] = c  # in the last thread's rows
        with pytest.raises(ValueError, match=f"label {c} at row {n - 1} is outside 0..{c - 1}"):
            crit(s, t, y_bad)
    finally:
        torch.set_num_threads(before)
    one, three = results[1], results[3]
    torch.testing.assert_close(three[0], one[0], rtol=1e-13, atol=0)  # only the order of a final sum differs
    torch.testing.assert_close(three[1], one[1], rtol=1e-13, atol=0)
    assert torch.equal(three[2], one[2])  # rows are independent: the gradient is bit for bit the same
    LIBRARY._state.clear()  # and the tensor-op kernel agrees
    LIBRARY._state.update(kernel=None, reason="off for this test")
    try:
        torch.testing.assert_close(crit(s, t, y), one[0], rtol=1e-10, atol=1e-12)
    finally:
        LIBRARY.reset()
