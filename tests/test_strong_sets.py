"""Every implementation of the grouping rules picks the same strong sets (docs/architecture.md §4).

Five places decide S: `cakd_viz.grouping.strong_mask` (tensor ops; the decomposition's tensor path and
every `mass`/`corr` loss), the decomposition kernel (`decompose_kernel.c`, each of its instruction-set
paths), the loss's fused C kernel (the rules it has a code for), and the loss's tensor-op top-k
(`Grouping.strong_mask_float`). Here they must agree exactly, and with the independent
definition of tests/reference.py, on ties (equal logits: the lower class index first), float16
inputs, and finite extremes (|z| up to 3e38, subnormals, signed zeros).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from reference import strong_mask as reference_mask

from cakd_viz.decomposition import decompose, membership, native_path
from cakd_viz.grouping import parse_grouping, strong_mask
from cakd_viz.grouping.base import RULE_MASK
from cakd_viz.losses import native_kernel

RULES = [
    "target",
    "topk:1",
    "topk:3",
    "topk:7",
    "topk:40",
    "topk+target:2",
    "mass:0.5",
    "mass:0.9",
    "corr:0.1",
]
KERNEL = native_path.kernel()
ISAS = (
    ["portable"] + (["avx2"] if KERNEL.simd_level >= 1 else []) + (["auto"] if KERNEL.simd_level >= 2 else [])
)


def _teachers(kind: str, rng: np.random.Generator) -> np.ndarray:
    """(N, C) float32 (or float16) teacher logits of one kind."""
    if kind == "ties":  # a handful of distinct values: ties at every rank
        return rng.integers(-2, 3, (300, 60)).astype(np.float32)
    if kind == "float16":  # rounding to float16 makes many equal values among 1,000 classes
        return (rng.standard_normal((80, 1000)) * 3).astype(np.float16)
    if kind == "flat":  # whole rows of equal values, and rows equal but for one class
        t = np.zeros((40, 9), np.float32)
        t[20:, 4] = 1.0
        return t
    # finite extremes: float32's largest values, float16's, subnormals, signed zeros, equal extremes
    values = np.array(
        [3e38, -3e38, 65504.0, -65504.0, 1e4, -1e4, 1e-40, -1e-40, 0.0, -0.0, 1.0, 3e38], np.float32
    )
    return rng.choice(values, (300, 24)).astype(np.float32)


CASES = ["ties", "float16", "flat", "extremes"]


class _Ctx:
    """Just enough of an autograd context to call the loss kernel's forward and read the mask it found."""

    def set_materialize_grads(self, value):
        pass

    def mark_non_differentiable(self, *tensors):
        pass


def _loss_kernel_mask(teacher: torch.Tensor, grouping: str, labels: torch.Tensor) -> np.ndarray:
    """The strong sets the loss's C kernel found itself (target and top-k rules)."""
    g = parse_grouping(grouping)
    rule, k = native_kernel.rule_of(g, teacher.shape[1])
    ctx = _Ctx()
    native_kernel.NativeCAKDFunction.forward(
        ctx,
        native_kernel.kernel(),
        teacher,
        teacher,
        rule,
        k,
        labels,
        None,
        2.0,
        (1.0, 1.0, 1.0),
        (False, False),
        True,
    )
    return ctx.mask.numpy()


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("grouping", RULES)
@pytest.mark.parametrize("temperature", [0.1, 2.0])
def test_every_implementation_picks_the_same_sets(case, grouping, temperature):
    rng = np.random.default_rng(CASES.index(case))
    t = _teachers(case, rng)
    n, c = t.shape
    y = rng.integers(0, c, n)
    g = parse_grouping(grouping)
    corr_np = None
    if g.needs_correlation:
        corr = rng.uniform(-1, 1, (c, c))
        corr_np = g.correlated((corr + corr.T) / 2).numpy()
    want = reference_mask(t, y, grouping, temperature, corr_np)
    tt, yy = torch.from_numpy(t.astype(np.float32)), torch.from_numpy(y)
    corr_t = None if corr_np is None else torch.from_numpy(corr_np)

    got = {"grouping.strong_mask": strong_mask(g, tt, yy, temperature=temperature, correlated=corr_t).numpy()}
    got["grouping.strong_mask, float64"] = strong_mask(
        g, tt.double(), yy, temperature=temperature, correlated=corr_t
    ).numpy()
    rule = native_path.Rule.of(g, temperature, y, corr_np)
    for isa in ISAS:
        got[f"decomposition kernel ({isa})"] = native_path.kernel_strong_mask(KERNEL, t, rule, isa=isa)
    for dtype in (torch.float32, torch.float64):
        mask = g.strong_mask_float(tt.to(dtype), yy, temperature=temperature, correlated=corr_t)
        got[f"loss tensor-op kernel ({dtype})"] = mask.bool().numpy()
        if g.kernel_code("loss") != RULE_MASK:  # the rules the loss's C kernel selects itself
            got[f"loss C kernel ({dtype})"] = _loss_kernel_mask(tt.to(dtype), grouping, yy)
    for name, mask in got.items():
        np.testing.assert_array_equal(mask, want, err_msg=f"{name}, {case}, {grouping}, T={temperature}")


