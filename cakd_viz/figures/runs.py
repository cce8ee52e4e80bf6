"""Figures of the Tune page: training curves of runs, one run's loss terms, and accuracy over a sweep grid.

Builders take frames read from run folders (``cakd_viz.runs.results``) and return Plotly figures. Per-epoch
numbers are on a run's validation split, or on the test split for a run without one: titles say which
(``held_out_word``), so the two are never shown as one kind of number.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from cakd_viz.figures.style import TERM_COLORS, base_layout, log_ticks, student_color
from cakd_viz.terms import PART, PART_HTML, RAW
from cakd_viz.text import html as plain

# metrics.jsonl keys a curve can show, with their axis titles
METRICS = {
    "val_acc": "held-out accuracy",
    "train_acc": "training accuracy",
    "val_loss": "held-out cross-entropy",
    "loss": "total training loss",
    "ce": "training cross-entropy",
    "val_kl": "held-out mean KL (nats)",
    "val_bcd": "held-out mean BCD (nats)",
    "val_scd_part": "held-out mean p_S·SCD (nats)",
    "val_wcd_part": "held-out mean p_W·WCD (nats)",
    "val_scd": "held-out mean SCD, raw term (nats)",
    "val_wcd": "held-out mean WCD, raw term (nats)",
}
HELD_OUT = ("val_kl", "val_bcd", "val_scd_part", "val_wcd_part", "val_scd", "val_wcd")
"""METRICS keys of the per-epoch held-out decomposition (absent from runs made before it was recorded)."""
# what the held-out curves mean, for captions: the explorer's decomposition of the run's student
HELD_OUT_NOTE = (
    "Held-out decomposition after each epoch: the run's student against its teacher under the run's "
    "grouping, T and logit standardization (loss.standardize), means over the held-out samples in nats, as "
    "the explorer computes them (no loss weights, no T²)."
)
STEP_NOTE = (
    "Training terms per step, as the loss computes them: every KL term (KD, BCD, SCD, WCD, TCKD, NCKD) is "
    "a batch mean times T², before the loss weights (w_b, alpha, beta) and their warm-up; CE is the plain "
    "cross-entropy; 'total' is the weighted sum that is minimised."
)
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


EMPTY = "no finished epoch yet"


def held_out_word(splits) -> str:
    """The word for the per-epoch evaluation split of runs on ``splits`` ("validation" / "test"):
    "validation" or "test" when they agree, else "held-out"."""
    splits = set(splits)
    return next(iter(splits)) if len(splits) == 1 and splits <= {"validation", "test"} else "held-out"


def metric_title(metric: str, splits=("validation",)) -> str:
    """The axis title of ``metric`` for runs evaluated on ``splits``: "validation accuracy", "test
    accuracy", or with mixed splits "held-out accuracy (validation, or test for runs without one)"."""
    text = METRICS.get(metric, metric)
    word = held_out_word(splits)
    if "held-out" not in text:
        return text
    if word == "held-out":
        return f"{text} (validation, or test for runs without one)"
    return text.replace("held-out", word)


