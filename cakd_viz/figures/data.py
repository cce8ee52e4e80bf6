"""Figures of the Data page: the models' accuracies and agreement, the class balance, example inputs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from cakd_viz.figures.sample import image_like, to_uint8
from cakd_viz.figures.style import ROLE_COLORS, base_layout, student_color
from cakd_viz.text import html as plain


def models_table(summary: dict) -> pd.DataFrame:
    """One row per model (teacher, then each student) from `Bundle.summary()`: accuracy, agreement, dtype."""

    def row(model: str, role: str, m: dict, agreement: float) -> dict:
        return dict(model=model, role=role, accuracy=m["accuracy"], agreement=agreement, dtype=m["dtype"])

    students = [row(name, "student", m, m["agreement"]) for name, m in summary["students"].items()]
    return pd.DataFrame([row("teacher", "teacher", summary["teacher"], 1.0), *students])


def accuracy_figure(models: pd.DataFrame) -> go.Figure:
    """Grouped bars: top-1 accuracy against the labels and agreement with the teacher's top-1, per model."""
    names = [plain(m) for m in models["model"]]
    colors = [
        ROLE_COLORS["teacher"] if r == "teacher" else student_color(i - 1)
        for i, r in enumerate(models["role"])
    ]
    fig = go.Figure()
    if models["accuracy"].notna().any():
        fig.add_trace(
            go.Bar(
                name="accuracy (top-1 vs labels)",
                x=names,
                y=models["accuracy"].astype(float) * 100,
                marker=dict(color=colors),
                text=[_pct(v) for v in models["accuracy"]],
                textposition="outside",
                hovertemplate="%{x}: %{y:.2f}% of samples predicted right<extra></extra>",
            )
        )
    students = models[models["role"] == "student"]
    fig.add_trace(
        go.Bar(
            name="agreement with the teacher's top-1",
            x=[plain(m) for m in students["model"]],
            y=students["agreement"] * 100,
            marker=dict(color=colors[1:], pattern=dict(shape="/")),
            text=[_pct(v) for v in students["agreement"]],
            textposition="outside",
            hovertemplate="%{x}: same top-1 class as the teacher on %{y:.2f}% of samples<extra></extra>",
        )
    )
    fig.update_layout(**base_layout(height=320, barmode="group"))
    fig.update_yaxes(title="% of samples", range=[0, 112], ticksuffix="%", tickvals=[0, 20, 40, 60, 80, 100])
    fig.update_xaxes(title=None)
    return fig


def class_count_figure(counts: np.ndarray, class_names: list[str]) -> go.Figure:
    """Bars of how many samples each class has (counts: (C,)); for C > 200 a histogram of the counts."""
    fig = go.Figure()
    if len(counts) <= 200:
        fig.add_trace(
            go.Bar(
                x=[plain(n) for n in class_names],
                y=counts,
                marker_color=ROLE_COLORS["weak"],
                hovertemplate="%{x}: %{y:,} samples<extra></extra>",
            )
        )
        fig.update_xaxes(title="class", type="category", dtick=1, tickangle=-90 if len(counts) > 20 else 0)
        fig.update_yaxes(title="samples per class")
    else:
        hist, edges = np.histogram(counts, bins=40)
        fig.add_trace(
            go.Bar(
                x=(edges[:-1] + edges[1:]) / 2,
                y=hist,
                width=np.diff(edges),
                marker_color=ROLE_COLORS["weak"],
                hovertemplate="about %{x:.0f} samples: %{y:,} classes<extra></extra>",
            )
        )
        fig.update_xaxes(title="samples in the class")
        fig.update_yaxes(title="classes")
    longest = max((len(str(n)) for n in class_names), default=1) if len(counts) > 20 else 1
    fig.update_layout(**base_layout(height=260 + 7 * min(longest, 30), showlegend=False))
    return fig


def as_images(inputs: np.ndarray) -> np.ndarray | None:
    """Inputs (k, ...) as displayable uint8 images (k, H, W, 3), or None when they are not images.

    Accepts (k, H, W), (k, H, W, 1|3|4) and (k, 1|3, H, W); floats are scaled per image to 0..255 over
    its finite pixels (NaN and inf pixels black).
    """
    x = np.asarray(inputs)
    if x.ndim == 4 and x.shape[1] in (1, 3) and x.shape[-1] not in (1, 3, 4):
        x = x.transpose(0, 2, 3, 1)  # (k, C, H, W) -> (k, H, W, C)
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4 or x.shape[-1] not in (1, 3, 4) or min(x.shape[1:3]) < 4 or not image_like(x.shape[1:3]):
        return None
    x = x[..., :3]
    x = to_uint8(x, axis=(1, 2, 3))
    if x.shape[-1] == 1:
        x = np.repeat(x, 3, axis=-1)
    return x


def enlarge(images: np.ndarray, tile: int = 72) -> np.ndarray:
    """Images (k, H, W, 3) uint8 (from `as_images`) enlarged by whole pixels (nearest neighbour) to about
    ``tile`` pixels, so that 8x8 or 32x32 inputs are big enough to see."""
    factor = max(1, int(np.ceil(tile / max(images.shape[1:3]))))
    return images.repeat(factor, axis=1).repeat(factor, axis=2)


def image_grid_figure(images: np.ndarray, captions: list[str], *, cols: int = 8, tile: int = 72) -> go.Figure:
    """Example inputs in a grid with one caption per tile. images: (k, H, W, 3) uint8 from `as_images`.

    Small images (8x8 digits, 32x32 glyphs) are enlarged by whole pixels (nearest neighbour) to about
    `tile` pixels, so every tile is big enough to see and to caption. A caption's first word (e.g. "#12")
    and the rest (the class) go on two lines. The grid travels as one PNG data URI (``png_data_uri``):
    small, and a saved figure (the HTML report) needs nothing outside itself.
    """
    images = enlarge(images, tile)  # (k, H*f, W*f, 3)
    k, h, w, _ = images.shape
    rows = -(-k // cols)
    pad, cap = 8, 32  # pixels between tiles; blank pixels under each tile for its caption (two lines)
    grid = np.full((rows * (h + pad + cap), cols * (w + pad), 3), 255, dtype=np.uint8)
    annotations = []
    under = dict(showarrow=False, font=dict(size=10), xref="x", yref="y")  # a caption under its tile
    for i in range(k):
        r, c = divmod(i, cols)
        y0, x0 = r * (h + pad + cap), c * (w + pad)
        grid[y0 : y0 + h, x0 : x0 + w] = images[i]
        text = "<br>".join(plain(part[:18]) for part in str(captions[i]).split(" ", 1))
        annotations.append(dict(under, x=x0 + w / 2, y=y0 + h + cap / 2 + 1, text=text))
    fig = go.Figure(go.Image(source=png_data_uri(grid), hoverinfo="skip"))
    fig.update_layout(
        **base_layout(height=grid.shape[0] + 20, margin=dict(l=0, r=0, t=10, b=0)), annotations=annotations
    )
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False, scaleanchor="x")
    return fig


def png_data_uri(pixels: np.ndarray) -> str:
    """An (H, W, 3) uint8 picture as a "data:image/png;base64,..." URI."""
    import base64
    import io

    from PIL import Image  # only the app needs Pillow

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(pixels, dtype=np.uint8)).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _pct(v) -> str:
    return "" if v is None or v != v else f"{float(v):.1%}"
