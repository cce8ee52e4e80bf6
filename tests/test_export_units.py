"""One unit convention for every table: a column holds values in the unit its heading says, on the page and
in every export of it. For each page's tables (AppTest, a small bundle), the CSV and Parquet downloads,
the HTML report's table and the "reproduce in Python" snippet's printed CSV (where the page has one) are
compared with what the page shows, column by column, each value printed as the page prints it."""

from __future__ import annotations

import io
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from apptest_support import Downloads, assert_ok, open_app, run_snippet
from conftest import make_logits

from cakd_viz.app import config as app_config
from cakd_viz.app.formats import js_precision
from cakd_viz.bundle import write_bundle

NAMES = ["0", "O", "o", "1", "l", "I", "cat", "dog", "=x", "b", "c", "d"]


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """A data root "data" holding bundle "a": 3 students, 12 classes (look-alikes, a formula-like name),
    labels and 8x8 image inputs."""
    tmp = tmp_path_factory.mktemp("units")
    student, teacher, labels = make_logits(240, 12, seed=4)
    rng = np.random.default_rng(0)
    students = {
        "ce": student,
        "kd": (0.4 * student + 0.6 * teacher).astype(np.float32),
        "weak": (student + rng.normal(0, 2, student.shape)).astype(np.float32),
    }
    inputs = (rng.random((240, 8, 8)) * 255).astype(np.uint8)
    data = tmp / "data"
    write_bundle(
        data / "a", teacher=teacher, students=students, labels=labels, class_names=NAMES, inputs=inputs
    )
    mp = pytest.MonkeyPatch()
    mp.setenv(app_config.DATA_ROOT_ENV, str(data))
    mp.setenv("CAKD_SAMPLES_DIR", str(tmp / "no-samples"))
    yield data
    mp.undo()


@pytest.fixture
def downloads(monkeypatch) -> Downloads:
    return Downloads().install(monkeypatch)


# -- what the page shows ----------------------------------------------------------------------------------


def _browser(value, fmt: str) -> str:
    """A number as the browser prints it under a column's printf format (sprintf-js; "%.4g" is
    JavaScript's toPrecision, checked against the browser in test_tables.py)."""
    if value is None or (isinstance(value, float) and value != value):
        return ""
    if fmt == "%.2f":
        return f"{float(value):.2f}"
    if fmt == "%.4g":
        return js_precision(float(value))
    if fmt == "%d":
        return f"{int(value)}"
    if fmt == "localized":
        return f"{int(value):,}"
    raise AssertionError(f"a format this test does not know: {fmt}")


def shown_tables(at) -> list[tuple[pd.DataFrame, dict[str, str | None]]]:
    """Each table on the page: (its cells as printed, column -> format: a printf format, "bool" or None)."""
    out = []
    for el in at.dataframe:
        config = {k: v for k, v in json.loads(el.proto.columns).items() if k != "_index"}  # index hidden
        formats = {}
        for col, c in config.items():
            kind = c.get("type_config", {}).get("type")
            formats[col] = c["type_config"].get("format") if kind == "number" else kind
        frame = el.value
        assert list(frame.columns) == list(config), "every column has its format"
        cells = {}
        for col in frame.columns:
            fmt = formats[col]
            if fmt == "checkbox":
                cells[col] = ["yes" if v else "no" for v in frame[col]]
            elif fmt == "text":
                cells[col] = ["" if v is None else str(v) for v in frame[col]]
            else:
                cells[col] = [_browser(v, fmt) for v in frame[col]]
        out.append((pd.DataFrame(cells, columns=list(frame.columns)), formats))
    return out


_NUMBER = re.compile(r"^[+-]?\d[\d,]*(\.\d+)?(e[+-]?\d+)?")


