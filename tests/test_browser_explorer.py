"""The samples explorer in a real Chromium, as a new user meets it: from the Overview to every O → 0
failure of student A in two clicks, one of them opened on the Sample page, and back to the same filters;
a point of the map opens its sample. Counts are checked against numpy masks over `decompose`'s arrays.
Screenshots land in artifacts/screenshots/ (gitignored)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from cakd_viz import decompose
from cakd_viz.app import config as app_config
from cakd_viz.app import serve
from cakd_viz.bundle import load_bundle
from cakd_viz.classnames import readable_names

pytestmark = pytest.mark.browser

SHOTS = Path(__file__).resolve().parent.parent / "artifacts" / "screenshots"
ERROR_BOX = '[data-testid="stAlertContentError"]'


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    """(base URL, the glyphs bundle) of a running app."""
    assert "glyphs" in app_config.available_samples(), "the shipped glyphs sample is missing"
    log = tmp_path_factory.mktemp("explorer") / "streamlit.log"
    with serve.running_app(log=log) as url:
        yield url, load_bundle(app_config.sample_path("glyphs"))


@pytest.fixture
def page(chromium):
    context = chromium.new_context(viewport={"width": 1400, "height": 1000})
    p = context.new_page()
    p.js_errors = []
    p.on("pageerror", lambda exc: p.js_errors.append(str(exc)))
    yield p
    context.close()


def _settled(page, title: str, name: str, charts: int = 0) -> None:
    """Wait until page ``title`` is drawn and its run is over; no exception, error box or JS error."""
    page.locator("h1").filter(has_text=re.compile(f"^{title}$")).first.wait_for(timeout=90_000)
    serve.wait_rendered(page, charts=charts)
    assert page.locator(serve.EXCEPTION).count() == 0, page.locator(serve.EXCEPTION).first.inner_text()[:2000]
    assert page.locator(ERROR_BOX).count() == 0, page.locator(ERROR_BOX).first.inner_text()[:500]
    assert not page.js_errors, page.js_errors
    SHOTS.mkdir(parents=True, exist_ok=True)
    serve.full_screenshot(page, SHOTS / f"{name}.png")


def _matches(page) -> int:
    """The number of matching samples the page states ("4 of 3,100 samples match")."""
    text = page.get_by_text(re.compile(r"samples match")).first.inner_text()
    return int(re.search(r"([\d,]+) of [\d,]+ samples match", text).group(1).replace(",", ""))


def _o_to_0(bundle):
    """(A's name, indices of A's samples of true class O predicted 0, the pair's label), computed here."""
    a = bundle.student_names[0]
    d = decompose(bundle.student(a), bundle.teacher, bundle.labels, grouping="topk:5", temperature=4.0)
    names = readable_names(bundle.class_names)
    o, zero = names.index("O (upper o)"), names.index("0 (digit)")
    return a, np.flatnonzero((d.labels == o) & (d.student_pred == zero)), d


def test_every_o_to_0_failure_in_two_clicks_one_opened_and_back(app, page):
    url, bundle = app
    a, o_to_0, d = _o_to_0(bundle)
    assert len(o_to_0) > 0
    page.goto(f"{url}/overview?bundle=sample:glyphs")
    _settled(page, "Overview", "explorer_0_overview", charts=2)
    # click 1: the Overview's way into A's failures
    page.get_by_role("button", name=f"The samples {a} gets wrong").click()
    _settled(page, "Samples", "explorer_1_failures")
    assert "/samples" in page.url and "failure=Student+wrong" in page.url
    assert _matches(page) == int((d.student_pred != d.labels).sum())
    # click 2: the confusion, picked in the pair filter (typed to find it among the pairs)
    box = page.locator('[data-testid="stSelectbox"]').filter(has_text="Confusion")
    box.locator("input").click()
    page.keyboard.type("O (upper o) → 0")
    serve.after_rerun(page, lambda: page.keyboard.press("Enter"))
    assert _matches(page) == len(o_to_0)
    assert "pair=O+%28upper+o%29+%E2%86%92+0+%28digit%29" in page.url
    _settled(page, "Samples", "explorer_2_o_to_0")
    kept = page.url.split("?", 1)[1]
    # open one: the first tile (largest KL first)
    first = int(o_to_0[np.argmax(d.kl[o_to_0])])
    page.get_by_role("button", name=f"#{first}", exact=True).click()
    _settled(page, "Sample", "explorer_3_sample", charts=2)
    assert f"i={first}" in page.url
    # and back, the filters as they were
    page.get_by_role("button", name="← back to the samples").click()
    _settled(page, "Samples", "explorer_4_back")
    assert _matches(page) == len(o_to_0)
    for part in kept.split("&"):
        assert part in page.url, (part, page.url)
    # a new way in starts afresh: only the link's filter holds, not the pair kept from before
    page.locator('[data-testid="stSidebarNavLink"]').filter(has_text="Overview").click()
    _settled(page, "Overview", "explorer_5_overview_again", charts=2)
    page.get_by_role("button", name=f"The samples {a} gets wrong").click()
    _settled(page, "Samples", "explorer_6_failures_again")
    assert "pair=" not in page.url and _matches(page) == int((d.student_pred != d.labels).sum())


def test_a_click_on_a_point_of_the_map_opens_its_sample(app, page):
    url, _ = app
    page.goto(f"{url}/samples?bundle=sample:glyphs&tab=Map&color=largest+part")
    _settled(page, "Samples", "explorer_map", charts=1)
    page.locator(".js-plotly-plot").last.scroll_into_view_if_needed()
    page.wait_for_timeout(300)
    point = page.evaluate(
        """() => {
            const gd = [...document.querySelectorAll('.js-plotly-plot')].pop();
            const L = gd._fullLayout, tr = gd._fullData[gd._fullData.length - 1], box = gd.getBoundingClientRect();
            const k = Math.floor(tr.x.length / 2);
            return {index: tr.customdata[k],
                    x: box.left + L.xaxis._offset + L.xaxis.l2p(tr.x[k]),
                    y: box.top + L.yaxis._offset + L.yaxis.l2p(tr.y[k])};
        }"""
    )
    page.mouse.move(point["x"], point["y"])
    page.wait_for_timeout(300)  # let Plotly find the point under the cursor before the click
    page.mouse.click(point["x"], point["y"])
    _settled(page, "Sample", "explorer_map_opened", charts=2)
    assert f"i={int(point['index'])}" in page.url
