"""Training loop: cross-entropy plus an optional distillation criterion from ``cakd_viz.losses``.

``total = ce_weight * CE(student, labels) + criterion(student_logits, teacher_logits, labels, epoch)``,
the criterion being the distillation part only (e.g. ``KDLoss``, ``DKDLoss``, ``CAKDLoss``); ``epoch``
is the training progress in epochs, 0 at the first step (epoch index + fraction of the epoch done),
which the losses turn into their warm-up factor (DKD's per-epoch schedule by default). The teacher
stays in ``eval()`` under ``torch.no_grad()``. Models may return their logits in any form
``cakd_viz.models.outputs.logits_of`` reads (a tensor, ``(logits, features)``, a mapping with "logits",
an object with ``.logits``). The loop never prints: it reports through
``on_epoch`` / ``on_step`` and can be cancelled between steps through ``should_stop``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from cakd_viz.device import resolve_device
from cakd_viz.models.outputs import logits_of


@dataclass
class TrainConfig:
    """Optimisation settings; saved with every checkpoint and run."""

    epochs: int = 10  # passes over the training set
    batch_size: int = 64  # samples per step
    lr: float = 0.05  # peak learning rate
    optimizer: str = "sgd"  # "sgd" (with momentum, nesterov) or "adamw"
    momentum: float = 0.9  # SGD momentum (ignored by AdamW)
    weight_decay: float = 5e-4  # L2 (SGD) or decoupled (AdamW) weight decay
    schedule: str = "cosine"  # "cosine" (per step, down to 0) or "none"
    seed: int = 0  # data order, dropout and any other randomness inside the loop
    device: str = "auto"  # "auto" | "cpu" | "cuda" | "cuda:N" | "mps"
    clip_grad_norm: float = 0.0  # clip the gradient's global L2 norm to this (0: no clipping)
    eval_batch_size: int = 512  # batch size of the held-out evaluation (and of the teacher cache)
    cache_teacher: bool = False  # run the teacher once over the train set and reuse its logits every
    # epoch (much faster; only valid when the data set returns the same input for an index every time,
    # i.e. no random augmentation - true of every data spec in cakd_viz.data)

    def to_dict(self) -> dict:
        """JSON-ready copy."""
        return asdict(self)

    def validate(self) -> None:
        """ValueError naming the first bad field."""
        if self.epochs < 1 or self.batch_size < 1 or not self.lr > 0:  # (a NaN lr is not > 0)
            raise ValueError(f"epochs, batch_size and lr must be positive: {self.to_dict()}")
        if self.optimizer not in ("sgd", "adamw"):
            raise ValueError(f"optimizer must be 'sgd' or 'adamw', got {self.optimizer!r}")
        if self.schedule not in ("cosine", "none"):
            raise ValueError(f"schedule must be 'cosine' or 'none', got {self.schedule!r}")


def _loader(dataset: Dataset, batch_size: int, *, device: torch.device, shuffle_seed=None):
    # an own generator even without shuffling: iterating a DataLoader otherwise draws its worker seed
    # from the global RNG, so evaluating or caching would change the dropout masks of training
    gen = torch.Generator().manual_seed(int(shuffle_seed or 0))
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle_seed is not None,
        generator=gen,
        pin_memory=device.type == "cuda",
    )


def predict_logits(
    model: nn.Module,
    dataset: Dataset,
    *,
    device: str | torch.device = "cpu",
    batch_size: int = 512,
    who: str = "model",
) -> np.ndarray:
    """Run ``model`` (in eval mode) over ``dataset`` in order; returns float32 logits (N, C).

    ``who`` names the model in the error when its output holds no logits.
    """
    return _eval_logits(model, dataset, device=device, batch_size=batch_size, who=who)[0].numpy()


def evaluate(
    model: nn.Module, dataset: Dataset, *, device: str | torch.device = "cpu", batch_size: int = 512
) -> dict[str, float]:
    """Mean cross-entropy and accuracy of ``model`` on ``dataset``: {"loss", "acc", "n"}."""
    return _scores(*_eval_logits(model, dataset, device=device, batch_size=batch_size))


def _scores(logits: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """{"loss": mean cross-entropy, "acc": accuracy, "n"} of logits (N, C) against labels (N,)."""
    n = max(len(labels), 1)
    loss = F.cross_entropy(logits, labels, reduction="sum").item() / n
    return {"loss": loss, "acc": int((logits.argmax(1) == labels).sum()) / n, "n": len(labels)}


@torch.no_grad()
def _eval_logits(
    model: nn.Module,
    dataset: Dataset,
    *,
    device: str | torch.device,
    batch_size: int = 512,
    who: str = "model",
) -> tuple[torch.Tensor, torch.Tensor]:
    """One pass of ``model`` (eval mode) over ``dataset``: (logits (N, C) float32, labels (N,)), on the CPU."""
    device = resolve_device(device)
    was_training = model.training
    model.eval().to(device)
    out, ys = [], []
    for x, y in _loader(dataset, batch_size, device=device):
        logits = logits_of(model(x.to(device, non_blocking=True)), who=who, batch=len(x))
        out.append(logits.float().cpu())
        ys.append(torch.as_tensor(y))
    model.train(was_training)
    return torch.cat(out), torch.cat(ys).long()


def _optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    nesterov = cfg.momentum > 0
    return torch.optim.SGD(
        params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, nesterov=nesterov
    )


class Diverged(ValueError):
    """Training diverged: the loss or the student's outputs stopped being finite numbers (one line)."""

    def __init__(self, epoch: int, what: str, lr: float) -> None:
        super().__init__(
            f"training diverged in epoch {epoch}: {what}; try a lower learning rate (lr is {lr:g}) or "
            "gradient clipping (clip_grad_norm)"
        )


