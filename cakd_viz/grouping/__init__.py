"""Grouping rules: which classes form the strong set S of each sample (docs/architecture.md §4).

A rule is one string spec, used the same way by the API, the command line, the app and run configs:

    target          S = {label}                       (DKD's split; needs labels)
    topk:K          S = the teacher's K largest logits (ties: lower class index first; K clipped to C-1)
    topk+target:K   S = teacher top-K plus the label   (needs labels)
    mass:P          S = smallest set of teacher-top classes whose teacher mass (at T) reaches P, 0 < P < 1
                        (decided in float64; equal logits enter in class-index order)
    corr:R          S = the teacher's predicted class plus every class whose teacher-logit correlation
                        with it (Pearson, over the whole bundle) is at least R

One module per rule (`target.py`, `topk.py`, `topk_target.py`, `mass.py`, `corr.py`), each a subclass
of `base.Grouping`, registered in `registry.RULES`; ``rules.h`` holds their codes for the C kernels.
The weak set W is the complement of S. Masks are boolean tensors of shape (n, C). Importing this
package does not import torch.
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
