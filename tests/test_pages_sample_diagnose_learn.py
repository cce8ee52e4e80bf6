"""AppTest of the Sample, Diagnose and Learn pages, run through app.py as a user would reach them.

On the shipped glyphs sample when it is present, else on a small bundle written here (with image inputs,
labels and a class name that looks like markup). Numbers on the pages are checked against the library.
"""

import json
import os

import numpy as np
import pytest
from apptest_support import as_read, open_app
from conftest import make_logits
from streamlit.testing.v1 import AppTest

from cakd_viz import decompose, diagnose
from cakd_viz.app import config as app_config
from cakd_viz.bundle import load_bundle, write_bundle
from cakd_viz.classnames import readable_names
from cakd_viz.learn import PRESETS
from cakd_viz.terms import heading

SAMPLE, DIAGNOSE, LEARN = (
    "cakd_viz/app/pages/sample.py",
    "cakd_viz/app/pages/diagnose.py",
    "cakd_viz/app/pages/learn.py",
)
TERM_METRICS = ("BCD", "p_S·SCD", "p_W·WCD")


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """(bundle source token for the URL, the opened bundle)."""
    shipped = app_config.sample_path("glyphs")
    if (shipped / "meta.json").is_file():
        yield "sample:glyphs", load_bundle(shipped)
        return
    root = tmp_path_factory.mktemp("data_root")
    s, t, y = make_logits(n=240, c=12, seed=1)
    inputs = (np.random.default_rng(0).random((240, 8, 8)) * 255).astype(np.uint8)
    names = [f"class {i}" for i in range(11)] + ["<b>bold</b> & *x*"]
    weak = 0.3 * t + np.random.default_rng(1).normal(0, 2, t.shape).astype(np.float32)
    path = write_bundle(
        root / "tiny", teacher=t, students={"kd": s, "weak": weak}, labels=y, class_names=names, inputs=inputs
    )
    old = os.environ.get(app_config.DATA_ROOT_ENV)
    os.environ[app_config.DATA_ROOT_ENV] = str(root)
    yield "path:tiny", load_bundle(path)
    if old is None:
        os.environ.pop(app_config.DATA_ROOT_ENV, None)
    else:
        os.environ[app_config.DATA_ROOT_ENV] = old


def open_page(page: str, source: str | None = None, *, first_run: bool = False, **params) -> AppTest:
    """An AppTest of app.py showing `page`. first_run: run the default page first, as AppTest needs for a
    page switch that the script itself makes (st.switch_page) to take effect."""
    at = open_app(params.pop("bundle", source), page, first_run=first_run, **params)
    assert not at.exception, [e.message for e in at.exception]
    return at


def metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def shown_terms(at: AppTest) -> tuple[float, list[float]]:
    """(KL, [BCD, p_S·SCD, p_W·WCD]) as the page prints them."""
    m = metrics(at)
    return float(m["KL (nats)"]), [float(m[name]) for name in TERM_METRICS]


def expected_row(bundle, i: int, grouping="topk:5", temperature=4.0, student=None):
    d = decompose(
        bundle.student(student)[i : i + 1],
        bundle.teacher[i : i + 1],
        None if bundle.labels is None else bundle.labels[i : i + 1],
        grouping=grouping,
        temperature=temperature,
        device="cpu",
    )
    return float(d.kl[0]), [float(v[0]) for v in d.contributions().values()]


def assert_numbers(at: AppTest, bundle, i: int, **kw):
    kl, parts = shown_terms(at)
    want_kl, want_parts = expected_row(bundle, i, **kw)
    np.testing.assert_allclose(kl, want_kl, rtol=1e-3, atol=1e-6)  # printed to 4 significant digits
    np.testing.assert_allclose(parts, want_parts, rtol=1e-3, atol=1e-6)
    np.testing.assert_allclose(sum(parts), kl, rtol=2e-3, atol=1e-6)  # the identity, as shown


def plotly_specs(at: AppTest) -> list[dict]:
    return [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]


# -- Sample -------------------------------------------------------------------------------------------


def test_sample_page_shows_the_sample_in_the_url(source):
    src, bundle = source
    at = open_page(SAMPLE, src, i=5)
    assert at.query_params["i"] == "5"
    assert_numbers(at, bundle, 5)
    assert len(at.get("image")) == (1 if bundle.inputs is not None else 0)
    if bundle.labels is not None:
        # the class as the page names it: look-alike glyphs spelled out ("5 (digit)")
        # (escaped for Markdown, which the card's value is: a name from a file never renders as markup)
        shown = as_read(metrics(at)["True class"])
        assert shown == readable_names(bundle.class_names)[int(bundle.labels[5])]
    bars, contributions = plotly_specs(at)
    student = bundle.student_names[0]
    assert [tr["name"] for tr in bars["data"]] == ["teacher p", f"{student} q", "strong set S"]
    assert [tr["meta"] for tr in contributions["data"]] == ["bcd", "scd", "wcd"]
    assert len(at.latex) == 2