def curves_figure(
    curves: dict[str, pd.DataFrame],
    metric: str = "val_acc",
    *,
    splits=("validation",),
) -> go.Figure:
    """One line per run of ``metric`` against the epoch; ``curves``: run label -> its epoch records;
    ``splits``: the evaluation splits of those runs (for the axis title). Without a single finished
    epoch the figure says so instead of drawing empty axes."""
    fig = go.Figure()
    for i, (label, frame) in enumerate(curves.items()):
        if frame.empty or metric not in frame:
            continue
        pct = metric.endswith("acc")
        fig.add_trace(_line(frame, metric, plain(label), student_color(i), pct=pct, unit="%" if pct else ""))
    fig.update_layout(**base_layout(height=380))
    if not fig.data:  # no axes (Plotly's empty ones run from -1), one line saying that there is nothing yet
        fig.update_xaxes(visible=False)
        fig.update_yaxes(visible=False)
        fig.add_annotation(text=EMPTY, showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper")
        return fig
    fig.update_xaxes(title="epoch", dtick=1)
    fig.update_yaxes(title=metric_title(metric, splits), ticksuffix="%" if metric.endswith("acc") else "")
    return fig


def terms_figure(steps: pd.DataFrame) -> go.Figure:
    """One run's loss terms (unweighted, T^2-scaled batch means) and total against the fractional epoch."""
    fig = go.Figure()
    for key, (label, color) in _TERM_STYLE.items() if not steps.empty else ():
        if key in steps:
            style = dict(dash="dot" if key == "loss" else "solid", mode="lines", epoch="%{x:.2f}", unit="")
            fig.add_trace(_line(steps, key, label, color, **style))
    fig.update_layout(**base_layout(height=320))
    fig.update_xaxes(title="epoch")
    values = steps[[k for k in _TERM_STYLE if k in steps]].to_numpy(dtype=float)  # (0, k) without steps
    positive = values[values > 0]
    if positive.size:
        ticks, labels, span = log_ticks(float(positive.min()), float(positive.max()))
        fig.update_yaxes(tickvals=ticks, ticktext=labels, range=span)
    fig.update_yaxes(title="batch mean: KL terms × T², unweighted", type="log")
    return fig


def held_out_terms_figure(epochs: pd.DataFrame, *, raw: bool = False) -> go.Figure:
    """One run's held-out decomposition against the epoch: the weighted parts stacked up to the KL
    (``raw`` False), or the raw terms BCD, SCD, WCD as lines (``raw`` True). ``epochs``: its epoch records
    with the ``HELD_OUT`` fields; epochs without them are left out."""
    fig = go.Figure()
    have = epochs.dropna(subset=[k for k in ("val_kl", "val_bcd") if k in epochs])
    if not have.empty and "val_kl" in have:
        for term in ("bcd", "scd", "wcd"):
            key = f"val_{term}" if raw or term == "bcd" else f"val_{term}_part"
            stacked = {} if raw else dict(stackgroup="parts", name_html=PART_HTML[term])
            if key in have:
                fig.add_trace(_line(have, key, (RAW if raw else PART)[term], TERM_COLORS[term], **stacked))
        if not raw:
            fig.add_trace(_line(have, "val_kl", "KL (sum of the parts)", TERM_COLORS["kl"], dash="dot"))
    fig.update_layout(**base_layout(height=320))
    fig.update_xaxes(title="epoch", dtick=1)
    fig.update_yaxes(
        title="held-out mean, raw term (nats)" if raw else "held-out mean part of the KL (nats)",
        rangemode="tozero",
    )
    return fig


def _line(
    frame, key, name, color, *, dash=None, stackgroup=None, name_html=None, pct=False, **style
) -> go.Scatter:
    """``frame[key]`` (in percent with ``pct``) against the epoch; ``style``: mode, the hover's epoch
    format and unit (defaults: lines and markers, "%{x}", " nats")."""
    style = {"mode": "lines+markers", "epoch": "%{x}", "unit": " nats"} | style
    return go.Scatter(
        x=frame["epoch"],
        y=frame[key] * (100 if pct else 1),
        mode=style["mode"],
        name=name_html or name,
        stackgroup=stackgroup,
        line=dict(color=color, dash=dash),
        hovertemplate=f"{name}<br>epoch {style['epoch']}<br>%{{y:.4g}}{style['unit']}<extra></extra>",
    )


MIN_COLOUR_SPAN = 5.0  # percentage points: the least a sweep heatmap's colour scale spans
SEED_SPANS = 4.0  # ... and at least this many standard deviations between seeds of one cell


def varied_columns(trials: pd.DataFrame, swept: list[str]) -> list[str]:
    """The swept columns whose values differ between trials (the heatmap's candidate axes)."""
    return [k for k in swept if k in trials and trials[k].astype(str).nunique() > 1]


def default_axes(trials: pd.DataFrame, swept: list[str]) -> tuple[str | None, str | None]:
    """(across, down) for a sweep heatmap: the first two varied columns other than the seed (which is
    averaged over); a seed-only sweep gets the seed across."""
    varied = varied_columns(trials, swept)
    axes = [k for k in varied if k != "seed"] or varied
    return (axes[0] if axes else None), (axes[1] if len(axes) > 1 else None)


def cell_table(trials: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Trials grouped by ``keys`` (as strings): mean, std (NaN for one trial), count of their best
    held-out accuracy (``best_acc``), over finished trials."""
    done = trials.dropna(subset=["best_acc"]) if "best_acc" in trials else trials.iloc[0:0]
    return (
        done.assign(**{k: done[k].astype(str) for k in keys})
        .groupby(keys)["best_acc"]
        .agg(["mean", "std", "count"])
    )


def colour_range(cells: pd.DataFrame) -> tuple[float, float, str]:
    """(zmin, zmax, why) of a heatmap's colour scale, in percent: centred on the cells' means and spanning
    the widest of their spread, SEED_SPANS pooled standard deviations between seeds, and MIN_COLOUR_SPAN
    points, so that seed noise alone cannot fill the scale; kept inside 0-100."""
    means = cells["mean"].to_numpy(dtype=float) * 100
    means = means[np.isfinite(means)]
    if means.size == 0:
        return 0.0, 100.0, "no finished trial yet"
    stds = cells["std"].to_numpy(dtype=float) * 100
    counts = cells["count"].to_numpy(dtype=float)
    ok = np.isfinite(stds) & (counts > 1)
    pooled = (
        float(np.sqrt(np.sum(stds[ok] ** 2 * (counts[ok] - 1)) / np.sum(counts[ok] - 1))) if ok.any() else 0.0
    )
    spread = float(means.max() - means.min())
    span = max(spread, SEED_SPANS * pooled, MIN_COLOUR_SPAN)
    centre = float(means.max() + means.min()) / 2
    lo, hi = centre - span / 2, centre + span / 2
    if hi > 100:
        lo, hi = lo - (hi - 100), 100.0
    if lo < 0:
        lo, hi = 0.0, min(100.0, hi - lo)
    if span == spread:
        why = "the cells' own spread"
    elif span == MIN_COLOUR_SPAN:
        why = f"widened to {MIN_COLOUR_SPAN:g} points, the least this chart spans"
    else:
        why = f"widened to {SEED_SPANS:g} × the seeds' standard deviation ({pooled:.2f} points)"
    return lo, hi, why


def sweep_heatmap(
    trials: pd.DataFrame, x: str, y: str | None = None, *, split: str = "validation"
) -> go.Figure:
    """Mean best held-out accuracy (``best_acc``) over a sweep's grid; trials that share a cell (e.g.
    seeds) are averaged, their standard deviation shown beside the mean.

    ``trials``: one row per trial with its swept values as columns (``results.sweep_frame``), all on
    the evaluation ``split`` ("validation", or "test" for trials without one: the titles say so). With
    one swept value (``y`` None) a dot per value with the standard deviation as an error bar; with two,
    a heatmap whose colour range is ``colour_range`` (stated on the colour bar). Cells without a
    finished trial stay empty.
    """
    keys = [x] if y is None else [y, x]
    table = cell_table(trials, keys)
    order = {k: _ordered(trials[k]) for k in keys}
    title = f"best {'validation' if split == 'validation' else 'test (no validation split)'} accuracy (%)"

    def cells(column: str) -> pd.Series | pd.DataFrame:  # the column on the chart's grid: (x,) or (y, x)
        if y is None:
            return table[column].reindex(order[x])
        return table[column].unstack(x).reindex(index=order[y], columns=order[x])

    means, spread, counts = cells("mean") * 100, cells("std") * 100, cells("count").fillna(0)
    if y is None:
        spread = spread.fillna(0)
        fig = go.Figure(
            go.Scatter(
                x=[plain(v) for v in order[x]],
                y=means,
                mode="markers+text",
                marker=dict(size=12, color=TERM_COLORS["bcd"]),
                error_y=dict(type="data", array=spread, visible=bool((table["count"] > 1).any())),
                text=[_cell(m, s, n) for m, s, n in zip(means, spread, counts, strict=True)],
                textposition="middle right",
                customdata=counts,
                hovertemplate=f"{x} %{{x}}<br>%{{y:.2f}} ± %{{error_y.array:.2f}} (%{{customdata}} trial(s))<extra></extra>",
            )
        )
        fig.update_layout(**base_layout(height=360))
        fig.update_xaxes(title=x, type="category")
        fig.update_yaxes(title=title)
        return fig
    text = [
        [_cell(m, s, n) for m, s, n in zip(rm, rs, rn, strict=True)]
        for rm, rs, rn in zip(means.to_numpy(), spread.to_numpy(), counts.to_numpy(), strict=True)
    ]
    lo, hi, _ = colour_range(table)
    custom = np.stack([np.nan_to_num(spread.to_numpy(), nan=0.0), counts.to_numpy()], axis=-1)
    fig = go.Figure(
        go.Heatmap(
            z=means.to_numpy(),
            x=[plain(v) for v in order[x]],
            y=[plain(v) for v in order[y]],
            text=text,
            texttemplate="%{text}",
            colorscale="Viridis",
            zmin=lo,
            zmax=hi,
            colorbar=dict(title=f"{title}<br>colours {lo:.1f}–{hi:.1f}%", ticksuffix="%"),
            customdata=custom,
            hovertemplate=(
                f"{x} %{{x}}<br>{y} %{{y}}<br>%{{z:.2f}} ± %{{customdata[0]:.2f}} "
                "(mean ± standard deviation of %{customdata[1]} trial(s))<extra></extra>"
            ),
        )
    )
    fig.update_layout(**base_layout(height=140 + 56 * max(len(order[y]), 3)))
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


def _cell(mean: float, std: float, count: float) -> str:
    """A cell's text: "81.2% ± 0.6 (n=3)"; the spread only when several trials share the cell."""
    if mean is None or not np.isfinite(mean):
        return ""
    text = f"{mean:.1f}%"
    if count > 1 and np.isfinite(std):
        text += f" ± {std:.1f} (n={int(count)})"
    return text
