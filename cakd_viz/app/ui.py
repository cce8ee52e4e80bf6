"""How pages show things, so that every page reads and exports alike: each call draws with Streamlit and
records the same thing in the page's ``Report``; ``table`` shows a library table in the units its
headings say and offers it as CSV / Parquet; ``finish`` fills the sidebar's "Export this view" box
(docs/architecture.md §3, "Units, in one place" and "The report").
"""

from __future__ import annotations

import io
import re

import pandas as pd
import streamlit as st

from cakd_viz import export
from cakd_viz.app.config import plain
from cakd_viz.app.formats import column_config, column_format, formatted, js_precision  # noqa: F401
from cakd_viz.report import MAX_ROWS, Report
from cakd_viz.terms import PART, heading, in_units, unit
from cakd_viz.terms import measures as measures_in_units
from cakd_viz.text import ZWSP
from cakd_viz.worked import format_number, identity_latex, identity_parts, identity_text

_K_REPORT = "_report"
_K_EXPORT_BOX = "_export_box"
_K_BANNER = "_banner_box"  # under the page title: a running pass's progress bar (notice_box)


def start(context: dict, box) -> None:
    """Begin a page run (called by the sidebar): a fresh report with the view's context, and the
    sidebar container that ``finish`` fills."""
    st.session_state[_K_REPORT] = Report(title="cakd-viz", context=dict(context))
    st.session_state[_K_EXPORT_BOX] = box
    st.session_state[_K_BANNER] = None


def report() -> Report:
    return st.session_state.setdefault(_K_REPORT, Report(title="cakd-viz"))


def context(**extra) -> dict:
    """The view's context (bundle, student, grouping, T, ...) with ``extra`` entries added or replaced
    (None removes one)."""
    return {k: v for k, v in (report().context | extra).items() if v is not None}


def set_context(context: dict) -> None:
    """Replace the report's context (a page whose view is not the sidebar's: Learn's own example)."""
    report().context = dict(context)


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


_MARKDOWN = re.compile(r"\\(.)|\$([^$]*)\$|\*\*|`([^`]*)`|\*([^*\s][^*]*)\*", re.S)


def plain_text(markdown: str) -> str:
    """Markdown as plain text for the HTML report: backslash escapes and the zero-width spaces that keep
    addresses from becoming links (``cakd_viz.text.markdown``) undone,
    inline LaTeX as text ("$\\mathrm{BCD} + p_S\\,\\mathrm{SCD}$" -> "BCD + p_S SCD"), bold markers and
    code-span backticks dropped. The report escapes the result, so nothing in it becomes markup."""

    def one(m: re.Match) -> str:
        if m.group(1) is not None:
            return m.group(1)
        if m.group(2) is not None:
            body = re.sub(r"\\mathrm\{([^}]*)\}", r"\1", m.group(2))
            return re.sub(r"\\[,;!]", " ", body).replace("\\", "")
        return m.group(3) or m.group(4) or ""

    return _MARKDOWN.sub(one, str(markdown)).replace(ZWSP, "")  # escaped HTML text links nowhere


def subheader(text: str) -> None:
    st.subheader(text)
    report().heading(plain_text(text))


def header(text: str) -> None:
    st.header(text)
    report().heading(plain_text(text))


def section(text: str) -> None:
    """Record a heading the page shows in another form (a tab's name), so that the report has it too."""
    report().heading(plain_text(text))


def markdown(text: str) -> None:
    """A paragraph of markdown, recorded as plain text."""
    st.markdown(text)
    report().text(plain_text(text))


def caption(text: str, where=None) -> None:
    (where or st).caption(text)
    report().caption(plain_text(text))


def note(text: str, kind: str = "info", where=None, **kwargs) -> None:
    """A boxed message (``kind``: info, success, warning or error), recorded as such."""
    getattr(where or st, kind)(text, **kwargs)
    report().note(plain_text(text), kind)


