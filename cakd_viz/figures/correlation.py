"""Figures of the Correlation groups page: which classes travel together.

Builders take a computed correlation matrix, a clustering (order, family), strong-set pair counts or
a `Decomposition`, and draw at most `limit` classes at a time, so no C x C payload of a large C ever
reaches the browser.
"""

from __future__ import annotations

from itertools import pairwise

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from cakd_viz.decomposition import Decomposition
from cakd_viz.figures.style import ROLE_COLORS, base_layout
from cakd_viz.text import html as plain

HEATMAP_LIMIT = 60  # classes drawn at most in a heatmap of a large C
SHOW_ALL_UP_TO = 80  # up to this many classes, every class is drawn
OVERVIEW_FAMILIES = 8  # the largest families a heatmap of a large C shows members of
ROW_PX, LABEL_PX = 17, 12  # pixels per heatmap row, and the labels' font size: every row legible


def family_table(family: np.ndarray) -> pd.DataFrame:
    """Families (id, size, first member) sorted by size, largest first; singletons included."""
    ids, sizes = np.unique(family, return_counts=True)
    frame = pd.DataFrame({"family": ids, "size": sizes})
    frame = frame.sort_values(["size", "family"], ascending=[False, True], kind="stable")
    return frame.reset_index(drop=True)


