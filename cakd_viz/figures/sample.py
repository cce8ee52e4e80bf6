"""Figures for one sample (Sample and Learn pages): probability bars with the strong set, and the terms.

Both take a worked `cakd_viz.learn.Example` and never recompute it. Class names come from files, so they
are escaped before Plotly's HTML-like text renderer sees them.
"""

from __future__ import annotations

import warnings

import numpy as np
import plotly.graph_objects as go

from cakd_viz.figures.style import ROLE_COLORS, STUDENT_COLORS, TERM_COLORS, base_layout
from cakd_viz.learn import Example, shown_classes
from cakd_viz.terms import KL_UNIT, PART, PART_HTML
from cakd_viz.text import html as plain
from cakd_viz.worked import format_number


def input_image(row, *, size: int = 168):
    """One sample's input as a small upscaled PIL image, or None when it is not image-like.

    row: (H, W), (H, W, 1|3|4) or (1|3, H, W), uint8 or float (scaled to its own finite min..max; NaN
    and inf pixels black).
    Nearest-neighbour upscaling keeps the pixels crisp; only this one small image reaches a browser.
    """
    from PIL import Image  # only the app needs Pillow

    a = np.asarray(row)
    if a.ndim == 3 and a.shape[0] in (1, 3) and a.shape[-1] not in (1, 3, 4):
        a = np.moveaxis(a, 0, -1)  # (C, H, W) -> (H, W, C)
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[-1] not in (3, 4)) or not image_like(a.shape[:2]):
        return None
    a = to_uint8(a)
    img = Image.fromarray(np.ascontiguousarray(a))
    scale = max(1, size // max(a.shape[:2]))
    return img.resize((a.shape[1] * scale, a.shape[0] * scale), Image.NEAREST)


def to_uint8(x: np.ndarray, axis: tuple[int, ...] | None = None) -> np.ndarray:
    """Pixels as uint8: uint8 as they are, anything else scaled to 0..255 over its finite values (over
    ``axis``: per image of a stack; None: the whole array), NaN and inf pixels black (an inf pixel would
    stretch the scale)."""
    if x.dtype == np.uint8:
        return x
    x = x.astype(np.float64)
    x[~np.isfinite(x)] = np.nan
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an image of NaN only: no min, all black
        lo = np.nanmin(x, axis=axis, keepdims=True)
        hi = np.nanmax(x, axis=axis, keepdims=True)
        x = (x - lo) / np.where(hi > lo, hi - lo, 1.0) * 255
    return np.nan_to_num(x, nan=0.0).round().astype(np.uint8)


MAX_IMAGE_SIDE, MAX_ASPECT = 4096, 16  # larger or longer-and-thinner arrays are data, not pictures


def image_like(hw: tuple[int, ...]) -> bool:
    """Whether an (H, W) array can be drawn as a picture: at least 2 pixels a side, at most
    ``MAX_IMAGE_SIDE``, and no side more than ``MAX_ASPECT`` times the other (a (3, 5000) array is a
    signal, and a browser would draw it 0 pixels tall)."""
    h, w = int(hw[0]), int(hw[1])
    return 2 <= min(h, w) and max(h, w) <= MAX_IMAGE_SIDE and max(h, w) <= MAX_ASPECT * min(h, w)


def class_label(names, i: int, label: int | None = None) -> str:
    """A class's display name (escaped), marked when it is the true class."""
    name = plain(names[int(i)] if names is not None else int(i))
    return f"{name}  (true)" if label is not None and int(i) == int(label) else name


def probability_bars(
    example: Example,
    class_names=None,
    classes: np.ndarray | None = None,
    *,
    log: bool = False,
    font_size: int = 13,
    student: str = "student",
    other: tuple[str, np.ndarray] | None = None,
) -> go.Figure:
    """Teacher p and student q as horizontal bars for `classes` (default: `shown_classes`), S shaded.

    Rows are ordered as given (teacher's most likely first, at the top). Traces: "teacher p",
    "<student> q" (``student`` names it), with ``other`` = (name, (C,) probabilities) a second student's
    bars (then the two are "<student> (A) q" and "<other> (B) q"), and a legend-only "strong set S"; each
    class of S in view gets a shaded band (a layout shape) and an outlined bar.
    """
    idx = shown_classes(example) if classes is None else np.asarray(classes, dtype=np.int64)
    if other is not None and classes is None:  # also show where the second student puts its mass
        extra = np.argsort(-np.asarray(other[1]), kind="stable")[:3]
        idx = np.concatenate([idx, [i for i in extra if i not in set(idx.tolist())]]).astype(np.int64)
    pos = np.arange(len(idx))
    labels = [class_label(class_names, i, example.label) for i in idx]
    strong = example.strong[idx]
    line = dict(color=[ROLE_COLORS["strong"] if s else "rgba(0,0,0,0)" for s in strong], width=2)
    fig = go.Figure()
    bars = [
        ("teacher", "p", example.p, ROLE_COLORS["teacher"]),
        (student if other is None else f"{student} (A)", "q", example.q, ROLE_COLORS["student"]),
    ]
    if other is not None:
        bars.append((f"{other[0]} (B)", "q", np.asarray(other[1]), STUDENT_COLORS[1]))
    for who, sym, values, color in bars:
        fig.add_trace(
            go.Bar(
                name=f"{plain(who)} {sym}",
                y=pos,
                x=values[idx],
                orientation="h",
                marker=dict(color=color, line=line),
                customdata=np.array(labels, dtype=object),
                hovertemplate=f"%{{customdata}}<br>{plain(who)} {sym} = %{{x:.4g}}<extra></extra>",
            )
        )
    fig.add_trace(
        go.Scatter(
            x=[None],
            y=[None],
            mode="markers",
            name="strong set S",
            marker=dict(symbol="square", size=14, color=ROLE_COLORS["strong"], opacity=0.35),
        )
    )
    band = dict(type="rect", xref="paper", x0=0, x1=1, fillcolor=ROLE_COLORS["strong"], opacity=0.13)
    for p in pos[strong]:
        fig.add_shape(**band, y0=p - 0.5, y1=p + 0.5, line_width=0, layer="below")
    fig.update_layout(
        **base_layout(
            barmode="group",
            height=max(260, 80 + (34 + 10 * (len(bars) - 2)) * len(idx)),
            font=dict(size=font_size),
        ),
        bargap=0.25,
    )
    fig.update_yaxes(tickvals=pos, ticktext=labels, autorange="reversed", title=None)
    fig.update_xaxes(
        title=f"probability at T = {example.temperature:g}"
        + (", standardized logits" if getattr(example, "standardize", False) else "")
        + (" (log scale)" if log else ""),
        type="log" if log else "linear",
        range=None if log else [0, max(1e-9, max(float(v[idx].max()) for _, _, v, _ in bars)) * 1.05],
    )
    return fig


def contribution_bars(
    example,
    *,
    title: str | None = None,
    font_size: int = 13,
    decimals: int | None = None,
    student: str | None = None,
) -> go.Figure:
    """Each contribution as its own bar, and KL as the three stacked: the identity, drawn.

    `example`: anything with `contributions()` and `kl` (a `learn.Example`). One trace per term
    ("bcd", "scd", "wcd" in `meta`), each with two bars: its own column and its segment of "KL".
    decimals: fixed decimals for the value labels (default: 4 significant digits). ``student`` (a name
    from a file, escaped here) titles the chart with whose KL it is, unless ``title`` is given.
    """
    if title is None and student is not None:
        title = f"{plain(student)}: its KL and the three parts"
    parts = example.contributions()
    fig = go.Figure()
    for name, value in parts.items():
        fig.add_trace(
            go.Bar(
                name=PART_HTML[name],
                meta=name,
                x=[PART[name], "KL"],
                y=[value, value],
                marker_color=TERM_COLORS[name],
                text=[format_number(value, decimals), ""],
                textposition="outside",
                hovertemplate=f"{PART[name]} = %{{y:.4g}} {KL_UNIT}<extra></extra>",
                cliponaxis=False,
            )
        )
    fig.add_annotation(
        x="KL",
        y=example.kl,
        text=f"<b>{format_number(example.kl, decimals)}</b>",
        showarrow=False,
        yshift=12,
        font=dict(size=font_size + 1, color=TERM_COLORS["kl"]),
    )
    fig.update_layout(**base_layout(title, barmode="stack", height=340, font=dict(size=font_size)))
    fig.update_layout(legend_traceorder="normal")
    fig.update_yaxes(title=f"contribution to KL ({KL_UNIT})", rangemode="tozero")
    fig.update_xaxes(categoryorder="array", categoryarray=[PART[n] for n in parts] + ["KL"])
    return fig