@pytest.mark.parametrize("grouping", RULES)
def test_the_decomposition_uses_those_sets_on_both_paths(grouping, monkeypatch):
    """|S| of every row from decompose, kernel and tensor path, equals the reference's set size."""
    rng = np.random.default_rng(5)
    t = _teachers("float16", rng)[:40]
    s = (t.astype(np.float32) + rng.standard_normal(t.shape).astype(np.float32)).astype(np.float16)
    y = rng.integers(0, t.shape[1], t.shape[0])
    corr = np.corrcoef(rng.standard_normal((50, t.shape[1])), rowvar=False)
    g = parse_grouping(grouping)
    corr_np = None if g.correlated(corr) is None else g.correlated(corr).numpy()
    want = reference_mask(t, y, grouping, 2.0, corr_np).sum(1)
    kw = {"grouping": grouping, "temperature": 2.0, "device": "cpu", "correlation": corr}
    np.testing.assert_array_equal(decompose(s, t, y, **kw).strong_size, want)
    monkeypatch.setitem(native_path.LIBRARY._state, "kernel", None)
    monkeypatch.setitem(native_path.LIBRARY._state, "reason", "off for this test")
    np.testing.assert_array_equal(decompose(s, t, y, **kw).strong_size, want)


@pytest.mark.parametrize("grouping", ["topk:9223372036854775808", "topk+target:18446744073709551617"])
def test_a_k_beyond_int64_still_means_c_minus_1_in_the_kernel(grouping):
    """K is clipped to C - 1 by every path; one beyond int64 must not wrap around in the kernel."""
    rng = np.random.default_rng(9)
    t = rng.standard_normal((20, 6)).astype(np.float32)
    y = rng.integers(0, 6, 20)
    fitted = grouping.split(":")[0] + ":5"  # K = C - 1
    want = decompose(t * 0.5, t, y, grouping=fitted, device="cpu").strong_size
    assert want.min() >= 5
    np.testing.assert_array_equal(decompose(t * 0.5, t, y, grouping=grouping, device="cpu").strong_size, want)
    np.testing.assert_array_equal(membership.strong_sizes(t, y, grouping=grouping, temperature=1.0), want)


def test_a_correlation_of_another_shape_is_refused():
    """As decompose refuses it: the kernel would read C x C values of a smaller matrix."""
    t = np.random.default_rng(3).standard_normal((50, 6)).astype(np.float32)
    kw = {"grouping": "corr:0.5", "temperature": 1.0}
    for corr in (np.eye(3), np.eye(8)):
        message = rf"correlation has shape \({len(corr)}, {len(corr)}\), expected \(6, 6\)"
        with pytest.raises(ValueError, match=message):
            membership.strong_sizes(t, correlation=corr, **kw)
        with pytest.raises(ValueError, match=message):
            membership.in_strong_set(np.zeros(50, int), t, correlation=corr, **kw)
        with pytest.raises(ValueError, match=message):
            decompose(t, t, correlation=corr, device="cpu", **kw)


def test_in_strong_set_refuses_a_class_outside_the_classes():
    t = np.random.default_rng(4).standard_normal((50, 6)).astype(np.float32)
    for wrong in (-1, 6):
        classes = np.where(np.arange(50) == 7, wrong, 0)
        with pytest.raises(ValueError, match=rf"classes must lie in 0..5; got {wrong}"):
            membership.in_strong_set(classes, t, grouping="topk:2", temperature=1.0)


