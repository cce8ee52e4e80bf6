"""What a run trains: the data splits, the frozen teacher, the student and the loss, from a RunConfig."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset, DistributedSampler, Subset

from cakd_viz.data import DataSource, load_data_for_model
from cakd_viz.runs.config import LossConfig, RunConfig


@dataclass
class Parts:
    """Everything ``train`` needs, plus what the outputs describe."""

    train: DataSource
    test: DataSource
    train_set: Dataset  # the training split, after ``train_subset`` and this rank's shard
    teacher: nn.Module
    teacher_info: dict
    student: nn.Module
    student_info: dict  # "arch" and "arch_kwargs" when it is a registry architecture, else the loader's info
    criterion: nn.Module | None  # None: cross-entropy only
    notes: list[str] = field(default_factory=list)


def build(cfg: RunConfig, *, rank: int = 0, world_size: int = 1) -> Parts:
    """Load the data, the teacher and the student, and make the loss; ValueError on a mismatch."""
    from cakd_viz.models import ARCHS, build_arch, load_model

    teacher, t_info = load_model(cfg.teacher, weights=cfg.teacher_weights)
    teacher.eval().requires_grad_(False)
    train, notes = load_data_for_model(cfg.train_spec(), t_info)
    test, _ = load_data_for_model(cfg.test_spec(), t_info)
    if train.num_classes != test.num_classes:
        raise ValueError(
            f"the training data has {train.num_classes} classes and the test data {test.num_classes}"
        )
    c = train.num_classes
    _check_outputs("teacher", cfg.teacher, teacher, train, c)
    torch.manual_seed(cfg.seed)  # the student's initial weights depend on the seed only
    if cfg.student in ARCHS:
        ch, *hw = train.input_shape
        student = build_arch(cfg.student, in_channels=ch, num_classes=c, image_size=tuple(hw))
        s_info = {"spec": cfg.student, "kind": "arch", "arch": cfg.student, "arch_kwargs": {}}
    else:
        student, s_info = load_model(cfg.student, weights=cfg.student_weights)
        notes.append(f"fine-tuning {cfg.student} (held-out accuracy before: {s_info.get('accuracy')})")
    _check_outputs("student", cfg.student, student, train, c)
    student.train().requires_grad_(True)
    train_set = _subset(train.dataset, cfg.train_subset, cfg.seed)
    if world_size > 1:  # this rank's shard, the same size on every rank (DistributedSampler pads)
        shard = DistributedSampler(train_set, num_replicas=world_size, rank=rank, shuffle=True, seed=cfg.seed)
        train_set = Subset(train_set, list(shard))
    criterion = make_criterion(cfg.loss, teacher=teacher, train=train)
    return Parts(train, test, train_set, teacher, t_info, student, s_info, criterion, notes)


def make_criterion(loss: LossConfig, *, teacher: nn.Module | None = None, train: DataSource | None = None):
    """The distillation loss of ``loss`` through the registry ``cakd_viz.losses.LOSSES`` (None for "ce").

    ``corr:R`` groupings need the class correlation of the teacher's logits over the training data.
    """
    from cakd_viz.grouping import class_correlation, parse_grouping
    from cakd_viz.losses import build_criterion

    if loss.name == "ce":
        return None
    correlation = None
    if loss.name == "cakd" and parse_grouping(loss.grouping).needs_correlation:
        from cakd_viz.train import predict_logits

        correlation = class_correlation(predict_logits(teacher, train.dataset, device="cpu"))
    return build_criterion(loss.name, asdict(loss), correlation=correlation)


def _check_outputs(role: str, spec: str, model: nn.Module, data: DataSource, c: int) -> None:
    x = torch.as_tensor(data.dataset[0][0]).float().unsqueeze(0)
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(x)
    except Exception as exc:  # a shape mismatch inside the user's model
        raise ValueError(f"{role} {spec!r} cannot take inputs of shape {tuple(x.shape[1:])}: {exc}") from exc
    finally:
        model.train(was)
    if not isinstance(out, torch.Tensor) or out.dim() != 2 or out.shape[1] != c:
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(f"{role} {spec!r} outputs {got} per batch, and the data {data.name} has {c} classes")


def _subset(dataset: Dataset, size: int, seed: int) -> Dataset:
    n = len(dataset)
    if size <= 0 or size >= n:
        return dataset
    rows = np.sort(np.random.default_rng(seed).permutation(n)[:size])
    return Subset(dataset, rows.tolist())
