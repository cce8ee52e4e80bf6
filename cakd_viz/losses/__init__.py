"""Distillation losses as `torch.nn.Module`s that return their named terms, one loss per module.

    from cakd_viz.losses import KDLoss, DKDLoss, CAKDLoss
    crit = CAKDLoss(grouping="topk:5", w_b=1.0, alpha=1.0, beta=8.0, temperature=4.0)
    loss = crit(student_logits, teacher_logits, labels)            # 0-dim batch mean
    loss, terms = crit.loss_and_terms(student_logits, teacher_logits, labels)

    KD    (Hinton et al. 2015)                  L = KD                      KD = KL(p || q)      kd.py
    DKD   (Zhao et al., CVPR 2022)              L = alpha*TCKD + beta*NCKD  split at S = {label} dkd.py
    CAKD  (Zhang et al., arXiv 2410.14741)      L = w_b*BCD + alpha*SCD + beta*WCD                cakd.py

`base` holds what they share; CAKD and DKD compute on CPU through one fused C function each way
(`native_kernel`, `cakd_kernel.c`) and elsewhere through tensor ops (`tensor_kernel`). `LOSSES` maps
a name to its class and `build_criterion` makes a criterion from plain settings (what a run config
holds), so the app, the command line and runs pick a loss the same way. Each class declares its
parameters (`params.Param`, `DistillationLoss.params()`): run configs, the Tune form, sweeps and
the runs tracker are built from those declarations and from `LOSSES` as it is when they are read.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping

from cakd_viz.losses.base import DistillationLoss
from cakd_viz.losses.cakd import NATURAL, CAKDLoss
from cakd_viz.losses.dkd import DKDLoss
from cakd_viz.losses.kd import KDLoss
from cakd_viz.losses.params import Param

LOSSES: dict[str, type[DistillationLoss]] = {"KD": KDLoss, "DKD": DKDLoss, "CAKD": CAKDLoss}
"""The registry: upper-case name -> loss class (a run config names it in lower case)."""

__all__ = [
    "LOSSES",
    "NATURAL",
    "CAKDLoss",
    "DKDLoss",
    "DistillationLoss",
    "KDLoss",
    "Param",
    "build_criterion",
    "loss_class",
]


def loss_class(name: str) -> type[DistillationLoss] | None:
    """The registered class of loss ``name`` (any case), or None."""
    return LOSSES.get(str(name).upper())


def build_criterion(name: str, settings: Mapping, *, correlation=None) -> DistillationLoss:
    """The loss ``LOSSES[name]`` (any case) made from ``settings``, a mapping holding (some of) its
    declared ``params()``: missing ones take their declared defaults, other keys are ignored (e.g. a
    run config's loss section).

    ``correlation`` goes to losses that take one: the (C, C) class correlation that CAKD's ``corr:R``
    grouping needs.
    """
    cls = loss_class(name)
    if cls is None:
        raise ValueError(f"unknown loss {name!r}; choose one of {', '.join(k.lower() for k in LOSSES)}")
    kwargs = {p.name: settings[p.name] for p in cls.params() if p.name in settings}
    if "correlation" in inspect.signature(cls.__init__).parameters:
        kwargs["correlation"] = correlation
    return cls(**kwargs)
