"""The field's variants as this project's losses compute them: logit standardization (LS: Sun et al., CVPR
2024, arXiv 2403.01427) on every loss, and GDKD's top-k decoupled loss (Zheng & Cheng, arXiv 2512.04625)
as CAKD with grouping topk:K. Each is checked against its formula written here from the paper's
definition (no code shared with cakd_viz), on both CPU kernels: the fused C kernel and the tensor ops
(the code CUDA runs).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from conftest import make_logits

from cakd_viz.losses import CAKDLoss, DKDLoss, KDLoss, native_kernel
from cakd_viz.losses.params import BOOL

TEMPERATURES = [0.5, 2.0, 4.0]


@pytest.fixture(params=["fused C kernel", "tensor ops"])
def kernel(request, monkeypatch):
    """Which kernel computes the losses on the CPU: the fused C kernel, or the tensor ops (switched off)."""
    if request.param == "tensor ops":
        monkeypatch.setitem(native_kernel.LIBRARY._state, "kernel", None)
        monkeypatch.setitem(native_kernel.LIBRARY._state, "reason", "off for this test")
    else:
        assert native_kernel.kernel() is not None, native_kernel.LIBRARY.status()
    return request.param


def _tensors(n=32, c=10, seed=0):
    student, teacher, labels = make_logits(n, c, seed)
    return (
        torch.tensor(student, dtype=torch.float64, requires_grad=True),
        torch.tensor(teacher, dtype=torch.float64),
        torch.tensor(labels),
    )


def _grad(loss, x):
    (g,) = torch.autograd.grad(loss, x, retain_graph=True)
    return g


# -- the LS paper's KD, as its public code defines it --------------------------------------------------


def _normalize(logit):
    """The LS paper's Z-score: per row, (z - mean) / (std + 1e-7), torch's std (Bessel's correction)."""
    mean = logit.mean(dim=-1, keepdim=True)
    stdv = logit.std(dim=-1, keepdim=True)
    return (logit - mean) / (1e-7 + stdv)


def _ls_kd(student, teacher, temperature):
    """KD on standardized logits: KL(softmax(z'_t / T) || softmax(z'_s / T)) summed over classes, batch
    mean, times T^2."""
    log_q = F.log_softmax(_normalize(student) / temperature, dim=1)
    p = F.softmax(_normalize(teacher.detach()) / temperature, dim=1)
    return F.kl_div(log_q, p, reduction="none").sum(1).mean() * temperature**2


@pytest.mark.parametrize("temperature", TEMPERATURES)
def test_kd_with_standardization_is_the_ls_papers_kd(kernel, temperature):
    s, t, y = _tensors()
    scaled = (t * 0.3 + 5.0).requires_grad_()  # the teacher's ranking at another scale and offset
    for student in (s, scaled):
        loss, want = KDLoss(temperature, standardize=True)(student, t, y), _ls_kd(student, t, temperature)
        torch.testing.assert_close(loss, want, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(_grad(loss, student), _grad(want, student), rtol=1e-8, atol=1e-13)
    assert KDLoss(temperature)(scaled, t, y).item() > 0.01  # plain KD asks for the teacher's scale
    assert KDLoss(temperature, standardize=True)(scaled, t, y).item() < 1e-10  # LS does not


@pytest.mark.parametrize("grouping", ["target", "topk:3", "mass:0.8"])
def test_every_loss_standardizes_the_same_way(kernel, grouping):
    """CAKD with natural weights + LS is KD + LS; CAKD at S = {label} without SCD + LS is DKD + LS; DKD + LS
    is DKD's published formula on standardized logits."""
    s, t, y = _tensors(seed=1)
    kd = KDLoss(2.0, standardize=True)(s, t, y)
    cakd = CAKDLoss(grouping, alpha="natural", beta="natural", temperature=2.0, standardize=True)(s, t, y)
    torch.testing.assert_close(cakd, kd, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(_grad(cakd, s), _grad(kd, s), rtol=1e-8, atol=1e-13)
    dkd = DKDLoss(1.5, 6.0, 2.0, standardize=True)(s, t, y)
    target = CAKDLoss("target", w_b=1.5, alpha=0.0, beta=6.0, temperature=2.0, standardize=True)(s, t, y)
    torch.testing.assert_close(dkd, target, rtol=1e-10, atol=1e-12)
    want = _dkd(_normalize(s), _normalize(t), y, 1.5, 6.0, 2.0)
    torch.testing.assert_close(dkd, want, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(_grad(dkd, s), _grad(want, s), rtol=1e-8, atol=1e-12)


def _dkd(student, teacher, labels, alpha, beta, temperature):
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


@pytest.mark.parametrize(
    "make",
    [
        lambda: KDLoss(2.0, standardize=True),
        lambda: DKDLoss(1.0, 8.0, 2.0, standardize=True),
        lambda: CAKDLoss("topk:3", 1.0, 1.0, 8.0, 2.0, standardize=True),
        lambda: CAKDLoss("target", 0.7, "natural", 2.5, 2.0, standardize=True),
        lambda: CAKDLoss("mass:0.8", 1.0, 2.0, "natural", 2.0, standardize=True),
    ],
    ids=["kd", "dkd", "cakd-topk", "cakd-target-natural", "cakd-mass-natural"],
)
def test_gradients_through_the_standardization_pass_gradcheck(kernel, make):
    """The gradient of every loss under LS (the kernel's own backward, then autograd through the
    z-score), against finite differences in float64, on small batches."""
    s, t, y = _tensors(n=5, c=6, seed=3)
    crit = make()
    assert torch.autograd.gradcheck(lambda student: crit(student, t, y), (s,), eps=1e-6, atol=1e-8)


def test_standardize_is_declared_once_for_every_loss():
    """One shared declaration (the base class's), a yes/no setting; labels say "+ LS"."""
    declared = [
        next(p for p in cls.params() if p.name == "standardize") for cls in (KDLoss, DKDLoss, CAKDLoss)
    ]
    assert (
        declared[0] is declared[1] is declared[2]
        and declared[0].kind == BOOL
        and declared[0].default is False
    )
    assert KDLoss.describe({"standardize": True}) == "KD + LS (T=4)"
    assert CAKDLoss.describe({"standardize": True}).startswith("CAKD + LS topk:5 (")
    assert "standardized (LS)" in KDLoss(standardize=True).formula()
    with pytest.raises(ValueError, match="standardize must be True or False"):
        KDLoss(standardize="yes")


# -- GDKD's top-k decoupled loss, written from its definition ------------------------------------------


def _gdkd_topk(student, teacher, k, w_b, w_top, w_other, temperature):
    """GDKD's top-k loss (Zheng & Cheng, arXiv 2512.04625): with S the teacher's top-k classes and O the
    rest, L = w_b * KL([p_S, p_O] || [q_S, q_O]) + w_top * KL(p|S || q|S) + w_other * KL(p|O || q|O),
    each distribution restricted to its group and renormalised, batch mean, times T^2."""
    p = F.softmax(teacher.detach() / temperature, dim=1)
    q = F.softmax(student / temperature, dim=1)
    top = torch.zeros_like(p, dtype=torch.bool).scatter_(1, teacher.topk(k, dim=1).indices, True)
    p_s, q_s = (p * top).sum(1), (q * top).sum(1)
    p_o, q_o = (p * ~top).sum(1), (q * ~top).sum(1)
    binary = p_s * torch.log(p_s / q_s) + p_o * torch.log(p_o / q_o)

    def inside(group, p_g, q_g):
        pg, qg = p / p_g[:, None], q / q_g[:, None]
        return torch.where(group, pg * torch.log(pg / qg), 0.0).sum(1)

    loss = w_b * binary + w_top * inside(top, p_s, q_s) + w_other * inside(~top, p_o, q_o)
    return loss.mean() * temperature**2


@pytest.mark.parametrize("k", [1, 2, 5])
@pytest.mark.parametrize("weights", [(1.0, 1.0, 8.0), (2.0, 0.5, 4.0)])
@pytest.mark.parametrize("temperature", TEMPERATURES)
def test_cakd_with_topk_grouping_is_gdkds_topk_loss(kernel, k, weights, temperature):
    """CAKDLoss(grouping="topk:K", w_b, alpha, beta) reproduces GDKD's top-k decoupled loss, value and
    gradient, in float64; with standardize=True it is the same loss on standardized logits."""
    s, t, y = _tensors(seed=k)
    w_b, w_top, w_other = weights
    crit = CAKDLoss(f"topk:{k}", w_b=w_b, alpha=w_top, beta=w_other, temperature=temperature)
    loss, want = crit(s, t, y), _gdkd_topk(s, t, k, w_b, w_top, w_other, temperature)
    torch.testing.assert_close(loss, want, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(_grad(loss, s), _grad(want, s), rtol=1e-8, atol=1e-12)
    ls = CAKDLoss(f"topk:{k}", w_b=w_b, alpha=w_top, beta=w_other, temperature=temperature, standardize=True)
    want_ls = _gdkd_topk(_normalize(s), _normalize(t), k, w_b, w_top, w_other, temperature)
    torch.testing.assert_close(ls(s, t, y), want_ls, rtol=1e-10, atol=1e-12)