def metric(where, label: str, value, delta=None, **kwargs) -> None:
    """A metric card in ``where`` (a column or container; label, value and delta are markdown: text from
    files escaped with ``config.plain``), recorded with its label, value and delta as plain text."""
    where.metric(label, value, delta, **kwargs)
    report().metric(
        plain_text(label), plain_text(str(value)), None if delta is None else plain_text(str(delta))
    )


def contributions(cols, example, *, decimals: int | None = None, **kwargs) -> None:
    """The three parts of an example's KL (BCD, p_S·SCD, p_W·WCD) as metrics in ``cols``, each with its
    share of the KL (``cakd_viz.learn``'s worked example; ``decimals``: as ``worked.format_number``)."""
    for col, (name, value) in zip(cols, example.contributions().items(), strict=True):
        share = value / example.kl if example.kl > 0 else 0.0
        metric(
            col,
            PART[name],
            format_number(value, decimals),
            f"{share:.0%} of KL",
            delta_color="off",
            delta_arrow="off",
            **kwargs,
        )


def image(picture, caption: str = "") -> None:
    """A PIL image with its caption; the report embeds it as PNG."""
    st.image(picture, caption=caption or None)
    buf = io.BytesIO()
    picture.save(buf, format="PNG")
    report().image(buf.getvalue(), plain_text(caption))


def latex(tex: str, text: str, *, parts: list | None = None) -> None:
    """A formula: LaTeX on the page; in the report ``text`` (plain) and, with ``parts``, MathML."""
    st.latex(tex)
    report().formula(text, parts)


def identity(example, *, decimals: int | None = None, prefix: str = "") -> None:
    """KL = BCD + p_S·SCD + p_W·WCD with this example's numbers (``cakd_viz.learn``)."""
    latex(
        prefix + identity_latex(example, decimals=decimals),
        identity_text(example, decimals=decimals),
        parts=identity_parts(example, decimals=decimals),
    )


def who(name: str, sel) -> str:
    """A student as the charts of a view name it: with a student B (``sel.compare``) set, its role too
    ("kd (A)", "ce (B)"), so that every chart says which student is which; else its name alone."""
    if not sel.compare or name not in (sel.student, sel.compare):
        return name
    return f"{name} ({'A' if name == sel.student else 'B'})"


def chart(fig, caption: str | None = None, *, key: str | None = None, **kwargs) -> None:
    """Draw ``fig`` full width (with ``caption`` under it) and record both in the report."""
    st.plotly_chart(fig, width="stretch", key=key, **kwargs)
    if caption:
        st.caption(caption)
    report().figure(fig, plain_text(caption or ""))


# -- tables ------------------------------------------------------------------------------------------


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
) -> int | None:
    """Show a library table (snake_case columns) as people read it, offer it as CSV / Parquet, record it.

    Values are shown, downloaded and reported in the unit their heading says (``terms.in_units``: a "%"
    column in percent). ``headings`` overrides some headings; ``a``/``b`` name the students of
    comparison columns; ``context`` replaces the export context (default: the view's). With
    ``selectable`` a single row can be selected: returns its position in ``frame`` (None: none selected).
    """
    names = {c: (headings or {}).get(c) or heading(str(c), a=a, b=b) for c in frame.columns}
    people = in_units(frame)
    formats = {names[c]: column_format(c, people[c]) for c in frame.columns}
    shown = people.rename(columns=names)
    kwargs = dict(on_select="rerun", selection_mode="single-row") if selectable else {}
    event = st.dataframe(
        shown,
        hide_index=True,
        key=key,
        height=height,
        width="stretch",
        column_config=column_config(people, names),
        **kwargs,
    )
    if caption:
        st.caption(caption)
    download(shown, name=name, context=context, key=f"dl_{key or name}")
    report().table(formatted(shown.head(MAX_ROWS), formats), plain_text(caption or ""), total=len(shown))
    rows = event.selection.rows if selectable and event is not None else []
    return rows[0] if rows else None


