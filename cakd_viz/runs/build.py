"""What a run trains: the data splits, the frozen teacher, the student and the loss, from a RunConfig.

With ``val_split`` > 0 a validation split is carved out of the training split before anything else
(``validation_split``: per class, seeded by ``val_seed``, so it is the same for every trial of a
sweep whatever its seed or ``train_subset``); the run trains on the rest, evaluates every epoch on
it, and touches the test split only at the end (or never, with ``evaluate_test`` false).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset, DistributedSampler, Subset

from cakd_viz.data import DataSource, load_data_for_model
from cakd_viz.grouping import class_correlation, parse_grouping
from cakd_viz.runs.config import NO_DISTILLATION, LossConfig, RunConfig


@dataclass
class Parts:
    """Everything ``train`` needs, plus what the outputs describe."""

    train: DataSource
    test: DataSource
    # the training split, less the validation rows, after ``train_subset`` and this rank's shard
    train_set: Dataset
    teacher: nn.Module
    student: nn.Module
    student_info: dict  # "arch" and "arch_kwargs" when it is a registry architecture, else the loader's info
    criterion: nn.Module | None  # None: cross-entropy only
    train_samples: int  # the rows the run trains on, all ranks together (``train_set`` before sharding)
    notes: list[str] = field(default_factory=list)
    val_rows: np.ndarray | None = None  # rows of the training split held out for validation (val_split > 0)
    correlation: np.ndarray | None = None  # (C, C) teacher class correlation, for a corr:R grouping

    def eval_split(self) -> tuple[str, Dataset, np.ndarray]:
        """(name, data set, labels (N,)) of the per-epoch evaluation: "validation" (rows ``val_rows`` of
        the training data) or "test"."""
        if self.val_rows is not None:
            val_set = Subset(self.train.dataset, self.val_rows.tolist())
            return "validation", val_set, labels_of(self.train)[self.val_rows]
        return "test", self.test.dataset, labels_of(self.test)


def build(cfg: RunConfig, *, rank: int = 0, world_size: int = 1) -> Parts:
    """Load the data, the teacher and the student, and make the loss; ValueError on a mismatch."""
    from cakd_viz.models import ARCHS, build_arch, load_model
    from cakd_viz.train import predict_logits

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
    # topk:K with K >= C: the losses and the decomposition clip K to C - 1, so that W is not empty
    if cfg.loss.name != NO_DISTILLATION and (clipped := parse_grouping(cfg.loss.grouping).clamp(c)[1]):
        notes.append(f"warning: {clipped}")
    torch.manual_seed(cfg.seed)  # the student's initial weights depend on the seed only
    if cfg.student in ARCHS:
        ch, *hw = train.input_shape
        student = build_arch(cfg.student, in_channels=ch, num_classes=c, image_size=tuple(hw))
        s_info = {"spec": cfg.student, "kind": "arch", "arch": cfg.student, "arch_kwargs": {}}
    else:
        student, s_info = load_model(cfg.student, weights=cfg.student_weights)
        if s_info.get("kind") == "factory" and cfg.student_weights is None:
            notes.append(f"training {cfg.student} from the factory's initial weights (seed {cfg.seed})")
        else:
            notes.append(f"fine-tuning {cfg.student} (held-out accuracy before: {s_info.get('accuracy')})")
    _check_outputs("student", cfg.student, student, train, c)
    student.train().requires_grad_(True)
    train_set, val_rows = train.dataset, None
    if cfg.val_split > 0:
        keep, val_rows = validation_split(labels_of(train), cfg.val_split, cfg.val_seed)
        train_set = Subset(train.dataset, keep.tolist())
        notes.append(f"validation split: {len(val_rows)} of {len(train)} training rows (seed {cfg.val_seed})")
    # corr:R: the teacher's class correlation over the training rows (all of them, not the subset), of
    # the standardized logits under LS; the run's grouping (one key of the loss section, so a loss's
    # grouping is the run's) also splits every run's held-out KL each epoch, whatever its loss
    correlation = None
    if parse_grouping(cfg.loss.grouping).needs_correlation:
        logits = predict_logits(teacher, train_set, device="cpu", who="teacher")
        correlation = class_correlation(logits, standardize=cfg.loss.standardize)
    train_set = _subset(train_set, cfg.train_subset, cfg.seed)
    train_samples = len(train_set)
    if world_size > 1:  # this rank's shard, the same size on every rank (DistributedSampler pads)
        shard = DistributedSampler(train_set, num_replicas=world_size, rank=rank, shuffle=True, seed=cfg.seed)
        train_set = Subset(train_set, list(shard))
    criterion = make_criterion(cfg.loss, correlation=correlation)
    return Parts(
        train,
        test,
        train_set,
        teacher,
        student,
        s_info,
        criterion,
        train_samples,
        notes,
        val_rows,
        correlation,
    )


def validation_split(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(training rows, validation rows), both sorted, from labels (N,): stratified and seeded.

    Each class with n >= 2 rows gives round(n * fraction) of them, at least 1 and at most n - 1, drawn
    with ``numpy.random.default_rng(seed)``; a class with one row keeps it for training. ValueError
    when no row is held out.
    """
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    held = []
    for c in np.unique(labels):
        rows = np.flatnonzero(labels == c)
        if len(rows) < 2:
            continue
        k = min(max(round(len(rows) * fraction), 1), len(rows) - 1)
        held.append(rng.permutation(rows)[:k])
    if not held:
        raise ValueError(f"val_split {fraction}: no class has the two rows a validation split needs")
    val = np.sort(np.concatenate(held))
    return np.setdiff1d(np.arange(len(labels)), val), val


def make_criterion(loss: LossConfig, *, correlation: np.ndarray | None = None):
    """The distillation loss of ``loss`` through the registry ``cakd_viz.losses.LOSSES`` (None for "ce");
    ``corr:R`` groupings need ``correlation``, as ``build`` computes it."""
    from cakd_viz.losses import build_criterion

    if loss.name == NO_DISTILLATION:
        return None
    return build_criterion(loss.name, loss.settings, correlation=correlation)  # takes the loss's own keys


def labels_of(source: DataSource) -> np.ndarray:
    """The labels (N,) of a data source, read from the data set when the source does not hold them."""
    if source.labels is not None:
        return np.asarray(source.labels)
    return np.asarray([int(item[1]) for item in source.dataset], dtype=np.int64)


def _check_outputs(role: str, spec: str, model: nn.Module, data: DataSource, c: int) -> None:
    """One sample through ``model``: its output must hold (1, c) float logits (``logits_of``)."""
    from cakd_viz.models.outputs import logits_of

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
    logits = logits_of(out, who=f"{role} {spec!r}", batch=1)
    if logits.shape[1] != c:
        raise ValueError(
            f"{role} {spec!r} outputs {tuple(logits.shape)} per batch, and the data {data.name} has {c} classes"
        )


def _subset(dataset: Dataset, size: int, seed: int) -> Dataset:
    n = len(dataset)
    if size <= 0 or size >= n:
        return dataset
    rows = np.sort(np.random.default_rng(seed).permutation(n)[:size])
    return Subset(dataset, rows.tolist())
