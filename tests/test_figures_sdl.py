"""The Sample, Diagnose and Learn figures and worked examples: traces checked on the Plotly JSON, numbers
against an independent float64 re-derivation (tests/reference.py). No Streamlit here."""

import base64
import json

import numpy as np
import pytest
from conftest import make_logits
from reference import reference_terms

from cakd_viz import decompose
from cakd_viz import diagnose as dg
from cakd_viz.figures import diagnose as fd
from cakd_viz.figures import learn as fl
from cakd_viz.figures import sample as fs
from cakd_viz.figures.style import ROLE_COLORS, TERM_COLORS
from cakd_viz.learn import (
    LEARN_CLASSES,
    PRESETS,
    LearnView,
    shown_classes,
    worked_example,
)
from cakd_viz.terms import PART
from cakd_viz.worked import format_number, identity_latex

ODD = "<b>bold</b> & *x*"


def _json(fig) -> dict:
    """The figure as the browser gets it, with Plotly's typed arrays ({"dtype", "bdata"}) decoded to lists."""

    def decode(obj):
        if isinstance(obj, dict) and "bdata" in obj and "dtype" in obj:
            return np.frombuffer(base64.b64decode(obj["bdata"]), dtype=obj["dtype"]).tolist()
        if isinstance(obj, dict):
            return {k: decode(v) for k, v in obj.items()}
        if isinstance(obj, list):
            return [decode(v) for v in obj]
        return obj

    return decode(json.loads(fig.to_json()))