def measures(summary: pd.DataFrame, *, a: str = "A", b: str = "B") -> pd.DataFrame:
    """A `compare.summary`-like table (measure, a, b, delta: one measure per row, in different units) as
    the page prints it: each row in its own unit ("0.4438 nats", "31.87%", "-1.15 points"), the measure
    in words, the columns named by the students. The numbers are those of ``terms.measures``."""
    values = measures_in_units(summary, a=a, b=b)
    delta = f"{b} − {a}"

    def fmt(value: float, u: str, is_delta: bool = False) -> str:
        if value != value:
            return ""
        if u == "%":
            return f"{value:+.2f} points" if is_delta else f"{value:.2f}%"
        text = js_precision(float(value))
        return ("+" + text if is_delta and value > 0 else text) + (
            f" {u}" if u and u != "classes" and not is_delta else ""
        )

    rows = [
        (row[0], fmt(row[1], u := unit(str(m))), fmt(row[2], u), fmt(row[3], u, True))
        for m, row in zip(summary["measure"], values.itertuples(index=False), strict=True)
    ]
    return pd.DataFrame(rows, columns=["measure", a, b, delta])


def measures_table(summary: pd.DataFrame, *, a: str, b: str, name: str, key: str, context=None) -> None:
    """A comparison summary (``compare.summary``) shown as ``measures`` prints it, downloaded with the
    numbers of ``terms.measures`` (each row in its unit), recorded as printed."""
    shown = measures(summary, a=a, b=b)
    st.dataframe(
        shown,
        hide_index=True,
        key=key,
        width="stretch",
        column_config=column_config(shown, {c: c for c in shown.columns}),
    )
    download(measures_in_units(summary, a=a, b=b), name=name, context=context, key=f"dl_{key}")
    report().table(shown)


def file_stem(name: str, context: dict | None = None) -> str:
    """A download's file name stem: ``name`` and the view's student, grouping, T and LS, from ``context``
    (default: the view's), e.g. "per_class_kd_topk-5_T4_LS"."""
    ctx = report().context if context is None else context
    t = ctx.get("T")
    t = f"T{t:g}" if isinstance(t, int | float) and not isinstance(t, bool) else None
    ls = "LS" if ctx.get("standardize") is True else None
    return export.file_stem(name, ctx.get("student"), ctx.get("grouping"), t, ls)


def download(frame: pd.DataFrame, *, name: str, context: dict | None = None, key: str) -> None:
    """A "Download" popover with the table as CSV (context in leading columns) and Parquet (in metadata)."""
    ctx = dict(context if context is not None else report().context)
    stem = file_stem(name, ctx)
    with st.popover("Download table", icon=":material/download:"):
        st.caption(
            f"{len(frame):,} rows; the file names the view: "
            + ", ".join(f"{k} {plain(v)}" for k, v in ctx.items())  # a value may be an upload's name
        )
        for label, write, ext, mime in (
            ("CSV", export.to_csv_bytes, "csv", "text/csv"),
            ("Parquet", export.to_parquet_bytes, "parquet", "application/vnd.apache.parquet"),
        ):
            st.download_button(
                label,
                data=lambda write=write: write(frame, ctx),
                file_name=f"{stem}.{ext}",
                mime=mime,
                on_click="ignore",
                key=f"{key}_{ext}",
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
            help="One file with everything this page shows: charts (interactive), tables, images, formulas, "
            "numbers and notes; it opens offline.",
            key="export_html",
        )
        if snippet is not None:
            with st.popover("Reproduce in Python", icon=":material/code:"):
                st.caption("Recomputes this view's numbers with the cakd_viz library and prints them as CSV.")
                code = snippet if isinstance(snippet, str) else export.python_snippet(snippet)
                st.code(code, language="python")