def _agrees(shown: str, value, fmt: str | None) -> bool:
    """Whether an exported ``value`` is what the page shows as ``shown`` (same unit, same number as
    printed). Text columns that print numbers with their unit ("31.87%", "-1.15 points": one measure
    per row) are compared by the number printed, to its last digit."""
    if fmt == "checkbox":
        return str(value) in (("True", "true") if shown == "yes" else ("False", "false"))
    if fmt not in (None, "text"):
        if value is None or value == "" or (isinstance(value, float) and value != value):
            return shown == ""
        return _browser(float(value), fmt) == shown
    text = "" if value is None or (isinstance(value, float) and value != value) else value
    if isinstance(text, str):
        if text == shown or (text.startswith("'") and text[1:] == shown and shown[:1] in "=+-@"):
            return True  # (a CSV cell that could run as a formula starts with an apostrophe)
        try:
            text = float(text)
        except ValueError:
            return False
    m = _NUMBER.match(shown.replace(",", ""))
    if m is None:
        return False
    printed = m.group(0)
    if "e" in printed:
        return abs(float(printed) - text) <= 5e-4 * abs(float(printed))
    decimals = len(printed.split(".")[1]) if "." in printed else 0
    return abs(float(printed) - text) <= 0.5 * 10**-decimals + 1e-12


def assert_same(page: pd.DataFrame, formats: dict, exported: pd.DataFrame, what: str) -> None:
    """``exported`` (the page's columns, at least its rows) holds what ``page`` shows, column by column."""
    assert list(exported.columns) == list(page.columns), what
    assert len(exported) >= len(page), what
    for col in page.columns:
        bad = [
            (shown, value)
            for shown, value in zip(page[col], exported[col].iloc[: len(page)], strict=True)
            if not _agrees(shown, value, formats[col])
        ]
        assert not bad, f"{what}, column {col!r}: shown vs exported {bad[:3]}"


# -- what the exports hold --------------------------------------------------------------------------------


def _csv(data: bytes, columns: list[str]) -> pd.DataFrame:
    frame = pd.read_csv(io.BytesIO(data), dtype=str, keep_default_na=False, encoding="utf-8-sig")
    return frame.iloc[:, len(frame.columns) - len(columns) :]  # the view's context comes first


def _parquet(data: bytes) -> pd.DataFrame:
    return pd.read_parquet(io.BytesIO(data))


