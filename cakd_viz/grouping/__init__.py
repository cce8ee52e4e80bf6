"""Grouping rules: which classes form the strong set S of each sample (docs/architecture.md §4: the specs,
their grammar, ties and thresholds).

One module per rule, each a subclass of `base.Grouping`, registered in `registry.RULES`; ``rules.h`` holds
their codes for the C kernels. The weak set W is the complement of S; masks are boolean (n, C) tensors.
Importing this package does not import torch.
"""

from cakd_viz.grouping.base import KernelArgs, Sweep
from cakd_viz.grouping.corr import class_correlation, correlated_classes
from cakd_viz.grouping.registry import (
    DEFAULT_GROUPING,
    GROUPING_FORMS,
    RULES,
    Grouping,
    parse_grouping,
    register,
    strong_mask,
    unregister,
)
from cakd_viz.grouping.topk import topk_mask

__all__ = [
    "DEFAULT_GROUPING",
    "GROUPING_FORMS",
    "RULES",
    "Grouping",
    "KernelArgs",
    "Sweep",
    "class_correlation",
    "correlated_classes",
    "parse_grouping",
    "register",
    "strong_mask",
    "topk_mask",
    "unregister",
]
