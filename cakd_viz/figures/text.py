"""Strings from files (class and student names) shown in Plotly charts as text, never as markup.

Plotly renders a subset of HTML in titles, tick labels, hover text and annotations (<b>, <br>, <a href>);
escaping `&`, `<` and `>` makes it show such a name literally.
"""

from __future__ import annotations

import html


def plain(value) -> str:
    """`value` as a string that Plotly displays literally (no tags, no entities interpreted)."""
    return html.escape(str(value), quote=False)
