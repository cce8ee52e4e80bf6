"""AppTest of the Samples page (the explorer) and the ways into it, on small bundles written here: what a
link's filters select (checked against numpy masks over `decompose`'s arrays), the sort, the pages,
bad link values each leaving one line, a tile or a row opening its sample and the way back, the map,
the "reproduce in Python" snippet run in a subprocess, and the Overview's scans over every sample."""

from __future__ import annotations

import base64
import io
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from apptest_support import as_read, assert_ok, open_app, run_snippet
from conftest import make_logits
from streamlit.testing.v1 import AppTest

from cakd_viz import decompose
from cakd_viz.app import compute
from cakd_viz.app import config as app_config
from cakd_viz.bundle import load_bundle, write_bundle
from cakd_viz.classnames import readable_names
from cakd_viz.families import cluster_classes
from cakd_viz.grouping import class_correlation

REPO = Path(__file__).resolve().parent.parent
NAMES = ["0", "O", "o", "1", "l", "I", "cat", "dog", "[x](http://e)", "b", "c", "d"]
SAMPLES = "cakd_viz/app/pages/samples.py"
HUGE = "x" * 10_000


@pytest.fixture
def root(tmp_path, monkeypatch) -> Path:
    """A data root with bundle "a" (240 samples, 12 classes, labels, 8x8 images, students ce and kd) and
    "bare" (no labels, no inputs, one student)."""
    s, t, y = make_logits(240, 12, seed=4)
    kd = (0.4 * s + 0.6 * t).astype(np.float32)
    images = (np.random.default_rng(0).random((240, 8, 8)) * 255).astype(np.uint8)
    data = tmp_path / "data"
    write_bundle(
        data / "a", teacher=t, students={"ce": s, "kd": kd}, labels=y, class_names=NAMES, inputs=images
    )
    write_bundle(data / "bare", teacher=t, students={"only": s})
    monkeypatch.setenv(app_config.DATA_ROOT_ENV, str(data))
    monkeypatch.setenv("CAKD_SAMPLES_DIR", str(tmp_path / "no-samples"))
    return data


def _terms(root: Path, student: str = "ce", bundle: str = "a"):
    b = load_bundle(root / bundle)
    return decompose(b.student(student), b.teacher, b.labels, grouping="topk:5", temperature=4.0), b


def _open(bundle: str = "a", *, first_run: bool = False, **params) -> AppTest:
    at = open_app(f"path:{bundle}", "samples", first_run=first_run, **params)
    assert_ok(at)
    return at


def _count(at: AppTest) -> int:
    text = next(m.value for m in at.markdown if "samples match" in m.value)
    return int(re.search(r"\*\*([\d,]+) of", text).group(1).replace(",", ""))


def _table(at: AppTest) -> pd.DataFrame:
    return next(d.value for d in at.dataframe if "sample" in d.value.columns)


def _lines(at: AppTest) -> list[str]:
    return [as_read(w.value) for w in at.main.warning]


def _array(value) -> np.ndarray:
    """A Plotly JSON array: a list, or {"dtype", "bdata" (base64)} as Plotly >= 6 writes numpy arrays."""
    if isinstance(value, dict) and "bdata" in value:
        return np.frombuffer(base64.b64decode(value["bdata"]), dtype=np.dtype(value["dtype"]))
    return np.asarray(value)


def _order(values: np.ndarray, rows: np.ndarray, descending: bool = True) -> list[int]:
    return sorted(rows.tolist(), key=lambda i: ((-values[i] if descending else values[i]), i))


def test_a_links_filters_select_what_numpy_selects_largest_kl_first(root):
    d, b = _terms(root)
    names = readable_names(NAMES)
    at = _open(failure="Student wrong", true=names[1])
    want = np.flatnonzero((d.student_pred != b.labels) & (b.labels == 1))
    assert len(want) >= 2
    assert _count(at) == len(want) and not _lines(at)
    assert _table(at)["sample"].tolist() == _order(d.kl, want)
    assert len(at.get("image")) == len(want)  # one thumbnail per sample, with its button
    assert {f"#{i}" for i in want} <= {btn.label for btn in at.button}


