"""Figure builders of the Data, Overview and Correlation pages, without Streamlit.

They take computed results (a Decomposition, its aggregates, sweep frames, a correlation matrix) and
must draw what those results say: one colour per term, units on the axes, names as text, no N x C payload.
"""

from __future__ import annotations

import base64
import io
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from cakd_viz import aggregates, scans
from cakd_viz.decomposition import decompose
from cakd_viz.families import cluster_classes, comembership
from cakd_viz.figures import correlation as corrfig
from cakd_viz.figures import data as datafig
from cakd_viz.figures import overview as ovfig
from cakd_viz.figures.style import TERM_COLORS
from cakd_viz.grouping import class_correlation, parse_grouping
from cakd_viz.text import html as plain

TERMS = ("bcd", "scd", "wcd")


@pytest.fixture
def d(logits):
    student, teacher, labels = logits
    return decompose(student, teacher, labels, grouping="topk:3", temperature=2.0, device="cpu")


@pytest.fixture
def summary(logits):
    student, teacher, labels = logits
    rows = []
    for name, s in {"kd": student, "copy": 0.5 * (student + teacher)}.items():
        dd = decompose(s, teacher, labels, grouping="topk:3", temperature=2.0, device="cpu")
        rows.append({"student": name, **aggregates.dataset_summary(dd)})
    import pandas as pd

    return pd.DataFrame(rows)


# -- overview ----------------------------------------------------------------------------------------


def test_shares_figure_stacks_the_three_terms_to_100_percent_per_student(summary):
    f = ovfig.shares_figure(summary)
    assert [t.type for t in f.data] == ["bar"] * 3
    assert [t.marker.color for t in f.data] == [TERM_COLORS[k] for k in TERMS]
    total = sum(np.asarray(t.x) for t in f.data)
    np.testing.assert_allclose(total, 100.0, rtol=1e-9)
    assert list(f.data[0].y) == ["kd", "copy"]
    assert f.layout.barmode == "stack" and "%" in f.layout.xaxis.title.text


def test_histogram_figure_draws_kl_and_each_contribution_on_a_log_axis(d):
    hists = aggregates.term_histograms(d, bins=30)
    f = ovfig.histogram_figure(hists)
    assert len(f.data) == 4
    assert [t.line.color for t in f.data] == [TERM_COLORS[k] for k in ("kl", *TERMS)]
    assert f.layout.xaxis.type == "log" and "nats" in f.layout.xaxis.title.text
    assert all(len(t.x) == 31 for t in f.data)  # pre-binned: edges, never one point per sample
    assert sum(np.asarray(f.data[0].y)[:-1]) + hists["kl"].attrs["zeros"] == len(d)


@pytest.mark.parametrize("current", [None, 2.0])
def test_sweep_figure_has_one_panel_per_student(logits, current):
    student, teacher, labels = logits
    frames = [
        scans.temperature_scan(s, teacher, labels, temperatures=(0.5, 1, 2, 4), grouping="topk:3").assign(
            student=n
        )
        for n, s in {"a": student, "b": teacher + 0.1}.items()
    ]
    import pandas as pd

    f = ovfig.sweep_figure(
        pd.concat(frames), x="temperature", x_title="temperature T", log_x=True, current=current
    )
    stacked = [t for t in f.data if t.stackgroup]
    assert len(stacked) == 6 and {t.stackgroup for t in stacked} == {"s1", "s2"}
    assert len(f.data) == 6 + (2 if current else 0)
    tops = np.sum([np.asarray(t.y) for t in stacked if t.stackgroup == "s1"], axis=0)
    np.testing.assert_allclose(tops, 100.0, rtol=1e-9)
    assert f.layout.xaxis.type == "log"


def test_class_breakdown_figure_shows_the_top_classes_split_into_terms(d):
    names = [f"<i>c{i}</i>" for i in range(10)]
    table = aggregates.class_breakdown(d, num_classes=10, class_names=names)
    f = ovfig.class_breakdown_figure(table, top=4)
    assert len(f.data) == 3 and all(len(t.x) == 4 for t in f.data)
    np.testing.assert_allclose(sum(np.asarray(t.x) for t in f.data), table["kl_total"].head(4), rtol=1e-9)
    assert all("<i>" not in y and "&lt;i&gt;" in y for y in f.data[0].y)
    assert "nats" in f.layout.xaxis.title.text


