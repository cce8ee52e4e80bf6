"""Logit standardization, LS (Sun et al., "Logit Standardization in Knowledge Distillation", CVPR 2024,
arXiv 2403.01427): each sample's teacher and student logits are z-scored separately before the
temperature, so that the student matches the teacher's logit relations rather than their magnitude.

    z' = (z - mean(z)) / (std(z) + 1e-7)        per row; std with Bessel's correction (ddof = 1)
    p = softmax(z'_teacher / T),  q = softmax(z'_student / T)

as the paper's public code computes it (torch's ``z.std(dim=-1)``, eps added to the std). Softmax ignores
the mean, so standardizing is a per-row temperature, (std + 1e-7) T, one for the teacher and one for the
student: the decomposition kernel uses it that way without a standardized copy of the logits.

Strong sets under LS are the standardized teacher's, decided on the teacher's logits divided by their
row's (std + 1e-7) without the shift (`row_stats`): the standardized logits up to a per-row constant,
which changes no grouping rule's set (softmax, ranks and the argmax ignore it), while keeping every
distinct logit distinct (subtracting the mean in float64 would round 0.1 and 2.0 beside 3e38 to one
value). Top-k is the raw teacher's top-k (a positive scale keeps the order); mass:P is not.
Off by default everywhere; its name is ``standardize`` in every API, config, URL and command-line flag.
This module imports no torch at import time.
"""

from __future__ import annotations

import numpy as np

EPS = 1e-7
"""Added to each row's standard deviation (the LS paper's code)."""


def row_stats(logits):
    """(mean, std + 1e-7) of each row of (N, C) torch logits, each (N, 1); std with ddof = 1."""
    return logits.mean(dim=-1, keepdim=True), logits.std(dim=-1, keepdim=True) + EPS


def standardize(logits):
    """(N, C) torch logits z-scored per row: (z - mean) / (std + 1e-7), std with ddof = 1, in the logits'
    dtype; differentiable (the losses' gradients go through it)."""
    mean, scale = row_stats(logits)
    return (logits - mean) / scale


def standardize_numpy(logits) -> np.ndarray:
    """(N, C) logits of any float dtype z-scored per row in float64 (the same definition)."""
    z = np.asarray(logits, dtype=np.float64)
    mean = z.mean(axis=-1, keepdims=True)
    std = z.std(axis=-1, ddof=1, keepdims=True)
    return (z - mean) / (std + EPS)


def setting(temperature: float, standardize: bool) -> str:
    """The temperature as captions state it: "T = 4", or "T = 4, standardized" with LS."""
    return f"T = {temperature:g}" + (", standardized" if standardize else "")


def for_strong_sets(logits):
    """(N, C) torch logits in float64 divided by their rows' std + 1e-7: what strong sets are decided on
    under LS (the standardized logits up to each row's shift; see the module's docstring)."""
    z = logits.double()
    return z / row_stats(z)[1]
