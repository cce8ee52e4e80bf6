"""Does logit standardization change which term dominates? One student's split without and with LS
(`cakd_viz.standardize`) side by side: per student (the shares of BCD, p_S·SCD and p_W·WCD of the total
KL) and per class (which classes' largest part changes).

Both tables take the two decompositions of the same samples under the same grouping and T, the second
with ``standardize=True``; columns ending in "_ls" are the standardized split's (`terms.heading` words
them), "dominant" is the largest part (a term name of `terms.TERMS`), "changed" whether LS changes it.
"""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd

from cakd_viz.aggregates import class_breakdown, dominant
from cakd_viz.decomposition import TERMS, Decomposition

SHARES = tuple(f"share_{t}" for t in TERMS)


def _check_pair(plain: Decomposition, standardized: Decomposition) -> None:
    if plain.standardize or not standardized.standardize:
        raise ValueError("compare a plain decomposition (first) with a standardized one (second)")
    setting = [(len(d), d.grouping, d.temperature) for d in (plain, standardized)]
    if setting[0] != setting[1]:
        raise ValueError(
            f"the two decompositions differ in setting: {len(plain):,} samples under {plain.grouping} at "
            f"T = {plain.temperature:g} against {len(standardized):,} under {standardized.grouping} at "
            f"T = {standardized.temperature:g}"
        )


def students_table(
    plain: Mapping[str, Decomposition], standardized: Mapping[str, Decomposition]
) -> pd.DataFrame:
    """One row per student (the keys of ``plain``, each also in ``standardized``): mean KL and the three
    shares without and with LS, the largest part of each, and whether it changes."""
    rows = []
    for name, d in plain.items():
        ls = standardized[name]
        _check_pair(d, ls)
        row = {"student": name, "kl_mean": float(d.kl.mean()), "kl_mean_ls": float(ls.kl.mean())}
        row |= {f"share_{k}": v for k, v in d.shares().items()}
        row |= {f"share_{k}_ls": v for k, v in ls.shares().items()}
        rows.append(row)
    frame = pd.DataFrame(rows)
    frame["dominant"] = dominant(frame[list(SHARES)].to_numpy())
    frame["dominant_ls"] = dominant(frame[[f"{s}_ls" for s in SHARES]].to_numpy())
    frame["changed"] = frame["dominant"] != frame["dominant_ls"]
    return frame


def classes_table(
    plain: Decomposition,
    standardized: Decomposition,
    *,
    by: str = "label",
    num_classes: int | None = None,
    class_names=None,
) -> pd.DataFrame:
    """One row per class present (by true class, or the teacher's or student's prediction: ``by``): its
    samples, total KL and shares without and with LS, the largest part of each and whether it changes;
    the classes whose largest part changes first, then by total KL (without LS)."""
    _check_pair(plain, standardized)
    kw = {"by": by, "num_classes": num_classes, "class_names": class_names}
    a, b = class_breakdown(plain, **kw), class_breakdown(standardized, **kw)
    keep = ["class", "name", "count", "kl_total", *SHARES, "dominant"]
    frame = a[keep].merge(
        b[["class", "kl_total", *SHARES, "dominant"]], on="class", suffixes=("", "_ls"), validate="1:1"
    )
    frame["changed"] = frame["dominant"] != frame["dominant_ls"]
    frame = frame.sort_values(["changed", "kl_total"], ascending=[False, False], kind="stable")
    return frame.reset_index(drop=True)