def pick_classes(order: np.ndarray, family: np.ndarray, *, only=None) -> np.ndarray:
    """The classes to draw, in clustering order.

    All of them when C <= SHOW_ALL_UP_TO; one family when `only` names it (at most HEATMAP_LIMIT
    members); otherwise an overview: the first members (in clustering order) of the OVERVIEW_FAMILIES
    largest families, an equal share of HEATMAP_LIMIT each, so the block structure between families
    stays visible.
    """
    order = np.asarray(order)
    if only is not None:
        return order[family[order] == only][:HEATMAP_LIMIT]
    if len(order) <= SHOW_ALL_UP_TO:
        return order
    top = family_table(family).head(OVERVIEW_FAMILIES)["family"].to_numpy()
    quota = max(2, HEATMAP_LIMIT // len(top))
    keep = np.zeros(len(order), dtype=bool)
    for fam in top:
        members = np.flatnonzero(family[order] == fam)[:quota]
        keep[members] = True
    return order[keep][:HEATMAP_LIMIT]


def correlation_heatmap(
    corr: np.ndarray, classes: np.ndarray, family: np.ndarray, class_names: list[str]
) -> go.Figure:
    """Heatmap of the teacher's class-logit correlations (Pearson r) for `classes`, families boxed."""
    return _heatmap(
        np.asarray(corr)[np.ix_(classes, classes)],
        classes,
        family,
        class_names,
        colorscale="RdBu_r",
        zmin=-1,
        zmax=1,
        colorbar="Pearson r",
        hover="%{y} × %{x}<br>r = %{z:.3f}<br>families %{customdata}<extra></extra>",
        title="the teacher's class correlations (Pearson r of its logits)",
    )


def comembership_heatmap(
    counts: np.ndarray, classes: np.ndarray, family: np.ndarray, class_names: list[str]
) -> go.Figure:
    """How often class j is in the strong set when class i is: counts[i, j] / counts[i, i], in %."""
    counts = np.asarray(counts, dtype=np.float64)
    sub = counts[np.ix_(classes, classes)]
    diag = np.diag(counts)[classes]
    with np.errstate(divide="ignore", invalid="ignore"):
        cond = np.where(diag[:, None] > 0, sub / diag[:, None] * 100, np.nan)
    return _heatmap(
        cond,
        classes,
        family,
        class_names,
        colorscale="Viridis",
        zmin=0,
        zmax=100,
        colorbar="% of i's strong sets",
        hover="when %{y} is in S, %{x} is too in %{z:.1f}% of samples<br>families %{customdata}<extra></extra>",
        title="the teacher's strong sets: how often class j is in S when class i is",
    )


def top_pairs(
    counts: np.ndarray, corr: np.ndarray, class_names: list[str], family: np.ndarray, *, k: int = 20
) -> pd.DataFrame:
    """The k class pairs that most often share a strong set, with their correlation and families."""
    counts = np.asarray(counts, dtype=np.float64)
    c = counts.shape[0]
    iu = np.triu_indices(c, k=1)
    values = counts[iu]
    top = np.argsort(-values, kind="stable")[:k]
    a, b = iu[0][top], iu[1][top]
    frame = pd.DataFrame(
        {
            "class a": [str(class_names[i]) for i in a],
            "class b": [str(class_names[j]) for j in b],
            "together": values[top].astype(np.int64),
            "r": np.asarray(corr)[a, b],
            "same family": family[a] == family[b],
        }
    )
    return frame[frame["together"] > 0].reset_index(drop=True)


def strong_size_figure(strong_size: np.ndarray, *, grouping: str) -> go.Figure:
    """Distribution of the strong-set size |S| over samples (pre-counted here: at most C bars)."""
    sizes = np.asarray(strong_size, dtype=np.int64)
    counts = np.bincount(sizes)
    x = np.flatnonzero(counts)
    fig = go.Figure(
        go.Bar(
            x=x,
            y=counts[x],
            marker_color=ROLE_COLORS["strong"],
            hovertemplate="|S| = %{x}: %{y:,} samples<extra></extra>",
        )
    )
    fig.update_layout(**base_layout("the teacher's strong sets: their sizes", height=300, showlegend=False))
    fig.update_xaxes(title=f"strong-set size |S| under {plain(grouping)} (classes)")
    fig.update_yaxes(title="samples")
    return fig


def strong_mass_figure(d: Decomposition, *, bins: int = 40, student: str = "student") -> go.Figure:
    """Pre-binned 2-D histogram of the teacher's strong-group mass p_S against the student's q_S.

    Both axes span the same range, the central 99.8% of both masses (padded), so the diagonal
    "student = teacher" stays the diagonal and a concentrated cloud still gets all the bins.
    """
    both = np.concatenate([d.teacher_strong_mass, d.student_strong_mass]).astype(np.float64)
    lo, hi = np.percentile(both, [0.1, 99.9]) if both.size > 20 else (both.min(), both.max())
    pad = max((hi - lo) * 0.05, 1e-6)
    lo, hi = max(0.0, float(lo - pad)), min(1.0, float(hi + pad))
    h, xe, ye = np.histogram2d(
        np.clip(d.teacher_strong_mass, lo, hi),
        np.clip(d.student_strong_mass, lo, hi),
        bins=bins,
        range=[[lo, hi], [lo, hi]],
    )
    z = np.where(h.T > 0, np.log10(np.maximum(h.T, 1)), np.nan)  # rows: student bins (y)
    centers_x, centers_y = (xe[:-1] + xe[1:]) / 2, (ye[:-1] + ye[1:]) / 2
    fig = go.Figure(
        go.Heatmap(
            x=centers_x,
            y=centers_y,
            z=z,
            customdata=h.T.astype(np.int64),
            colorscale="Blues",
            colorbar=dict(
                title="samples", tickvals=[0, 1, 2, 3, 4, 5], ticktext=["1", "10", "100", "1k", "10k", "100k"]
            ),
            hovertemplate="teacher p<sub>S</sub> ≈ %{x:.3g}, student q<sub>S</sub> ≈ %{y:.3g}: "
            "%{customdata:,} samples<extra></extra>",
        )
    )
    fig.add_trace(
        go.Scatter(
            x=[lo, hi],
            y=[lo, hi],
            mode="lines",
            line=dict(color=ROLE_COLORS["teacher"], dash="dot", width=1),
            name="student = teacher",
            hoverinfo="skip",
        )
    )
    fig.update_layout(
        **base_layout(f"teacher p<sub>S</sub> against {plain(student)} q<sub>S</sub>", height=380)
    )
    fig.update_xaxes(title="teacher's strong-group mass p<sub>S</sub>", range=[lo, hi], constrain="domain")
    fig.update_yaxes(
        title=f"{plain(student)}'s strong-group mass q<sub>S</sub>", range=[lo, hi], scaleanchor="x"
    )
    return fig


def _heatmap(z, classes, family, class_names, *, colorscale, zmin, zmax, colorbar, hover, title) -> go.Figure:
    labels = _labels(classes, class_names)
    fam = family[classes]
    custom = np.array([[f"{fam[r]} / {fam[c]}" for c in range(len(classes))] for r in range(len(classes))])
    fig = go.Figure(
        go.Heatmap(
            z=z,
            x=labels,
            y=labels,
            colorscale=colorscale,
            zmin=zmin,
            zmax=zmax,
            customdata=custom,
            colorbar=dict(title=dict(text=colorbar, side="right"), thickness=14, len=0.8),
            hovertemplate=hover,
            xgap=0,
            ygap=0,
        )
    )
    edges = [0, *(int(i) + 1 for i in np.flatnonzero(np.diff(fam) != 0)), len(classes)]  # one family each
    box = dict(
        type="rect", xref="x", yref="y", line=dict(color="#000000", width=1.5), fillcolor="rgba(0,0,0,0)"
    )
    shapes = [  # each family of two or more classes boxed on the diagonal
        {**box, "x0": a - 0.5, "x1": b - 0.5, "y0": a - 0.5, "y1": b - 0.5}
        for a, b in pairwise(edges)
        if b - a > 1
    ]
    # Every row and column labelled (dtick 1), at a readable size: the chart grows with the classes.
    height = max(420, ROW_PX * len(classes) + 160)
    fig.update_layout(**base_layout(title, height=height, margin=dict(l=10, r=10, t=50, b=10)), shapes=shapes)
    axis = dict(type="category", tickfont=dict(size=LABEL_PX), dtick=1, title=None, automargin=True)
    fig.update_xaxes(**axis, tickangle=-90)
    fig.update_yaxes(**axis, autorange="reversed")
    return fig


def _labels(classes, class_names) -> list[str]:
    """Axis labels: the class names (distinct after `classnames.readable_names`), else the index."""
    names = [plain(class_names[i]) if class_names is not None else str(i) for i in classes]
    if len(set(names)) < len(names):  # raw names that repeat: keep them apart by index
        names = [f"{n} ({i})" for n, i in zip(names, classes, strict=True)]
    return names