@pytest.mark.parametrize(
    ("spec", "kind", "first"),
    [
        ("topk:5", "topk", "topk:1"),
        ("target", "topk", "topk:1"),
        ("topk+target:2", "topk+target", "topk+target:1"),
        ("mass:0.9", "mass", "mass:0.5"),
        ("corr:0.5", "corr", "corr:0.2"),
    ],
)
def test_sweep_groupings_stays_in_the_family_of_the_spec(spec, kind, first):
    param, specs, values = parse_grouping(spec).sweep(10)
    assert specs[0] == first and all(s.split(":")[0] == kind for s in specs)
    assert len(specs) == len(values)
    if kind.startswith("topk"):
        assert max(values) <= 9  # K < C


def test_grouping_param():
    assert ovfig.grouping_param("topk:5") == 5.0 and ovfig.grouping_param("target") is None


# -- correlation -------------------------------------------------------------------------------------


@pytest.fixture
def families():
    """A (C, C) correlation with three clear families of sizes 30, 25, 45 (C = 100)."""
    sizes = [30, 25, 45]
    fam = np.repeat(np.arange(3), sizes)
    corr = np.where(fam[:, None] == fam[None, :], 0.9, 0.05)
    np.fill_diagonal(corr, 1.0)
    return corr, fam


def test_cluster_then_pick_the_largest_families(families):
    corr, truth = families
    order, family = cluster_classes(corr, threshold=0.5)
    assert len(np.unique(family)) == 3
    picked = corrfig.pick_classes(order, family)
    assert len(picked) == 60 and len(set(truth[picked])) == 3  # an equal share of every (large) family
    assert list(picked) == [c for c in order if c in set(picked)]  # in clustering order
    one = corrfig.pick_classes(order, family, only=family[0])
    assert set(one) == set(np.flatnonzero(family == family[0]))
    assert len(corrfig.pick_classes(order[:50], family)) == 50  # small C: every class


def test_correlation_heatmap_boxes_families_and_spans_minus_one_to_one(families):
    corr, _ = families
    order, family = cluster_classes(corr, threshold=0.5)
    classes = order[:40]
    names = [f"<b>{i}</b>" for i in range(100)]
    f = corrfig.correlation_heatmap(corr, classes, family, names)
    h = f.data[0]
    assert h.type == "heatmap" and np.asarray(h.z).shape == (40, 40)
    assert (h.zmin, h.zmax) == (-1, 1)
    assert len(f.layout.shapes) == len(set(family[classes]))
    assert all("<b>" not in x for x in h.x)


def test_comembership_heatmap_is_conditional_percent(logits):
    _, teacher, labels = logits
    counts = comembership(teacher, labels, grouping="topk:3")
    order, family = cluster_classes(class_correlation(teacher))
    f = corrfig.comembership_heatmap(counts, order, family, [str(i) for i in range(10)])
    z = np.asarray(f.data[0].z, dtype=float)
    np.testing.assert_allclose(np.diag(z), 100.0)
    assert np.nanmin(z) >= 0 and np.nanmax(z) <= 100


def test_top_pairs_are_sorted_and_name_the_classes(logits):
    _, teacher, labels = logits
    counts = comembership(teacher, labels, grouping="topk:3")
    corr = class_correlation(teacher)
    _, family = cluster_classes(corr)
    pairs = corrfig.top_pairs(counts, corr, [f"n{i}" for i in range(10)], family, k=5)
    assert len(pairs) == 5 and list(pairs["together"]) == sorted(pairs["together"], reverse=True)
    assert pairs["class a"].str.startswith("n").all()


def test_strong_mass_axes_zoom_onto_the_data(d):
    f = corrfig.strong_mass_figure(d)
    lo, hi = f.layout.xaxis.range
    assert 0 <= lo < hi <= 1 and tuple(f.layout.yaxis.range) == (lo, hi)
    assert lo <= d.teacher_strong_mass.mean() <= hi