def test_sample_page_steps_and_picks(source):
    src, bundle = source
    at = open_page(SAMPLE, src, i=3)
    next(b for b in at.button if b.label.startswith("Next")).click().run()
    assert at.query_params["i"] == "4"
    assert_numbers(at, bundle, 4)
    next(b for b in at.button if b.label.startswith("◀")).click().run()
    next(b for b in at.button if b.label.startswith("◀")).click().run()
    assert at.query_params["i"] == "2"
    at.number_input(key="i").set_value(11).run()
    assert not at.exception
    assert at.query_params["i"] == "11"
    assert_numbers(at, bundle, 11)


@pytest.mark.parametrize(("raw", "want"), [("999999999", 0), ("-4", 0), ("abc", 0)])
def test_sample_page_shows_the_first_sample_for_bad_indices(source, raw, want):
    src, bundle = source
    at = open_page(SAMPLE, src, i=raw)
    i = bundle.num_samples - 1 if want == "last" else want
    assert at.number_input(key="i").value == i
    assert_numbers(at, bundle, i)
    assert next(b for b in at.button if b.label.startswith("Next")).disabled == (want == "last")


@pytest.mark.parametrize("grouping", ["target", "topk:2", "topk+target:3", "mass:0.9", "corr:0.3"])
def test_sample_page_every_grouping(source, grouping):
    src, bundle = source
    at = open_page(SAMPLE, src, i=7, grouping=grouping, T=2)
    if grouping == "corr:0.3":  # S needs the bundle's correlation: compare with the full decomposition
        kl, parts = shown_terms(at)
        np.testing.assert_allclose(sum(parts), kl, rtol=2e-3, atol=1e-6)
        return
    assert_numbers(at, bundle, 7, grouping=grouping, temperature=2.0)


def test_sample_page_other_student(source):
    src, bundle = source
    other = bundle.student_names[-1]
    at = open_page(SAMPLE, src, i=9, student=other)
    assert_numbers(at, bundle, 9, student=other)


# -- Diagnose -----------------------------------------------------------------------------------------


def test_diagnose_page_every_failure_set(source):
    src, bundle = source
    at = open_page(DIAGNOSE, src)
    d = decompose(
        bundle.student(), bundle.teacher, bundle.labels, grouping="topk:5", temperature=4.0, device="cpu"
    )
    sets = diagnose.available_sets(d)
    assert list(at.radio[0].options) == sets
    for name in sets:
        at.radio[0].set_value(name).run()
        assert not at.exception, [e.message for e in at.exception]
        count = int(diagnose.failure_mask(d, name).sum())
        assert metrics(at)["Samples in the set"] == f"{count:,}"
        if count:
            table = at.dataframe[0].value
            assert len(table) == min(count, 300)
            np.testing.assert_allclose(
                table["KL (nats)"].iloc[0], d.kl[diagnose.failure_mask(d, name)].max(), rtol=1e-5
            )
            specs = plotly_specs(at)
            assert [tr["meta"] for tr in specs[0]["data"]] == ["bcd", "scd", "wcd"]
            assert {tr["meta"] for tr in specs[1]["data"]} <= {"bcd", "scd", "wcd"}
            labels = [b.label for b in at.get("download_button")]
            assert f"Download all {count:,} as CSV" in labels


@pytest.mark.parametrize("rank", ["BCD", "p_S·SCD", "WCD"])
def test_diagnose_ranks_by_a_term(source, rank):
    src, bundle = source
    at = open_page(DIAGNOSE, src)
    at.selectbox[0].set_value(rank).run()
    assert not at.exception
    column = at.dataframe[0].value[heading(diagnose.RANK_KEYS[rank])]
    assert column.is_monotonic_decreasing


def test_diagnose_view_opens_from_a_link(source):
    """The failure set and the ranking are bound to the URL by their labels (set=..., rank=...)."""
    src, bundle = source
    at = open_page(DIAGNOSE, src, set="Student disagrees with teacher", rank="p_W·WCD")
    assert at.radio(key="set").value == "Student disagrees with teacher"
    assert at.selectbox(key="rank").value == "p_W·WCD"
    assert not at.warning  # both values were usable


def test_diagnose_row_opens_in_the_sample_page(source):
    src, bundle = source
    at = open_page(DIAGNOSE, src, first_run=True)
    first = int(at.dataframe[0].value["sample"].iloc[1])
    at.session_state["diagnose_rows"] = {"selection": {"rows": [1], "columns": [], "cells": []}}
    at.run()
    button = next(b for b in at.button if b.label.startswith("Open sample"))
    assert button.label == f"Open sample #{first} in the Sample page"
    button.click().run()
    assert not at.exception
    assert at.title[0].value == "Sample"
    assert at.query_params["i"] == str(first)
    assert at.number_input(key="i").value == first
    assert_numbers(at, bundle, first)