def test_bad_labels_are_refused_as_decompose_refuses_them():
    """Never a kernel error, nor a read past a short labels array, nor a float label cut to an integer."""
    t = np.random.default_rng(4).standard_normal((50, 6)).astype(np.float32)
    kw = {"grouping": "target", "temperature": 1.0}
    bad = [
        (np.full(50, 9), "label 9 at row 0 is outside 0..5"),
        (np.zeros(40, int), "labels has 40 samples, expected 50"),
        (np.full(50, 0.5), r"label 0.5 at row 0 is not an integer"),
        (None, "grouping target needs labels, and none were given"),
    ]
    for labels, message in bad:
        for call in (membership.strong_sizes, lambda t, y, **kw: next(membership.strong_sets(t, y, **kw))):
            with pytest.raises(ValueError, match=message):
                call(t, labels, **kw)
        with pytest.raises(ValueError, match=message):
            decompose(t, t, labels, device="cpu", **kw)


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("grouping", RULES)
def test_strong_sizes_count_those_sets_on_both_paths(case, grouping, monkeypatch):
    """|S| alone (the Correlation page's chart): the kernel's sizes without its masks, on each instruction
    set, and membership.strong_sizes with the kernel on and off, equal the reference's set sizes; under
    LS, the standardized teacher's sets counted."""
    rng = np.random.default_rng(CASES.index(case))
    t = _teachers(case, rng)
    y = rng.integers(0, t.shape[1], t.shape[0])
    corr = np.corrcoef(rng.standard_normal((50, t.shape[1])), rowvar=False)
    g = parse_grouping(grouping)
    corr_np = None if g.correlated(corr) is None else g.correlated(corr).numpy()
    want = reference_mask(t, y, grouping, 2.0, corr_np).sum(1)
    rule = native_path.Rule.of(g, 2.0, y, corr_np)
    for isa in ISAS:
        got = native_path.kernel_strong_mask(KERNEL, t, rule, sizes=True, isa=isa)
        np.testing.assert_array_equal(got, want, err_msg=f"{isa}, {case}, {grouping}")
    kw = {"grouping": grouping, "temperature": 2.0, "correlation": corr}
    ls_want = np.concatenate([m.sum(1) for _, m in membership.strong_sets(t, y, standardize=True, **kw)])
    np.testing.assert_array_equal(membership.strong_sizes(t, y, **kw), want)
    np.testing.assert_array_equal(membership.strong_sizes(t, y, standardize=True, **kw), ls_want)
    monkeypatch.setitem(native_path.LIBRARY._state, "kernel", None)
    monkeypatch.setitem(native_path.LIBRARY._state, "reason", "off for this test")
    np.testing.assert_array_equal(membership.strong_sizes(t, y, **kw), want)
    np.testing.assert_array_equal(membership.strong_sizes(t, y, standardize=True, **kw), ls_want)


def test_mass_is_decided_in_float64():
    """[2, 2, -1] at T = 0.1 puts 0.49999999999998 on each top class: mass:0.5 needs both."""
    t = np.array([[2.0, 2.0, -1.0]], np.float32)
    assert strong_mask("mass:0.5", torch.from_numpy(t), temperature=0.1).tolist() == [[True, True, False]]
    rule = native_path.Rule.of(parse_grouping("mass:0.5"), 0.1, None, None)
    for isa in ISAS:
        assert native_path.kernel_strong_mask(KERNEL, t, rule, isa=isa).tolist() == [[True, True, False]]
    assert decompose(t, t, grouping="mass:0.5", temperature=0.1, device="cpu").strong_size.tolist() == [2]


def test_mass_ties_enter_in_class_order_until_the_mass_is_reached():
    # four equal logits: 0.25 each; mass:0.5 stops at the second class (cumulative 0.5 reaches P),
    # mass:0.6 takes a third; the classes enter lowest index first
    t = torch.tensor([[1.0, 1.0, 1.0, 1.0], [0.0, 3.0, 3.0, 3.0]])
    assert strong_mask("mass:0.5", t, temperature=1.0).tolist()[0] == [True, True, False, False]
    assert strong_mask("mass:0.6", t, temperature=1.0).tolist()[0] == [True, True, True, False]
    assert strong_mask("mass:0.5", t, temperature=0.01).tolist()[1] == [False, True, True, False]
    rule = native_path.Rule.of(parse_grouping("mass:0.6"), 1.0, None, None)
    assert native_path.kernel_strong_mask(KERNEL, t.numpy(), rule)[0].tolist() == [True, True, True, False]