@pytest.mark.parametrize("temperature", [0.5, 1.0, 4.0])
@pytest.mark.parametrize("grouping", ["target", "topk:3", "topk+target:2", "mass:0.7"])
def test_worked_example_matches_reference(grouping, temperature):
    s, t, y = make_logits(n=6, c=10, seed=3)
    for i in range(6):
        ex = worked_example(s[i], t[i], int(y[i]), grouping=grouping, temperature=temperature)
        ref = reference_terms(s[i : i + 1], t[i : i + 1], ex.strong[None, :], temperature)[0]
        np.testing.assert_allclose([ex.kl, ex.bcd, ex.scd, ex.wcd], ref[:4], rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose([ex.p_strong, ex.p_weak, ex.q_strong], ref[4:], rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(sum(ex.contributions().values()), ex.kl, rtol=1e-5, atol=1e-9)
        np.testing.assert_allclose(
            ex.p, np.exp(t[i] / temperature) / np.exp(t[i] / temperature).sum(), rtol=1e-6
        )
        d = decompose(s, t, y, grouping=grouping, temperature=temperature, device="cpu")
        assert int(ex.strong.sum()) == d.strong_size[i]
        np.testing.assert_allclose(ex.kl, d.kl[i], rtol=1e-5, atol=1e-9)


def test_a_float64_worked_example_is_the_float64_decomposition_of_its_row():
    # 1e8 and 1e8 + 1 are one float32 value: the teacher prefers class 1, the student class 0
    s, t = np.array([[1e8 + 1, 1e8, 0.0]]), np.array([[1e8, 1e8 + 1, 0.0]])
    ex = worked_example(s[0], t[0], grouping="topk:1")
    d = decompose(s, t, grouping="topk:1", device="cpu")
    assert ex.strong.tolist() == [False, True, False]
    np.testing.assert_allclose([ex.kl, ex.bcd], [d.kl[0], d.bcd[0]], rtol=1e-9)
    assert ex.kl > 0.46  # KL of p = (0.27, 0.73, 0) against q = (0.73, 0.27, 0), as ex.p and ex.q say


def test_worked_example_corr_needs_the_matrix():
    s, t, y = make_logits(n=50, c=8)
    corr = np.corrcoef(t.T.astype(np.float64))
    ex = worked_example(s[0], t[0], grouping="corr:0.2", correlation=corr)
    pred = int(t[0].argmax())
    np.testing.assert_array_equal(ex.strong, corr[pred] >= 0.2)
    with pytest.raises(ValueError):
        worked_example(s[0], t[0], grouping="corr:0.2")


@pytest.mark.parametrize("name", list(PRESETS))
def test_presets_make_their_term_dominant(name):
    preset = PRESETS[name]
    ex = preset.example()
    parts = ex.contributions()
    if preset.dominant is None:  # the good student: everything small
        assert ex.kl < 0.02
    else:
        assert ex.dominant() == preset.dominant
        assert parts[preset.dominant] > 0.5 * ex.kl
    assert len(preset.teacher) == len(preset.student) == len(LEARN_CLASSES)


def test_presets_tell_different_stories():
    dominants = {p.example().dominant() for p in PRESETS.values() if p.dominant}
    assert dominants == {"bcd", "scd", "wcd"}
    assert PRESETS["DKD's split: S = {label}, student prefers dog"].example().scd == 0.0


def test_shown_classes_keep_the_top_and_the_strong_set():
    s, t, y = make_logits(n=1, c=300, seed=5)
    ex = worked_example(s[0], t[0], int(y[0]), grouping="mass:0.999", temperature=8.0)
    idx = shown_classes(ex, top=15, max_strong=40)
    assert set(np.argsort(-ex.p)[:15]) <= set(idx)
    assert set(ex.strong_classes[:40]) <= set(idx)
    assert len(idx) <= 15 + 5 + 40
    assert np.all(np.diff(ex.p[idx]) <= 0)  # ordered by teacher probability


def test_format_number_and_identity_latex():
    assert format_number(0.123456) == "0.1235"
    assert format_number(4e-18) == "0"
    assert format_number(2.5e-6) == "2.500e-06"
    assert format_number(0.5, 3) == "0.500"
    ex = PRESETS["Right top class, wrong ranking among look-alikes"].example()
    tex = identity_latex(ex)
    assert tex.count(r"\underbrace") == 6 and "e-" not in tex
    assert format_number(ex.kl) in tex and format_number(ex.p_strong) in tex
    assert "0.0000" in identity_latex(ex, decimals=4)


def _example(grouping="topk:3"):
    s, t, y = make_logits(n=1, c=12, seed=2)
    return worked_example(s[0], t[0], int(y[0]), grouping=grouping, temperature=2.0)


def test_probability_bars_traces_and_strong_bands():
    ex = _example()
    names = [f"class {i}" for i in range(11)] + [ODD]
    idx = np.arange(12)
    spec = _json(fs.probability_bars(ex, names, idx))
    teacher, student, legend = spec["data"]
    assert (teacher["name"], student["name"], legend["name"]) == ("teacher p", "student q", "strong set S")
    np.testing.assert_allclose(teacher["x"], ex.p[idx], rtol=1e-12)
    np.testing.assert_allclose(student["x"], ex.q[idx], rtol=1e-12)
    assert teacher["marker"]["color"] == ROLE_COLORS["teacher"]
    bands = spec["layout"]["shapes"]
    assert len(bands) == ex.strong.sum() == 3
    assert sorted(round(b["y0"] + 0.5) for b in bands) == sorted(np.flatnonzero(ex.strong[idx]).tolist())
    ticks = spec["layout"]["yaxis"]["ticktext"]
    assert "&lt;b&gt;bold&lt;/b&gt; &amp; *x*" in ticks and ODD not in ticks  # shown as text, not markup
    assert any(t.endswith("(true)") for t in ticks)
    assert "probability" in spec["layout"]["xaxis"]["title"]["text"]


def test_contribution_bars_stack_to_kl():
    ex = _example()
    spec = _json(fs.contribution_bars(ex))
    assert [tr["meta"] for tr in spec["data"]] == ["bcd", "scd", "wcd"]
    assert [tr["marker"]["color"] for tr in spec["data"]] == [TERM_COLORS[t] for t in ("bcd", "scd", "wcd")]
    parts = ex.contributions()
    for tr in spec["data"]:
        assert tr["x"] == [PART[tr["meta"]], "KL"]
        np.testing.assert_allclose(tr["y"], [parts[tr["meta"]]] * 2)
    np.testing.assert_allclose(sum(tr["y"][1] for tr in spec["data"]), ex.kl, rtol=1e-5)
    assert spec["layout"]["barmode"] == "stack" and "nats" in spec["layout"]["yaxis"]["title"]["text"]


def test_group_mass_bars_show_the_binary_split():
    ex = _example()
    spec = _json(fl.group_mass_bars(ex))
    strong, weak = spec["data"]
    np.testing.assert_allclose(strong["x"], [ex.p_strong, ex.q_strong])
    np.testing.assert_allclose(weak["x"], [ex.p_weak, ex.q_weak])
    np.testing.assert_allclose(np.add(strong["x"], weak["x"]), 1.0, rtol=1e-6)


@pytest.fixture(scope="module")
def failures():
    s, t, y = make_logits()
    d = decompose(s, t, y, grouping="topk:3", temperature=2.0, device="cpu")
    mask = dg.failure_mask(d, "Both wrong")
    names = [f"c{i}" for i in range(9)] + [ODD]
    return d, mask, names


@pytest.mark.parametrize("normalize", [True, False])
def test_class_failure_chart(failures, normalize):
    d, mask, names = failures
    table = dg.class_failures(d, mask, num_classes=10, class_names=names)
    spec = _json(fd.class_failure_chart(table, normalize=normalize, top=5))
    assert [tr["meta"] for tr in spec["data"]] == ["bcd", "scd", "wcd"]
    total = np.sum([tr["x"] for tr in spec["data"]], axis=0)
    want = 1.0 if normalize else table["kl_total"].head(5).to_numpy()
    np.testing.assert_allclose(total, want, rtol=1e-5)
    assert len(spec["layout"]["yaxis"]["ticktext"]) == 5
    assert all("<b>" not in t for t in spec["layout"]["yaxis"]["ticktext"])


def test_confusion_chart(failures):
    d, mask, names = failures
    fam = np.arange(10) % 2
    pairs = dg.confusion_pairs(d, mask, class_names=names, family=fam, in_strong=np.ones(len(d), bool))
    spec = _json(fd.confusion_chart(pairs, top=8))
    assert sum(len(tr["x"]) for tr in spec["data"]) == 8
    assert sum(np.sum(tr["x"]) for tr in spec["data"]) == pairs["count"].head(8).sum()
    for tr in spec["data"]:
        assert tr["marker"]["color"] == TERM_COLORS[tr["meta"]] and tr["width"] == 0.8
        assert all("in S 100%" in text for text in tr["text"])
    same = {int(i) for i in np.flatnonzero(pairs["same_family"].head(8))}
    marked = {
        y for tr in spec["data"] for y, text in zip(tr["y"], tr["text"], strict=True) if "same family" in text
    }
    assert marked == same


@pytest.mark.parametrize(
    ("shape", "dtype", "size"),
    [
        ((8, 8), np.uint8, (168, 168)),
        ((3, 10, 12), np.float32, (168, 140)),
        ((9, 9, 1), np.uint8, (162, 162)),
    ],
)
def test_input_image(shape, dtype, size):
    rng = np.random.default_rng(0)
    row = (rng.random(shape) * 255).astype(dtype)
    img = fs.input_image(row)
    assert img.size == size


def test_input_image_scales_over_the_finite_pixels():
    x = np.linspace(0.0, 1.0, 64).reshape(8, 8)
    x[3, 3] = np.inf
    img = np.asarray(fs.input_image(x, size=8))
    assert img[7, 7] == 255 and img[3, 3] == 0  # not every pixel black


def test_input_image_refuses_non_images():
    assert fs.input_image(np.zeros(20)) is None
    assert fs.input_image(np.zeros((4, 5, 7))) is None
    assert np.asarray(fs.input_image(np.full((4, 4), 2.0))).max() == 0  # a constant image stays finite


def test_learn_view_round_trips_through_the_url():
    view = PRESETS["Over-confident student flattens the tail"].view()
    params = view.to_params()
    assert set(params) == {"zt", "zs", "lt", "lg", "ly"}  # clear of the app's shared "T" and "grouping"
    assert LearnView.from_params(params) == view
    wild = dict(params, zt="99,-99,1,2,3,nan")
    assert LearnView.from_params(wild) is None  # NaN: the whole link is ignored
    wild = dict(params, zt="99,-99,1,2,3,4", lt="0.01", lg="mass:0.99")
    clipped = LearnView.from_params(wild)
    assert (
        clipped.teacher[:2] == (8.0, -8.0) and clipped.temperature == 0.25 and clipped.grouping == "mass:0.95"
    )
    for broken in (
        {},
        dict(params, zs="1,2"),
        dict(params, lg="corr:0.5"),
        dict(params, lg="topk:6"),
        dict(params, ly="cow"),
        dict(params, ls="yes"),
    ):
        assert LearnView.from_params(broken) is None
    with_ls = LearnView.from_params(dict(params, ls="true"))
    assert with_ls.standardize and with_ls.to_params() == params | {"ls": "true"}


def test_the_scaled_student_preset_shows_what_standardization_forgives():
    """student = 0.4 x teacher: a large KL without LS, carried by p_S·SCD and BCD; about 0 with it."""
    preset = PRESETS["Right ranking, smaller logit scale (try LS)"]
    np.testing.assert_allclose(preset.student, 0.4 * np.array(preset.teacher))
    plain, ls = preset.example(), preset.example(standardize=True)
    assert not preset.standardize and not plain.standardize and ls.standardize
    assert plain.kl > 0.2 and plain.dominant() == "scd"
    parts = plain.contributions()
    assert parts["scd"] + parts["bcd"] > 0.95 * plain.kl
    assert ls.kl < 1e-9
    np.testing.assert_allclose(ls.p, ls.q, atol=1e-8)  # the standardized rows are the same


def test_a_standardized_worked_example_is_the_split_of_the_standardized_logits():
    from reference import standardized

    student, teacher, labels = make_logits(1, 8, seed=5)
    ex = worked_example(
        student[0], teacher[0], int(labels[0]), grouping="mass:0.7", temperature=2.0, standardize=True
    )
    zs, zt = standardized(student), standardized(teacher)
    for got, z in ((ex.p, zt[0]), (ex.q, zs[0])):
        np.testing.assert_allclose(got, np.exp(z / 2.0) / np.exp(z / 2.0).sum(), rtol=1e-6)
    want = decompose(student, teacher, labels, grouping="mass:0.7", temperature=2.0, standardize=True)
    assert ex.kl == pytest.approx(float(want.kl[0]), rel=1e-12) and ex.standardize
    assert int(ex.strong.sum()) == int(want.strong_size[0])
    assert ex.kl != pytest.approx(
        worked_example(student[0], teacher[0], grouping="mass:0.7", temperature=2.0).kl
    )
