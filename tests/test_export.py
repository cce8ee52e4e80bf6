"""Exports: tables that carry their view (CSV columns, Parquet metadata), an HTML report that works offline,
and "reproduce in Python" snippets that really recompute what the app shows (run in a subprocess and
compared with the app's own tables, read through AppTest)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest
from apptest_support import assert_ok, open_app, run_snippet
from conftest import make_logits
from streamlit.testing.v1 import AppTest

from cakd_viz import export
from cakd_viz.app import config as app_config
from cakd_viz.bundle import write_bundle

CONTEXT = {"bundle": "sample: glyphs", "student": "student_kd", "grouping": "topk:5", "T": 4.0}


def test_csv_carries_the_view_in_leading_columns_that_pandas_and_spreadsheets_read():
    frame = pd.DataFrame({"class": ["=cmd()", "b"], "mean KL (nats)": [0.5, 0.25]})
    data = export.to_csv_bytes(frame, CONTEXT)
    assert data.startswith(b"\xef\xbb\xbf")  # UTF-8 byte-order mark: spreadsheets read "·" and "−"
    back = pd.read_csv(io.BytesIO(data))
    assert list(back.columns) == [*CONTEXT, "class", "mean KL (nats)"]
    assert (back["bundle"] == "sample: glyphs").all() and (back["T"] == 4.0).all()
    assert back["mean KL (nats)"].tolist() == [0.5, 0.25]
    assert back["class"][0] == "'=cmd()"  # a text cell never runs as a formula


def test_a_context_name_that_is_a_column_is_prefixed():
    frame = pd.DataFrame({"student": ["a", "b"], "x": [1, 2]})
    out = export.with_context(frame, {"student": "kd"})
    assert list(out.columns) == ["view: student", "student", "x"]


def test_a_snippet_writes_a_name_with_a_line_break_as_text_not_code():
    view = export.ViewSpec("summary", "b", "kd\nimport os; os.remove('x')", "topk:5", 4.0)
    code = export.python_snippet(view)
    assert not any(line.startswith("import os") for line in code.splitlines())
    assert "(student kd\\nimport os; os.remove('x'), grouping topk:5, T = 4)" in code.splitlines()[0]


def test_parquet_carries_the_view_in_its_metadata():
    frame = pd.DataFrame({"class": ["a", "b"], "share of KL: BCD (%)": [0.1, 0.2]})
    data = export.to_parquet_bytes(frame, CONTEXT)
    back = pd.read_parquet(io.BytesIO(data))
    assert list(back.columns) == list(frame.columns)
    assert back.attrs == CONTEXT  # pandas restores it
    import pyarrow.parquet as pq

    schema = pq.read_schema(io.BytesIO(data))  # any Parquet reader: schema metadata "cakd_viz"
    assert json.loads(schema.metadata[export.METADATA_KEY]) == CONTEXT


def test_the_html_report_is_one_file_that_works_offline():
    rep = export.Report(title="cakd-viz · Overview <x>", context=CONTEXT)
    rep.heading("Shares")
    rep.figure(go.Figure(go.Bar(x=["<b>a</b>"], y=[1])), "a caption & more")
    rep.table(pd.DataFrame({"class": ["<script>alert(1)</script>"], "v": [0.5]}), "a table")
    html = export.html_report(rep, generated="today")
    head, body = html.split("</head>")
    assert "<script src=" not in html and "http" not in body  # nothing to fetch: no network needed
    assert "Plotly.newPlot" in body and len(head) > 1_000_000  # plotly.js itself is inline, in the head
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "<script>alert(1)" not in html
    assert "cakd-viz · Overview &lt;x&gt;" in html and "student_kd" in html


@pytest.fixture
def root(tmp_path, monkeypatch) -> Path:
    """A data root "data" holding bundle "a" (3 students, 12 classes with look-alike names)."""
    student, teacher, labels = make_logits(240, 12, seed=4)
    names = ["0", "O", "o", "1", "l", "I", "cat", "dog", "=x", "b", "c", "d"]
    rng = np.random.default_rng(0)
    students = {
        "ce": student,
        "kd": (0.4 * student + 0.6 * teacher).astype(np.float32),
        "weak": (student + rng.normal(0, 2, student.shape)).astype(np.float32),
    }
    data = tmp_path / "data"
    write_bundle(data / "a", teacher=teacher, students=students, labels=labels, class_names=names)
    monkeypatch.setenv(app_config.DATA_ROOT_ENV, str(data))
    monkeypatch.setenv("CAKD_SAMPLES_DIR", str(tmp_path / "no-samples"))
    return data


def _page(page: str, **params) -> AppTest:
    at = open_app("path:a", page, **params)
    assert_ok(at)
    return at


def _snippet(at: AppTest) -> str:
    codes = [c.value for c in at.get("code") if "from cakd_viz import" in c.value]
    assert len(codes) == 1, "one 'reproduce in Python' snippet per page"
    return codes[0]


def _run(code: str, cwd: Path) -> pd.DataFrame:
    out = run_snippet(code, cwd)
    return pd.read_csv(io.StringIO(out.stdout))


def _same(app: pd.DataFrame, snippet: pd.DataFrame) -> None:
    assert list(snippet.columns) == list(app.columns)
    for col in app.columns:
        if pd.api.types.is_numeric_dtype(app[col]) and not pd.api.types.is_bool_dtype(app[col]):
            np.testing.assert_allclose(snippet[col], app[col], rtol=2e-5, atol=1e-7, err_msg=col)
        else:
            assert snippet[col].astype(str).tolist() == app[col].astype(str).tolist(), col


def test_the_overview_snippet_recomputes_every_students_numbers(root):
    at = _page("overview", grouping="topk:3", T=2)
    app_table = next(d.value for d in at.dataframe if "student" in d.value.columns)
    _same(app_table, _run(_snippet(at), root.parent))


def test_the_per_class_snippet_recomputes_the_class_table(root):
    at = _page("overview", view="Per class", grouping="mass:0.8")
    app_table = next(d.value for d in at.dataframe if "class index" in d.value.columns)
    _same(app_table, _run(_snippet(at), root.parent))


def test_the_compare_snippet_recomputes_a_against_b(root):
    at = _page("overview", student="ce", vs="kd")
    code = _snippet(at)
    got = _run(code, root.parent)
    from cakd_viz import compare, decompose
    from cakd_viz.bundle import load_bundle

    b = load_bundle(root / "a")
    a_, b_ = (
        decompose(b.student(s), b.teacher, b.labels, grouping="topk:5", temperature=4.0) for s in ("ce", "kd")
    )
    want = compare.summary(a_, b_)
    percent = np.array([m.startswith(("share_", "accuracy", "agreement")) for m in want["measure"]])
    # each row in its own unit: nats as they are, fractions as percent and their change in points
    np.testing.assert_allclose(
        got["kd − ce"], want["delta"] * np.where(percent, 100, 1), rtol=1e-5, atol=1e-8
    )
    np.testing.assert_allclose(got["kd"], want["b"] * np.where(percent, 100, 1), rtol=1e-5, atol=1e-8)
    assert got["measure"].iloc[0] == "mean KL (nats)"
    assert got["measure"][percent].str.endswith("(%)").all()


def test_the_diagnose_snippet_recomputes_the_failure_table(root):
    at = _page("diagnose", rank="wcd_contribution", grouping="corr:0.2", student="weak")
    app_table = at.dataframe[0].value
    _same(app_table, _run(_snippet(at), root.parent))


def test_the_sample_snippet_recomputes_the_sample(root):
    at = _page("sample", i=17, grouping="target", T=3)
    got = _run(_snippet(at), root.parent).iloc[0]
    shown = {m.label: m.value for m in at.metric}
    assert float(shown["KL (nats)"]) == pytest.approx(got["KL (nats)"], rel=1e-3)
    assert float(shown["p_W·WCD"]) == pytest.approx(got["p_W·WCD (nats)"], rel=1e-3, abs=1e-9)


def test_the_correlation_snippet_recomputes_the_families(root):
    at = _page("correlation", family="0.3")
    got = _run(_snippet(at), root.parent)
    app_table = next(d.value for d in at.dataframe if "members" in d.value.columns)
    for members in app_table["members"]:
        family = got[got["name"] == members.split(", ")[0]]["family"].iloc[0]
        assert ", ".join(got[got["family"] == family]["name"]) == members


@pytest.mark.parametrize("grouping", ["topk:3", "corr:0.2"])
def test_under_standardization_the_snippets_recompute_the_standardized_numbers(root, grouping):
    at = _page("overview", grouping=grouping, T=2, standardize="true")
    code = _snippet(at)
    assert f"GROUPING, T, STANDARDIZE = {grouping!r}, 2.0, True" in code
    app_table = next(d.value for d in at.dataframe if "student" in d.value.columns)
    _same(app_table, _run(code, root.parent))


def test_the_standardization_tab_snippet_recomputes_its_table(root):
    at = _page("overview", view="Standardization (LS)", grouping="mass:0.8")
    app_table = next(d.value for d in at.dataframe if "share of KL: BCD, with LS (%)" in d.value.columns)
    _same(app_table, _run(_snippet(at), root.parent))


def test_the_sample_and_families_snippets_follow_standardization(root):
    at = _page("sample", i=5, grouping="mass:0.8", T=3, standardize="true")
    got = _run(_snippet(at), root.parent).iloc[0]
    shown = {m.label: m.value for m in at.metric}
    assert float(shown["KL (nats)"]) == pytest.approx(got["KL (nats)"], rel=1e-3)
    at = _page("correlation", family="0.3", standardize="true")
    got = _run(_snippet(at), root.parent)
    app_table = next(d.value for d in at.dataframe if "members" in d.value.columns)
    for members in app_table["members"]:
        family = got[got["name"] == members.split(", ")[0]]["family"].iloc[0]
        assert ", ".join(got[got["family"] == family]["name"]) == members


def test_every_table_offers_csv_and_parquet_with_the_view(root):
    at = _page("overview", view="Per class", vs="kd")
    labels = [b.label for b in at.get("download_button")]
    tables = len(at.dataframe)
    assert labels.count("CSV") == tables and labels.count("Parquet") == tables
    assert "HTML report of this view" in labels