def train(
    student: nn.Module,
    train_set: Dataset,
    val_set: Dataset | None,
    *,
    cfg: TrainConfig,
    teacher: nn.Module | None = None,
    criterion: nn.Module | None = None,
    ce_weight: float = 1.0,
    on_epoch: Callable[[dict], None] | None = None,
    on_step: Callable[[dict], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    val_metrics: Callable[[np.ndarray, int], dict] | None = None,
) -> list[dict]:
    """Train ``student`` in place; returns one metrics dict per finished epoch.

    Each dict: epoch (1-based), ``ce``, every term of the criterion (epoch means), ``loss`` (total),
    ``train_acc``, ``val_acc``/``val_loss`` (when ``val_set``), ``lr``, ``seconds``, ``stopped``,
    ``grad_norm`` / ``grad_norm_max`` (mean / largest global L2 norm of the gradient before clipping,
    over the epoch's steps with a finite norm) and ``clipped_frac`` (fraction of the epoch's steps whose norm exceeded
    ``cfg.clip_grad_norm``; 0 without clipping). ``teacher`` is used only with a ``criterion``, whose
    ``loss_and_terms`` (a ``cakd_viz.losses`` loss's) gives each step's loss and terms.
    ``on_step`` gets {"step", "epoch" (fractional), "loss", "ce", terms...} after every step;
    ``should_stop()`` is polled before every step. ``val_metrics(logits, epoch)``, with the student's
    float32 logits (N, C) on ``val_set`` from the epoch's one evaluation pass, returns extra numbers
    for that epoch's dict (e.g. the held-out decomposition).
    """
    cfg.validate()
    if criterion is not None and teacher is None:
        raise ValueError("a distillation criterion needs a teacher")
    dev = resolve_device(cfg.device)
    loop = _Loop(cfg, dev, student, teacher, criterion, ce_weight, on_step, should_stop, val_metrics)
    devices = [dev.index or 0] if dev.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):  # seeded without touching the caller's RNG state
        torch.manual_seed(cfg.seed)
        return loop.run(train_set, val_set, on_epoch)


class _Indexed(Dataset):
    """Items (input, label, index): lets the loop look up the teacher's cached logits."""

    def __init__(self, base: Dataset) -> None:
        self.base = base

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int):
        x, y = self.base[i][:2]
        return x, y, i


def _lr(cfg: TrainConfig, step: int, total: int) -> float:
    return cfg.lr * (0.5 * (1 + math.cos(math.pi * step / total)) if cfg.schedule == "cosine" else 1.0)