def test_strong_size_and_mass_figures_are_pre_binned(logits):
    student, teacher, labels = logits
    d = decompose(student, teacher, labels, grouping="mass:0.9", temperature=2.0, device="cpu")
    sizes = corrfig.strong_size_figure(d.strong_size, grouping=d.grouping)
    assert sum(sizes.data[0].y) == len(d) and "|S|" in sizes.layout.xaxis.title.text
    mass = corrfig.strong_mass_figure(d, bins=20)
    assert np.asarray(mass.data[0].z).shape == (20, 20)
    assert np.asarray(mass.data[0].customdata).sum() == len(d)


# -- data --------------------------------------------------------------------------------------------


def test_models_table_and_accuracy_figure():
    info = {
        "teacher": {"accuracy": 0.9, "dtype": "float16"},
        "students": {"a": {"accuracy": 0.8, "agreement": 0.85, "dtype": "float16"}},
    }
    models = datafig.models_table(info)
    assert list(models["model"]) == ["teacher", "a"]
    f = datafig.accuracy_figure(models)
    assert [t.name.split()[0] for t in f.data] == ["accuracy", "agreement"]
    np.testing.assert_allclose(f.data[0].y, [90.0, 80.0])


@pytest.mark.parametrize(
    ("shape", "dtype", "ok"),
    [
        ((5, 8, 8), np.uint8, True),
        ((5, 8, 8, 3), np.uint8, True),
        ((5, 3, 8, 8), np.float32, True),
        ((5, 1, 8, 8), np.float64, True),
        ((5, 64), np.float32, False),
        ((5, 8, 8, 7), np.uint8, False),
    ],
)
def test_as_images(shape, dtype, ok):
    x = (np.random.default_rng(0).random(shape) * 200).astype(dtype)
    img = datafig.as_images(x)
    assert (img is not None) == ok
    if ok:
        assert img.dtype == np.uint8 and img.shape == (5, 8, 8, 3)


def test_as_images_scales_an_image_with_a_nan_pixel_over_its_other_pixels():
    x = np.tile(np.linspace(0.0, 1.0, 64).reshape(1, 8, 8), (2, 1, 1))
    x[0, 3, 3] = np.nan
    img = datafig.as_images(x)
    assert img[0, 3, 3, 0] == 0 and img[0, 7, 7, 0] == 255  # not the whole image black
    img[1, 3, 3] = 0
    np.testing.assert_array_equal(img[0], img[1])  # the other pixels as without the NaN


def test_image_grid_figure_captions_every_tile_as_text():
    imgs = datafig.as_images(np.zeros((10, 8, 8), np.uint8))
    f = datafig.image_grid_figure(imgs, [f"<a href='x'>{i}</a>" for i in range(10)], cols=4)
    source = f.data[0].source  # one PNG, as a data URI: a saved figure needs nothing outside itself
    assert f.data[0].type == "image" and source.startswith("data:image/png;base64,")
    png = Image.open(io.BytesIO(base64.b64decode(source.split(",", 1)[1])))
    assert png.format == "PNG" and png.width == 4 * (72 + 8)  # 8x8 tiles enlarged 9-fold, 8 px apart
    assert len(f.layout.annotations) == 10 and all("<a" not in a.text for a in f.layout.annotations)


def test_image_grid_captions_are_cut_before_they_are_escaped():
    imgs = datafig.as_images(np.zeros((1, 8, 8), np.uint8))
    f = datafig.image_grid_figure(imgs, ["#3 R&D<lab> & more words"], cols=4)
    # 18 characters of the name, then escaped: no entity cut in half ("&am"), none shown as text
    assert f.layout.annotations[0].text == "#3<br>R&amp;D&lt;lab&gt; &amp; more wo"


def test_plain_escapes_markup():
    assert plain("<b>x</b> & y") == "&lt;b&gt;x&lt;/b&gt; &amp; y"


def test_the_library_side_never_imports_streamlit():
    code = (
        "import sys; import cakd_viz.figures.overview, cakd_viz.figures.correlation, cakd_viz.figures.data, "
        "cakd_viz.app.config; assert 'streamlit' not in sys.modules, 'streamlit was imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
