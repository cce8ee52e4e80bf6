"""Figures of classes through training (``cakd_viz.runs.trajectory``): per class and kept epoch, a run's
held-out terms as a heatmap with the teacher's families together; several runs side by side on one colour
scale; the difference of two runs, centred on 0.

Builders take a computed ``Trajectory`` (or its arrays) and draw at most a (C x epochs) grid: no
per-sample payload reaches the browser.
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from cakd_viz.figures.style import base_layout
from cakd_viz.text import html as plain

TRAJECTORY_TERMS = {
    "bcd_mean": "BCD",
    "scd_mean": "p_S·SCD",
    "wcd_mean": "p_W·WCD",
    "kl_mean": "KL",
    "accuracy": "accuracy",
}
"""The per-class heatmap's choices: the weighted parts that add up to the KL, the KL, the accuracy."""
LABELLED_ROWS = 120  # above this many classes, every k-th row is labelled so that labels stay legible
COLUMN = "%{customdata[2]}"  # a hovered cell's column ("epoch 3"): its x is the column's position


def term_unit(column: str, *, delta: bool = False) -> str:
    """The unit a trajectory column is drawn in: "nats", or "%" for rates ("% points" for differences)."""
    rate = column in ("accuracy", "agreement")
    return ("% points" if delta else "%") if rate else "nats"


def class_heatmap(
    z: np.ndarray,
    columns: list[str],
    names: list[str],
    family: np.ndarray,
    *,
    colorbar: str,
    diverging: bool = False,
    zmin: float | None = None,
    zmax: float | None = None,
    hover: str = COLUMN,
) -> go.Figure:
    """Classes (rows, top to bottom, in the given order) x ``columns``: ``z`` (C, K) as colours with a
    colour bar titled ``colorbar``; lines between ``family`` (C,) blocks. NaN cells stay empty (a
    class without samples, a gap column). ``diverging``: centred on 0 (a difference)."""
    fig = go.Figure(_heat(z, columns, names, family, hover=hover))
    fig.data[0].update(
        colorscale="RdBu_r" if diverging else "Viridis",
        zmid=0.0 if diverging else None,
        zmin=zmin,
        zmax=zmax,
        colorbar=dict(title=colorbar),
    )
    _class_axes(fig, names, family, columns)
    return fig


def _heat(z, columns, names, family, *, hover: str, **kwargs) -> go.Heatmap:
    c, k = len(names), len(columns)
    custom = np.empty((c, k, 3), dtype=object)  # per cell: its class's name and family, its column
    custom[:, :, 0] = np.asarray([plain(n) for n in names], dtype=object)[:, None]
    custom[:, :, 1] = family.astype(object)[:, None]
    custom[:, :, 2] = np.asarray([plain(x) for x in columns], dtype=object)[None, :]
    return go.Heatmap(
        z=np.asarray(z, dtype=float),
        x=list(range(k)),
        y=list(range(c)),
        customdata=custom,
        hovertemplate=f"%{{customdata[0]}} (family %{{customdata[1]}})<br>{hover}: %{{z:.4g}}<extra></extra>",
        **kwargs,
    )