class _Tables(HTMLParser):
    """The <table>s of an HTML report, as lists of rows of cell texts (the header row first)."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[list[list[str]]] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self.tables[-1][-1].append("".join(self._cell))
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def report_tables(html: str) -> list[pd.DataFrame]:
    parser = _Tables()
    parser.feed(html)
    return [pd.DataFrame(rows[1:], columns=rows[0]) for rows in parser.tables]


def _snippet(at) -> str | None:
    codes = [c.value for c in at.get("code") if "from cakd_viz" in c.value]
    return codes[0] if codes else None


def _run(code: str, cwd: Path) -> pd.DataFrame:
    out = run_snippet(code, cwd)
    return pd.read_csv(io.StringIO(out.stdout), dtype=str, keep_default_na=False)


# -- every page ---------------------------------------------------------------------------------------------

VIEWS = [
    ("data", {}, 2),
    ("overview", {"grouping": "topk:3", "T": "2"}, 1),
    ("overview", {"student": "ce", "vs": "kd"}, 2),
    ("overview", {"view": "Per class", "vs": "weak", "grouping": "mass:0.8"}, 4),
    ("correlation", {"family": "0.3"}, 2),
    ("sample", {"i": "17", "vs": "kd", "grouping": "target", "T": "3"}, 1),
    ("diagnose", {"rank": "wcd_contribution", "student": "weak"}, 3),
    ("diagnose", {"vs": "kd"}, 4),
    ("learn", {}, 2),
]


@pytest.mark.parametrize(("page", "params", "count"), VIEWS, ids=[f"{p}-{'-'.join(q)}" for p, q, _ in VIEWS])
def test_every_export_of_every_table_holds_what_the_page_shows(root, downloads, page, params, count):
    at = open_app("path:a", page, **params)
    assert_ok(at)
    tables = shown_tables(at)
    assert len(tables) == count, [list(t.columns) for t, _ in tables]
    csv_keys = [k for k, b in downloads.buttons(at).items() if b.label == "CSV"]
    parquet_keys = [k for k, b in downloads.buttons(at).items() if b.label == "Parquet"]
    assert len(csv_keys) == len(parquet_keys) == len(tables), "one CSV and one Parquet per table"
    html = downloads.get(at, "export_html")[0].decode("utf-8")
    in_report = report_tables(html)
    for (shown, formats), csv_key, parquet_key in zip(tables, csv_keys, parquet_keys, strict=True):
        columns = list(shown.columns)
        assert_same(shown, formats, _csv(downloads.get(at, csv_key)[0], columns), f"{csv_key}")
        assert_same(shown, formats, _parquet(downloads.get(at, parquet_key)[0]), f"{parquet_key}")
        (reported,) = [t for t in in_report if list(t.columns) == columns]
        assert reported.values.tolist() == shown.values.tolist()[: len(reported)], "the report prints it so"
    code = _snippet(at)
    if code is not None and page != "correlation":  # Correlation's snippet prints the families, tested apart
        printed = _run(code, root.parent)
        (shown, formats) = next(t for t in tables if list(t[0].columns) == list(printed.columns))
        assert_same(shown, formats, printed, "the snippet's CSV")


def test_percent_columns_hold_percent_everywhere(root, downloads):
    """The issue's case: a share of 56.03% is 56.03 under a "(%)" heading in every export, not 0.5603."""
    at = open_app("path:a", "overview")
    shown, _ = shown_tables(at)[0]
    share = shown["share of KL: p_W·WCD (%)"].astype(float)
    assert (share > 1).all() and (share <= 100).all()
    data = downloads.get(at, "dl_overview_students_parquet")[0]
    exported = _parquet(data)["share of KL: p_W·WCD (%)"]
    np.testing.assert_allclose(exported.round(2), share)


def test_the_diagnose_download_of_every_failure_holds_what_the_page_shows(root, downloads):
    at = open_app("path:a", "diagnose", set="Student disagrees with teacher")
    shown, formats = shown_tables(at)[0]
    (key,) = [k for k, b in downloads.buttons(at).items() if b.label.startswith("Download all")]
    everything = _csv(downloads.get(at, key)[0], list(shown.columns))
    assert_same(shown, formats, everything, "every failure")


def test_every_download_of_a_view_names_its_temperature_alike(root, downloads):
    """A table's download and the page's "Download all" name T alike, as the sidebar says it ("_T4"): the
    tables' files were named "_T4.0" beside the "Download all" file's "_T4"."""
    for page, params in (("samples", {}), ("diagnose", {"set": "Student disagrees with teacher"})):
        at = open_app("path:a", page, **params)
        assert_ok(at)
        made = downloads.buttons(at)
        (every,) = [b.file_name for b in made.values() if b.label.startswith("Download all")]
        tables = [b.file_name for k, b in made.items() if k.startswith("dl_") and k.endswith("_csv")]
        names = [*tables, every]
        assert tables and all("_T4.0" not in f and "_T4" in f for f in names), (page, names)


def test_every_download_all_names_logit_standardization_as_the_tables_do(root, downloads):
    """Under LS the "Download all" files of Samples and Diagnose are named with LS, as every table's
    download is (a download of the same view without LS must not take the same file name)."""
    for page, params in (("samples", {}), ("diagnose", {"set": "Student disagrees with teacher"})):
        for standardize in (False, True):
            at = open_app("path:a", page, **params, **({"standardize": "true"} if standardize else {}))
            assert_ok(at)
            made = downloads.buttons(at)
            (every,) = [b.file_name for b in made.values() if b.label.startswith("Download all")]
            tables = [b.file_name for k, b in made.items() if k.startswith("dl_") and k.endswith("_csv")]
            assert tables and all(("_LS" in f) == standardize for f in tables), tables
            assert ("_LS" in every) == standardize, (page, every)