@pytest.mark.parametrize(("temperature", "p"), [(100.0, 0.99), (0.3, 0.5), (1.0, 0.95), (1.0, 0.999999)])
def test_mass_on_flat_and_peaked_teachers_of_1000_classes(temperature, p):
    """Hundreds of classes in S (a flat teacher at T = 100) or one or two (a peaked one at T = 0.3)."""
    rng = np.random.default_rng(int(temperature * 100) + int(p * 1000))
    t = (rng.standard_normal((100, 1000)) * 3).astype(np.float32)
    grouping = f"mass:{p}"
    want = reference_mask(t, None, grouping, temperature)
    got = strong_mask(grouping, torch.from_numpy(t), temperature=temperature).numpy()
    np.testing.assert_array_equal(got, want)
    rule = native_path.Rule.of(parse_grouping(grouping), temperature, None, None)
    for isa in ISAS:
        np.testing.assert_array_equal(
            native_path.kernel_strong_mask(KERNEL, t, rule, isa=isa), want, err_msg=isa
        )


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("grouping", RULES)
def test_under_standardization_every_path_picks_the_standardized_teachers_sets(case, grouping):
    """Logit standardization (LS): S is the standardized teacher's, decided on the teacher divided by its
    rows' std + 1e-7 (the standardized logits up to a per-row shift). The decomposition kernel (raw logits,
    each row's scale), `grouping.strong_mask` of the scaled teacher (the tensor path) and the reference's
    own standardization agree exactly, on ties and extremes; top-k and the target rules are the raw
    teacher's sets (a positive scale keeps the order)."""
    from reference import standardized

    from cakd_viz.standardize import row_stats

    rng = np.random.default_rng(10 + CASES.index(case))
    t = _teachers(case, rng)
    n, c = t.shape
    y = rng.integers(0, c, n)
    g = parse_grouping(grouping)
    corr_np = None
    if g.needs_correlation:
        corr = rng.uniform(-1, 1, (c, c))
        corr_np = g.correlated((corr + corr.T) / 2).numpy()
    want = reference_mask(standardized(t, center=False), y, grouping, 2.0, corr_np)
    if g.name != "mass":
        np.testing.assert_array_equal(want, reference_mask(t, y, grouping, 2.0, corr_np))
    t64 = torch.from_numpy(t.astype(np.float64))
    corr_t = None if corr_np is None else torch.from_numpy(corr_np)
    scaled = t64 / row_stats(t64)[1]
    got = {
        "grouping.strong_mask": strong_mask(
            g, scaled, torch.from_numpy(y), temperature=2.0, correlated=corr_t
        )
    }
    rule = native_path.Rule.of(g, 2.0, y, corr_np, standardize=True)
    for isa in ISAS:
        got[f"decomposition kernel ({isa})"] = native_path.kernel_strong_mask(KERNEL, t, rule, isa=isa)
    for name, mask in got.items():
        np.testing.assert_array_equal(np.asarray(mask), want, err_msg=f"{name}, {case}, {grouping}")


@pytest.mark.parametrize("p", [0.9, 0.5])
def test_mass_rows_a_float_decision_cannot_settle_are_decided_in_float64(p):
    """One class at logit a over 999 at 0, T = 0.7: p_top = 1 / (1 + 999 e^(-a/T)) crosses P within a few
    float32 steps of a (each moves p_top by about 1e-8; the AVX-512 path's float probabilities are good to
    about 1e-6 here, so it cannot decide these rows and hands them to the float64 decision), so some rows
    need the top class alone and the others the first class at 0 too; every path must agree with the
    float64 reference on each."""
    c, temperature = 1000, 0.7
    cross = temperature * np.log(p * (c - 1) / (1 - p))
    a = np.float32(cross)
    steps = [a]
    for _ in range(60):
        steps.append(np.nextafter(steps[-1], np.float32(np.inf)))
    down = [a]
    for _ in range(60):
        down.append(np.nextafter(down[-1], np.float32(-np.inf)))
    values = np.array(sorted(set(steps + down)) + [a - 0.01, a + 0.01, a - 1.0, a + 1.0], np.float32)
    t = np.zeros((len(values), c), np.float32)
    top = np.arange(len(values)) * 7 % c
    t[np.arange(len(values)), top] = values
    grouping = f"mass:{p}"
    want = reference_mask(t, None, grouping, temperature)
    assert {1, 2} <= set(want.sum(1).tolist())  # the rows straddle the decision
    rule = native_path.Rule.of(parse_grouping(grouping), temperature, None, None)
    for isa in ISAS:
        np.testing.assert_array_equal(
            native_path.kernel_strong_mask(KERNEL, t, rule, isa=isa), want, err_msg=isa
        )
    got = strong_mask(grouping, torch.from_numpy(t), temperature=temperature).numpy()
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("standardize", [False, True])
def test_membership_of_float64_teachers_is_the_decomposition_s(standardize):
    """A float64 teacher's sets are decided in float64, as decompose decides them: two logits 1e-12 apart
    are one value in float32, and the larger (class 1) is the top-1 class and the only member of S."""
    t = np.array([[1.0, 1.0 + 1e-12, 0.0, -1.0], [0.5, 0.2, 0.1, 0.0]])
    d = decompose(np.zeros_like(t), t, grouping="topk:1", device="cpu", standardize=standardize)
    assert d.teacher_pred.tolist() == [1, 0]
    options = {"grouping": "topk:1", "temperature": 1.0, "standardize": standardize}
    assert membership.in_strong_set(d.teacher_pred, t, **options).all()
    assert not membership.in_strong_set([0, 1], t, **options).any()
