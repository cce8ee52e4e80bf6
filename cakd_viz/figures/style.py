"""One colour per term everywhere (Okabe-Ito palette, colour-blind safe); term names come from `cakd_viz.terms`."""

from __future__ import annotations

from cakd_viz.terms import KL_UNIT, MEANING, PART_HTML

__all__ = [
    "KL_UNIT",
    "ROLE_COLORS",
    "TERM_COLORS",
    "TERM_LABELS",
    "TERM_NAMES",
    "base_layout",
    "student_color",
]

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

TERM_LABELS = PART_HTML  # Plotly legends: the weighted parts that add up to the KL
TERM_NAMES = MEANING


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
