"""The HTML report of every page carries what the page shows (AppTest, a small bundle): images as data URIs,
the identity with this sample's numbers (MathML and text), metric cards, captions, notes, and charts that
say whose numbers they show (A and B named in A/B views); and it stays one safe offline file whatever the
bundle's class names hold (markup, Markdown, $$ LaTeX)."""

from __future__ import annotations

import base64
import html as htmllib
import io
import json
import re
from html.parser import HTMLParser

import numpy as np
import pytest
from apptest_support import Downloads, as_read, assert_ok, open_app
from conftest import make_logits
from PIL import Image

from cakd_viz import decompose
from cakd_viz.app import config as app_config
from cakd_viz.bundle import write_bundle
from cakd_viz.classnames import readable_names
from cakd_viz.figures.sample import input_image
from cakd_viz.learn import PRESETS
from cakd_viz.worked import format_number

HOSTILE = [
    "<script>alert(1)</script>",
    "**bold** [link](http://evil.example/x)",
    "$$\\frac{1}{0}$$",
    "<img src=x onerror=alert(2)>",
    *[f"c{i}" for i in range(4, 12)],
]
SHOWN = readable_names(HOSTILE)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    """(the bundle's arrays) of "path:a" in a data root: students ce and kd, 12 classes named HOSTILE,
    labels, 8x8 image inputs."""
    tmp = tmp_path_factory.mktemp("reports")
    student, teacher, labels = make_logits(240, 12, seed=4)
    labels[:40] = np.arange(40) % 4  # the hostile names are true classes, predictions and confusions
    rng = np.random.default_rng(0)
    students = {"ce": student, "kd": (0.4 * student + 0.6 * teacher).astype(np.float32)}
    inputs = (rng.random((240, 8, 8)) * 255).astype(np.uint8)
    data = tmp / "data"
    write_bundle(
        data / "a", teacher=teacher, students=students, labels=labels, class_names=HOSTILE, inputs=inputs
    )
    mp = pytest.MonkeyPatch()
    mp.setenv(app_config.DATA_ROOT_ENV, str(data))
    mp.setenv("CAKD_SAMPLES_DIR", str(tmp / "no-samples"))
    yield {"teacher": teacher, "students": students, "labels": labels, "inputs": inputs}
    mp.undo()


@pytest.fixture
def downloads(monkeypatch) -> Downloads:
    return Downloads().install(monkeypatch)


# -- reading a report ----------------------------------------------------------------------------------------


class Parsed(HTMLParser):
    """A report's elements: tags with their attributes, script bodies, and the text of each element class."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict]] = []
        self.scripts: list[str] = []
        self.texts: dict[str, list[str]] = {}
        self._open: list[tuple[str, str | None, list[str]]] = []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append((tag, attrs))
        if tag not in ("img", "meta", "br"):
            self._open.append((tag, attrs.get("class"), []))

    def handle_endtag(self, tag):
        while self._open:
            name, cls, parts = self._open.pop()
            text = "".join(parts)
            if name == "script":
                self.scripts.append(text)
            for key in [name, *(f".{c}" for c in (cls or "").split())]:
                self.texts.setdefault(key, []).append(text)
            if self._open:
                self._open[-1][2].append(text)
            if name == tag:
                break

    def handle_data(self, data):
        if self._open:
            self._open[-1][2].append(data)


def report(at, downloads) -> tuple[str, Parsed]:
    text = downloads.get(at, "export_html")[0].decode("utf-8")
    return text, Parsed(text)


def cards(p: Parsed) -> list[tuple[str, str, str]]:
    """(label, value, delta) of every metric card."""
    out = []
    for block in p.texts.get(".metric", []):
        out.append(block)
    labels, values = p.texts.get(".label", []), p.texts.get(".value", [])
    assert len(labels) == len(values) == len(out)
    return list(zip(labels, values, strict=True))


def figures(text: str) -> list[dict]:
    """The figures' JSON specs, in order."""
    return [json.loads(m) for m in re.findall(r"var f=(\{.*?\});Plotly\.newPlot", text)]


def says(spec: dict) -> list[str]:
    """What a figure says in words: its title, legend names, annotations, axis titles, bar categories."""
    layout = spec["layout"]
    out = [(layout.get("title") or {}).get("text") or ""]
    out += [a.get("text", "") for a in layout.get("annotations", [])]
    out += [
        (v.get("title") or {}).get("text") or ""
        for k, v in layout.items()
        if k.startswith(("xaxis", "yaxis"))
    ]
    for trace in spec["data"]:
        out.append(trace.get("name") or "")
        for axis in ("x", "y"):
            values = trace.get(axis)
            if isinstance(values, list) and values and all(isinstance(v, str) for v in values):
                out += values
    return [htmllib.unescape(s) for s in out if s]


def mathml_numbers(text: str) -> list[list[str]]:
    """The numbers of each MathML formula, in order."""
    return [re.findall(r"<mn>([^<]*)</mn>", m) for m in re.findall(r"<math.*?</math>", text, re.S)]


