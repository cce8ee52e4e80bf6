"""The HTML report of a page: one offline file with everything the page showed, in order.

A ``Report`` collects what a page drew (headings, text, captions, notes, metric cards, formulas, images,
figures, tables); ``html_report`` writes it as a single HTML file. It stays one offline file and safe to
open: plotly.js is inlined (the only code besides one ``Plotly.newPlot`` call per figure, whose JSON has
``<``, ``>`` and ``&`` escaped), images are PNG data URIs, formulas are text and MathML, nothing refers to
anything outside the file, and every text (class and student names, captions) is HTML-escaped.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import json
from dataclasses import dataclass, field
from itertools import groupby

import pandas as pd

NOTE_KINDS = ("info", "success", "warning", "error")
MAX_ROWS = 500  # rows of a table the report holds (it says how many the page's table has)


@dataclass
class Report:
    """What a page showed, in order, for ``html_report``. Texts are plain text (no markup)."""

    title: str
    context: dict = field(default_factory=dict)
    items: list = field(default_factory=list)

    def heading(self, text: str) -> None:
        self.items.append(("heading", str(text)))

    def text(self, text: str) -> None:
        self.items.append(("text", str(text)))

    def caption(self, text: str) -> None:
        self.items.append(("caption", str(text)))

    def note(self, text: str, kind: str = "info") -> None:
        """A boxed message as the page showed it (``kind``: info, success, warning or error)."""
        self.items.append(("note", str(text), kind if kind in NOTE_KINDS else "info"))

    def metric(self, label: str, value: str, delta: str | None = None) -> None:
        """A metric card; consecutive cards share one row."""
        self.items.append(("metric", str(label), str(value), None if delta in (None, "") else str(delta)))

    def formula(self, text: str, parts: list | None = None) -> None:
        """A formula: ``text`` as plain text; ``parts`` (see ``mathml``) also draw it as MathML."""
        self.items.append(("formula", str(text), parts))

    def image(self, png: bytes, caption: str = "") -> None:
        """A picture (PNG bytes), embedded as a data URI."""
        self.items.append(("image", bytes(png), str(caption)))

    def figure(self, fig, caption: str = "") -> None:
        self.items.append(("figure", fig, str(caption)))

    def table(self, frame: pd.DataFrame, caption: str = "", total: int | None = None) -> None:
        """A table as the page showed it: its cells already formatted as text; its first ``MAX_ROWS``
        rows (``total``: how many the page's table has, when ``frame`` holds only the first ones)."""
        self.items.append(
            ("table", frame.head(MAX_ROWS), str(caption), len(frame) if total is None else total)
        )


_STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}
h1{font-size:1.8em} h2{font-size:1.3em;margin-top:1.6em} .context{color:#555}
table{border-collapse:collapse;font-size:0.85em;margin:0.5em 0} th,td{border:1px solid #ddd;padding:3px 8px;text-align:right}
th{background:#f4f4f4} td:first-child,th:first-child{text-align:left} .caption{color:#666;font-size:0.9em}
.metrics{display:flex;flex-wrap:wrap;gap:12px;margin:0.8em 0}
.metric{border:1px solid #ddd;border-radius:6px;padding:6px 12px;min-width:120px}
.metric .label{color:#555;font-size:0.85em} .metric .value{font-size:1.5em} .metric .delta{color:#555;font-size:0.85em}
.note{border-radius:6px;padding:8px 12px;margin:0.6em 0} .note.info{background:#e8f0fe} .note.success{background:#e6f4ea}
.note.warning{background:#fef7e0} .note.error{background:#fce8e6}
.formula{font-size:1.15em;margin:0.8em 0} .formula math{font-size:1.2em} .formula .text{color:#555;font-size:0.8em}
figure{margin:0.8em 0} img{image-rendering:pixelated} p.text{white-space:pre-line}
"""


def html_report(report: Report, *, generated: str | None = None) -> str:
    """A single HTML file: the report's title, context and items; figures interactive (plotly.js inline,
    no network needed), images as data URIs, every text escaped."""
    from plotly.offline import get_plotlyjs

    when = generated or _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    ctx = " · ".join(f"{_esc(k)}: {_esc(v)}" for k, v in report.context.items())
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        f"<title>{_esc(report.title)}</title><style>{_STYLE}</style>",
        f"<script type='text/javascript'>{get_plotlyjs()}</script></head><body>",
        f"<h1>{_esc(report.title)}</h1>",
        f"<p class='context'>{ctx}</p><p class='caption'>cakd-viz report, {_esc(when)}</p>",
    ]
    # consecutive metric cards share one row; every other item is its own element (n: its place, for ids)
    for cards, run in groupby(enumerate(report.items), key=lambda numbered: numbered[1][0] == "metric"):
        if cards:
            parts.append(f"<div class='metrics'>{''.join(_metric(*item[1:]) for _, item in run)}</div>")
        else:
            parts += [_ITEMS[item[0]](n, *item[1:]) for n, item in run]
    parts.append("</body></html>")
    return "\n".join(parts)


def _esc(value) -> str:
    return html.escape(str(value), quote=True)


def _metric(label: str, value: str, delta: str | None) -> str:
    extra = f"<div class='delta'>{_esc(delta)}</div>" if delta else ""
    return (
        f"<div class='metric'><div class='label'>{_esc(label)}</div>"
        f"<div class='value'>{_esc(value)}</div>{extra}</div>"
    )


def _caption(text: str) -> str:
    return f"<p class='caption'>{_esc(text)}</p>" if text else ""


def _figure(n: int, fig, caption: str) -> str:
    """The figure's own JSON (``<``, ``>``, ``&`` escaped: nothing in it can close the script) drawn by
    plotly.js, which the report's head holds."""
    spec = json.loads(fig.to_json())
    data = _script_json({"data": spec.get("data", []), "layout": spec.get("layout", {})})
    div = f"figure-{n}"
    config = _script_json({"responsive": True, "displaylogo": False})
    return (
        f"<figure><div id='{div}' class='plotly-graph-div'></div><script type='text/javascript'>"
        f"(function(){{var f={data};Plotly.newPlot('{div}',f.data,f.layout,{config});}})();</script>"
        f"{_caption(caption)}</figure>"
    )


def _script_json(value) -> str:
    """JSON that is safe inside a <script> element."""
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=True)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _table(n: int, frame: pd.DataFrame, caption: str, total: int) -> str:
    head = "".join(f"<th>{_esc(c)}</th>" for c in frame.columns)
    rows = "".join(
        "<tr>" + "".join(f"<td>{'' if v is None else _esc(v)}</td>" for v in row) + "</tr>"
        for row in frame.itertuples(index=False)
    )
    body = f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"
    shown = f" (first {len(frame):,} of {total:,} rows)" if total > len(frame) else ""
    return body + (f"<p class='caption'>{_esc(caption)}{_esc(shown)}</p>" if caption or shown else "")


def _image(n: int, png: bytes, caption: str) -> str:
    uri = "data:image/png;base64," + base64.b64encode(png).decode("ascii")
    alt = _esc(caption or "image")
    cap = f"<figcaption class='caption'>{_esc(caption)}</figcaption>" if caption else ""
    return f"<figure><img src='{uri}' alt='{alt}'>{cap}</figure>"


def _formula(n: int, text: str, parts: list | None) -> str:
    if not parts:
        return f"<p class='formula'>{_esc(text)}</p>"
    return f"<div class='formula'>{mathml(parts)}<div class='text'>{_esc(text)}</div></div>"


def mathml(parts: list) -> str:
    """MathML of a formula given as parts: an operator string ("=", "+", "·"), or (name, number) for a
    number with its name under a brace ("p_S" is drawn with S as a subscript)."""
    out = []
    for part in parts:
        if isinstance(part, str):
            out.append(f"<mo>{_esc(part)}</mo>")
            continue
        name, number = part
        base, _, sub = str(name).partition("_")
        label = f"<msub><mi>{_esc(base)}</mi><mi>{_esc(sub)}</mi></msub>" if sub else f"<mi>{_esc(name)}</mi>"
        out.append(
            f"<munder><munder><mn>{_esc(number)}</mn><mo>&#x23DF;</mo></munder><mrow>{label}</mrow></munder>"
        )
    return f"<math display='block'><mrow>{''.join(out)}</mrow></math>"


_ITEMS = {
    "heading": lambda n, text: f"<h2>{_esc(text)}</h2>",
    "text": lambda n, text: f"<p class='text'>{_esc(text)}</p>",
    "caption": lambda n, text: _caption(text),
    "note": lambda n, text, kind: f"<div class='note {kind}'>{_esc(text)}</div>",
    "formula": _formula,
    "image": _image,
    "figure": _figure,
    "table": _table,
}
