"""Every page of the app in a real Chromium: no exception box, no error, charts drawn, a screenshot each.

Runs `streamlit run app.py` on a free port and drives Debian's Chromium (/usr/bin/chromium) through
Playwright. Without Chromium the test FAILS and says how to install it. Screenshots land in
artifacts/screenshots/ (gitignored), one full-page PNG per page.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import numpy as np
import pytest

from cakd_viz.app import config as app_config  # noqa: E402
from cakd_viz.app import serve  # noqa: E402

pytestmark = pytest.mark.browser

SHOTS = Path(__file__).resolve().parent.parent / "artifacts" / "screenshots"
ERROR_BOX = '[data-testid="stAlertContentError"]'
NAV_LINK = '[data-testid="stSidebarNavLink"]'
MY_PAGES_WITH_CHARTS = {"data": 2, "overview": 2, "correlation": 4}


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    """(base URL, query string that opens the bundle) of a running app; the shipped sample when present."""
    missing = serve.chromium_missing()
    if missing:
        pytest.fail(missing)
    env, query = {}, ""
    if not app_config.available_samples():  # no shipped sample yet: a synthetic one with image inputs
        root = tmp_path_factory.mktemp("data")
        _synthetic_bundle(root / "synth")
        env[app_config.DATA_ROOT_ENV] = str(root)
        query = f"?bundle=path:{root.name}/synth"
    log = tmp_path_factory.mktemp("log") / "streamlit.log"
    with serve.running_app(env=env, log=log) as url:
        yield url, query


@pytest.fixture(scope="module")
def page(app, chromium):
    p = chromium.new_page(viewport={"width": 1400, "height": 900})
    p.js_errors = []
    p.on("pageerror", lambda exc: p.js_errors.append(str(exc)))
    yield p


def _synthetic_bundle(path: Path) -> None:
    from cakd_viz.bundle import write_bundle
    from cakd_viz.bundle.synth import synth_arrays

    teacher, students, labels = synth_arrays(1500, 40, seed=0)
    images = (np.random.default_rng(0).random((1500, 16, 16)) * 255).astype(np.uint8)
    write_bundle(path, teacher=teacher, students=students, labels=labels, inputs=images, dtype="float16")


def _check(page, name: str) -> int:
    """Wait for the page, fail on exception or error boxes and JS errors, screenshot; returns the chart count."""
    serve.wait_rendered(page)
    charts = page.locator(".js-plotly-plot").count()
    serve.wait_rendered(page, charts=charts)  # every chart that is on the page has been drawn
    exceptions = page.locator(serve.EXCEPTION)
    assert exceptions.count() == 0, f"{name}: {exceptions.first.inner_text()[:2000]}"
    errors = page.locator(ERROR_BOX)
    assert errors.count() == 0, f"{name}: {errors.first.inner_text()[:500]}"
    assert not page.js_errors, f"{name}: JavaScript errors {page.js_errors}"
    SHOTS.mkdir(parents=True, exist_ok=True)
    serve.full_screenshot(page, SHOTS / f"{name}.png")
    return charts


def test_every_page_in_the_navigation_renders(app, page):
    url, query = app
    # A deep link as the very first request: the app must still run through app.py's navigation.
    page.goto(f"{url}/correlation{query}")
    serve.wait_rendered(page)
    links = page.locator(NAV_LINK)
    titles = [
        links.nth(i).inner_text().strip().splitlines()[-1] for i in range(links.count())
    ]  # after the icon
    from cakd_viz.app.state import PAGE_FILES

    registered = list(PAGE_FILES)
    assert len(titles) == len(registered), titles
    assert "Correlation groups" in titles and "Overview" in titles  # st.Page titles, not file names
    for i, title in enumerate(titles):
        link = page.locator(NAV_LINK).nth(i)
        path = urlparse(link.get_attribute("href") or "").path.rstrip("/")
        serve.after_rerun(page, link.click)
        page.wait_for_function("(p) => location.pathname.replace(/\\/$/, '') === p", arg=path, timeout=30_000)
        name = re.sub(r"[^a-z0-9]+", "_", title.lower()).strip("_")
        charts = _check(page, name)
        key = {"correlation_groups": "correlation"}.get(name, name)
        if key in MY_PAGES_WITH_CHARTS:
            assert charts >= MY_PAGES_WITH_CHARTS[key], f"{title}: {charts} charts"
        assert "bundle=" in page.url, f"{title}: the view is not in the URL ({page.url})"


def test_changing_the_temperature_rerenders_and_updates_the_url(app, page):
    url, query = app
    page.goto(f"{url}/{query}")
    serve.wait_rendered(page, charts=2)
    box = page.locator('[data-testid="stSidebar"] input[type="number"]')
    box.fill("2")
    box.press("Enter")
    deadline = time.monotonic() + 60
    while parse_qs(urlparse(page.url).query).get("T") != ["2"] and time.monotonic() < deadline:
        page.wait_for_timeout(100)
    assert parse_qs(urlparse(page.url).query).get("T") == ["2"]
    _check(page, "overview_T2")
    assert page.get_by_text("T = 2", exact=False).count() > 0


def test_an_unusable_temperature_is_said_next_to_its_field_and_at_the_top_of_the_page(app, page):
    url, query = app
    page.goto(f"{url}/{query}")
    serve.wait_rendered(page, charts=2)
    box = page.locator('[data-testid="stSidebar"] input[type="number"]')
    box.fill("500")
    box.press("Enter")
    said = "T = 500 is outside the allowed 0.05 to 100: still using T = 4."
    sidebar_error = page.locator(f'[data-testid="stSidebar"] {ERROR_BOX}').filter(has_text=said)
    sidebar_error.wait_for(timeout=60_000)
    # the line is the element right after the field's, in the sidebar
    follows = page.evaluate(
        """() => {
            const field = document.querySelector('[data-testid="stSidebar"] [data-testid="stNumberInput"]');
            const box = field.closest('[data-testid="stElementContainer"]');
            const next = box.nextElementSibling;
            return !!next && !!next.querySelector('[data-testid="stAlertContentError"]');
        }"""
    )
    assert follows, "the error is not the element after the T field"
    field = page.locator('[data-testid="stSidebar"] [data-testid="stNumberInput"]').bounding_box()
    line = sidebar_error.bounding_box()
    assert 0 <= line["y"] - (field["y"] + field["height"]) < 60  # right under it
    # ... and said on the page, at its top, in view without scrolling
    main_error = page.locator(f'[data-testid="stMain"] {ERROR_BOX}').filter(has_text=said)
    main_error.wait_for(timeout=30_000)
    top = main_error.bounding_box()
    assert top is not None and 0 <= top["y"] < 900 - top["height"]
    box.fill("4")
    box.press("Enter")
    main_error.wait_for(state="detached", timeout=60_000)


@pytest.mark.parametrize("tab", ["Per class", "vs temperature", "vs grouping", "Standardization (LS)"])
def test_overview_tabs_compute_when_opened(app, page, tab):
    url, query = app
    page.goto(f"{url}/{query}")
    serve.wait_rendered(page, charts=2)
    serve.after_rerun(page, page.get_by_role("tab", name=tab).click)
    page.wait_for_function(
        "(t) => decodeURIComponent(location.search).includes('view=' + t)", arg=tab.replace(" ", "+")
    )
    name = "overview_" + tab.replace(" ", "_").lower()
    assert _check(page, name) >= 2


def test_the_standardize_toggle_joins_the_url_and_the_captions_say_it(app, page):
    url, query = app
    page.goto(f"{url}/{query}")
    serve.wait_rendered(page, charts=2)
    label = page.locator('[data-testid="stSidebar"]').get_by_text("Standardize logits (LS)")
    serve.after_rerun(page, label.click)
    _wait_query(page, "standardize", "true")
    serve.wait_rendered(page, charts=2)
    assert page.get_by_text(", standardized.", exact=False).count() > 0
    _check(page, "overview_standardized")


def _watch_first_paint(page, url: str, seconds: float = 8.0) -> tuple[set[str], set[str], list[str]]:
    """Load ``url`` and sample, every 100 ms, the navigation's entries, any dialog text and the title."""
    page.goto(url)
    navs, dialogs, titles = set(), set(), []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        navs.update(t.strip().splitlines()[-1] for t in page.locator(NAV_LINK).all_inner_texts() if t.strip())
        dialogs.update(page.locator('[role="dialog"]').all_inner_texts())
        titles += page.locator("h1").all_inner_texts()[:1]
        page.wait_for_timeout(100)
    return navs, dialogs, titles


