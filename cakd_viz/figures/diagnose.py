"""Figures for the Diagnose page, drawn from the tables of `cakd_viz.diagnose` (never from raw logits)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from cakd_viz.decomposition import TERMS
from cakd_viz.figures.style import TERM_COLORS, base_layout
from cakd_viz.terms import KL_UNIT, PART_HTML
from cakd_viz.text import html as _escape


def class_failure_chart(
    classes: pd.DataFrame,
    *,
    top: int = 25,
    normalize: bool = True,
    student: str | None = None,
) -> go.Figure:
    """Per class, the KL of its failures split by term: one horizontal stacked bar per class.

    `classes`: a `diagnose.class_failures` table (its first `top` rows are drawn, in order). normalize:
    show shares of the class's failure KL (each bar sums to 1) instead of summed nats. One trace per
    term (`meta` is the term name). ``student`` (escaped here) titles it with whose failures they are.
    """
    title = None if student is None else f"{_escape(student)}: each class's failure KL by part"
    rows = classes.head(top)
    labels = [f"{_escape(n)}  (n={int(k)})" for n, k in zip(rows["name"], rows["failures"], strict=True)]
    pos = np.arange(len(rows))
    fig = go.Figure()
    for t in TERMS:
        x = rows[f"share_{t}"] if normalize else rows[f"{t}_total"]
        fig.add_trace(
            go.Bar(
                name=PART_HTML[t],
                meta=t,
                y=pos,
                x=np.nan_to_num(x.to_numpy(dtype=float)),
                orientation="h",
                marker_color=TERM_COLORS[t],
                customdata=np.array(labels, dtype=object),
                hovertemplate="%{customdata}<br>"
                + PART_HTML[t]
                + (": %{x:.1%}" if normalize else f": %{{x:.4g}} {KL_UNIT}")
                + "<extra></extra>",
            )
        )
    fig.update_layout(**base_layout(title, barmode="stack", height=max(260, 90 + 24 * len(rows))))
    fig.update_layout(legend_traceorder="normal")
    fig.update_yaxes(tickvals=pos, ticktext=labels, autorange="reversed")
    fig.update_xaxes(
        title="share of the failures' KL" if normalize else f"summed KL over the failures ({KL_UNIT})",
        range=[0, 1] if normalize else None,
        tickformat=".0%" if normalize else None,
    )
    return fig


def confusion_chart(pairs: pd.DataFrame, *, top: int = 20, student: str | None = None) -> go.Figure:
    """The most frequent confusions (reference class -> student's prediction) as horizontal bars.

    `pairs`: a `diagnose.confusion_pairs` table. Bars are coloured by the pair's dominant term (one trace
    per term present, `meta` = term); the text beside a bar says whether the two classes share a
    correlation family and how often the prediction lay in the strong set S, when those columns exist.
    ``student`` (escaped here) titles it with whose confusions they are.
    """
    title = None if student is None else f"{_escape(student)}: its most frequent confusions"
    rows = pairs.head(top).reset_index(drop=True)
    labels = [
        f"{_escape(a)} → {_escape(b)}" for a, b in zip(rows["true_name"], rows["predicted_name"], strict=True)
    ]
    notes = []
    for _, r in rows.iterrows():
        bits = []
        if "same_family" in rows and bool(r["same_family"]):
            bits.append("same family")
        if "in_strong_rate" in rows:
            bits.append(f"in S {r['in_strong_rate']:.0%}")
        notes.append(", ".join(bits))
    pos = np.arange(len(rows))
    fig = go.Figure()
    for t in TERMS:
        sel = (rows["dominant"] == t).to_numpy()
        if not sel.any():
            continue
        fig.add_trace(
            go.Bar(
                name=f"{PART_HTML[t]} dominates",
                meta=t,
                y=pos[sel],
                x=rows["count"][sel],
                orientation="h",
                marker_color=TERM_COLORS[t],
                width=0.8,
                text=[notes[i] for i in np.flatnonzero(sel)],
                textposition="outside",
                cliponaxis=False,
                customdata=np.array([labels[i] for i in np.flatnonzero(sel)], dtype=object),
                hovertemplate="%{customdata}: %{x} samples<extra></extra>",
            )
        )
    layout = base_layout(title, height=max(240, 90 + 24 * len(rows)), barmode="overlay")
    layout["margin"]["r"] = 150 if any(notes) else 20  # room for the notes beside the longest bar
    fig.update_layout(**layout)
    fig.update_yaxes(tickvals=pos, ticktext=labels, autorange="reversed")
    fig.update_xaxes(title="samples", rangemode="tozero")
    return fig
