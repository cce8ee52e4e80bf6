"""One colour per term everywhere (Okabe-Ito palette, colour-blind safe) and shared labels."""

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

TERM_LABELS = {
    "bcd": "BCD",
    "scd": "p<sub>S</sub>·SCD",
    "wcd": "p<sub>W</sub>·WCD",
    "kl": "KL",
}
TERM_NAMES = {
    "bcd": "BCD: binary (strong vs weak mass)",
    "scd": "SCD: inside the strong group",
    "wcd": "WCD: inside the weak group",
    "kl": "KL(teacher ‖ student)",
}
# KL is measured in nats (natural logarithm) throughout.
KL_UNIT = "nats"


def term_color(name: str) -> str:
    return TERM_COLORS[name]


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