# -- Learn --------------------------------------------------------------------------------------------


def learn_terms(at: AppTest) -> dict[str, float]:
    m = metrics(at)
    return {
        "kl": float(m["KL (nats)"]),
        **{k: float(m[n]) for k, n in zip(("bcd", "scd", "wcd"), TERM_METRICS, strict=True)},
    }


def test_learn_presets_change_the_terms():
    at = open_page(LEARN)  # needs no bundle
    seen = {}
    for name, preset in PRESETS.items():
        at.selectbox(key="learn_preset").set_value(name).run()
        assert not at.exception, [e.message for e in at.exception]
        terms = learn_terms(at)
        want = preset.example()
        np.testing.assert_allclose(terms["kl"], want.kl, atol=6e-5)
        np.testing.assert_allclose(terms["bcd"] + terms["scd"] + terms["wcd"], terms["kl"], atol=2e-4)
        if preset.dominant:
            assert max(("bcd", "scd", "wcd"), key=terms.get) == preset.dominant
        assert at.info[0].value == preset.story
        seen[name] = terms["kl"]
    assert len(set(seen.values())) == len(PRESETS)


def test_learn_sliders_and_grouping_update_live():
    at = open_page(LEARN)
    before = learn_terms(at)
    at.slider(key="learn_s1").set_value(6.5).run()  # student now prefers dog
    after = learn_terms(at)
    assert after["kl"] > before["kl"]
    at.radio(key="learn_kind").set_value("target").run()
    target = learn_terms(at)
    assert target["scd"] == 0.0  # S = {label}: DKD's split
    np.testing.assert_allclose(target["kl"], after["kl"], atol=1e-4)  # the grouping never changes KL
    spec = plotly_specs(at)[0]
    assert len(spec["layout"]["shapes"]) == 1  # one strong class shaded
    at.slider(key="learn_T").set_value(4.0).run()
    assert learn_terms(at)["kl"] < target["kl"]  # a softer pair of distributions
    assert not at.exception


def test_learn_example_lives_in_the_url():
    view = PRESETS["Wrong group mass: under-confident on the look-alikes"].view()
    at = open_page(LEARN, **view.to_params())
    np.testing.assert_allclose(
        learn_terms(at)["kl"],
        PRESETS["Wrong group mass: under-confident on the look-alikes"].example().kl,
        atol=6e-5,
    )
    at.slider(key="learn_s0").set_value(2.0).run()
    assert at.query_params["zs"].startswith("2,")  # the URL follows the sliders
    assert "changed from" in at.caption[0].value
    again = open_page(LEARN, **dict(at.query_params))  # the link reproduces the view
    assert learn_terms(again) == learn_terms(at)


def test_learn_link_to_a_preset_names_it():
    name = "DKD's split: S = {label}, student prefers dog"
    at = open_page(LEARN, **PRESETS[name].view().to_params())
    assert at.selectbox(key="learn_preset").value == name
    assert at.info[0].value == PRESETS[name].story
    assert at.radio(key="learn_kind").value == "target"


@pytest.mark.parametrize("shape", [(3, 5000, 1), (1, 2), (5000, 5000), (2, 40, 3)])
def test_inputs_that_are_no_picture_are_said_not_drawn(tmp_path, monkeypatch, shape):
    """A bundle's inputs of any shape: the Sample page says it does not draw them, and breaks nothing."""
    student, teacher, labels = make_logits(12, 5, seed=4)
    inputs = np.random.default_rng(0).random((12, *shape)).astype(np.float32)
    write_bundle(tmp_path / "odd", teacher=teacher, students={"s": student}, labels=labels, inputs=inputs)
    monkeypatch.setenv(app_config.DATA_ROOT_ENV, str(tmp_path))
    at = open_page(SAMPLE, "path:odd", i=3)
    assert not at.error and not at.get("image")
    assert any(f"have shape {shape}: not shown as an image" in c.value for c in at.caption)


def test_diagnose_says_what_b_fixes_against_a_by_their_names(tmp_path, monkeypatch):
    """The page's words put the names in for 'A' and then for the first 'B': A named "ABC" read "AkdC"."""
    s, t, y = make_logits(n=120, c=6, seed=2)
    write_bundle(tmp_path / "ab", teacher=t, students={"ABC": 0.5 * s, "kd": s}, labels=y)
    monkeypatch.setenv(app_config.DATA_ROOT_ENV, str(tmp_path))
    at = open_page(DIAGNOSE, "path:ab", student="ABC", vs="kd")
    said = [as_read(c.value) for c in at.caption]
    assert any("samples that ABC gets wrong and kd gets right" in text for text in said), said
