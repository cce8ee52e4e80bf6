"""Training loop: it learns, is deterministic for a seed, reports through callbacks, can be cancelled."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import TensorDataset

from cakd_viz.losses import DKDLoss, KDLoss
from cakd_viz.train import TrainConfig, evaluate, predict_logits, train


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny problems: a single thread avoids spin-waiting when the machine is shared."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _blobs(n=240, c=4, d=6, seed=0):
    centres = torch.randn(c, d, generator=torch.Generator().manual_seed(42)) * 3
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % c
    x = centres[y] + torch.randn(n, d, generator=g)
    return TensorDataset(x, y)


def _net(seed=0, d=6, c=4, hidden=16):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(d, hidden), nn.ReLU(), nn.Dropout(0.1), nn.Linear(hidden, c))


class _HalfKL(nn.Module):
    """Stand-in distillation criterion with the losses-module contract (two named terms)."""

    def weights(self, epoch=None):
        return {"kl": 0.5, "zero": 1.0}

    def loss_and_terms(self, student, teacher, labels, epoch=None):
        kl = torch.nn.functional.kl_div(
            student.log_softmax(1), teacher.log_softmax(1), log_target=True, reduction="batchmean"
        )
        terms = {"kl": kl.detach(), "zero": torch.zeros(())}
        return 0.5 * kl, terms


CFG = TrainConfig(epochs=4, batch_size=32, lr=0.05, device="cpu", seed=3)


def test_training_reduces_loss_and_reports_each_epoch():
    seen = []
    hist = train(_net(), _blobs(), _blobs(seed=1), cfg=CFG, on_epoch=seen.append)
    assert seen == hist and [h["epoch"] for h in hist] == [1, 2, 3, 4]
    assert hist[-1]["loss"] < 0.5 * hist[0]["loss"]
    assert hist[-1]["val_acc"] > 0.9 and hist[-1]["train_acc"] > 0.8
    assert {"ce", "loss", "train_acc", "val_acc", "val_loss", "seconds", "lr"} <= set(hist[0])
    assert hist[-1]["lr"] < CFG.lr  # cosine schedule


def test_training_is_deterministic_for_a_seed():
    a, b, c = _net(), _net(), _net()
    ha = train(a, _blobs(), None, cfg=CFG)
    hb = train(b, _blobs(), None, cfg=CFG)
    train(c, _blobs(), None, cfg=TrainConfig(**{**CFG.to_dict(), "seed": 4}))
    strip = [{k: v for k, v in h.items() if k != "seconds"} for h in ha]
    assert strip == [{k: v for k, v in h.items() if k != "seconds"} for h in hb]
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(pa, pb)
    assert any(not torch.equal(pa, pc) for pa, pc in zip(a.parameters(), c.parameters(), strict=True))


def test_training_leaves_the_callers_rng_alone():
    net, data = _net(), _blobs(n=64)
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    train(net, data, None, cfg=TrainConfig(epochs=1, device="cpu"))
    assert torch.equal(torch.rand(3), expected)


def test_distillation_terms_are_averaged_and_teacher_stays_frozen():
    teacher = _net(seed=9)
    train(teacher, _blobs(), None, cfg=CFG)
    teacher.train()  # the loop must switch it to eval itself
    before = [p.clone() for p in teacher.parameters()]
    steps = []
    hist = train(
        _net(),
        _blobs(),
        _blobs(seed=1),
        cfg=CFG,
        teacher=teacher,
        criterion=_HalfKL(),
        ce_weight=0.5,
        on_step=steps.append,
    )
    assert not teacher.training
    assert all(torch.equal(p, q) for p, q in zip(before, teacher.parameters(), strict=True))
    assert {"ce", "kl", "zero", "loss"} <= set(hist[0]) and hist[0]["zero"] == 0.0
    assert hist[0]["loss"] == pytest.approx(0.5 * hist[0]["ce"] + 0.5 * hist[0]["kl"], rel=1e-5)
    assert len(steps) == 4 * 8 and steps[-1]["epoch"] == pytest.approx(4.0) and "kl" in steps[0]


def test_kd_loss_from_the_losses_module_plugs_in():
    teacher = _net(seed=9)
    train(teacher, _blobs(), None, cfg=CFG)
    hist = train(
        _net(), _blobs(), _blobs(seed=1), cfg=CFG, teacher=teacher, criterion=KDLoss(temperature=4.0)
    )
    terms = set(hist[0]) - {
        "epoch",
        "ce",
        "loss",
        "train_acc",
        "lr",
        "stopped",
        "val_acc",
        "val_loss",
        "seconds",
        "grad_norm",
        "grad_norm_max",
        "clipped_frac",
    }
    assert terms and hist[-1]["val_acc"] > 0.8


def test_should_stop_cancels_between_steps():
    calls = []

    def stop():
        calls.append(1)
        return len(calls) > 5

    hist = train(_net(), _blobs(), None, cfg=CFG, should_stop=stop)
    assert len(hist) == 1 and hist[0]["stopped"] and len(calls) == 6


def test_bad_config_and_missing_teacher():
    with pytest.raises(ValueError, match="optimizer"):
        train(_net(), _blobs(), None, cfg=TrainConfig(optimizer="lion"))
    with pytest.raises(ValueError, match="teacher"):
        train(_net(), _blobs(), None, cfg=CFG, criterion=_HalfKL())
    with pytest.raises(ValueError, match="epochs, batch_size and lr must be positive"):  # NaN is not > 0
        train(_net(), _blobs(), None, cfg=TrainConfig(epochs=1, lr=float("nan"), device="cpu"))


def test_adamw_and_constant_lr():
    cfg = TrainConfig(epochs=3, batch_size=32, lr=0.01, optimizer="adamw", schedule="none", device="cpu")
    hist = train(_net(), _blobs(), _blobs(seed=1), cfg=cfg)
    assert hist[-1]["lr"] == 0.01 and hist[-1]["val_acc"] > 0.8


def test_evaluate_and_predict_logits_agree():
    model, data = _net(), _blobs(n=50)
    train(model, data, None, cfg=CFG)
    logits = predict_logits(model, data, batch_size=7)
    assert logits.shape == (50, 4) and logits.dtype == np.float32
    ev = evaluate(model, data, batch_size=16)
    labels = data.tensors[1].numpy()
    assert ev["n"] == 50 and ev["acc"] == pytest.approx((logits.argmax(1) == labels).mean())
    assert not model.training


def test_cached_teacher_logits_give_the_same_training():
    teacher = _net(seed=9)
    train(teacher, _blobs(), None, cfg=CFG)
    cached = TrainConfig(**{**CFG.to_dict(), "cache_teacher": True})
    a, b = _net(), _net()
    ha = train(a, _blobs(), None, cfg=CFG, teacher=teacher, criterion=_HalfKL())
    hb = train(b, _blobs(), None, cfg=cached, teacher=teacher, criterion=_HalfKL())
    assert [h["kl"] for h in hb] == pytest.approx([h["kl"] for h in ha], rel=1e-4)
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(pa, pb, atol=1e-4, rtol=1e-4)


def _plain_net(seed=0, d=6, c=4):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(d, 16), nn.ReLU(), nn.Linear(16, c))  # no dropout: one exact gradient


def test_each_epoch_reports_the_gradient_norm_and_the_clipped_steps():
    data = _blobs(n=64)
    one_step = TrainConfig(epochs=1, batch_size=64, lr=0.05, device="cpu", seed=3)  # one step per epoch
    net = _plain_net()
    x, y = data.tensors
    expected = torch.linalg.vector_norm(
        torch.cat([g.flatten() for g in torch.autograd.grad(F.cross_entropy(net(x), y), net.parameters())])
    ).item()  # the first step's gradient, computed here from the same initial weights
    (h,) = train(_plain_net(), data, None, cfg=one_step)
    assert h["grad_norm"] == pytest.approx(expected, rel=1e-5) == h["grad_norm_max"]
    assert h["clipped_frac"] == 0.0  # clipping is off
    # clip below every norm: every step is clipped; above every norm: none is, and training is unchanged
    many = TrainConfig(epochs=2, batch_size=16, lr=0.05, device="cpu", seed=3)
    free = train(_plain_net(), data, None, cfg=many)
    tight = train(_plain_net(), data, None, cfg=TrainConfig(**{**many.to_dict(), "clip_grad_norm": 1e-3}))
    loose_net = _plain_net()
    loose = train(loose_net, data, None, cfg=TrainConfig(**{**many.to_dict(), "clip_grad_norm": 1e6}))
    assert [e["clipped_frac"] for e in tight] == [1.0, 1.0] and [e["clipped_frac"] for e in loose] == [
        0.0,
        0.0,
    ]
    assert [e["loss"] for e in loose] == [e["loss"] for e in free]
    assert all(e["grad_norm_max"] >= e["grad_norm"] > 0 for e in free)


def test_val_metrics_see_the_epochs_one_evaluation_pass():
    seen = []

    def hook(logits, epoch):
        seen.append((epoch, logits.copy()))
        return {"val_extra": float(logits.mean())}

    net, val = _net(), _blobs(n=50, seed=1)
    hist = train(net, _blobs(), val, cfg=CFG, val_metrics=hook)
    assert [e for e, _ in seen] == [1, 2, 3, 4] and all(z.shape == (50, 4) for _, z in seen)
    final = predict_logits(net, val)
    np.testing.assert_array_equal(seen[-1][1], final)  # the last epoch's logits are the final student's
    labels = val.tensors[1].numpy()
    assert hist[-1]["val_acc"] == pytest.approx((final.argmax(1) == labels).mean())
    assert hist[-1]["val_loss"] == pytest.approx(evaluate(net, val)["loss"], rel=1e-6)
    assert hist[-1]["val_extra"] == pytest.approx(float(final.mean()))


def test_the_loop_applies_dkds_warmup_one_factor_per_epoch():
    """Through the training loop, DKDLoss(warmup=3) gets mdistiller's factors min(e / 3, 1), e = 1, 2, ...
    (see tests/test_losses.py for the source of that rule), the same for every step of an epoch."""
    factors = []

    class Spy(DKDLoss):
        def loss_and_terms(self, student, teacher, labels=None, epoch=None):
            factors.append((int(epoch), self.warmup_factor(epoch)))
            return super().loss_and_terms(student, teacher, labels, epoch)

    teacher = _net(seed=9)
    train(teacher, _blobs(), None, cfg=CFG)
    train(_net(), _blobs(), None, cfg=CFG, teacher=teacher, criterion=Spy(warmup=3))
    per_epoch = {}
    for e, f in factors:
        per_epoch.setdefault(e, set()).add(f)
    assert per_epoch == {0: {1 / 3}, 1: {2 / 3}, 2: {1.0}, 3: {1.0}}


@pytest.mark.parametrize("schedule", ["step", "Cosine", ""])
def test_a_bad_schedule_is_refused_naming_the_field(schedule):
    with pytest.raises(ValueError, match=rf"^schedule must be 'cosine' or 'none', got '{schedule}'$"):
        train(_net(), _blobs(), None, cfg=TrainConfig(epochs=1, schedule=schedule, device="cpu"))
