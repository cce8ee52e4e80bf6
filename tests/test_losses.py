"""Distillation losses (KD, DKD, CAKD): identities, gradients, numerics, errors.

The fused CAKD kernel is checked against `_reference_terms`, a plain autograd implementation that
loops over samples and indexes each group directly (no masks, no fused gradient).
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import make_logits

from cakd_viz.grouping import class_correlation, parse_grouping, strong_mask
from cakd_viz.losses import LOSSES, CAKDLoss, DKDLoss, KDLoss, build_criterion
from cakd_viz.losses.tensor_kernel import CAKDFunction

GROUPINGS = ["target", "topk:1", "topk:3", "topk+target:2", "mass:0.8", "corr:0.3"]
TEMPERATURES = [0.5, 1.0, 4.0]


def _tensors(n=40, c=10, seed=0, dtype=torch.float64):
    student, teacher, labels = make_logits(n, c, seed)
    return (
        torch.tensor(student, dtype=dtype, requires_grad=True),
        torch.tensor(teacher, dtype=dtype),
        torch.tensor(labels),
    )


def _correlation(teacher: torch.Tensor) -> np.ndarray:
    return class_correlation(teacher.detach().float().numpy())


def _cakd(grouping, teacher, **kw) -> CAKDLoss:
    corr = _correlation(teacher) if grouping.startswith("corr") else None
    return CAKDLoss(grouping, correlation=corr, **kw)


def _strong(grouping, teacher, labels, temperature) -> torch.Tensor:
    g = parse_grouping(grouping)
    corr = g.correlated(_correlation(teacher)) if g.needs_correlation else None
    return strong_mask(g, teacher.detach(), labels, temperature=temperature, correlated=corr)


def _reference_terms(student, teacher, strong, temperature):
    """Per-sample (BCD, SCD, WCD, p_S, p_W), each (N,), by plain autograd over explicit index sets."""
    log_q = F.log_softmax(student / temperature, dim=1)
    log_p = F.log_softmax(teacher.detach() / temperature, dim=1)
    rows = []
    for i in range(student.shape[0]):
        groups = [strong[i].nonzero().flatten(), (~strong[i]).nonzero().flatten()]
        bcd, inner, masses = 0.0, [], []
        for idx in groups:
            if idx.numel() == 0:  # an empty W: no mass, no divergence
                inner.append(torch.zeros((), dtype=student.dtype))
                masses.append(torch.zeros((), dtype=student.dtype))
                continue
            lq, lp = log_q[i, idx], log_p[i, idx]
            lq_g, lp_g = torch.logsumexp(lq, 0), torch.logsumexp(lp, 0)
            bcd = bcd + lp_g.exp() * (lp_g - lq_g)
            p_in = (lp - lp_g).exp()
            inner.append((p_in * ((lp - lp_g) - (lq - lq_g))).sum())
            masses.append(lp_g.exp())
        rows.append(torch.stack([bcd, inner[0], inner[1], masses[0], masses[1]]))
    return torch.stack(rows).unbind(1)


def _reference_loss(student, teacher, strong, temperature, w_b, alpha, beta):
    bcd, scd, wcd, p_s, p_w = _reference_terms(student, teacher, strong, temperature)
    a = p_s if alpha == "natural" else alpha
    b = p_w if beta == "natural" else beta
    return (w_b * bcd + a * scd + b * wcd).mean() * temperature**2


def _dkd_reference(student, teacher, labels, alpha, beta, temperature):
    """DKD as published (mdistiller): binary probabilities, and the target masked out by -1000."""
    gt = F.one_hot(labels, student.shape[1]).bool()
    ps, pt = F.softmax(student / temperature, 1), F.softmax(teacher / temperature, 1)
    bin_s = torch.stack([(ps * gt).sum(1), (ps * ~gt).sum(1)], 1)
    bin_t = torch.stack([(pt * gt).sum(1), (pt * ~gt).sum(1)], 1)
    tckd = F.kl_div(torch.log(bin_s), bin_t, reduction="sum") * temperature**2 / student.shape[0]
    log_s2 = F.log_softmax(student / temperature - 1000.0 * gt, 1)
    t2 = F.softmax(teacher / temperature - 1000.0 * gt, 1)
    nckd = F.kl_div(log_s2, t2, reduction="sum") * temperature**2 / student.shape[0]
    return alpha * tckd + beta * nckd


def _grad(loss, x):
    (g,) = torch.autograd.grad(loss, x, retain_graph=True)  # terms share one graph node
    return g


def test_registry_lists_the_three_losses():
    assert LOSSES == {"KD": KDLoss, "DKD": DKDLoss, "CAKD": CAKDLoss}
    assert all(issubclass(cls, torch.nn.Module) for cls in LOSSES.values())


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_a_loss_is_an_ordinary_module_for_torch(name):
    """A loss has no tensors of its own: nn.Module's parameters() is empty, and what calls it (zero_grad,
    requires_grad_, an optimizer over a model holding the loss) works; its declared settings are params()."""
    crit = LOSSES[name]()
    assert list(crit.parameters()) == [] and list(crit.named_parameters()) == []
    crit.zero_grad()
    crit.requires_grad_(False)
    model = torch.nn.ModuleDict({"head": torch.nn.Linear(4, 3), "criterion": crit})
    assert sum(p.numel() for p in model.parameters()) == 4 * 3 + 3
    torch.optim.SGD(model.parameters(), lr=0.1).zero_grad()
    assert [p.name for p in LOSSES[name].params()][-4:] == [
        "temperature",
        "warmup",
        "warmup_schedule",
        "standardize",
    ]


@pytest.mark.parametrize("temperature", TEMPERATURES)
def test_dkd_matches_the_published_formula(temperature):
    s, t, y = _tensors()
    crit = DKDLoss(alpha=1.5, beta=6.0, temperature=temperature)
    ref = _dkd_reference(s, t, y, 1.5, 6.0, temperature)
    loss = crit(s, t, y)
    torch.testing.assert_close(loss, ref, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(_grad(loss, s), _grad(ref, s), rtol=1e-8, atol=1e-12)


@pytest.mark.parametrize("temperature", TEMPERATURES)
@pytest.mark.parametrize("weights", [(1.0, 8.0), (0.5, 2.0), (0.0, 1.0)])
def test_cakd_target_with_zero_scd_weight_is_dkd(temperature, weights):
    a, b = weights
    s, t, y = _tensors()
    cakd = CAKDLoss("target", w_b=a, alpha=0.0, beta=b, temperature=temperature)
    dkd = DKDLoss(alpha=a, beta=b, temperature=temperature)
    lc, ld = cakd(s, t, y), dkd(s, t, y)
    torch.testing.assert_close(lc, ld, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(_grad(lc, s), _grad(ld, s), rtol=1e-8, atol=1e-12)
    terms_c, terms_d = cakd.terms(s, t, y), dkd.terms(s, t, y)
    torch.testing.assert_close(terms_c["bcd"], terms_d["tckd"], rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(terms_c["wcd"], terms_d["nckd"], rtol=1e-10, atol=1e-12)
    assert terms_c["scd"].item() == 0.0  # |S| = 1


@pytest.mark.parametrize("temperature", TEMPERATURES)
@pytest.mark.parametrize("grouping", GROUPINGS)
def test_cakd_with_natural_weights_is_kd(temperature, grouping):
    s, t, y = _tensors()
    cakd = _cakd(grouping, t, w_b=1.0, alpha="natural", beta="natural", temperature=temperature)
    kd = KDLoss(temperature=temperature)
    lc, lk = cakd(s, t, y), kd(s, t, y)
    torch.testing.assert_close(lc, lk, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(_grad(lc, s), _grad(lk, s), rtol=1e-8, atol=1e-13)
    # float32 too: the kernel's own numerics, not only float64's headroom
    s32, t32 = s.detach().float().requires_grad_(), t.float()
    lc32, lk32 = cakd(s32, t32, y), kd(s32, t32, y)
    torch.testing.assert_close(lc32, lk32, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(_grad(lc32, s32), _grad(lk32, s32), rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("temperature", TEMPERATURES)
@pytest.mark.parametrize("grouping", GROUPINGS)
@pytest.mark.parametrize("weights", [(1.0, 1.0, 8.0), (0.3, "natural", 2.0), (2.0, 0.5, "natural")])
def test_fused_cakd_matches_plain_autograd(temperature, grouping, weights):
    s, t, y = _tensors(n=24)
    w_b, alpha, beta = weights
    crit = _cakd(grouping, t, w_b=w_b, alpha=alpha, beta=beta, temperature=temperature)
    strong = _strong(grouping, t, y, temperature)
    loss, ref = crit(s, t, y), _reference_loss(s, t, strong, temperature, w_b, alpha, beta)
    torch.testing.assert_close(loss, ref, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(_grad(loss, s), _grad(ref, s), rtol=1e-8, atol=1e-13)
    # each term on its own, value and gradient (the backward's per-term coefficients)
    bcd, scd, wcd, p_s, p_w = _reference_terms(s, t, strong, temperature)
    refs = {
        "bcd": bcd,
        "scd": scd * p_s if alpha == "natural" else scd,
        "wcd": wcd * p_w if beta == "natural" else wcd,
    }
    for name, term in crit.terms(s, t, y).items():
        ref_term = refs[name].mean() * temperature**2
        torch.testing.assert_close(term, ref_term, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(_grad(term, s), _grad(ref_term, s), rtol=1e-8, atol=1e-13)


@pytest.mark.parametrize("grouping", ["target", "topk:1", "topk:3", "mass:0.8", "all"])
@pytest.mark.parametrize("natural", [(False, False), (True, False), (True, True)])
def test_fused_gradient_passes_gradcheck(grouping, natural):
    s, t, y = _tensors(n=6, c=5, seed=3)
    if grouping == "all":  # W empty
        strong = torch.ones_like(t)
    else:
        strong = _strong(grouping, t, y, 2.0).to(t.dtype)
    weights = (0.7, 1.3, 2.5)

    def fn(student):
        return CAKDFunction.apply(student, t, strong, 2.0, weights, natural)

    assert torch.autograd.gradcheck(fn, (s,), eps=1e-6, atol=1e-8)


def test_edge_cases_single_class_group_and_empty_weak_set():
    s, t, y = _tensors(n=30, c=6)
    # |S| = 1: SCD is exactly 0 and has exactly zero gradient
    one = CAKDLoss("topk:1", temperature=2.0).terms(s, t, y)["scd"]
    assert one.item() == 0.0
    assert torch.count_nonzero(_grad(one, s)) == 0
    # W empty (S = every class, through corr:-1): WCD and BCD are 0, SCD is the whole KL
    everything = CAKDLoss("corr:-1", temperature=2.0, correlation=np.ones((6, 6)))
    terms = everything.terms(s, t, y)
    assert terms["wcd"].item() == 0.0 and terms["bcd"].item() == 0.0
    assert torch.count_nonzero(_grad(terms["wcd"], s)) == 0
    torch.testing.assert_close(terms["scd"], KDLoss(temperature=2.0)(s, t), rtol=1e-12, atol=1e-12)
    # |S| = C - 1, the largest top-k (K is clipped): W holds one class, so WCD is exactly 0
    big = CAKDLoss("topk:50", temperature=2.0).terms(s, t, y)["wcd"]
    assert big.item() == 0.0


@pytest.mark.parametrize("temperature", TEMPERATURES)
@pytest.mark.parametrize("grouping", GROUPINGS)
def test_terms_are_nonnegative_and_zero_when_student_is_teacher(temperature, grouping):
    s, t, y = _tensors(dtype=torch.float32)
    crit = _cakd(grouping, t, temperature=temperature)
    assert all(v.item() >= 0 for v in crit.terms(s, t, y).values())
    same = t.clone().requires_grad_()
    loss, terms = crit.loss_and_terms(same, t, y)
    assert all(v.item() == 0.0 for v in terms.values())
    assert loss.item() == 0.0
    assert torch.count_nonzero(_grad(loss, same)) == 0
    for other in (KDLoss(temperature=temperature), DKDLoss(temperature=temperature)):
        assert all(v.item() >= 0 for v in other.terms(s, t, y).values())
        zero, zero_terms = other.loss_and_terms(same, t, y)
        assert all(v.item() == 0.0 for v in zero_terms.values())
        assert _grad(zero, same).abs().max().item() < 1e-7


@pytest.mark.parametrize(
    "make",
    [
        lambda: KDLoss(2.0, warmup=2),
        lambda: DKDLoss(0.5, 3.0, 2.0, warmup=2),
        lambda: CAKDLoss(warmup=2),
        lambda: CAKDLoss("mass:0.7", 2.0, "natural", 0.25, warmup=2),
    ],
)
@pytest.mark.parametrize("epoch", [None, 0.5, 3.0])
def test_loss_is_exactly_the_weighted_sum_of_its_terms(make, epoch):
    crit = make()
    s, t, y = _tensors(dtype=torch.float32)
    loss, terms = crit.loss_and_terms(s, t, y, epoch=epoch)
    weights = crit.weights(epoch)
    assert set(terms) == set(crit.term_names) == set(weights)
    assert all(not v.requires_grad and v.dim() == 0 for v in terms.values())
    assert torch.equal(loss, sum(weights[k] * terms[k] for k in terms))
    assert torch.equal(crit(s, t, y, epoch=epoch), loss)


def test_term_names_and_natural_weights():
    assert KDLoss.term_names == ("kd",) and DKDLoss.term_names == ("tckd", "nckd")
    assert CAKDLoss.term_names == ("bcd", "scd", "wcd")
    assert CAKDLoss(w_b=2.0, alpha="natural", beta=3.0).weights() == {"bcd": 2.0, "scd": 1.0, "wcd": 3.0}


def _mdistiller_factors(warmup: int, epochs: int) -> list[float]:
    """The DKD warm-up factor of each epoch as mdistiller applies it.

    megvii-research/mdistiller, ``mdistiller/distillers/DKD.py``, ``DKD.forward_train``:
    ``loss_dkd = min(kwargs["epoch"] / self.warmup, 1.0) * dkd_loss(...)``; the epoch comes from
    ``mdistiller/engine/trainer.py``, ``BaseTrainer.train``: ``epoch = 1`` then
    ``while epoch < self.cfg.SOLVER.EPOCHS + 1: self.train_epoch(epoch)``, and ``train_iter`` passes
    ``epoch=epoch`` to the distiller for every step of that epoch. So epochs are 1-based whole numbers
    and every step of epoch e gets min(e / warmup, 1).
    """
    factors = []
    epoch = 1
    while epoch < epochs + 1:
        factors.append(min(epoch / warmup, 1.0))
        epoch += 1
    return factors


@pytest.mark.parametrize("warmup", [1, 2, 3, 5, 20])
@pytest.mark.parametrize("cls", [DKDLoss, CAKDLoss])
def test_default_warmup_reproduces_mdistillers_factor_sequence(cls, warmup):
    s, t, y = _tensors()
    crit = cls(warmup=warmup) if cls is DKDLoss else cls("target", alpha=0.0, warmup=warmup)
    full = _dkd_reference(s, t, y, 1.0, 8.0, 4.0)  # both are DKD at these settings
    epochs, steps = 24, 3
    expected = _mdistiller_factors(warmup, epochs)
    assert expected[0] == 1.0 / warmup  # the first epoch is already warmed up by 1/W
    for e in range(epochs):  # our progress: 0-based epoch index plus the fraction of the epoch done
        for j in range(steps):
            progress = e + j / steps
            assert crit.warmup_factor(progress) == expected[e]
            torch.testing.assert_close(crit(s, t, y, epoch=progress), expected[e] * full, rtol=1e-9, atol=0)


def test_step_warmup_is_an_explicit_per_step_ramp():
    s, t, y = _tensors()
    for cls in (KDLoss, DKDLoss, CAKDLoss):
        crit, full = cls(warmup=4, warmup_schedule="step"), cls()
        base = full(s, t, y).item()
        assert crit(s, t, y, epoch=0).item() == 0.0
        assert crit(s, t, y, epoch=1.0).item() == pytest.approx(base / 4, rel=1e-12)
        assert crit(s, t, y, epoch=2.5).item() == pytest.approx(base * 2.5 / 4, rel=1e-12)
        assert crit(s, t, y, epoch=9).item() == pytest.approx(base, rel=1e-12)
        assert crit(s, t, y).item() == pytest.approx(base, rel=1e-12)  # no epoch: fully warmed up
        assert crit.weights(1.0) == {k: w / 4 for k, w in full.weights().items()}
    epoch_wise = DKDLoss(warmup=4)
    assert [epoch_wise.warmup_factor(p) for p in (0, 0.5, 0.99, 1.0, 2.5, 3.0)] == [
        0.25,
        0.25,
        0.25,
        0.5,
        0.75,
        1.0,
    ]
    with pytest.raises(ValueError, match="warmup_schedule must be one of epoch, step, got 'linear'"):
        DKDLoss(warmup=2, warmup_schedule="linear")
    # inf passed 'warmup >= 0' and trained with a loss of 0 for ever; "2" raised a raw TypeError
    for warmup in (float("inf"), float("nan"), -1, "2", True):
        with pytest.raises(ValueError, match=r"warmup must be a finite number >= 0 \(epochs\), got "):
            DKDLoss(warmup=warmup)


def test_kd_has_no_warmup_by_default_as_in_its_recipe():
    s, t, y = _tensors()
    crit = KDLoss()
    assert crit.warmup == 0 and crit.warmup_factor(0) == 1.0
    assert crit(s, t, y, epoch=0).item() == crit(s, t, y).item() > 0
    assert DKDLoss().warmup == 0 and CAKDLoss().warmup == 0  # a warm-up is always asked for


@pytest.mark.parametrize("crit", [KDLoss(), DKDLoss(), CAKDLoss(), CAKDLoss("target", alpha="natural")])
def test_gradients_reach_the_student_and_not_the_teacher(crit):
    s, t, y = _tensors(dtype=torch.float32)
    t.requires_grad_(True)
    crit(s, t, y).backward()
    assert s.grad is not None and s.grad.abs().sum() > 0
    assert t.grad is None


@pytest.mark.parametrize("grouping", ["topk:5", "target", "mass:0.9"])
def test_a_few_optimisation_steps_reduce_the_kl(grouping):
    s, t, y = _tensors(n=64, c=20, dtype=torch.float32)
    student = torch.nn.Parameter(s.detach().clone())
    crit, kd = CAKDLoss(grouping, temperature=4.0), KDLoss(temperature=4.0)
    before = kd(student, t).item()
    opt = torch.optim.SGD([student], lr=20.0)  # the loss is a batch mean: small per-logit gradients
    for _ in range(30):
        opt.zero_grad()
        crit(student, t, y).backward()
        opt.step()
    assert kd(student, t).item() < 0.5 * before


@pytest.mark.parametrize("temperature", [0.05, 1.0, 4.0])
@pytest.mark.parametrize("grouping", ["target", "topk:3", "mass:0.9", "corr:0.2"])
def test_extreme_logits_stay_finite(temperature, grouping):
    gen = torch.Generator().manual_seed(1)
    t = (torch.rand(50, 12, generator=gen) * 2 - 1) * 1e4
    s = ((torch.rand(50, 12, generator=gen) * 2 - 1) * 1e4).requires_grad_()
    y = torch.randint(0, 12, (50,), generator=gen)
    crit = _cakd(grouping, t, alpha="natural", beta="natural", temperature=temperature)
    loss, terms = crit.loss_and_terms(s, t, y)
    assert torch.isfinite(loss) and all(torch.isfinite(v) and v >= 0 for v in terms.values())
    assert torch.isfinite(_grad(loss, s)).all()
    torch.testing.assert_close(loss, KDLoss(temperature)(s, t), rtol=1e-4, atol=1e-3)
    fixed = _cakd(grouping, t, temperature=temperature)
    assert torch.isfinite(_grad(fixed(s, t, y), s)).all()
    assert torch.isfinite(_grad(DKDLoss(temperature=temperature)(s, t, y), s)).all()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("crit", [KDLoss(), DKDLoss(), CAKDLoss(), CAKDLoss("mass:0.8", alpha="natural")])
def test_half_precision_inputs_are_computed_in_float32(dtype, crit):
    s, t, y = _tensors(dtype=torch.float32)
    s_half = s.detach().to(dtype).requires_grad_()
    t_half = t.to(dtype)
    loss = crit(s_half, t_half, y)
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    expected = crit(s_half.detach().float(), t_half.float(), y)
    torch.testing.assert_close(loss, expected, rtol=0, atol=0)
    loss.backward()
    assert s_half.grad.dtype == dtype and torch.isfinite(s_half.grad.float()).all()


@pytest.mark.parametrize("spec", ["top5", "topk", "topk:0", "mass:1.5", "bogus", ""])
def test_bad_grouping_spec_lists_the_valid_forms(spec):
    with pytest.raises(ValueError, match="valid forms|needs a parameter|must"):
        CAKDLoss(spec)
    with pytest.raises(ValueError, match="valid forms: target, topk:K, topk\\+target:K, mass:P, corr:R"):
        CAKDLoss("nonsense:3")


@pytest.mark.parametrize("crit", [DKDLoss(), CAKDLoss("target"), CAKDLoss("topk+target:3")])
def test_missing_labels_is_a_clear_error(crit):
    s, t, _ = _tensors()
    with pytest.raises(ValueError, match="needs labels"):
        crit(s, t)


def test_corr_grouping_needs_a_correlation_matrix():
    with pytest.raises(ValueError, match="class_correlation"):
        CAKDLoss("corr:0.5")
    with pytest.raises(ValueError, match="square"):
        CAKDLoss("corr:0.5", correlation=np.ones((3, 4)))
    s, t, y = _tensors()
    with pytest.raises(ValueError, match="10 classes"):
        CAKDLoss("corr:0.5", correlation=np.eye(7))(s, t, y)
    assert CAKDLoss("topk:2", correlation=np.eye(3)).correlated is None  # ignored by other rules


def test_bad_inputs_are_clear_errors():
    s, t, y = _tensors()
    with pytest.raises(ValueError, match="differ"):
        KDLoss()(s, t[:, :5])
    with pytest.raises(ValueError, match=r"shape \(N, C\)"):
        CAKDLoss()(s[0], t[0])
    with pytest.raises(ValueError, match="at least 1 sample"):
        CAKDLoss()(s[:0], t[:0])
    with pytest.raises(ValueError, match="labels must be integers"):
        DKDLoss()(s, t, y[:3])
    with pytest.raises(ValueError, match="temperature"):
        KDLoss(temperature=0)
    with pytest.raises(ValueError, match="natural"):
        CAKDLoss(alpha="auto")


def test_formula_captions():
    assert str(CAKDLoss()) == "1*BCD + 1*SCD + 8*WCD (T=4, S = teacher top-5)"
    assert CAKDLoss("target", alpha="natural", beta="natural", temperature=2).formula() == (
        "1*BCD + p_S*SCD + p_W*WCD (T=2, S = {label})"
    )
    assert str(DKDLoss(warmup=20)) == "1*TCKD + 8*NCKD (T=4, warm-up 20 epochs)"
    assert (
        str(DKDLoss(warmup=2, warmup_schedule="step")) == "1*TCKD + 8*NCKD (T=4, warm-up 2 epochs, per step)"
    )
    assert str(KDLoss(1.0)) == "1*KD (T=1)"
    assert "mass" in str(CAKDLoss("mass:0.9")) and "r >= 0.5" in str(
        CAKDLoss("corr:0.5", correlation=np.eye(3))
    )


@pytest.mark.parametrize("grouping", ["topk:1", "topk:3", "topk:9", "topk+target:2", "target"])
@pytest.mark.parametrize("kind", ["random", "ties", "float16"])
def test_fast_strong_masks_match_grouping(grouping, kind):
    gen = torch.Generator().manual_seed(5)
    t = torch.randn(300, 10, generator=gen) * 3
    if kind == "ties":
        t = torch.randint(0, 4, (300, 10), generator=gen).float()  # many ties at the top-k boundary
    elif kind == "float16":
        t = t.half().float()
    y = torch.randint(0, 10, (300,), generator=gen)
    g = parse_grouping(grouping)
    fast = g.strong_mask_float(t, y, temperature=4.0)
    assert fast.dtype == t.dtype
    assert torch.equal(fast.bool(), strong_mask(g, t, y, temperature=4.0))


def test_loss_modules_do_not_import_streamlit():
    code = "import sys, cakd_viz.losses, cakd_viz.losses.tensor_kernel; assert 'streamlit' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("name", ["nope", "", "kd_ls"])
def test_build_criterion_refuses_an_unknown_loss_naming_the_choices(name):
    with pytest.raises(ValueError, match=rf"^unknown loss '{name}'; choose one of kd, dkd, cakd$"):
        build_criterion(name, {})


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_a_torch_correlation_gives_the_numpy_ones_loss(dtype):
    s, t, y = _tensors()
    corr = _correlation(t)
    want_loss, want_terms = CAKDLoss("corr:0.3", correlation=corr).loss_and_terms(s, t, y)
    crit = build_criterion("cakd", {"grouping": "corr:0.3"}, correlation=torch.tensor(corr, dtype=dtype))
    loss, terms = crit.loss_and_terms(s, t, y)
    assert torch.equal(loss, want_loss) and all(torch.equal(terms[k], want_terms[k]) for k in want_terms)


@pytest.mark.parametrize("crit", [KDLoss(), DKDLoss(), CAKDLoss("target"), CAKDLoss("topk+target:3")])
@pytest.mark.parametrize(
    "as_given",
    [
        lambda y: y.tolist(),
        lambda y: y.numpy().astype(np.int32),
        lambda y: y.to(torch.int32),
        lambda y: y.to(torch.uint8),
    ],
    ids=["list", "numpy int32", "int32", "uint8"],
)
def test_labels_as_a_list_or_another_integer_dtype_give_the_tensors_loss(crit, as_given):
    s, t, y = _tensors()
    want_loss, want_terms = crit.loss_and_terms(s, t, y)
    loss, terms = crit.loss_and_terms(s, t, as_given(y))
    assert torch.equal(loss, want_loss) and all(torch.equal(terms[k], want_terms[k]) for k in want_terms)
    assert torch.equal(crit(s, t, as_given(y)), crit(s, t, y))