def test_the_sort_the_order_and_the_pages(root):
    d, b = _terms(root)
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=120)
    at.query_params.update({"bundle": "path:a", "sort": "BCD", "order": "smallest first", "page": "2"})
    at.switch_page(SAMPLES).run()
    assert_ok(at)
    everything = _order(d.bcd, np.arange(len(d)), descending=False)
    assert _count(at) == len(d)
    assert _table(at)["sample"].tolist() == everything[48:96]
    assert at.number_input(key="page").value == 2
    at.button(key="samples_next").click().run()
    assert _table(at)["sample"].tolist() == everything[96:144] and at.query_params["page"] == "3"
    at.selectbox(key="sort").set_value("sample index").run()  # a new sort starts at the first page
    assert at.number_input(key="page").value == 1
    assert _table(at)["sample"].tolist() == list(range(48))  # still smallest first


def test_the_confusion_pair_and_student_b_filters(root):
    d, b = _terms(root)
    kd, _ = _terms(root, "kd")
    names = readable_names(NAMES)
    wrong = d.student_pred != b.labels
    pairs, counts = np.unique(
        np.stack([b.labels[wrong], d.student_pred[wrong]], 1), axis=0, return_counts=True
    )
    t, p = pairs[np.argmax(counts)]
    at = _open(pair=f"{names[t]} → {names[p]}")
    assert _count(at) == int(counts.max()) and not _lines(at)
    fixed = (d.student_pred != b.labels) & (kd.student_pred == b.labels)
    at = _open(vs="kd", change="Fixed by B")
    assert _count(at) == int(fixed.sum()) > 0
    assert "kd says" in _table(at).columns
    at = _open(vs="kd", predb=names[3])
    assert _count(at) == int((kd.student_pred == 3).sum())


def test_the_family_filter_takes_the_classes_of_the_correlation_family(root):
    d, b = _terms(root)
    _, ids = cluster_classes(class_correlation(b.teacher), threshold=compute.FAMILY_THRESHOLD)
    biggest = int(np.bincount(ids).argmax())
    members = [readable_names(NAMES)[c] for c in np.flatnonzero(ids == biggest)]
    at = _open(fam=" · ".join(members[:4]) + (f" and {len(members) - 4} more" if len(members) > 4 else ""))
    assert not _lines(at)
    assert _count(at) == int(np.isin(b.labels, np.flatnonzero(ids == biggest)).sum())


BAD = [
    ("true", "zzz", "which is not a class of this bundle; showing every class"),
    ("teacher", HUGE, "which is not a class of this bundle"),
    ("pred", "O", "which is not a class"),  # the names as shown are "O (upper o)"
    ("pair", "zzz", "which is not a confusion of these samples; showing every sample"),
    ("failure", "zzz", "showing every sample"),
    ("term", "KL", "showing every sample"),
    ("fam", "zzz", "which is not a family"),
    ("sort", "zzz", "showing KL"),
    ("order", "up", "showing largest first"),
    ("page", "abc", "not a whole number"),
    ("page", "99", "outside 1 to 5"),
    ("tab", "zzz", "showing Samples"),
    ("predb", "O (upper o)", "no student B is set"),
    ("change", "Fixed by B", "no student B is set"),
]


@pytest.mark.parametrize(("key", "value", "shown"), BAD, ids=[f"{k}-{v[:8]}" for k, v, _ in BAD])
def test_an_unusable_link_value_leaves_one_line(root, key, value, shown):
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=120)
    at.query_params.update({"bundle": "path:a", key: value})
    at.switch_page(SAMPLES).run()
    assert_ok(at)
    lines = [line for line in _lines(at) if f"{key}=" in line]
    assert len(lines) == 1, _lines(at)
    assert shown in lines[0] and "The link asks" in lines[0] and len(lines[0]) < 600
    assert not at.main.error


def test_the_maps_controls_from_a_bad_link_leave_one_line_each(root):
    at = _open(tab="Map", map="umap", color="mood")
    lines = _lines(at)
    assert sum("map=" in x for x in lines) == 1 and sum("color=" in x for x in lines) == 1


