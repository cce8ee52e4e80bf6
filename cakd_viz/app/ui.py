"""How pages show things, so that every page reads and exports alike.

``table`` shows a library table with headings in words and units (``cakd_viz.terms.heading``), number
formats and column widths that fit the values (nothing clipped), and a download of the table as CSV
or Parquet carrying the view's context. ``chart`` draws a Plotly figure. Both also record what they
showed in the page's ``Report``; ``finish`` (the last call of a page) fills the sidebar's "Export this
view" box with a self-contained HTML report and a "reproduce in Python" snippet.
"""

from __future__ import annotations

import math
import re

import pandas as pd
import streamlit as st

from cakd_viz import export
from cakd_viz.terms import heading, unit

_K_REPORT = "_report"
_K_EXPORT_BOX = "_export_box"
_K_BANNER = "_banner_box"  # under the page title: a running pass's progress bar (notice_box)
# column width = characters x CHAR_PX + PAD_PX: digits of the 14 px table font are at most 7.7 px wide
CHAR_PX, PAD_PX, HEADER_CAP_PX = 8.2, 28, 220
INDEX_COLUMNS = ("index", "class", "true", "predicted")  # identifiers: no thousands separator


def start(context: dict, box) -> None:
    """Begin a page run (called by the sidebar): a fresh report with the view's context, and the
    sidebar container that ``finish`` fills."""
    st.session_state[_K_REPORT] = export.Report(title="cakd-viz", context=dict(context))
    st.session_state[_K_EXPORT_BOX] = box
    st.session_state[_K_BANNER] = None


def report() -> export.Report:
    rep = st.session_state.get(_K_REPORT)
    if rep is None:
        rep = st.session_state[_K_REPORT] = export.Report(title="cakd-viz")
    return rep


def context(**extra) -> dict:
    """The view's context (bundle, student, grouping, T, ...) with ``extra`` entries added or replaced
    (None removes one)."""
    out = dict(report().context)
    for k, v in extra.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = v
    return out


def title(text: str, question: str) -> None:
    """The page's title and the question it answers (one line of markdown)."""
    st.title(text)
    st.markdown(question)
    st.session_state[_K_BANNER] = st.empty()
    rep = report()
    rep.title = f"cakd-viz · {text}"
    rep.text(plain_text(question))


def notice_box():
    """The placeholder ``title`` leaves under the page title (None before it): where a pass shows its
    progress while the page waits for it."""
    return st.session_state.get(_K_BANNER)


def plain_text(markdown: str) -> str:
    """Markdown with inline LaTeX as plain text for the HTML report: "$\\mathrm{BCD} + p_S\\,\\mathrm{SCD}$"
    -> "BCD + p_S SCD"; bold markers dropped."""

    def math(m: re.Match) -> str:
        body = re.sub(r"\\mathrm\{([^}]*)\}", r"\1", m.group(1))
        return re.sub(r"\\[,;!]", " ", body).replace("\\", "")

    return re.sub(r"\$([^$]*)\$", math, markdown).replace("**", "")


def subheader(text: str) -> None:
    st.subheader(text)
    report().heading(text)


def chart(fig, caption: str | None = None, *, key: str | None = None, **kwargs) -> None:
    """Draw ``fig`` full width (with ``caption`` under it) and record both in the report."""
    st.plotly_chart(fig, width="stretch", key=key, **kwargs)
    if caption:
        st.caption(caption)
    report().figure(fig, caption or "")


# -- tables ------------------------------------------------------------------------------------------


def js_precision(value: float, digits: int = 4) -> str:
    """``value`` as the app's number columns print it (printf "%.4g", JavaScript's toPrecision rules)."""
    if value is None or not math.isfinite(value):
        return "" if value is None or value != value else str(value)
    if value == 0:
        return "0"
    mantissa, exp = f"{value:.{digits - 1}e}".split("e")
    e = int(exp)
    if e < -6 or e >= digits:
        return f"{mantissa.rstrip('0').rstrip('.')}e{'+' if e >= 0 else '-'}{abs(e)}"
    return f"{value:.{max(0, digits - 1 - e)}f}"


def _width(strings, header: str) -> int:
    longest = max((len(s) for s in strings), default=1)
    return int(max(longest * CHAR_PX + PAD_PX, min(len(header) * CHAR_PX * 0.85 + PAD_PX, HEADER_CAP_PX)))


def column_config(frame: pd.DataFrame, headings: dict[str, str]) -> dict:
    """st.column_config per column of ``frame`` (library names), keyed by its heading: percentages for
    "%" columns, 4 significant digits for other floats, thousands separators for integers, widths that
    fit the longest value (and the heading, up to HEADER_CAP_PX)."""
    config = {}
    for col in frame.columns:
        head, series = headings[col], frame[col]
        if pd.api.types.is_bool_dtype(series):
            config[head] = st.column_config.CheckboxColumn(head, width=_width(["xx"], head))
        elif pd.api.types.is_float_dtype(series):
            values = series.dropna().to_numpy()
            if unit(col) == "%":
                texts = [f"{v * 100:.2f}%" for v in values]
                config[head] = st.column_config.NumberColumn(
                    head, format="percent", width=_width(texts, head)
                )
            else:
                texts = [js_precision(float(v)) for v in values]
                config[head] = st.column_config.NumberColumn(head, format="%.4g", width=_width(texts, head))
        elif pd.api.types.is_integer_dtype(series):
            ident = col in INDEX_COLUMNS
            texts = [f"{int(v)}" if ident else f"{int(v):,}" for v in series.dropna()]
            fmt = "%d" if ident else "localized"
            config[head] = st.column_config.NumberColumn(head, format=fmt, width=_width(texts, head))
        elif pd.api.types.is_datetime64_any_dtype(series):
            config[head] = st.column_config.DatetimeColumn(
                head, format="YYYY-MM-DD HH:mm", width=_width(["2025-01-01 12:00"], head)
            )
        else:
            texts = [str(v) for v in series.dropna()]
            config[head] = st.column_config.TextColumn(head, width=min(_width(texts, head), 420))
    return config


