"""The result of a decomposition: per-sample KL split into BCD, SCD and WCD (see `cakd_viz.decomposition`)."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from cakd_viz.standardize import setting
from cakd_viz.terms import TERMS

FRAME_COLUMNS = (
    "index",
    "label",
    "teacher_pred",
    "student_pred",
    "kl",
    "bcd",
    "scd",
    "wcd",
    "teacher_strong_mass",
    "student_strong_mass",
    "strong_size",
)


@dataclass(frozen=True, eq=False)
class Decomposition:
    """Per-sample terms of KL(teacher || student) = BCD + p_S * SCD + p_W * WCD, every array of shape (N,).

    `teacher_weak_mass` is p_W computed directly in log space (not 1 - p_S), so that the identity
    holds to float precision even where p_W is far below float32's resolution around 1. `standardize`:
    the split is of the standardized logits (LS, `cakd_viz.standardize`), each row z-scored before T.
    """

    kl: np.ndarray
    bcd: np.ndarray
    scd: np.ndarray
    wcd: np.ndarray
    teacher_strong_mass: np.ndarray
    teacher_weak_mass: np.ndarray
    student_strong_mass: np.ndarray
    strong_size: np.ndarray
    teacher_pred: np.ndarray
    student_pred: np.ndarray
    labels: np.ndarray | None
    grouping: str
    temperature: float
    standardize: bool = False

    def __len__(self) -> int:
        return int(self.kl.shape[0])

    @property
    def scd_contribution(self) -> np.ndarray:
        """p_S * SCD, the part of the KL carried by the strong group's internal ranking. (N,)"""
        return self.teacher_strong_mass * self.scd

    @property
    def wcd_contribution(self) -> np.ndarray:
        """p_W * WCD, the part of the KL carried by the weak tail ("dark knowledge"). (N,)"""
        return self.teacher_weak_mass * self.wcd

    def contributions(self) -> dict[str, np.ndarray]:
        """{"bcd": BCD, "scd": p_S*SCD, "wcd": p_W*WCD}; the three add up to `kl`."""
        return {"bcd": self.bcd, "scd": self.scd_contribution, "wcd": self.wcd_contribution}

    def shares(self) -> dict[str, float]:
        """Dataset-level share of the total KL carried by each contribution (they sum to 1)."""
        total = float(self.kl.sum())
        if total <= 0:
            return {name: float("nan") for name in TERMS}
        return {name: float(v.sum()) / total for name, v in self.contributions().items()}

    def subset(self, index) -> Decomposition:
        """The same result restricted to some samples (a boolean mask or integer indices)."""
        pick = {name: getattr(self, name)[index] for name in PER_SAMPLE}
        return replace(self, **pick, labels=None if self.labels is None else self.labels[index])

    def setting(self) -> str:
        """The setting in words: "grouping topk:5, T = 4" (", standardized" under LS)."""
        return f"grouping {self.grouping}, {setting(self.temperature, self.standardize)}"

    def to_frame(self) -> pd.DataFrame:
        """One row per sample, columns as in `FRAME_COLUMNS` (label is <NA> without labels); the setting in
        ``attrs`` (grouping, temperature, standardize)."""
        n = len(self)
        labels = pd.array(self.labels if self.labels is not None else [pd.NA] * n, dtype="Int64")
        per_sample = {name: getattr(self, name) for name in FRAME_COLUMNS[2:]}
        frame = pd.DataFrame(
            {"index": np.arange(n), "label": labels, **per_sample}, columns=list(FRAME_COLUMNS)
        )
        frame.attrs = dict(grouping=self.grouping, temperature=self.temperature, standardize=self.standardize)
        return frame


# The (N,) arrays of a Decomposition, one value per sample: float64 ones, then int64 ones. Both engine
# paths fill them by these names, in this order (the C kernel's output pointers follow it).
FLOAT_ARRAYS = ("kl", "bcd", "scd", "wcd", "teacher_strong_mass", "teacher_weak_mass", "student_strong_mass")
INT_ARRAYS = ("strong_size", "teacher_pred", "student_pred")
PER_SAMPLE = FLOAT_ARRAYS + INT_ARRAYS