def test_without_labels_the_true_class_is_said_unusable_and_pairs_start_from_the_teacher(root):
    d, b = _terms(root, "only", "bare")
    at = _open("bare", true="c1")
    assert [x for x in _lines(at) if "true=" in x] == [
        "The link asks for true=`c1`, and this bundle has no labels; showing every sample."
    ]
    assert _count(at) == len(d)
    assert not at.get("image")  # no inputs: the page is a table of the samples
    assert any("Confusion (teacher's" in s.label for s in at.selectbox)


def test_a_tile_opens_its_sample_and_the_sample_page_leads_back(root):
    d, b = _terms(root)
    at = _open(first_run=True, failure="Student wrong")
    first = _order(d.kl, np.flatnonzero(d.student_pred != b.labels))[0]
    at.button(key=f"tile_{first}").click().run()
    assert_ok(at)
    assert at.title[0].value == "Sample" and at.number_input(key="i").value == first
    back = next(btn for btn in at.button if btn.label == "← back to the samples")
    back.click().run()
    assert_ok(at)
    assert at.title[0].value == "Samples"
    assert at.selectbox(key="failure").value == "Student wrong"
    assert _count(at) == int((d.student_pred != b.labels).sum())


def test_a_row_opens_its_sample_when_there_are_no_images(root):
    d, _ = _terms(root, "only", "bare")
    at = _open("bare", first_run=True)
    at.session_state["samples_rows"] = {"selection": {"rows": [2], "columns": [], "cells": []}}
    at.run()
    want = _order(d.kl, np.arange(len(d)))[2]
    button = next(btn for btn in at.button if btn.label.startswith("Open sample"))
    assert button.label == f"Open sample #{want} on the Sample page"
    button.click().run()
    assert at.title[0].value == "Sample" and at.query_params["i"] == str(want)


def test_the_overview_opens_the_students_failures_and_a_classes_samples(root):
    d, b = _terms(root)
    at = open_app("path:a", "overview", first_run=True)
    at.button(key="overview_to_failures").click().run()
    assert_ok(at)
    assert at.title[0].value == "Samples" and at.query_params["failure"] == "Student wrong"
    assert _count(at) == int((d.student_pred != b.labels).sum())
    at = open_app("path:a", "overview", first_run=True, view="Per class")
    table = next(x.value for x in at.dataframe if "class index" in x.value.columns)
    at.session_state["overview_class_table"] = {"selection": {"rows": [0], "columns": [], "cells": []}}
    at.run()
    at.button(key="overview_class_failures").click().run()
    c = int(table["class index"].iloc[0])
    assert at.title[0].value == "Samples"
    assert _count(at) == int(((d.student_pred != b.labels) & (b.labels == c)).sum())


def test_diagnose_opens_its_failures_and_a_confusion_pair(root):
    d, b = _terms(root)
    at = open_app("path:a", "diagnose", first_run=True, rank="BCD")
    at.button(key="diagnose_to_samples").click().run()
    assert_ok(at)
    wrong = np.flatnonzero((d.teacher_pred == b.labels) & (d.student_pred != b.labels))
    assert at.query_params["failure"] == "Student wrong, teacher right" and at.query_params["sort"] == "BCD"
    assert _count(at) == len(wrong) and _table(at)["sample"].tolist() == _order(d.bcd, wrong)[:48]
    at = open_app("path:a", "diagnose", first_run=True)
    pairs = next(x.value for x in at.dataframe if "student says" in x.value.columns and "samples" in x.value)
    at.session_state["diagnose_pair_table"] = {"selection": {"rows": [0], "columns": [], "cells": []}}
    at.run()
    at.button(key="diagnose_pair_to_samples").click().run()
    assert at.title[0].value == "Samples" and not _lines(at)
    assert _count(at) == int(pairs["samples"].iloc[0])