def table(
    frame: pd.DataFrame,
    *,
    name: str,
    caption: str | None = None,
    key: str | None = None,
    a: str = "A",
    b: str = "B",
    headings: dict[str, str] | None = None,
    height: int | str = "auto",
    selectable: bool = False,
    context: dict | None = None,
    export_frame: pd.DataFrame | None = None,
) -> object:
    """Show a library table (snake_case columns) readably, offer it as CSV / Parquet, record it.

    ``headings`` overrides some headings; ``a``/``b`` name the students of comparison columns;
    ``context`` replaces the export context (default: the view's); ``export_frame`` (same columns) is
    what the downloads and the report hold instead of ``frame`` (e.g. numbers where ``frame`` shows them
    as text). With ``selectable`` a single row can be selected; returns what st.dataframe returns.
    """
    names = {c: (headings or {}).get(c) or heading(str(c), a=a, b=b) for c in frame.columns}
    shown = frame.rename(columns=names)
    kwargs = dict(on_select="rerun", selection_mode="single-row") if selectable else {}
    event = st.dataframe(
        shown,
        hide_index=True,
        key=key,
        height=height,
        width="stretch",
        column_config=column_config(frame, names),
        **kwargs,
    )
    if caption:
        st.caption(caption)
    out = shown if export_frame is None else export_frame.rename(columns=names)
    download(out, name=name, context=context, key=f"dl_{key or name}")
    source = frame if export_frame is None else export_frame
    report().table(as_text(source).rename(columns=names), caption or name)
    return event


def as_text(frame: pd.DataFrame) -> pd.DataFrame:
    """The table's numbers as the app shows them (percentages for "%" columns, 4 significant digits), for
    the HTML report."""
    out = frame.copy()
    for col in frame.columns:
        series = frame[col]
        if pd.api.types.is_float_dtype(series):
            if unit(str(col)) == "%":
                out[col] = [f"{v:.2%}" if v == v else "" for v in series]
            else:
                out[col] = [js_precision(float(v)) for v in series]
    return out


def measures(summary: pd.DataFrame) -> pd.DataFrame:
    """A `compare.summary`-like table (measure, a, b, delta: one measure per row, in different units) as
    text: each row in its own unit ("0.4438", "31.87%", "-1.15 points"); the measure in words."""

    def fmt(value: float, u: str, delta: bool = False) -> str:
        if value != value:
            return ""
        if u == "%":
            return f"{value * 100:+.2f} points" if delta else f"{value:.2%}"
        text = js_precision(float(value))
        return ("+" + text if delta and value > 0 else text) + (
            f" {u}" if u and u != "classes" and not delta else ""
        )

    rows = []
    for m, a, b, d in summary[["measure", "a", "b", "delta"]].itertuples(index=False):
        u = unit(m)
        rows.append({"measure": heading(m), "a": fmt(a, u), "b": fmt(b, u), "delta": fmt(d, u, delta=True)})
    return pd.DataFrame(rows)


def download(frame: pd.DataFrame, *, name: str, context: dict | None = None, key: str) -> None:
    """A "Download" popover with the table as CSV (context in leading columns) and Parquet (in metadata)."""
    ctx = dict(context if context is not None else report().context)
    ls = "LS" if ctx.get("standardize") is True else None
    stem = export.file_stem(name, ctx.get("student"), ctx.get("grouping"), f"T{ctx.get('T', '')}", ls)
    with st.popover("Download table", icon=":material/download:"):
        st.caption(
            f"{len(frame):,} rows; the file names the view: " + ", ".join(f"{k} {v}" for k, v in ctx.items())
        )
        st.download_button(
            "CSV",
            data=lambda: export.to_csv_bytes(frame, ctx),
            file_name=f"{stem}.csv",
            mime="text/csv",
            on_click="ignore",
            key=f"{key}_csv",
        )
        st.download_button(
            "Parquet",
            data=lambda: export.to_parquet_bytes(frame, ctx),
            file_name=f"{stem}.parquet",
            mime="application/vnd.apache.parquet",
            on_click="ignore",
            key=f"{key}_parquet",
        )


# -- the sidebar's export box ----------------------------------------------------------------------------


def finish(snippet: export.ViewSpec | str | None = None) -> None:
    """Fill the sidebar's "Export this view" box: the HTML report of everything the page showed, and a
    Python snippet that recomputes the view's main numbers (when the page names one: a ViewSpec, or the
    code itself)."""
    box = st.session_state.get(_K_EXPORT_BOX)
    if box is None:
        return
    rep = report()
    stem = export.file_stem("report", rep.title.split("·")[-1].strip().lower(), rep.context.get("student"))
    with box:
        st.subheader("Export this view")
        st.download_button(
            "HTML report of this view",
            data=lambda: export.html_report(rep).encode("utf-8"),
            file_name=f"{stem}.html",
            mime="text/html",
            on_click="ignore",
            icon=":material/description:",
            help="One file with this page's charts (interactive, working offline) and tables.",
            key="export_html",
        )
        if snippet is not None:
            with st.popover("Reproduce in Python", icon=":material/code:"):
                st.caption("Recomputes this view's numbers with the cakd_viz library and prints them as CSV.")
                code = snippet if isinstance(snippet, str) else export.python_snippet(snippet)
                st.code(code, language="python")