@dataclass
class _Loop:
    """One call of `train`: the settings and models, and the steps and epochs that use them."""

    cfg: TrainConfig
    dev: torch.device
    student: nn.Module
    teacher: nn.Module | None
    criterion: nn.Module | None
    ce_weight: float
    on_step: Callable[[dict], None] | None
    should_stop: Callable[[], bool] | None
    val_metrics: Callable[[np.ndarray, int], dict] | None = None

    def run(self, train_set: Dataset, val_set: Dataset | None, on_epoch) -> list[dict]:
        cfg, dev = self.cfg, self.dev
        self.student.to(dev).train()
        self.cached = None  # the teacher's logits over the training set, when cached (cfg.cache_teacher)
        if self.criterion is not None:
            self.teacher, self.criterion = self.teacher.to(dev).eval(), self.criterion.to(dev)
            if cfg.cache_teacher:  # one teacher pass instead of one per epoch
                logits = predict_logits(
                    self.teacher, train_set, device=dev, batch_size=cfg.eval_batch_size, who="teacher"
                )
                self.cached = torch.from_numpy(logits).to(dev)
        data = _Indexed(train_set) if self.cached is not None else train_set
        loader = _loader(data, cfg.batch_size, device=dev, shuffle_seed=cfg.seed)
        self.opt = _optimizer(self.student, cfg)
        self.steps_per_epoch, self.step = len(loader), 0
        history = []
        for epoch in range(cfg.epochs):
            metrics = self._epoch(loader, epoch)
            if metrics is None:  # stopped before the epoch's first step
                break
            if val_set is not None:
                metrics |= self._evaluate(val_set, metrics["epoch"])
            metrics["seconds"] = time.perf_counter() - metrics.pop("_t0")
            history.append(metrics)
            if on_epoch is not None:
                on_epoch(metrics)
            if metrics["stopped"]:
                break
        self.student.eval()
        return history

    def _evaluate(self, val_set: Dataset, epoch: int) -> dict:
        """val_acc, val_loss and ``val_metrics``' numbers, from one pass of the student over ``val_set``."""
        cfg = self.cfg
        logits, labels = _eval_logits(
            self.student, val_set, device=self.dev, batch_size=cfg.eval_batch_size, who="student"
        )
        scores = _scores(logits, labels)
        out = {"val_acc": scores["acc"], "val_loss": scores["loss"]}
        if self.val_metrics is None:
            return out
        if not bool(torch.isfinite(logits).all()):
            raise Diverged(epoch, "the student's held-out logits are no longer finite", self.cfg.lr)
        return out | self.val_metrics(logits.numpy(), epoch)

    def _epoch(self, loader: DataLoader, epoch: int) -> dict | None:
        """One pass over the training set; its metrics, or None when stopped before any step."""
        t0, sums, correct, seen, stopped, lr = time.perf_counter(), {}, 0, 0, False, self.cfg.lr
        # gradient norms: sum and count of the finite ones, clipped steps, largest (no sync per step)
        self.norms = torch.zeros(4, dtype=torch.float64, device=self.dev)
        steps = 0
        for i, batch in enumerate(loader):
            if self.should_stop is not None and self.should_stop():
                stopped = True
                break
            lr = _lr(self.cfg, self.step, self.cfg.epochs * self.steps_per_epoch)
            terms, hits, n = self._step(batch, lr, epoch + i / self.steps_per_epoch)
            for k, v in terms.items():
                sums[k] = sums.get(k, 0.0) + v.float() * n
            correct, seen, self.step, steps = correct + hits, seen + n, self.step + 1, steps + 1
            if self.on_step is not None:
                done = {"step": self.step, "epoch": epoch + (i + 1) / self.steps_per_epoch, "lr": lr}
                self.on_step(done | {k: float(v) for k, v in terms.items()})
        if seen == 0:
            return None
        metrics = {"epoch": epoch + 1} | {k: float(v) / seen for k, v in sums.items()}
        if not math.isfinite(metrics["loss"]):
            raise Diverged(epoch + 1, f"the training loss became {metrics['loss']}", self.cfg.lr)
        norm_sum, finite, clipped, norm_max = self.norms.tolist()
        metrics["grad_norm"] = norm_sum / finite if finite else math.nan
        metrics["grad_norm_max"] = norm_max if finite else math.nan
        metrics["clipped_frac"] = clipped / steps
        return metrics | {"train_acc": float(correct) / seen, "lr": lr, "stopped": stopped, "_t0": t0}

    def _step(self, batch, lr: float, epoch: float) -> tuple[dict[str, torch.Tensor], torch.Tensor, int]:
        """One optimiser step: (detached terms, correct predictions, batch size)."""
        dev = self.dev
        for group in self.opt.param_groups:
            group["lr"] = lr
        x, y = batch[0].to(dev, non_blocking=True), batch[1].to(dev, non_blocking=True)
        logits = logits_of(self.student(x), who="student", batch=len(x))
        ce = F.cross_entropy(logits.float(), y)
        terms: dict[str, torch.Tensor] = {"ce": ce.detach()}
        loss = self.ce_weight * ce
        if self.criterion is not None:
            if self.cached is not None:
                t_logits = self.cached[batch[2].to(dev)]
            else:
                with torch.no_grad():
                    t_logits = logits_of(self.teacher(x), who="teacher", batch=len(x)).float()
            kd, named = self.criterion.loss_and_terms(logits.float(), t_logits, y, epoch=epoch)
            loss = loss + kd
            terms.update(named)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        norm = nn.utils.get_total_norm([p.grad for p in self.student.parameters() if p.grad is not None])
        clip = self.cfg.clip_grad_norm
        if clip > 0:  # what clip_grad_norm_ does, with the norm computed once
            nn.utils.clip_grads_with_norm_(self.student.parameters(), clip, norm)
        norm = norm.detach().to(self.norms)
        finite = torch.isfinite(norm)
        hit = (norm > clip) if clip > 0 else torch.zeros_like(finite)
        kept = torch.where(finite, norm, 0.0)
        self.norms[:3] += torch.stack((kept, finite.double(), hit.double()))
        self.norms[3] = torch.maximum(self.norms[3], kept)
        self.opt.step()
        terms["loss"] = loss.detach()
        return terms, (logits.detach().argmax(1) == y).sum(), len(y)
