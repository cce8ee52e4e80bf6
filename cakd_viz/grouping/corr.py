"""`corr:R`: S = the teacher's predicted class plus every class whose teacher-logit correlation with it
(Pearson, over the whole bundle) is at least R; and the class correlation it reads."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from cakd_viz.grouping.base import RULE_CORR, Grouping, param_text


class Corr(Grouping):
    """S = the teacher's prediction plus the classes correlated with it at r >= R."""

    name: ClassVar[str] = "corr"
    symbol: ClassVar[str | None] = "R"
    param_words: ClassVar[str] = "correlation threshold"
    words: ClassVar[str] = "S = the teacher's prediction plus classes correlated with it at r ≥ R"
    needs_correlation: ClassVar[bool] = True
    code: ClassVar[int] = RULE_CORR
    kernels: ClassVar[frozenset[str]] = frozenset({"decompose"})
    grid: ClassVar[tuple[float, ...]] = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
    typical: ClassVar[float | None] = 0.5

    @classmethod
    def check(cls, spec: str, value: float | int) -> float:
        if not -1.0 <= value <= 1.0:
            raise ValueError(f"grouping {spec!r}: R must lie between -1 and 1")
        return value

    def describe(self, *, short: bool = False) -> str:
        v = param_text(self.param)
        if short:
            return f"teacher prediction + classes with r >= {v}"
        return f"S = the teacher's prediction plus classes correlated with it at r >= {v}"

    def select(self, teacher_logits, labels, *, temperature, correlated):
        """correlated: (C, C) boolean `corr >= R` (diagonal True), from `correlated`."""
        pred = teacher_logits.argmax(1)
        return correlated.to(teacher_logits.device).index_select(0, pred)

    @classmethod
    def slider(cls, num_classes: int) -> tuple[float, float, float]:
        return (-1.0, 1.0, 0.05)

    def correlated(self, correlation):
        return None if correlation is None else correlated_classes(correlation, float(self.param))


def class_correlation(
    teacher_logits, *, chunk_rows: int = 16384, device="cpu", standardize: bool = False
) -> np.ndarray:
    """Pearson correlation between classes of the teacher's logits over all samples: (C, C) float64,
    accumulated in float64 (a class pair exactly at a ``corr:R`` threshold is decided as float64 says).

    Streams over row chunks (works on a memory-mapped (N, C) array); a class whose logit never varies
    correlates with nothing (NaN off the diagonal, 1 on it). standardize: of the logits z-scored per
    sample first (LS, `cakd_viz.standardize`): what ``corr:R`` reads when the logits are standardized.
    """
    import torch

    from cakd_viz.standardize import standardize_numpy

    n, c = teacher_logits.shape
    shift = None
    total = torch.zeros(c, dtype=torch.float64)
    gram = torch.zeros((c, c), dtype=torch.float64)
    for start in range(0, n, chunk_rows):
        part = teacher_logits[start : start + chunk_rows]
        if isinstance(part, torch.Tensor):  # bfloat16 (numpy has none), or on a GPU
            part = part.detach().cpu().double().numpy()
        rows = np.array(part, dtype=np.float64)
        if standardize:
            rows = standardize_numpy(rows)
        x = torch.from_numpy(rows).to(device)
        if shift is None:
            shift = x.mean(0, keepdim=True)  # centred on a first estimate: no cancellation in the sums
        x = x - shift
        total += x.sum(0).cpu()
        gram += (x.T @ x).cpu()  # float64 throughout: corr:R compares this matrix with R exactly
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


def correlated_classes(correlation: np.ndarray, r: float):
    """Boolean (C, C) tensor of class pairs correlated at least r (the diagonal is always True)."""
    import torch

    corr = np.asarray(correlation, dtype=np.float64)
    out = np.nan_to_num(corr, nan=-np.inf) >= r
    np.fill_diagonal(out, True)
    return torch.from_numpy(out)
