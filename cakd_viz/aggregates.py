"""Per-dataset and per-class summaries of a `Decomposition` (small tables the app and the CLI show).

Shares are ratios of sums: the share of BCD in a group of samples is sum(BCD) / sum(KL) over them,
so the three shares of a group add up to 1 and weight each sample by its own KL.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from cakd_viz.decomposition import TERMS, Decomposition

RANGE_SAMPLE = 100_000  # term_histograms places its bins by the percentiles of at most this many values
BREAKDOWN_KEYS = {
    "label": "true class",
    "teacher_pred": "teacher's prediction",
    "student_pred": "student's prediction",
}


def dataset_summary(d: Decomposition) -> dict:
    """Headline numbers: N, mean KL (nats), mean of each contribution, shares, accuracies where labels exist."""
    out = {
        "num_samples": len(d),
        "grouping": d.grouping,
        "temperature": d.temperature,
        "kl_mean": float(d.kl.mean()),
        "strong_size_mean": float(d.strong_size.mean()),
        "teacher_strong_mass_mean": float(d.teacher_strong_mass.mean()),
        "student_strong_mass_mean": float(d.student_strong_mass.mean()),
        "agreement": float((d.teacher_pred == d.student_pred).mean()),
    }
    out.update({f"{name}_mean": float(values.mean()) for name, values in d.contributions().items()})
    out.update({f"share_{k}": v for k, v in d.shares().items()})
    if d.labels is not None:
        out["teacher_accuracy"] = float((d.teacher_pred == d.labels).mean())
        out["student_accuracy"] = float((d.student_pred == d.labels).mean())
    return out


def class_breakdown(
    d: Decomposition, *, by: str = "label", num_classes: int | None = None, class_names=None
) -> pd.DataFrame:
    """One row per class: count, mean KL, mean contributions, shares, dominant term, accuracies.

    by: "label" (true class), "teacher_pred" or "student_pred". Sorted by total KL, largest first.
    Classes that never occur are left out.
    """
    if by not in BREAKDOWN_KEYS:
        raise ValueError(f"unknown breakdown {by!r}; choose one of {', '.join(BREAKDOWN_KEYS)}")
    key = d.labels if by == "label" else getattr(d, by)
    if key is None:
        raise ValueError("a breakdown by true class needs labels, and this decomposition has none")
    c = int(num_classes if num_classes is not None else key.max(initial=-1) + 1)
    count = np.bincount(key, minlength=c).astype(np.float64)
    sums = {n: np.bincount(key, weights=v, minlength=c) for n, v in {"kl": d.kl, **d.contributions()}.items()}
    present = count > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        frame = pd.DataFrame(
            {
                "class": np.arange(c),
                "name": [str(x) for x in (class_names if class_names is not None else range(c))][:c],
                "count": count.astype(np.int64),
                "kl_total": sums["kl"],
                "kl_mean": sums["kl"] / count,
                **{f"{n}_mean": sums[n] / count for n in TERMS},
                **{f"share_{n}": sums[n] / sums["kl"] for n in TERMS},
            }
        )
    frame["dominant"] = dominant(frame[[f"share_{n}" for n in TERMS]].to_numpy())
    with np.errstate(divide="ignore", invalid="ignore"):
        for who in ("teacher", "student") if d.labels is not None else ():
            hits = (getattr(d, f"{who}_pred") == d.labels).astype(np.float64)
            frame[f"{who}_accuracy"] = np.bincount(key, weights=hits, minlength=c) / count
    frame = frame[present].sort_values("kl_total", ascending=False, kind="stable")
    return frame.reset_index(drop=True)


def term_histograms(d: Decomposition, *, bins: int = 60) -> dict[str, pd.DataFrame]:
    """Pre-binned distributions of KL and each contribution (so no N-sized payload reaches a browser).

    Bins log10 of the value over the positive samples (zeros are counted separately in the "zeros"
    attribute of each frame); the bins span the 0.1th to 99.9th percentile of the values (of at most
    ``RANGE_SAMPLE`` evenly spaced ones: the percentiles only place the axis, and at 1.28M samples they
    cost more than the rest), the values beyond them counted in the outer bins. Returns
    {name: DataFrame(left, right, count)}, edges in log10 units.
    """
    out = {}
    for name, values in {"kl": d.kl, **d.contributions()}.items():
        data = np.log10(values[values > 0])
        ref = data if data.size else np.zeros(1)  # no positive value: bins around 1 nat, every one empty
        ref = ref[:: math.ceil(ref.size / RANGE_SAMPLE)]
        lo, hi = np.percentile(ref, [0.1, 99.9]) if ref.size > 10 else (ref.min(), ref.max())
        if hi <= lo:
            hi = lo + 1.0
        counts, edges = np.histogram(np.clip(data, lo, hi), bins=bins, range=(lo, hi))
        frame = pd.DataFrame({"left": edges[:-1], "right": edges[1:], "count": counts})
        frame.attrs["zeros"] = int((values <= 0).sum())
        out[name] = frame
    return out


def dominant(shares: np.ndarray) -> np.ndarray:
    """The largest part's name per row of (n, 3) shares (NaN rows: the first term)."""
    return np.array(TERMS)[np.nan_to_num(shares, nan=-1.0).argmax(1)]
