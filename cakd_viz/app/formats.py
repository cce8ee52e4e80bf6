"""How a table for people prints its numbers: one format per column, used by the page (Streamlit's
column config) and by the HTML report (the same text, written by Python); docs/architecture.md §3,
"Units, in one place"."""

from __future__ import annotations

import math

import pandas as pd
import streamlit as st

from cakd_viz.terms import unit

PERCENT_FORMAT = "%.2f"  # a "%" column, already in percent: two decimals
FLOAT_FORMAT = "%.4g"
INDEX_COLUMNS = ("index", "class", "true", "predicted")  # identifiers: no thousands separator
# column width = characters x CHAR_PX + PAD_PX: digits of the 14 px table font are at most 7.7 px wide
CHAR_PX, PAD_PX, HEADER_CAP_PX = 8.2, 28, 220


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


def column_format(column: str, series: pd.Series) -> str | None:
    """The format a column of a table for people is shown with: "%.2f" ("%" columns), "%.4g" (other
    floats), "%d" (identifiers), "localized" (counts), "bool", "datetime", or None (text). ``column`` is
    the library's name of the column (its unit comes from ``terms.unit``)."""
    if pd.api.types.is_bool_dtype(series):
        return "bool"
    if pd.api.types.is_float_dtype(series):
        return PERCENT_FORMAT if unit(str(column)) == "%" else FLOAT_FORMAT
    if pd.api.types.is_integer_dtype(series):
        return "%d" if column in INDEX_COLUMNS else "localized"
    if pd.api.types.is_datetime64_any_dtype(series):
        return "datetime"
    return None


_PRINTERS = {  # a cell's text under each format of ``column_format`` (text columns: ``str``)
    "bool": lambda v: "yes" if v else "no",
    PERCENT_FORMAT: lambda v: f"{float(v):.2f}",
    FLOAT_FORMAT: lambda v: js_precision(float(v)),
    "%d": lambda v: f"{int(v)}",
    "localized": lambda v: f"{int(v):,}",
    "datetime": lambda v: pd.Timestamp(v).strftime("%Y-%m-%d %H:%M"),
}


def format_cell(value, fmt: str | None) -> str:
    """One cell as the page prints it under ``fmt`` (``column_format``); "" for a missing value."""
    if value is None or (isinstance(value, float) and value != value):
        return ""
    return _PRINTERS.get(fmt, str)(value)


def formatted(frame: pd.DataFrame, formats: dict) -> pd.DataFrame:
    """``frame`` with every cell as the page prints it (``formats``: column -> ``column_format``)."""
    return pd.DataFrame(
        {col: [format_cell(v, formats.get(col)) for v in frame[col]] for col in frame.columns},
        index=frame.index,
    )


def column(fmt: str | None, heading: str, **kwargs):
    """The st.column_config of a column printed as ``fmt`` (a format of ``column_format``, or any number
    format), with ``kwargs`` (width, help)."""
    if fmt == "bool":
        return st.column_config.CheckboxColumn(heading, **kwargs)
    if fmt == "datetime":
        return st.column_config.DatetimeColumn(heading, format="YYYY-MM-DD HH:mm", **kwargs)
    if fmt is None:
        return st.column_config.TextColumn(heading, **kwargs)
    return st.column_config.NumberColumn(heading, format=fmt, **kwargs)


def column_config(frame: pd.DataFrame, headings: dict[str, str]) -> dict:
    """st.column_config per column of ``frame`` (library names, values in their units), keyed by its
    heading: the format of ``column_format``, a width that fits the longest value as printed (and the
    heading, up to HEADER_CAP_PX; a text column at most 420 pixels)."""
    config = {}
    for col in frame.columns:
        head, series = headings[col], frame[col]
        fmt = column_format(col, series)
        texts = {"bool": ["xx"], "datetime": ["2025-01-01 12:00"]}.get(fmt)
        longest = max(map(len, texts or [format_cell(v, fmt) for v in series.dropna()]), default=1)
        width = int(max(longest * CHAR_PX + PAD_PX, min(len(head) * CHAR_PX * 0.85 + PAD_PX, HEADER_CAP_PX)))
        config[head] = column(fmt, head, width=min(width, 420) if fmt is None else width)
    return config
