"""Grouping rules: which classes form the strong set S of each sample (docs/architecture.md §4).

A rule is one string spec, used the same way by the API, the command line, the app and run configs:

    target          S = {label}                       (DKD's split; needs labels)
    topk:K          S = the teacher's K largest logits (ties: lower class index first; K clipped to C-1)
    topk+target:K   S = teacher top-K plus the label   (needs labels)
    mass:P          S = smallest set of teacher-top classes whose teacher mass (at T) reaches P, 0 < P < 1
                        (decided in float64; equal logits enter in class-index order)
    corr:R          S = the teacher's predicted class plus every class whose teacher-logit correlation
                        with it (Pearson, over the whole bundle) is at least R

The weak set W is the complement of S. Masks are boolean tensors of shape (n, C).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np
import torch

GROUPING_FORMS = ("target", "topk:K", "topk+target:K", "mass:P", "corr:R")
DEFAULT_GROUPING = "topk:5"
_MAX_SPEC = 64  # characters

_SPEC = re.compile(r"^\s*(target|topk|topk\+target|mass|corr)\s*(?::\s*([-+0-9.eE]+))?\s*$")


@dataclass(frozen=True)
class Grouping:
    """A parsed grouping spec. `param` is K (int), P or R (float), or None for `target`."""

    kind: str
    param: float | int | None = None

    def __str__(self) -> str:
        return self.kind if self.param is None else f"{self.kind}:{self.param:g}"

    @property
    def needs_labels(self) -> bool:
        return self.kind in ("target", "topk+target")

    @property
    def needs_correlation(self) -> bool:
        return self.kind == "corr"

    def describe(self, *, short: bool = False) -> str:
        """An honest label of the rule: "S = the teacher's top-5 classes" for captions, or with
        ``short`` a few words for formulas ("teacher top-5")."""
        k, v = self.param, f"{self.param:g}" if self.param is not None else ""
        words = {
            "target": ("{label}", "S = {label} (DKD's split: BCD = TCKD, WCD = NCKD)"),
            "topk": (f"teacher top-{k}", f"S = the teacher's top-{k} classes"),
            "topk+target": (f"teacher top-{k} + label", f"S = the teacher's top-{k} classes plus the label"),
            "mass": (
                f"teacher top classes holding {v} of its mass",
                f"S = the fewest teacher-top classes holding {v} of the teacher's mass",
            ),
            "corr": (
                f"teacher prediction + classes with r >= {v}",
                f"S = the teacher's prediction plus classes correlated with it at r >= {v}",
            ),
        }[self.kind]
        return words[0] if short else words[1]


def parse_grouping(spec: str | Grouping) -> Grouping:
    """Parse a grouping spec such as ``"topk:5"``; a bad spec raises ValueError listing the valid forms."""
    if isinstance(spec, Grouping):
        return spec
    if len(str(spec)) > _MAX_SPEC:  # a spec is a few characters; never echo (or parse) a huge one
        raise ValueError(
            f"grouping spec of {len(str(spec)):,} characters is too long; valid forms: {', '.join(GROUPING_FORMS)}"
        )
    match = _SPEC.match(str(spec))
    if not match:
        raise ValueError(f"unknown grouping {spec!r}; valid forms: {', '.join(GROUPING_FORMS)}")
    kind, raw = match.group(1), match.group(2)
    if kind == "target":
        if raw is not None:
            raise ValueError(f"grouping {spec!r}: 'target' takes no parameter")
        return Grouping("target")
    if raw is None:
        form = next(f for f in GROUPING_FORMS if f.split(":")[0] == kind)
        raise ValueError(f"grouping {spec!r} needs a parameter, as in {form}")
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"grouping {spec!r}: {raw!r} is not a number") from None
    if not math.isfinite(value):
        raise ValueError(f"grouping {spec!r}: {raw!r} is not a finite number")
    if kind in ("topk", "topk+target"):
        if value != int(value) or value < 1:
            raise ValueError(f"grouping {spec!r}: K must be a whole number >= 1")
        return Grouping(kind, int(value))
    if kind == "mass" and not 0.0 < value < 1.0:
        raise ValueError(f"grouping {spec!r}: P must lie strictly between 0 and 1")
    if kind == "corr" and not -1.0 <= value <= 1.0:
        raise ValueError(f"grouping {spec!r}: R must lie between -1 and 1")
    return Grouping(kind, value)


def topk_mask(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Boolean (n, C) mask of each row's k largest entries; ties go to the lower class index."""
    n, c = logits.shape
    k = max(1, min(int(k), c))
    mask = torch.zeros((n, c), dtype=torch.bool, device=logits.device)
    if k == c:
        return mask.fill_(True)
    # One extra value tells whether the k-th largest also occurs outside the chosen k (a boundary tie).
    top = torch.topk(logits, k + 1, dim=1)
    mask.scatter_(1, top.indices[:, :k], True)
    ties = top.values[:, k] == top.values[:, k - 1]
    if bool(ties.any()):
        rows = ties.nonzero().squeeze(1)
        order = torch.sort(logits[rows], dim=1, descending=True, stable=True).indices[:, :k]
        fixed = torch.zeros((rows.numel(), c), dtype=torch.bool, device=logits.device)
        mask[rows] = fixed.scatter_(1, order, True)
    return mask