def identity_numbers(student, teacher, label, *, grouping: str, temperature: float) -> list[str]:
    """KL, BCD, p_S, SCD, p_W, WCD of one sample, from the library's decomposition, printed with 4
    significant digits as the page prints them."""
    d = decompose(student[None], teacher[None], np.array([label]), grouping=grouping, temperature=temperature)
    values = [d.kl, d.bcd, d.teacher_strong_mass, d.scd, d.teacher_weak_mass, d.wcd]
    return [format_number(float(v[0])) for v in values]


def has(strings: list[str], token: str) -> bool:
    return any(token in s for s in strings)


# -- each page ----------------------------------------------------------------------------------------------


def test_the_sample_report_carries_the_input_the_identity_the_cards_and_names_both_students(
    bundle, downloads
):
    at = open_app("path:a", "sample", i="5", student="ce", vs="kd", grouping="topk:3", T="2")
    assert_ok(at)
    text, p = report(at, downloads)
    (img,) = [attrs for tag, attrs in p.tags if tag == "img"]
    assert img["src"].startswith("data:image/png;base64,")
    png = Image.open(io.BytesIO(base64.b64decode(img["src"].split(",", 1)[1])))
    want = input_image(bundle["inputs"][5])
    assert png.size == want.size and np.array_equal(
        np.asarray(png.convert("L")), np.asarray(want.convert("L"))
    )
    # the identity of A, then of B, with this sample's numbers (and as one line of text)
    t, y = bundle["teacher"][5], int(bundle["labels"][5])
    want_a = identity_numbers(bundle["students"]["ce"][5], t, y, grouping="topk:3", temperature=2.0)
    want_b = identity_numbers(bundle["students"]["kd"][5], t, y, grouping="topk:3", temperature=2.0)
    assert mathml_numbers(text) == [want_a, want_b]
    assert any(f.startswith(f"KL {want_a[0]} = BCD {want_a[1]}") for f in p.texts[".text"] if "KL" in f)
    # every metric card the page shows, as it shows it
    page_cards = [(as_read(m.label), as_read(m.value)) for m in at.metric]
    assert cards(p) == page_cards
    assert ("True class", SHOWN[y]) in page_cards and ("KL (nats)", want_a[0]) in page_cards
    # captions, and the charts say which student is which
    captions = p.texts[".caption"]
    assert has(captions, f"Group masses: teacher p_S = {float(want_a[2]):.4g}") and has(
        captions, "Strong set S: 3"
    )
    bars, parts_a, parts_b = (says(f) for f in figures(text))
    assert has(bars, "ce (A) q") and has(bars, "kd (B) q") and has(bars, "teacher p")
    assert has(parts_a, "ce (A)") and not has(parts_a, "kd (B)")
    assert has(parts_b, "kd (B)") and not has(parts_b, "ce (A)")


def test_the_data_report_carries_the_example_grid_and_the_cards(bundle, downloads):
    at = open_app("path:a", "data")
    assert_ok(at)
    text, p = report(at, downloads)
    sources = [t.get("source", "") for f in figures(text) for t in f["data"] if t.get("type") == "image"]
    (source,) = sources
    grid = Image.open(io.BytesIO(base64.b64decode(source.split(",", 1)[1])))
    assert source.startswith("data:image/png;base64,") and grid.format == "PNG" and grid.width > 8 * 8
    assert cards(p)[:3] == [("samples", "240"), ("classes", "12"), ("students", "2")]
    assert has(p.texts[".caption"], "picked at random")


def test_the_learn_report_carries_the_example_its_numbers_and_formulas(downloads):
    name = "Over-confident student flattens the tail"
    at = open_app(None, "learn", **PRESETS[name].view().to_params())
    assert_ok(at)
    text, p = report(at, downloads)
    ex = PRESETS[name].example()
    assert [n for n in p.texts[".note"]] == [PRESETS[name].story]
    assert cards(p)[0] == ("KL (nats)", format_number(ex.kl, 4))
    parts = [format_number(v, 4) for v in (ex.kl, ex.bcd, ex.p_strong, ex.scd, ex.p_weak, ex.wcd)]
    assert mathml_numbers(text) == [parts]
    assert has(p.texts["p"], "BCD = p_S log(p_S / q_S) + p_W log(p_W / q_W)")  # the formulas, as text
    assert has(p.texts["h2"], "The CAKD loss") and len(figures(text)) == 3
    assert "example: Over-confident student flattens the tail" in p.texts[".context"][0]


