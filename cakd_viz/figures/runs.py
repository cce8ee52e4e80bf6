"""Figures of the Tune page: training curves of runs, one run's loss terms, and accuracy over a sweep grid.

Builders take frames read from run folders (``cakd_viz.runs.results``) and return Plotly figures.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from cakd_viz.figures.style import TERM_COLORS, base_layout, student_color
from cakd_viz.figures.text import plain

# metrics.jsonl keys a curve can show, with their axis titles
METRICS = {
    "val_acc": "held-out accuracy",
    "train_acc": "training accuracy",
    "val_loss": "held-out cross-entropy",
    "loss": "total training loss",
    "ce": "training cross-entropy",
}
# distillation terms as the losses name them, with their colours (KD, DKD and CAKD terms)
_TERM_STYLE = {
    "ce": ("CE", "#999999"),
    "kd": ("KD", TERM_COLORS["kl"]),
    "tckd": ("TCKD (= BCD, S = {label})", TERM_COLORS["bcd"]),
    "nckd": ("NCKD (= WCD, S = {label})", TERM_COLORS["wcd"]),
    "bcd": ("BCD", TERM_COLORS["bcd"]),
    "scd": ("SCD", TERM_COLORS["scd"]),
    "wcd": ("WCD", TERM_COLORS["wcd"]),
    "loss": ("total", "#000000"),
}


def curves_figure(
    curves: dict[str, pd.DataFrame], metric: str = "val_acc", *, title: str | None = None
) -> go.Figure:
    """One line per run of ``metric`` against the epoch; ``curves``: run label -> its epoch records."""
    fig = go.Figure()
    for i, (label, frame) in enumerate(curves.items()):
        if frame.empty or metric not in frame:
            continue
        pct = metric.endswith("acc")
        y = frame[metric] * (100 if pct else 1)
        fig.add_trace(
            go.Scatter(
                x=frame["epoch"],
                y=y,
                mode="lines+markers",
                name=plain(label),
                line=dict(color=student_color(i)),
                hovertemplate=f"{plain(label)}<br>epoch %{{x}}<br>%{{y:.4g}}{'%' if pct else ''}<extra></extra>",
            )
        )
    fig.update_layout(**base_layout(title, height=380))
    fig.update_xaxes(title="epoch", dtick=1)
    fig.update_yaxes(title=METRICS.get(metric, metric), ticksuffix="%" if metric.endswith("acc") else "")
    return fig


def terms_figure(steps: pd.DataFrame, *, title: str | None = None) -> go.Figure:
    """One run's loss terms (unweighted, T^2-scaled batch means) and total against the fractional epoch."""
    fig = go.Figure()
    if not steps.empty:
        for key, (label, color) in _TERM_STYLE.items():
            if key in steps:
                dash = "dot" if key == "loss" else "solid"
                fig.add_trace(
                    go.Scatter(
                        x=steps["epoch"],
                        y=steps[key],
                        mode="lines",
                        name=label,
                        line=dict(color=color, dash=dash),
                        hovertemplate=f"{label}<br>epoch %{{x:.2f}}<br>%{{y:.4g}}<extra></extra>",
                    )
                )
    fig.update_layout(**base_layout(title, height=320))
    fig.update_xaxes(title="epoch")
    fig.update_yaxes(title="term (batch mean)", type="log")
    return fig


def sweep_heatmap(
    trials: pd.DataFrame, x: str, y: str | None = None, *, value: str = "best_acc"
) -> go.Figure:
    """Mean ``value`` (e.g. best held-out accuracy) over a sweep's grid; trials that share a cell average.

    ``trials``: one row per trial with its swept values as columns (``results.sweep_frame``). With
    one swept value (``y`` None) a dot per value, with the standard deviation over the trials it
    averages as an error bar; cells without a finished trial stay empty.
    """
    done = trials.dropna(subset=[value]) if value in trials else trials.iloc[0:0]
    keys = [x] if y is None else [y, x]
    table = (
        done.assign(**{k: done[k].astype(str) for k in keys})
        .groupby(keys)[value]
        .agg(["mean", "std", "count"])
    )
    order = {k: _ordered(trials[k]) for k in keys}
    pct = value.endswith("acc")
    scale = 100 if pct else 1
    if y is None:
        means = table["mean"].reindex(order[x]) * scale
        spread = table["std"].reindex(order[x]).fillna(0) * scale
        fig = go.Figure(
            go.Scatter(
                x=[plain(v) for v in order[x]],
                y=means,
                mode="markers+text",
                marker=dict(size=12, color=TERM_COLORS["bcd"]),
                error_y=dict(type="data", array=spread, visible=bool((table["count"] > 1).any())),
                text=[_cell(v, pct) for v in means],
                textposition="middle right",
                customdata=table["count"].reindex(order[x]).fillna(0),
                hovertemplate=f"{x} %{{x}}<br>%{{y:.2f}} ± %{{error_y.array:.2f}} (%{{customdata}} trial(s))<extra></extra>",
            )
        )
        fig.update_layout(**base_layout(None, height=360))
        fig.update_xaxes(title=x, type="category")
        fig.update_yaxes(title=_value_title(value))
        return fig
    grid = table["mean"].unstack(x).reindex(index=order[y], columns=order[x]) * scale
    counts = table["count"].unstack(x).reindex(index=order[y], columns=order[x])
    text = [[_cell(v, pct) for v in row] for row in grid.to_numpy()]
    fig = go.Figure(
        go.Heatmap(
            z=grid.to_numpy(),
            x=[plain(v) for v in order[x]],
            y=[plain(v) for v in order[y]],
            text=text,
            texttemplate="%{text}",
            colorscale="Viridis",
            colorbar=dict(title=_value_title(value)),
            customdata=counts.fillna(0).to_numpy(),
            hovertemplate=f"{x} %{{x}}<br>{y} %{{y}}<br>%{{z:.2f}} (mean of %{{customdata}} trial(s))<extra></extra>",
        )
    )
    fig.update_layout(**base_layout(None, height=120 + 48 * max(len(order[y]), 3)))
    fig.update_xaxes(title=x, type="category")
    fig.update_yaxes(title=y, type="category")
    return fig


def _ordered(values: pd.Series) -> list[str]:
    """Distinct values as strings: numbers in numeric order, anything else in order of appearance."""
    distinct = list(dict.fromkeys(values.tolist()))
    try:
        distinct.sort(key=float)
    except (TypeError, ValueError):
        pass
    return [str(v) for v in distinct]


def _cell(v: float, pct: bool) -> str:
    if v is None or not np.isfinite(v):
        return ""
    return f"{v:.1f}%" if pct else f"{v:.3g}"


def _value_title(value: str) -> str:
    return {"best_acc": "best held-out accuracy (%)", "last_acc": "last held-out accuracy (%)"}.get(
        value, value
    )
