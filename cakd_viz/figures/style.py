"""One colour per term everywhere (Okabe-Ito palette, colour-blind safe); term names come from `cakd_viz.terms`."""

from __future__ import annotations

# Okabe & Ito (2008), "Color Universal Design": distinguishable under the common colour-vision deficiencies.
TERM_COLORS = {
    "bcd": "#0072B2",  # blue
    "scd": "#E69F00",  # orange
    "wcd": "#009E73",  # bluish green
    "kl": "#444444",  # dark grey: the total
}
ROLE_COLORS = {
    "teacher": "#000000",
    "student": "#CC79A7",  # reddish purple
    "strong": "#D55E00",  # vermillion: marks the strong set S
    "weak": "#999999",
}
# Extra student colours for side-by-side comparisons (Okabe-Ito, skipping the term colours).
STUDENT_COLORS = ["#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000"]


def student_color(i: int) -> str:
    return STUDENT_COLORS[i % len(STUDENT_COLORS)]


def base_layout(title: str | None = None, **kwargs) -> dict:
    """Common layout: white template, compact margins, legend on top."""
    layout = dict(
        template="plotly_white",
        margin=dict(l=60, r=20, t=60 if title else 30, b=50),
        legend=dict(orientation="h", yanchor="bottom", y=1.02, xanchor="left", x=0),
        font=dict(size=13),
    )
    if title:
        layout["title"] = dict(text=title, x=0, xanchor="left")
    layout.update(kwargs)
    return layout


def log_ticks(lo: float, hi: float) -> tuple[list[float], list[str], list[float]]:
    """Ticks for a log axis showing data from ``lo`` to ``hi`` (> 0): (values, labels, range in log10 units).

    Labels read in order ("0.1, 0.2, 0.5, 1, 2, 5, 10"), never Plotly's minor-tick digits ("100, 5, 2,
    10, ..."): 1-2-5 steps up to 2.5 decades, powers of ten beyond. The range is the data's, padded a
    little, and widened to the nearest ticks when fewer than two would show.
    """
    import math

    lo, hi = float(min(lo, hi)), float(max(lo, hi))
    if not (lo > 0 and math.isfinite(lo) and math.isfinite(hi)):
        lo, hi = 0.1, 10.0
    span = math.log10(hi / lo)
    start, stop = math.log10(lo) - 0.04 * max(span, 0.5), math.log10(hi) + 0.04 * max(span, 0.5)
    steps = (1, 2, 5) if span <= 2.5 else (1,)
    a, b = math.floor(start), math.ceil(stop)
    decimals = (float(f"{m}e{e}") for e in range(a - 1, b + 1) for m in steps)  # 10.0**309 would raise
    candidates = [v for v in decimals if 0 < v < math.inf]  # beyond float's range: inf, or 0 below it
    inside = [v for v in candidates if start <= math.log10(v) <= stop]
    if len(inside) < 2:
        below = [v for v in candidates if math.log10(v) < start]
        above = [v for v in candidates if math.log10(v) > stop]
        if below:
            start = math.log10(below[-1])
        if above and len([v for v in candidates if start <= math.log10(v) <= stop]) < 2:
            stop = math.log10(above[0])
        inside = [v for v in candidates if start - 1e-12 <= math.log10(v) <= stop + 1e-12]
    return inside, [f"{v:.10g}" for v in inside], [start, stop]
