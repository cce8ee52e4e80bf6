"""Figures for the Learn page: the two-way split BCD compares. (Probability and term bars: figures.sample.)"""

from __future__ import annotations

import plotly.graph_objects as go

from cakd_viz.figures.style import ROLE_COLORS, base_layout
from cakd_viz.learn import Example


def group_mass_bars(example: Example, *, title: str | None = None, font_size: int = 16) -> go.Figure:
    """Teacher [p_S, p_W] and student [q_S, q_W] as two stacked 100% bars: what BCD compares.

    Traces: "strong set S" and "weak set W", each with a teacher and a student bar.
    """
    fig = go.Figure()
    for name, values, color, sym in (
        ("strong set S", [example.p_strong, example.q_strong], ROLE_COLORS["strong"], "S"),
        ("weak set W", [example.p_weak, example.q_weak], ROLE_COLORS["weak"], "W"),
    ):
        fig.add_trace(
            go.Bar(
                name=name,
                y=["teacher", "student"],
                x=values,
                orientation="h",
                marker_color=color,
                text=[f"p_{sym} = {values[0]:.3f}", f"q_{sym} = {values[1]:.3f}"],
                textposition="inside",
                insidetextanchor="middle",
                hovertemplate=f"%{{y}}: mass on {sym} = %{{x:.4g}}<extra></extra>",
            )
        )
    fig.update_layout(**base_layout(title, barmode="stack", height=230, font=dict(size=font_size)))
    fig.update_layout(legend_traceorder="normal")
    fig.update_xaxes(title="probability mass", range=[0, 1])
    fig.update_yaxes(autorange="reversed")
    return fig
