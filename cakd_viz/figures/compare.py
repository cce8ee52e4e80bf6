"""Figures comparing two students A and B of one bundle (tables from `cakd_viz.compare`); B - A throughout."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from cakd_viz.decomposition import TERMS
from cakd_viz.figures.style import TERM_COLORS, base_layout, student_color
from cakd_viz.terms import KL_UNIT, PART, PART_HTML
from cakd_viz.text import html as plain

_MEANS = {f"{k}_mean": PART_HTML[k] for k in ("kl", *TERMS)}  # the measures drawn -> their labels


def mean_terms_figure(summary: pd.DataFrame, a: str, b: str) -> go.Figure:
    """Mean KL and mean parts of A and B side by side, the change (B - A) written above B's bar.

    summary: `compare.summary`, or `compare.set_summary` over one set of samples (measure, a, b, delta).
    Traces: A, then B, named after the students and their role ("kd (A)", "ce (B)").
    """
    rows = summary.set_index("measure").reindex(list(_MEANS))
    labels = list(_MEANS.values())
    fig = go.Figure()
    for i, (who, col) in enumerate(((a, "a"), (b, "b"))):
        text = [f"{d:+.3g}" for d in rows["delta"]] if col == "b" else [f"{v:.3g}" for v in rows["a"]]
        fig.add_trace(
            go.Bar(
                name=f"{plain(who)} ({col.upper()})",
                x=labels,
                y=rows[col],
                marker_color=student_color(i),
                text=text,
                textposition="outside",
                cliponaxis=False,
                hovertemplate=f"{plain(who)}<br>%{{x}}: mean %{{y:.4g}} {KL_UNIT}<extra></extra>",
            )
        )
    fig.update_layout(**base_layout(height=340, barmode="group"))
    fig.update_yaxes(title=f"mean over the samples ({KL_UNIT})", rangemode="tozero")
    fig.update_xaxes(title=None)
    fig.add_annotation(
        text=f"numbers above {plain(b)}'s bars: {plain(b)} − {plain(a)}",
        xref="paper",
        yref="paper",
        x=1,
        y=1.12,
        showarrow=False,
        font=dict(size=11, color="#555555"),
        xanchor="right",
    )
    return fig


def class_delta_figure(deltas: pd.DataFrame, a: str, b: str, *, top: int = 30) -> go.Figure:
    """Per class, the change of each mean part (B - A) as diverging stacked bars, and the change of the
    mean KL as a black diamond: left of 0, B is closer to the teacher on that class.

    deltas: `compare.class_deltas` (sorted by the size of the KL change); its first ``top`` rows are drawn.
    """
    rows = deltas.head(top)
    labels = [plain(n) for n in rows["name"]]
    pos = np.arange(len(rows))
    fig = go.Figure()
    for t in TERMS:
        fig.add_trace(
            go.Bar(
                name=PART_HTML[t],
                meta=t,
                y=pos,
                x=rows[f"{t}_mean_delta"],
                orientation="h",
                marker_color=TERM_COLORS[t],
                customdata=np.array(labels, dtype=object),
                hovertemplate=f"%{{customdata}}<br>{PART[t]}: %{{x:+.4g}} {KL_UNIT} (mean, B − A)<extra></extra>",
            )
        )
    fig.add_trace(
        go.Scatter(
            name="KL",
            y=pos,
            x=rows["kl_mean_delta"],
            mode="markers",
            marker=dict(symbol="diamond", size=9, color="#000000"),
            customdata=np.array(labels, dtype=object),
            hovertemplate=f"%{{customdata}}<br>mean KL: %{{x:+.4g}} {KL_UNIT} (B − A)<extra></extra>",
        )
    )
    fig.update_layout(**base_layout(height=max(280, 110 + 22 * len(rows)), barmode="relative"))
    fig.update_layout(legend_traceorder="normal")
    fig.update_yaxes(tickvals=pos, ticktext=labels, autorange="reversed", title=None)
    fig.update_xaxes(
        title=f"change of the class's mean ({KL_UNIT}): {plain(b)} − {plain(a)}; left of 0: {plain(b)} is closer",
        zeroline=True,
        zerolinecolor="#444444",
    )
    return fig
