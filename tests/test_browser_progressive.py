"""A big view in a real Chromium: after a temperature change, a progress bar under the page title while
the pass runs, then the exact numbers over every sample (no reload).

The server's pass at T = 3 is held at a gate this test controls: a ``sitecustomize`` on the server's
path wraps ``cakd_viz.decomposition.decompose_many`` so that, at T = 3, it first takes a shared lock on a
file the test holds locked. The bar is then certainly on screen when the test looks; unlocking lets the
pass finish.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

import numpy as np
import pytest

from cakd_viz.app import config as app_config
from cakd_viz.app import progressive, serve
from cakd_viz.bundle import load_bundle
from cakd_viz.decomposition import decompose
from cakd_viz.grouping import DEFAULT_GROUPING

pytestmark = pytest.mark.browser

SHOTS = Path(__file__).resolve().parent.parent / "artifacts" / "screenshots"
N, C, GATED_T = 40_000, 100, 3.0
PROGRESS = '[data-testid="stProgress"]'
HOOK = f"""
import fcntl, os
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
import cakd_viz.decomposition as _dec
_real = _dec.decompose_many

def _gated(*args, **kw):
    if kw.get("temperature") == {GATED_T}:
        with open(os.environ["CAKD_TEST_GATE"]) as gate:
            fcntl.flock(gate, fcntl.LOCK_SH)  # waits while the test holds the file locked
    return _real(*args, **kw)

_dec.decompose_many = _gated
"""


@pytest.fixture(scope="module")
def big(tmp_path_factory):
    from cakd_viz.bundle.synth import synth_bundle

    root = tmp_path_factory.mktemp("data")
    synth_bundle(root / "big", n=N, classes=C, dtype="float16", seed=0)
    return root / "big"


def test_a_temperature_change_shows_its_progress_then_the_exact_view(big, tmp_path, chromium):
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(HOOK)
    gate = tmp_path / "gate"
    gate.write_text("")
    env = {
        app_config.DATA_ROOT_ENV: str(big.parent),
        progressive.PROGRESS_ABOVE_ENV: "1000",
        "CAKD_TEST_GATE": str(gate),
        "PYTHONPATH": os.pathsep.join(p for p in (str(hook), os.environ.get("PYTHONPATH")) if p),
    }
    b = load_bundle(big)
    exact = decompose(b.student("kd"), b.teacher, b.labels, grouping=DEFAULT_GROUPING, temperature=GATED_T)
    with open(gate) as held, serve.running_app(env=env, log=tmp_path / "streamlit.log") as url:
        fcntl.flock(held, fcntl.LOCK_EX)
        page = chromium.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(f"{url}/?bundle=path:{big.parent.name}/big")
        serve.wait_rendered(page, charts=2)
        assert f"over all {N:,} samples." in page.locator('[data-testid="stMain"]').inner_text()
        box = page.locator('[data-testid="stSidebar"] [data-testid="stNumberInput"]').filter(
            has_text="Temperature"
        )
        box.locator("input").fill(f"{GATED_T:g}")
        box.locator("input").press("Enter")
        page.wait_for_selector(PROGRESS, timeout=60_000)
        text = page.locator(PROGRESS).inner_text()
        assert (
            f"Decomposing the KL of every sample: kd and ce under topk:5 at T = 3, 0% of {N:,} samples"
            in text
        )
        # While the pass runs, nothing on the page is animated: the stale elements dim without fading and
        # the bar moves without sliding, since every frame would repaint the charts beside the pass
        # (main.py); the stale elements still wait before they dim, so one redrawn sooner never dims.
        animated = page.evaluate(
            """() => [...document.querySelectorAll(
                     '[data-stale="true"], [data-stale="true"] *, [data-testid="stProgress"] *')]
                 .filter(e => getComputedStyle(e).transitionDuration.split(',').some(d => parseFloat(d) > 0))
                 .map(e => e.getAttribute('data-testid') || e.tagName)"""
        )
        waits = page.evaluate(
            """() => [...document.querySelectorAll('[data-stale="true"]')]
                 .map(e => Math.max(...getComputedStyle(e).transitionDelay.split(',').map(parseFloat)))"""
        )
        assert waits and animated == [] and min(waits) > 0
        SHOTS.mkdir(parents=True, exist_ok=True)
        serve.full_screenshot(page, SHOTS / "pass_progress.png")
        fcntl.flock(held, fcntl.LOCK_UN)  # the pass may run now; the page draws itself when it is done
        page.wait_for_function(
            "(sel) => !document.querySelector(sel)", arg=PROGRESS, timeout=60_000, polling=100
        )
        serve.wait_rendered(page, charts=2)
        body = page.locator('[data-testid="stMain"]').inner_text()
        assert "T = 3." in body and f"over all {N:,} samples." in body
        assert f"{float(np.mean(exact.kl)):.4f}" in body  # the metric "mean KL, kd" of the exact pass
        assert page.locator(serve.EXCEPTION).count() == 0