def test_a_fresh_server_answers_direct_links_with_its_own_navigation(tmp_path, chromium):
    """The very first request to a new server: the app's navigation from the first paint (never the
    page files' names), every page's own link opens that page, and the root opens the Overview."""
    with serve.running_app(log=tmp_path / "streamlit.log") as url:
        page = chromium.new_page(viewport={"width": 1400, "height": 900})
        for path, title in [
            ("overview?bundle=sample:digits&T=2", "Overview"),
            ("correlation?T=3", "Correlation groups"),
            ("sample?i=3", "Sample"),
            ("", "Overview"),
        ]:
            navs, dialogs, titles = _watch_first_paint(page, f"{url}/{path}")
            assert navs and navs <= {
                "Data",
                "Overview",
                "Correlation groups",
                "Samples",
                "Sample",
                "Diagnose",
                "Learn",
                "Tune",
            }, navs
            assert not any("not found" in d.lower() for d in dialogs), (path, dialogs)
            assert titles and set(titles) == {title}, (path, titles)
        assert urlparse(page.url).path.rstrip("/").endswith("/overview")  # the root went on to the Overview


def _query(page) -> dict[str, list[str]]:
    return parse_qs(urlparse(page.url).query)


def _wait_query(page, key: str, value: str, timeout_s: float = 60) -> None:
    """Wait until the page's URL holds ``key=value`` (the frontend writes bound widgets' values)."""
    page.wait_for_function(
        "([k, v]) => new URLSearchParams(location.search).get(k) === v",
        arg=[key, value],
        timeout=timeout_s * 1000,
    )


