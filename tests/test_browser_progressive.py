"""A big bundle in a real Chromium: the Overview shows a marked preview at once, and the exact view
replaces it by itself (no reload) once the background passes are done.

The bundle (40,000 x 100, float16) is made "big" with ``CAKD_VIZ_PREVIEW_ABOVE``. While the test holds
the results cache's locks of the exact passes (as another server process computing them would), the
server's passes wait, so the preview is certainly on screen; releasing the locks lets them finish.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest

from cakd_viz.app import config as app_config  # noqa: E402
from cakd_viz.app import progressive, serve  # noqa: E402
from cakd_viz.bundle import load_bundle  # noqa: E402
from cakd_viz.grouping import DEFAULT_GROUPING
from cakd_viz.results_cache import ResultsCache, decomposition_key  # noqa: E402

pytestmark = pytest.mark.browser

SHOTS = Path(__file__).resolve().parent.parent / "artifacts" / "screenshots"
N, C, ROWS = 40_000, 100, 2_000
BANNER = ".st-key-preview_banner"


@pytest.fixture(scope="module")
def big(tmp_path_factory):
    from cakd_viz.bundle.synth import synth_bundle

    root = tmp_path_factory.mktemp("data")
    synth_bundle(root / "big", n=N, classes=C, dtype="float16", seed=0)
    return root / "big"


def test_the_preview_banner_shows_and_the_exact_view_replaces_it(big, tmp_path):
    missing = serve.chromium_missing()
    if missing:
        pytest.fail(missing)
    cache = ResultsCache(tmp_path / "cache" / "results", 1 << 30)  # the server's, from its setting below
    env = {
        app_config.DATA_ROOT_ENV: str(big.parent),
        "CAKD_VIZ_CACHE_DIR": str(tmp_path / "cache"),
        progressive.PREVIEW_ABOVE_ENV: "1000000",
        progressive.PREVIEW_ROWS_ENV: str(ROWS),
    }
    b = load_bundle(big)
    keys = [
        decomposition_key(
            b.student(s),
            b.teacher,
            b.labels,
            grouping=DEFAULT_GROUPING,
            temperature=float(app_config.DEFAULT_TEMPERATURE),
        )
        for s in b.student_names
    ]
    held = contextlib.ExitStack()
    for key in keys:
        assert held.enter_context(cache.lock(key))
    with held, serve.running_app(env=env, log=tmp_path / "streamlit.log") as url, serve.browser() as chromium:
        page = chromium.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(f"{url}/?bundle=path:{big.parent.name}/big")
        serve.wait_rendered(page, charts=2)
        banner = page.locator(BANNER)
        assert banner.count() == 1
        text = banner.inner_text()
        assert "Preview." in text and f"{ROWS:,} of {N:,} samples, stratified by true class" in text
        assert "Exact pass, kd" in text and "Exact pass, ce" in text
        body = page.locator('[data-testid="stMain"]').inner_text()
        assert f"over a preview on {ROWS:,} of {N:,} samples" in body
        SHOTS.mkdir(parents=True, exist_ok=True)
        serve.full_screenshot(page, SHOTS / "preview.png")
        held.close()  # the server's exact passes may run now; the page replaces the preview by itself
        page.wait_for_function(
            "(sel) => !document.querySelector(sel)", arg=BANNER, timeout=60_000, polling=200
        )
        serve.wait_rendered(page, charts=2)
        body = page.locator('[data-testid="stMain"]').inner_text()
        assert "Preview." not in body and f"over all {N:,} samples." in body
        assert page.locator(serve.EXCEPTION).count() == 0
        serve.full_screenshot(page, SHOTS / "exact_after_preview.png")
    assert all(cache.contains(key) for key in keys)  # the server stored both exact results
