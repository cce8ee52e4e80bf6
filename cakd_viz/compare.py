"""Two students of one bundle side by side: A and B, decomposed under the same grouping and temperature.

Both decompositions share the teacher, the labels and therefore every sample's strong set S, so their
terms can be subtracted sample by sample. Differences are always B - A. "Fixed by B" are the samples
that A gets wrong and B right; "broken by B" the reverse ("right" means the true class when the bundle
has labels, else the teacher's top class). Tables use the column names of `cakd_viz.terms` with the
suffixes "_a", "_b" and "_delta", which `terms.heading` turns into words.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from cakd_viz.decomposition import TERMS, Decomposition
from cakd_viz.diagnose import class_labels
from cakd_viz.standardize import setting

SETS = {
    "fixed": "{a} gets wrong and {b} gets right",
    "broken": "{a} gets right and {b} gets wrong",
}
"""The samples B fixes or breaks, in words: ``SETS[which].format(a=A's name, b=B's name)``."""


def check_comparable(a: Decomposition, b: Decomposition) -> None:
    """ValueError unless ``a`` and ``b`` decompose the same samples under the same teacher and setting."""
    if len(a) != len(b):
        raise ValueError(f"the two decompositions have {len(a):,} and {len(b):,} samples")
    if (a.grouping, a.temperature, a.standardize) != (b.grouping, b.temperature, b.standardize):
        raise ValueError(
            f"the two decompositions differ in setting: {a.grouping} at {setting(a.temperature, a.standardize)} "
            f"against {b.grouping} at {setting(b.temperature, b.standardize)}"
        )
    if not np.array_equal(a.teacher_pred, b.teacher_pred):
        raise ValueError("the two decompositions have different teachers")
    if not np.array_equal(a.labels, b.labels):  # (None equals only None)
        raise ValueError("the two decompositions have different labels")


def _measures(d: Decomposition) -> dict[str, float]:
    parts = d.contributions()
    out = {"kl_mean": float(d.kl.mean())}
    out.update({f"{t}_mean": float(parts[t].mean()) for t in TERMS})
    out.update({f"share_{t}": v for t, v in d.shares().items()})
    out.update({f"{t}_raw_mean": float(getattr(d, t).mean()) for t in ("scd", "wcd")})
    out["student_strong_mass_mean"] = float(d.student_strong_mass.mean())
    if d.labels is not None:
        out["accuracy"] = float((d.student_pred == d.labels).mean())
    out["agreement"] = float((d.student_pred == d.teacher_pred).mean())
    return out


def summary(a: Decomposition, b: Decomposition) -> pd.DataFrame:
    """One row per measure (mean KL, mean parts, shares, mean raw SCD/WCD, mean q_S, accuracy, agreement):
    columns measure (a `terms` column name), a, b, delta (b - a)."""
    check_comparable(a, b)
    ma, mb = _measures(a), _measures(b)
    return pd.DataFrame(
        {
            "measure": list(ma),
            "a": list(ma.values()),
            "b": [mb[k] for k in ma],
            "delta": [mb[k] - ma[k] for k in ma],
        }
    )


def class_deltas(
    a: Decomposition, b: Decomposition, *, by: str = "label", num_classes: int, class_names=None
) -> pd.DataFrame:
    """Per class (of ``by``: "label" or "teacher_pred"): mean KL of A and B, the change of the mean KL and
    of each mean part (B - A), and the accuracies (with labels). Classes without samples are left out;
    sorted by the size of the change of the mean KL, largest first.

    Columns: class, name, count, kl_mean_a, kl_mean_b, kl_mean_delta, {term}_mean_delta,
    [accuracy_a, accuracy_b, accuracy_delta].
    """
    check_comparable(a, b)
    key = a.labels if by == "label" else getattr(a, by)
    if key is None:
        raise ValueError("a comparison by true class needs labels, and this bundle has none")
    c = int(num_classes)
    count = np.bincount(key, minlength=c).astype(np.float64)
    present = count > 0
    safe = np.where(present, count, 1.0)

    def mean(values: np.ndarray) -> np.ndarray:
        return np.bincount(key, weights=values, minlength=c) / safe

    pa, pb = a.contributions(), b.contributions()
    frame = pd.DataFrame(
        {
            "class": np.arange(c),
            "name": [str(x) for x in (class_names if class_names is not None else range(c))][:c],
            "count": count.astype(np.int64),
            "kl_mean_a": mean(a.kl),
            "kl_mean_b": mean(b.kl),
        }
    )
    frame["kl_mean_delta"] = frame["kl_mean_b"] - frame["kl_mean_a"]
    for t in TERMS:
        frame[f"{t}_mean_delta"] = mean(pb[t] - pa[t])
    if a.labels is not None:
        frame["accuracy_a"] = mean((a.student_pred == a.labels).astype(np.float64))
        frame["accuracy_b"] = mean((b.student_pred == b.labels).astype(np.float64))
        frame["accuracy_delta"] = frame["accuracy_b"] - frame["accuracy_a"]
    frame = frame[present]
    order = np.argsort(-np.abs(frame["kl_mean_delta"].to_numpy()), kind="stable")
    return frame.iloc[order].reset_index(drop=True)


def set_mask(a: Decomposition, b: Decomposition, which: str) -> np.ndarray:
    """Boolean (N,) mask of the samples "fixed" or "broken" by B (see the module docstring)."""
    check_comparable(a, b)
    ref = a.labels if a.labels is not None else a.teacher_pred
    right_a, right_b = a.student_pred == ref, b.student_pred == ref
    if which == "fixed":
        return ~right_a & right_b
    if which == "broken":
        return right_a & ~right_b
    raise ValueError(f"unknown comparison set {which!r}; choose one of: {', '.join(SETS)}")


def changes(
    a: Decomposition, b: Decomposition, mask: np.ndarray, *, limit: int | None = None, class_names=None
) -> pd.DataFrame:
    """The samples in ``mask`` with what changed from A to B, largest change of the KL first.

    Columns: index, [label_name], teacher_name, a_says, b_says, kl_a, kl_b, kl_delta,
    {term}_contribution_delta (for bcd: bcd_delta), scd_delta and wcd_delta (raw terms), changed_most
    (the part whose change is largest in size).
    """
    check_comparable(a, b)
    rows = np.flatnonzero(mask)
    kl_delta = b.kl[rows] - a.kl[rows]
    order = np.argsort(-np.abs(kl_delta), kind="stable")
    rows = rows[order[:limit] if limit is not None else order]
    classes = {"label_name": a.labels, "teacher_name": a.teacher_pred, "a_says": a.student_pred}
    names = {k: class_labels(class_names, v[rows]) for k, v in classes.items() if v is not None}
    frame = pd.DataFrame({"index": rows, **names, "b_says": class_labels(class_names, b.student_pred[rows])})
    frame = frame.assign(kl_a=a.kl[rows], kl_b=b.kl[rows], kl_delta=b.kl[rows] - a.kl[rows])
    pa, pb = a.contributions(), b.contributions()
    deltas = np.stack([pb[t][rows] - pa[t][rows] for t in TERMS], axis=1)  # (M, 3), (0, 3) for no rows
    frame[["bcd_delta", "scd_contribution_delta", "wcd_contribution_delta"]] = deltas
    frame["scd_delta"] = b.scd[rows] - a.scd[rows]
    frame["wcd_delta"] = b.wcd[rows] - a.wcd[rows]
    frame["changed_most"] = np.array(TERMS)[np.abs(deltas).argmax(1)]
    return frame


def set_summary(a: Decomposition, b: Decomposition, mask: np.ndarray) -> pd.DataFrame:
    """Over the samples in ``mask``: the mean KL and mean parts of A and B, and their change (B - A).

    Columns: measure ("kl_mean", "{term}_mean"), a, b, delta; empty means are NaN.
    """
    check_comparable(a, b)
    pa, pb = a.contributions(), b.contributions()
    rows = []
    for name, va, vb in [("kl_mean", a.kl, b.kl)] + [(f"{t}_mean", pa[t], pb[t]) for t in TERMS]:
        ma, mb = (float(v[mask].mean()) if mask.any() else float("nan") for v in (va, vb))
        rows.append({"measure": name, "a": ma, "b": mb, "delta": mb - ma})
    return pd.DataFrame(rows)