def test_the_url_follows_the_view_across_pages(app, page):
    """Streamlit's binding keeps the sidebar's values in the URL on every page, a link given to the root
    reaches the Overview whole, and a page's own control (the Sample page's index) joins the URL."""
    url, query = app
    if "sample:glyphs" not in query and not app_config.available_samples():
        pytest.fail("the shipped glyphs sample is missing: run `python -m cakd_viz samples build`")
    page.goto(f"{url}/?bundle=sample:glyphs&student=student_kd&T=3")
    serve.wait_rendered(page, charts=2)
    assert urlparse(page.url).path.rstrip("/").endswith("/overview")
    _wait_query(page, "student", "student_kd")
    assert _query(page)["T"] == ["3"] and _query(page)["bundle"] == ["sample:glyphs"]
    assert page.get_by_text("student_kd: each sample", exact=False).count() == 1
    page.locator(NAV_LINK).filter(has_text=re.compile(r"Sample$")).click()
    page.wait_for_function("() => location.pathname.endsWith('/sample')")
    serve.wait_rendered(page, charts=1)
    assert _query(page)["student"] == ["student_kd"] and _query(page)["T"] == ["3"]
    page.get_by_role("button", name="Next ▶").click()
    _wait_query(page, "i", "1")
    serve.wait_rendered(page, charts=1)
    assert page.get_by_text("input #1", exact=False).count() == 1
    assert page.locator(serve.EXCEPTION).count() == 0 and page.locator(ERROR_BOX).count() == 0
