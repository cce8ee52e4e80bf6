"""Figures of the samples explorer: the 2-D map of the samples (input thumbnails: `figures.data.enlarge`)."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from cakd_viz.embedding import METHODS, SampleMap
from cakd_viz.figures.style import ROLE_COLORS, TERM_COLORS, base_layout
from cakd_viz.terms import KL_UNIT, PART, TERMS
from cakd_viz.text import html as plain

# Okabe-Ito first (colour-blind safe), then Plotly's Dark24 for many groups; colours repeat beyond.
PALETTE = [
    "#0072B2",
    "#E69F00",
    "#009E73",
    "#CC79A7",
    "#56B4E9",
    "#D55E00",
    "#F0E442",
    "#000000",
    "#2E91E5",
    "#E15F99",
    "#1CA71C",
    "#FB0D0D",
    "#DA16FF",
    "#222A2A",
    "#B68100",
    "#750D86",
    "#EB663B",
    "#511CFB",
    "#00A08B",
    "#FB00D1",
    "#FC0080",
    "#B2828D",
    "#6C7C32",
    "#778AA3",
]
LEGEND_MOST = 12  # more groups than this: one trace, no legend (the hover names the group)


def map_figure(
    m: SampleMap,
    *,
    groups: np.ndarray,
    group_names: list[str],
    by: str,
    hover: list[str],
    kl: np.ndarray,
    matched: np.ndarray | None = None,
) -> go.Figure:
    """The samples of ``m`` as points coloured by ``groups`` (n,) (indices into ``group_names``; ``by``:
    "term" draws the term colours); ``hover`` (n,) says each point's classes, ``kl`` (n,) its KL;
    points outside ``matched`` (n,) bool are drawn small and grey. Each point's customdata is its sample
    index: a selection event names the sample."""
    fig = go.Figure()
    matched = np.ones(len(m.rows), dtype=bool) if matched is None else np.asarray(matched, dtype=bool)
    if (~matched).any():
        out = np.flatnonzero(~matched)
        color = dict(color=ROLE_COLORS["weak"], size=4, opacity=0.35)
        fig.add_trace(_points(m, out, hover, kl, "not matching the filters", color))
    present = np.unique(groups[matched])
    if by == "term" or len(present) <= LEGEND_MOST:
        for g in present:
            idx = np.flatnonzero(matched & (groups == g))
            color = TERM_COLORS[TERMS[int(g)]] if by == "term" else PALETTE[int(g) % len(PALETTE)]
            name = PART[TERMS[int(g)]] if by == "term" else plain(group_names[int(g)])
            fig.add_trace(_points(m, idx, hover, kl, name, dict(color=color, size=6, opacity=0.8)))
    else:
        idx = np.flatnonzero(matched)
        colors = np.array(PALETTE, dtype=object)[groups[idx] % len(PALETTE)]
        fig.add_trace(_points(m, idx, hover, kl, by, dict(color=colors, size=6, opacity=0.8)))
    words = METHODS[m.method]
    fig.update_layout(
        **base_layout(height=620, showlegend=by == "term" or len(present) <= LEGEND_MOST),
        dragmode="zoom",
        clickmode="event+select",
    )
    fig.update_xaxes(title=f"{words} 1", zeroline=False, showticklabels=m.method == "pca")
    fig.update_yaxes(title=f"{words} 2", zeroline=False, showticklabels=m.method == "pca")
    return fig


def _points(m: SampleMap, idx: np.ndarray, hover: list[str], kl: np.ndarray, name: str, marker: dict):
    """One Scattergl trace of the map's points ``idx`` (positions into ``m.rows``); each point's
    customdata is its sample index (numpy arrays throughout: a list of 20,000 is slow to validate)."""
    text = np.array([f"{plain(hover[i])}<br>KL {kl[i]:.4g} {KL_UNIT}" for i in idx], dtype=object)
    return go.Scattergl(
        x=m.xy[idx, 0],
        y=m.xy[idx, 1],
        mode="markers",
        name=name,
        marker=marker,
        customdata=m.rows[idx],
        text=text,
        hovertemplate="sample #%{customdata}<br>%{text}<extra></extra>",
    )
