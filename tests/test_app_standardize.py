"""The app under logit standardization (LS): the sidebar's "Standardize logits (LS)" lives in the URL
(``standardize=true``), every decomposition a page asks for is of the standardized logits, and captions and
every export's context say so; the Overview's "Standardization (LS)" tab; the Learn page's own toggle.
Driven through AppTest on a small bundle written here; numbers against the library's own calls."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from apptest_support import assert_ok, open_app
from conftest import make_logits

from cakd_viz import decompose
from cakd_viz.app import config as app_config
from cakd_viz.bundle import load_bundle, write_bundle
from cakd_viz.dominance import students_table
from cakd_viz.learn import PRESETS, worked_example


@pytest.fixture
def root(tmp_path, monkeypatch) -> Path:
    """A data root "data" holding bundle "a": a teacher, a noisy student and one at 0.3 x its scale."""
    student, teacher, labels = make_logits(200, 10, seed=21)
    data = tmp_path / "data"
    students = {"noisy": student, "scaled": (0.3 * teacher).astype(np.float32)}
    write_bundle(data / "a", teacher=teacher, students=students, labels=labels)
    monkeypatch.setenv(app_config.DATA_ROOT_ENV, str(data))
    monkeypatch.setenv("CAKD_SAMPLES_DIR", str(tmp_path / "no-samples"))
    return data


def _page(page: str, **params):
    at = open_app("path:a", page, **params)
    assert_ok(at)
    return at


def _captions(at) -> str:
    return "\n".join(c.value for c in at.caption)


def _means(root: Path, *, standardize: bool, grouping="topk:3", temperature=2.0) -> dict[str, float]:
    b = load_bundle(root / "a")
    kw = {"grouping": grouping, "temperature": temperature, "standardize": standardize}
    return {s: float(decompose(b.student(s), b.teacher, b.labels, **kw).kl.mean()) for s in b.student_names}


def test_the_sidebar_toggle_standardizes_every_number_and_every_caption_and_export_says_so(root):
    at = _page("overview", standardize="true", grouping="topk:3", T=2)
    assert at.toggle(key="standardize").value is True and at.query_params["standardize"] == "true"
    table = next(d.value for d in at.dataframe if "student" in d.value.columns)
    want = _means(root, standardize=True)
    np.testing.assert_allclose(table["mean KL (nats)"], [want[s] for s in table["student"]], rtol=1e-9)
    assert want["scaled"] < 1e-9 < _means(root, standardize=False)["scaled"]
    assert "T = 2, standardized" in _captions(at)
    assert "standardize True" in _captions(at)  # every download's context (CSV columns, Parquet metadata)
    at.toggle(key="standardize").set_value(False).run()
    table = next(d.value for d in at.dataframe if "student" in d.value.columns)
    plain = _means(root, standardize=False)
    np.testing.assert_allclose(table["mean KL (nats)"], [plain[s] for s in table["student"]], rtol=1e-9)
    assert "standardized" not in _captions(at).replace("not standardized", "")


@pytest.mark.parametrize("page", ["correlation", "sample", "diagnose"])
def test_every_page_follows_the_setting_and_says_it(root, page):
    at = _page(page, standardize="true", grouping="mass:0.8", T=2)
    assert "T = 2, standardized" in _captions(at), page
    if page == "sample":
        b = load_bundle(root / "a")
        ex = worked_example(
            b.student("noisy")[0],
            b.teacher[0],
            int(b.labels[0]),
            grouping="mass:0.8",
            temperature=2.0,
            standardize=True,
        )
        shown = {m.label: m.value for m in at.metric}
        assert float(shown["KL (nats)"]) == pytest.approx(ex.kl, rel=1e-3, abs=1e-9)


def test_the_overview_tab_shows_whether_standardization_changes_the_largest_part(root):
    at = _page("overview", view="Standardization (LS)", grouping="topk:3", T=2)
    assert at.query_params["view"] == "Standardization (LS)"
    b = load_bundle(root / "a")
    kw = {"grouping": "topk:3", "temperature": 2.0}
    plain = {s: decompose(b.student(s), b.teacher, b.labels, **kw) for s in b.student_names}
    ls = {s: decompose(b.student(s), b.teacher, b.labels, **kw, standardize=True) for s in b.student_names}
    want = students_table(plain, ls)
    shown = next(d.value for d in at.dataframe if "share of KL: BCD, with LS (%)" in d.value.columns)
    np.testing.assert_allclose(
        shown["share of KL: BCD, with LS (%)"], 100 * want["share_bcd_ls"], rtol=1e-9
    )  # percent
    np.testing.assert_allclose(shown["share of KL: p_W·WCD (%)"], 100 * want["share_wcd"], rtol=1e-9)
    assert list(shown["largest part changes with LS"]) == list(want["changed"])
    per_class = next(d.value for d in at.dataframe if "class index" in d.value.columns)
    assert len(per_class) == len(np.unique(b.labels))
    assert "standardize without and with" in _captions(at)


def test_the_learn_page_has_its_own_toggle_and_the_scaled_student_preset(root):
    name = "Right ranking, smaller logit scale (try LS)"
    at = open_app(page="learn")
    at.selectbox(key="learn_preset").set_value(name).run()
    kl = float(next(m.value for m in at.metric if m.label.startswith("KL")))
    assert kl == pytest.approx(PRESETS[name].example().kl, abs=1e-4) and kl > 0.2
    at.toggle(key="learn_ls").set_value(True).run()
    assert_ok(at)
    assert float(next(m.value for m in at.metric if m.label.startswith("KL"))) < 1e-4
    assert (
        at.query_params["ls"] == "true" and at.toggle(key="standardize").value is False
    )  # not the sidebar's
    assert at.info[0].value == PRESETS[name].story  # still the preset, now with LS
    assert "Without standardization this example's KL would be 0.24" in _captions(at)
