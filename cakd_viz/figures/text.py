"""Strings from files (class and student names) shown in Plotly charts as text, never as markup.

Plotly renders a subset of HTML in titles, tick labels, hover text and annotations (<b>, <br>, <a href>);
escaping `&`, `<` and `>` makes it show such a name literally.
"""

from __future__ import annotations

from cakd_viz.text import html as plain  # noqa: F401 (the figures' name for it)