def test_the_map_places_every_sample_and_says_over_which(root, monkeypatch):
    at = _open(tab="Map", color="class")
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    shown = np.concatenate([_array(trace["customdata"]) for trace in spec["data"]])
    assert sorted(shown.tolist()) == list(range(240))  # each sample once, named by its index
    assert any("PCA of the teacher's probabilities at T = 4: all 240 samples" in c.value for c in at.caption)
    monkeypatch.setitem(compute.embedding.LIMITS, "pca", 100)
    at = _open(tab="Map", T="3")
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert sum(len(_array(trace["customdata"])) for trace in spec["data"]) == 100
    assert any("100 of 240 samples, drawn at random with seed 0" in c.value for c in at.caption)


@pytest.mark.parametrize("standardize", [False, True])
def test_the_snippet_prints_the_rows_the_page_shows(root, standardize):
    """With logit standardization too: the terms differ, and the snippet computes the page's."""
    names = readable_names(NAMES)
    ls = {"standardize": "true"} if standardize else {}
    at = _open(vs="kd", failure="Student wrong", sort="p_W·WCD", true=names[1], **ls)
    assert any(w.label.startswith("Standardize") and w.value == standardize for w in at.sidebar.toggle)
    code = next(c.value for c in at.get("code") if "from cakd_viz import" in c.value)
    out = run_snippet(code, root.parent)
    got, shown = pd.read_csv(io.StringIO(out.stdout)), _table(at)
    assert f"{_count(at):,} of 240 samples match" in out.stderr and len(got) == _count(at)
    assert list(got.columns) == list(shown.columns)
    np.testing.assert_allclose(got["p_W·WCD (nats)"], shown["p_W·WCD (nats)"], rtol=1e-6)
    assert got["sample"].tolist() == shown["sample"].tolist()
    assert got["kd says"].astype(str).tolist() == shown["kd says"].astype(str).tolist()


def test_the_overviews_scans_use_every_sample_up_to_a_bound_and_say_so(root, monkeypatch):
    at = open_app("path:a", "overview", view="vs temperature")
    assert_ok(at)
    assert any("Shares at each T over all 240 samples." == c.value for c in at.caption)
    assert compute.scan_sample(20_000) is None and compute.scan_sample(20_001) == compute.SCAN_SAMPLE
    monkeypatch.setattr(compute, "SCAN_ALL_UP_TO", 100)
    monkeypatch.setattr(compute, "SCAN_SAMPLE", 50)
    at = open_app("path:a", "overview", view="vs temperature", grouping="topk:3")
    assert any("on 50 of 240 samples, drawn at random with seed 0" in c.value for c in at.caption)


def test_under_ls_the_family_filter_takes_the_families_diagnose_and_correlation_show(tmp_path, monkeypatch):
    """The families are cut from the standardized teacher's correlation under LS, as on the Correlation and
    Diagnose pages (the help says "the Correlation page's families"), here and in the snippet: a teacher
    whose logits share one large per-sample shift has one family as it is and one per class standardized."""
    rng = np.random.default_rng(5)
    base = rng.normal(size=(300, 6)).astype(np.float32)
    teacher = base + 40 * rng.normal(size=(300, 1)).astype(np.float32)  # every class moves together
    labels = base.argmax(1)
    student = (teacher + rng.normal(size=teacher.shape)).astype(np.float32)
    write_bundle(tmp_path / "data" / "s", teacher=teacher, students={"ce": student}, labels=labels)
    monkeypatch.setenv(app_config.DATA_ROOT_ENV, str(tmp_path / "data"))
    monkeypatch.setenv("CAKD_SAMPLES_DIR", str(tmp_path / "no-samples"))
    for standardize, families in ((False, 1), (True, 6)):
        ids = cluster_classes(class_correlation(teacher, standardize=standardize), threshold=0.5)[1]
        assert len(set(ids)) == families  # the data are as the test needs
        params = {"standardize": "true"} if standardize else {}
        at = _open("s", **params)
        assert len(at.selectbox(key="fam").options) == families + 1  # (any) and each family
    at = _open("s", standardize="true", fam=at.selectbox(key="fam").options[2])  # class 1's family: itself
    assert _count(at) == int((labels == 1).sum())
    code = next(c.value for c in at.get("code") if "from cakd_viz import" in c.value)
    out = run_snippet(code, tmp_path)
    assert f"{_count(at):,} of 300 samples match" in out.stderr