def _class_axes(fig: go.Figure, names: list[str], family: np.ndarray, columns: list[str], col=None) -> None:
    c = len(names)
    step = max(1, -(-c // LABELLED_ROWS))
    ticks = list(range(0, c, step))
    fig.update_yaxes(
        tickvals=ticks,
        ticktext=[plain(names[i]) for i in ticks],
        autorange="reversed",
        tickfont=dict(size=11),
        showgrid=False,
        col=col,
    )
    fig.update_xaxes(
        tickvals=list(range(len(columns))), ticktext=[plain(x) for x in columns], showgrid=False, col=col
    )
    for i in np.flatnonzero(np.diff(family) != 0):  # a line between two families
        fig.add_hline(y=i + 0.5, line=dict(color="white", width=2), col=col)
    fig.update_layout(**base_layout(height=max(320, 110 + 14 * c)))


def trajectory_heatmap(
    t, column: str, names: list[str], *, extra: dict[str, np.ndarray] | None = None
) -> go.Figure:
    """One run's ``column`` (a key of TRAJECTORY_TERMS) per class and kept epoch, classes in families
    order (``t``: a ``runs.trajectory.Trajectory``; ``names``: display names by class index). ``extra``:
    more columns beside the epochs, label -> (C,) values by class index (e.g. a bundle's students),
    after an empty gap column."""
    scale = 100.0 if term_unit(column) == "%" else 1.0
    z = t.term(column)[t.order] * scale
    columns = [f"epoch {e}" for e in t.epochs]
    if extra:
        z = np.hstack([z, np.full((len(z), 1), np.nan)] + [v[t.order, None] * scale for v in extra.values()])
        columns += [" "] + list(extra)
    return class_heatmap(
        z,
        columns,
        [names[i] for i in t.order],
        t.family[t.order],
        colorbar=_term_title(column),
        zmin=0.0,  # every term is >= 0; Plotly uses zmin only with zmax
        zmax=100.0 if scale == 100.0 else _top(z),
        hover=f"{COLUMN}<br>{TRAJECTORY_TERMS.get(column, column)}",
    )


def trajectories_side_by_side(panels: dict, column: str, names: list[str]) -> go.Figure:
    """Several runs' trajectories (label -> Trajectory, same classes), one panel each, one colour scale;
    rows in the first run's families order."""
    from plotly.subplots import make_subplots

    first = next(iter(panels.values()))
    order, family = first.order, first.family[first.order]
    scale = 100.0 if term_unit(column) == "%" else 1.0
    values = {label: t.term(column)[order] * scale for label, t in panels.items()}
    high = 100.0 if scale == 100.0 else max(_top(v) for v in values.values())
    titles = [plain(label) for label in panels]
    fig = make_subplots(1, len(panels), shared_yaxes=True, horizontal_spacing=0.02, subplot_titles=titles)
    shown = [names[i] for i in order]
    for k, (label, t) in enumerate(panels.items(), start=1):
        columns = [f"epoch {e}" for e in t.epochs]
        fig.add_trace(_heat(values[label], columns, shown, family, hover=COLUMN, coloraxis="coloraxis"), 1, k)
        _class_axes(fig, shown, family, columns, col=k)
    fig.update_layout(
        coloraxis=dict(colorscale="Viridis", cmin=0.0, cmax=high, colorbar=dict(title=_term_title(column)))
    )
    return fig


def _term_title(column: str, *, delta: str = "") -> str:
    label = TRAJECTORY_TERMS.get(column, column)
    head = label if column == "accuracy" else f"mean {label}"
    return f"{head}{delta}<br>({term_unit(column, delta=bool(delta))})"


def difference_heatmap(first, epochs, delta: np.ndarray, column: str, names: list[str]) -> go.Figure:
    """Run B minus run A per class and common epoch (``runs.trajectory.difference``: ``epochs``, ``delta``
    (C, E) by class index), rows in ``first``'s (A's) families order, colours centred on 0."""
    scale = 100.0 if term_unit(column) == "%" else 1.0
    z = delta[first.order] * scale
    lim = _top(np.abs(z))
    return class_heatmap(
        z,
        [f"epoch {e}" for e in epochs],
        [names[i] for i in first.order],
        first.family[first.order],
        colorbar=_term_title(column, delta=", B − A"),
        diverging=True,
        zmin=-lim,
        zmax=lim,
        hover=f"{COLUMN}<br>{TRAJECTORY_TERMS.get(column, column)}, B − A",
    )


def _top(z: np.ndarray) -> float:
    """The colour scale's top for values >= 0: their largest finite value (1 when there is none)."""
    finite = np.asarray(z, dtype=float)
    finite = finite[np.isfinite(finite)]
    return float(finite.max()) if finite.size and finite.max() > 0 else 1.0