def test_the_learn_page_exports_a_snippet_that_recomputes_its_numbers(downloads):
    import subprocess
    import sys
    from pathlib import Path

    import pandas as pd

    name = "Wrong group mass: under-confident on the look-alikes"
    at = open_app(None, "learn", **PRESETS[name].view().to_params())
    (code,) = [c.value for c in at.get("code") if "worked_example" in c.value]
    repo = Path(__file__).resolve().parent.parent
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=300,
        env={"PYTHONPATH": str(repo)},
    )
    assert out.returncode == 0, out.stderr[-2000:]
    got = pd.read_csv(io.StringIO(out.stdout)).iloc[0]
    ex = PRESETS[name].example()
    assert got["KL (nats)"] == pytest.approx(ex.kl, rel=1e-6)
    assert got["p_W·WCD (nats)"] == pytest.approx(ex.p_weak * ex.wcd, rel=1e-6, abs=1e-12)
    shown = {m.label: m.value for m in at.metric}
    assert shown["BCD"] == format_number(got["BCD (nats)"], 4)


AB_VIEWS = {
    "overview": ({}, [["=ce", "=kd"], ["ce (A)", "kd (B)"], ["ce (A)"]]),
    "overview-per-class": (
        {"view": "Per class"},
        [["=ce", "=kd"], ["ce (A)", "kd (B)"], ["kd − ce"], ["ce (A)"]],
    ),
    "correlation": (
        {},
        [["teacher"], ["teacher"], ["teacher"], ["teacher", "ce (A)"], ["teacher", "kd (B)"]],
    ),
    "diagnose": ({"set": "Student wrong"}, [["ce (A)"], ["ce (A)"], ["ce (A)", "kd (B)"]]),
}


@pytest.mark.parametrize("view", list(AB_VIEWS))
def test_every_chart_of_an_ab_view_says_whose_numbers_it_shows(bundle, downloads, view):
    params, expected = AB_VIEWS[view]
    at = open_app("path:a", view.split("-")[0], student="ce", vs="kd", **params)
    assert_ok(at)
    text, p = report(at, downloads)
    specs = [says(f) for f in figures(text)]
    assert len(specs) == len(expected)
    for words, tokens in zip(specs, expected, strict=True):
        for token in tokens:
            assert token[1:] in words if token.startswith("=") else has(words, token), (token, words)
        if tokens == ["ce (A)"]:
            assert not has(words, "kd (B)"), words
    page_cards = [(as_read(m.label), as_read(m.value)) for m in at.metric]
    assert cards(p) == page_cards  # the metric cards, as the page shows them
    for caption in at.main.caption:
        if "the file names the view" not in caption.value:  # (a download's own caption)
            assert has(p.texts[".caption"], as_read(caption.value).replace("`", "")[:40]), caption.value


# -- safe whatever the names hold ------------------------------------------------------------------------

PAGES = [
    ("data", {}),
    ("overview", {"view": "Per class", "vs": "kd"}),
    ("correlation", {"vs": "kd"}),
    ("sample", {"i": "1", "vs": "kd"}),
    ("diagnose", {"vs": "kd"}),
    ("learn", {}),
]


@pytest.mark.parametrize(("page", "params"), PAGES, ids=[p for p, _ in PAGES])
def test_the_report_runs_no_code_but_plotly_fetches_nothing_and_shows_names_as_text(
    bundle, downloads, page, params
):
    at = open_app("path:a", page, **params)
    assert_ok(at)
    text, p = report(at, downloads)
    head, body = text.split("</head>", 1)
    assert len(p.scripts[0]) > 1_000_000 and "Plotly" in p.scripts[0]  # plotly.js itself, inline
    for script in p.scripts[1:]:  # every other script draws one figure from its escaped JSON
        m = re.fullmatch(
            r"\(function\(\)\{var f=(\{.*\});Plotly\.newPlot\('figure-\d+',f\.data,f\.layout,(\{.*\})\);\}\)\(\);",
            script,
            re.S,
        )
        assert m, script[:200]
        json.loads(m.group(1))
        assert "<" not in m.group(1) and ">" not in m.group(1)
    for tag, attrs in p.tags:
        assert tag not in ("iframe", "object", "embed", "link", "base", "form", "a", "audio", "video"), tag
        assert not [k for k in attrs if k.startswith("on") or k in ("href", "srcset", "action", "style")], (
            attrs
        )
        if "src" in attrs:
            assert tag == "img" and attrs["src"].startswith("data:image/png;base64,"), attrs["src"][:80]
        if tag == "script":
            assert "src" not in attrs
    assert "url(" not in head.split("<script", 1)[0] and "@import" not in text.split("<script", 1)[0]
    for f in figures(text):
        assert not f["layout"].get("images"), "no picture loaded from elsewhere"
        for trace in f["data"]:
            assert "source" not in trace or trace["source"].startswith("data:image/png;base64,")
    # the names are shown, as text: never a tag, a link or bold type
    assert "<script>alert(1)" not in body and "<img src=x" not in body and "<strong" not in body
    if page in ("data", "overview", "diagnose"):
        shown_text = " ".join(t for texts in p.texts.values() for t in texts)
        assert "<script>alert(1)</script>" in shown_text  # (unescaped by the parser: it was text)
        assert "**bold** [link](http://evil.example/x)" in shown_text and "$$\\frac{1}{0}$$" in shown_text
