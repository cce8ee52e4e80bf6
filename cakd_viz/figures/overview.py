"""Figures of the Overview page: which divergence terms carry the KL, per student, T and grouping.

Builders take computed summaries (dataset summaries, pre-binned histograms, sweep frames, class
breakdowns) and return Plotly figures; they never see logits. KL and its terms are in nats.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from cakd_viz.decomposition import TERMS
from cakd_viz.figures.style import TERM_COLORS, base_layout
from cakd_viz.grouping import parse_grouping
from cakd_viz.terms import KL_UNIT, MEANING, PART_HTML
from cakd_viz.text import html as plain


def shares_figure(summary: pd.DataFrame) -> go.Figure:
    """Stacked horizontal bars: each student's share of the total KL carried by BCD, p_S·SCD, p_W·WCD.

    summary: one row per student with columns student, share_bcd/scd/wcd, bcd/scd/wcd_mean, kl_mean.
    """
    means = {
        term: np.stack([summary[f"{term}_mean"], summary["kl_mean"]], axis=1) for term in TERMS
    }  # hovered: the term's mean of the KL's
    return _share_bars(
        [plain(s) for s in summary["student"]],
        {term: summary[f"share_{term}"].to_numpy(dtype=float) for term in TERMS},
        row_height=48,
        means=means,
    )


def standardization_figure(table: pd.DataFrame) -> go.Figure:
    """Stacked horizontal bars, two per student: the shares of BCD, p_S·SCD and p_W·WCD of the total KL
    without and with logit standardization (LS). table: `dominance.students_table`."""
    return _share_bars(
        [f"{plain(s)}{suffix}" for s in table["student"] for suffix in ("", " · LS")],
        {
            term: np.ravel(np.column_stack([table[f"share_{term}"], table[f"share_{term}_ls"]]))
            for term in TERMS
        },
        row_height=40,
    )


def _share_bars(
    names: list[str], shares: dict[str, np.ndarray], *, row_height: int, means: dict | None = None
) -> go.Figure:
    """One stacked bar per name of the terms' shares (fractions, by term); ``means``: per term, (mean of the
    term, mean KL) per bar for the hover."""
    fig = go.Figure()
    for term in TERMS:
        share = shares[term]
        hover = f"%{{y}}<br>{MEANING[term]}<br>share %{{x:.1f}}% of the KL"
        extra = {}
        if means is not None:
            extra["customdata"] = means[term]
            hover += f"<br>mean %{{customdata[0]:.4g}} of %{{customdata[1]:.4g}} {KL_UNIT}"
        fig.add_trace(
            go.Bar(
                name=PART_HTML[term],
                y=names,
                x=share * 100,
                orientation="h",
                marker_color=TERM_COLORS[term],
                text=[f"{v:.0%}" if v >= 0.04 else "" for v in share],
                textposition="inside",
                hovertemplate=hover + "<extra></extra>",
                **extra,
            )
        )
    layout = base_layout(height=110 + row_height * len(names), barmode="stack")
    layout["legend"] = {**layout["legend"], "traceorder": "normal"}
    layout["xaxis"] = dict(title="share of the total KL (%)", range=[0, 100], ticksuffix="%")
    layout["yaxis"] = dict(title=None, autorange="reversed")
    fig.update_layout(**layout)
    return fig


def histogram_figure(hists: dict[str, pd.DataFrame], *, student: str | None = None) -> go.Figure:
    """Distributions of KL and each contribution per sample, from pre-binned log10 histograms.

    hists: {"kl"|"bcd"|"scd"|"wcd": DataFrame(left, right, count)} as from `aggregates.term_histograms`
    (edges are log10 of nats); zeros are counted in `frame.attrs["zeros"]`. ``student``
    titles the chart with whose samples they are.
    """
    fig = go.Figure()
    for name in ("kl", *TERMS):
        if name not in hists:
            continue
        frame = hists[name]
        edges = np.append(frame["left"].to_numpy(), frame["right"].to_numpy()[-1])
        x = 10.0**edges
        y = np.append(frame["count"].to_numpy(), frame["count"].to_numpy()[-1])
        zeros = int(frame.attrs.get("zeros", 0))
        label = PART_HTML[name] + (f" (+{zeros:,} at 0)" if zeros else "")
        fig.add_trace(
            go.Scatter(
                x=x,
                y=y,
                name=label,
                mode="lines",
                line=dict(shape="hv", color=TERM_COLORS[name], width=2.5 if name == "kl" else 1.8),
                fill="tozeroy" if name != "kl" else None,
                opacity=0.85,
                hovertemplate=f"{MEANING[name]}<br>from %{{x:.3g}} {KL_UNIT}<br>%{{y:,}} samples<extra></extra>",
            )
        )
    fig.update_layout(
        **base_layout(_whose(student, "how the KL and its parts spread over the samples"), height=340)
    )
    fig.update_xaxes(
        type="log", title=f"value per sample ({KL_UNIT}, log scale)", exponentformat="power", dtick=1
    )
    fig.update_yaxes(title="samples per bin")
    return fig


def sweep_figure(
    frame: pd.DataFrame, *, x: str, x_title: str, log_x: bool = False, current: float | None = None
) -> go.Figure:
    """Stacked shares of the KL against a swept setting, one panel per student.

    frame: rows from `scans.temperature_scan` / `grouping_scan` with a "student" column; x: the
    column swept ("temperature", or a numeric column such as "param"); current: the selected value,
    marked with a dotted line.
    """
    students = list(dict.fromkeys(frame["student"]))
    fig = make_subplots(
        rows=1,
        cols=len(students),
        shared_yaxes=True,
        horizontal_spacing=0.04,
        subplot_titles=[plain(s) for s in students],
    )
    line = dict(color="#444444", dash="dot", width=1)  # the dotted line at `current`, in every panel
    selected = dict(mode="lines", line=line, showlegend=False, hoverinfo="skip", name="selected")
    for col, student in enumerate(students, start=1):
        part = frame[frame["student"] == student].sort_values(x)
        for term in TERMS:
            fig.add_trace(
                go.Scatter(
                    x=part[x],
                    y=part[f"share_{term}"] * 100,
                    name=PART_HTML[term],
                    legendgroup=term,
                    showlegend=col == 1,
                    mode="lines+markers",
                    stackgroup=f"s{col}",
                    line=dict(color=TERM_COLORS[term], width=1.5),
                    customdata=part[["kl_mean", f"{term}_mean"]].to_numpy(),
                    hovertemplate=(
                        f"{x_title} %{{x}}<br>{MEANING[term]}: %{{y:.1f}}% of the KL<br>"
                        f"mean %{{customdata[1]:.4g}} of %{{customdata[0]:.4g}} {KL_UNIT}<extra></extra>"
                    ),
                ),
                row=1,
                col=col,
            )
        values = sorted(set(part[x]))
        ticks = dict(tickvals=values, ticktext=[f"{v:g}" for v in values]) if log_x else {}
        fig.update_xaxes(title=x_title, type="log" if log_x else "linear", row=1, col=col, **ticks)
        if current is not None:  # a trace, not a shape: shapes on log axes want log10 coordinates
            fig.add_trace(go.Scatter(x=[current, current], y=[0, 100], **selected), row=1, col=col)
    fig.update_yaxes(title="share of the KL (%)", range=[0, 100], ticksuffix="%", row=1, col=1)
    layout = base_layout(height=380, margin=dict(l=60, r=20, t=40, b=50))
    layout["legend"] = dict(orientation="h", yanchor="top", y=-0.22, xanchor="left", x=0)
    fig.update_layout(**layout)
    return fig


def class_breakdown_figure(
    frame: pd.DataFrame, *, top: int = 30, by_title: str = "true class", student: str | None = None
) -> go.Figure:
    """Per-class total KL split into the three contributions, the `top` classes with the largest total.

    frame: `aggregates.class_breakdown` output (sorted by kl_total, with share_* and name columns);
    ``student`` titles the chart with whose KL it is.
    """
    part = frame.head(top)
    labels = [
        f"{plain(n)} ({c})" if str(n) != str(c) else str(c)
        for n, c in zip(part["name"], part["class"], strict=True)
    ]
    fig = go.Figure()
    for term in TERMS:
        total = part["kl_total"].to_numpy() * part[f"share_{term}"].fillna(0).to_numpy()
        fig.add_trace(
            go.Bar(
                name=PART_HTML[term],
                y=labels,
                x=total,
                orientation="h",
                marker_color=TERM_COLORS[term],
                customdata=np.stack([part[f"share_{term}"] * 100, part["count"], part["kl_mean"]], axis=1),
                hovertemplate=(
                    f"%{{y}}<br>{MEANING[term]}: %{{x:.4g}} {KL_UNIT} in total "
                    "(%{customdata[0]:.1f}% of this class's KL)<br>"
                    f"%{{customdata[1]:,}} samples, mean KL %{{customdata[2]:.4g}} {KL_UNIT}<extra></extra>"
                ),
            )
        )
    layout = base_layout(_whose(student, "total KL per class"), height=140 + 22 * len(part), barmode="stack")
    layout["legend"] = {**layout["legend"], "traceorder": "normal"}
    layout["xaxis"] = dict(title=f"total KL over the class's samples ({KL_UNIT})")
    layout["yaxis"] = dict(title=by_title, autorange="reversed", type="category")
    fig.update_layout(**layout)
    return fig


def _whose(student: str | None, what: str) -> str | None:
    """A chart title saying whose numbers it shows ("kd: total KL per class"); None without a student."""
    return None if student is None else f"{plain(student)}: {what}"


def grouping_param(spec: str) -> float | None:
    """The numeric parameter of a grouping spec (K, P or R), None for a rule without one (`target`)."""
    param = parse_grouping(spec).param
    return None if param is None else float(param)