def _mass_mask(logits: torch.Tensor, p: float, temperature: float) -> torch.Tensor:
    """mass:P decided in float64, by the tie rule of docs/architecture.md §4 (the C kernel's as well).

    Classes in the teacher's order (logit descending, ties to the lower class index) enter one at a
    time; S ends with the first class at which the cumulative probability reaches P:
    |S| = #{j : cum_j < P} + 1, clipped to C. The probabilities are w = exp((t - max t) / T) in float64,
    and cum_j < P sum(w) is decided exactly for the computed sums (the product P sum(w) carried as an
    unrounded pair), so [2, 2, -1] at T = 0.1 (0.49999999999998 on each top class) needs both for
    mass:0.5, and ten equal logits need all ten for mass:0.9 (9 < 0.9 x 10 exactly). The C kernel sums
    the same probabilities in another order: the two could differ only where a cumulative mass lies
    within float64 rounding (~1e-16 relative) of P.
    """
    order = torch.sort(logits, dim=1, descending=True, stable=True)
    x = order.values.to(torch.float64)
    w = torch.exp((x - x[:, :1]) * (1.0 / temperature))  # (n, C) unnormalised, sorted descending
    cum = torch.cumsum(w, dim=1)
    hi, lo = _exact_product(p, cum[:, -1:])  # P * sum(w) = hi + lo exactly
    below = (cum - hi) < lo  # cum < P sum(w), exactly: cum - hi is exact wherever it is close to 0
    count = below.sum(1, keepdim=True) + 1  # the classes below P, and the one reaching it
    keep = torch.arange(logits.shape[1], device=logits.device).unsqueeze(0) < count  # (n, C) in sorted order
    return torch.zeros_like(keep).scatter_(1, order.indices, keep)


def _split(x):
    """Veltkamp's split of float64 x into hi + lo, each with at most 26 significant bits."""
    c = 134217729.0 * x  # 2^27 + 1
    hi = c - (c - x)
    return hi, x - hi


def _exact_product(a: float, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(hi, lo) with hi = fl(a b) and hi + lo = a b exactly (Dekker's product; float64, no overflow)."""
    hi = a * b
    a_hi, a_lo = _split(a)
    b_hi, b_lo = _split(b)
    lo = ((a_hi * b_hi - hi) + a_hi * b_lo + a_lo * b_hi) + a_lo * b_lo
    return hi, lo


def strong_mask(
    grouping: str | Grouping,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor | None = None,
    *,
    temperature: float = 1.0,
    correlated: torch.Tensor | None = None,
) -> torch.Tensor:
    """The strong set S of every row as a boolean (n, C) mask.

    teacher_logits: (n, C) raw (unscaled) teacher logits. labels: (n,) int64, needed by `target` rules.
    correlated: (C, C) boolean matrix `corr >= R` (diagonal True), needed by `corr:R`; see
    `correlated_classes`.
    """
    g = parse_grouping(grouping)
    n, c = teacher_logits.shape
    if g.needs_labels and labels is None:
        raise ValueError(f"grouping {g} needs labels, and none were given")
    if g.kind == "target":
        mask = torch.zeros((n, c), dtype=torch.bool, device=teacher_logits.device)
        return mask.scatter_(1, labels.view(-1, 1), True)
    if g.kind == "topk":
        return topk_mask(teacher_logits, min(int(g.param), c - 1))
    if g.kind == "topk+target":
        mask = topk_mask(teacher_logits, min(int(g.param), c - 1))
        return mask.scatter_(1, labels.view(-1, 1), True)
    if g.kind == "mass":
        return _mass_mask(teacher_logits, float(g.param), temperature)
    if correlated is None:
        raise ValueError(f"grouping {g} needs the class-correlation matrix of the teacher's logits")
    pred = teacher_logits.argmax(1)
    return correlated.to(teacher_logits.device).index_select(0, pred)


def class_correlation(
    teacher_logits, *, chunk_rows: int = 16384, device: str | torch.device = "cpu"
) -> np.ndarray:
    """Pearson correlation between classes of the teacher's logits over all samples: (C, C) float64.

    Streams over row chunks (works on a memory-mapped (N, C) array); a class whose logit never varies
    correlates with nothing (NaN off the diagonal, 1 on it).
    """
    n, c = teacher_logits.shape
    shift = None
    total = torch.zeros(c, dtype=torch.float64)
    gram = torch.zeros((c, c), dtype=torch.float64)
    for start in range(0, n, chunk_rows):
        rows = np.array(teacher_logits[start : start + chunk_rows], dtype=np.float32)
        x = torch.from_numpy(rows).to(device)
        if shift is None:
            shift = x.mean(0, keepdim=True)  # centring on a first estimate keeps float32 sums accurate
        x = x - shift
        total += x.sum(0).cpu().double()
        gram += (x.T @ x).cpu().double()
    mean = total / n
    cov = gram / n - torch.outer(mean, mean)
    std = cov.diagonal().clamp_min(0).sqrt()
    with np.errstate(divide="ignore", invalid="ignore"):
        corr = (cov / torch.outer(std, std)).numpy()
    corr = np.clip(corr, -1.0, 1.0)
    corr[std.numpy() == 0, :] = np.nan
    corr[:, std.numpy() == 0] = np.nan
    np.fill_diagonal(corr, 1.0)
    return corr


def correlated_classes(correlation: np.ndarray, r: float) -> torch.Tensor:
    """Boolean (C, C) matrix of class pairs correlated at least r (the diagonal is always True)."""
    corr = np.asarray(correlation, dtype=np.float64)
    out = np.nan_to_num(corr, nan=-np.inf) >= r
    np.fill_diagonal(out, True)
    return torch.from_numpy(out)
