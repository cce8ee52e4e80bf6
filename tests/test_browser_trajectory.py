"""Classes through training in a real Chromium: a run's per-class heatmap drawn, its term switched (and
written into the URL), and a sample that became right opened on the Sample page. The run folder is
written here with real epochs/ files (tests/fake_runs.py); a screenshot lands in artifacts/screenshots/."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import numpy as np
import pytest
from conftest import make_logits
from fake_runs import write_epochs, write_run
from playwright.sync_api import expect

from cakd_viz.app import config as app_config
from cakd_viz.app import serve
from cakd_viz.bundle import write_bundle
from cakd_viz.runs import store
from cakd_viz.runs.trajectory import read_trajectory

pytestmark = pytest.mark.browser

SHOTS = Path(__file__).resolve().parent.parent / "artifacts" / "screenshots"
RUN = "20260103-000000-cakd-classes"
NAMES = ["ant", "bee", "cat", "dog", "eel", "fox", "gnu"]


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    """(base URL, runs folder) of a running app whose runs folder holds one run with three kept epochs
    on the test split, which its bundle holds."""
    missing = serve.chromium_missing()
    if missing:
        pytest.fail(missing)
    tmp = tmp_path_factory.mktemp("classes")
    runs, data = tmp / "runs", tmp / "data"
    runs.mkdir()
    data.mkdir()
    student, teacher, labels = make_logits(300, len(NAMES), seed=11)
    write_bundle(data / "base", teacher=teacher, students={"ce": student}, labels=labels, class_names=NAMES)
    epochs = [(a * teacher + (1 - a) * student).astype(np.float32) for a in (0.05, 0.5, 0.95)]
    arrays = {"teacher": teacher, "students": {"tuned": epochs[-1]}, "labels": labels, "class_names": NAMES}
    path = write_run(runs, RUN, bundle=arrays, data="own.npz", name="classes", accs=(0.5, 0.6, 0.7))
    write_epochs(path, epochs, teacher, labels, grouping="topk:3", temperature=4.0, split="test")
    env = {store.RUNS_DIR_ENV: str(runs), app_config.DATA_ROOT_ENV: f"{data}:{runs}"}
    with serve.running_app(env=env, log=tmp / "streamlit.log") as url:
        yield url, runs


def test_a_runs_classes_switch_term_and_open_a_sample_that_became_right(app, chromium):
    url, runs = app
    page = chromium.new_page(viewport={"width": 1400, "height": 1000})
    errors = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(f"{url}/tune?run={RUN}")
    heading = page.get_by_text("Classes through training", exact=True)
    heading.wait_for(timeout=90_000)
    heatmap = page.locator(".js-plotly-plot").filter(has_text="epoch 3").filter(has_text="mean BCD")
    heatmap.first.wait_for(timeout=60_000)
    serve.wait_rendered(page, charts=3)
    assert page.locator(serve.EXCEPTION).count() == 0

    box = page.locator('[data-testid="stSelectbox"]').filter(has_text="Per-class term").first
    combo = box.get_by_role("combobox")
    combo.click()
    page.keyboard.press("ArrowDown")  # opens its list
    page.get_by_role("option", name="KL", exact=True).click()
    page.wait_for_url(re.compile(r"[?&]term=KL(&|$)"), timeout=30_000)
    run_heatmap = (
        page.locator(".js-plotly-plot").filter(has_text="epoch 3").first
    )  # the run's, not the compared
    expect(run_heatmap).to_contain_text("mean KL", timeout=30_000)
    expect(run_heatmap).not_to_contain_text("mean BCD")

    first = read_trajectory(runs / RUN).changes(1, 3).iloc[0]
    assert first["change"] == "became right"
    pick = page.locator('[data-testid="stSelectbox"]').filter(has_text="Sample to open").first
    shown = pick.get_by_role("combobox").input_value()
    assert shown.startswith(f"#{first['index']}:") and shown.endswith("became right")
    SHOTS.mkdir(parents=True, exist_ok=True)
    serve.full_screenshot(page, SHOTS / "tune_classes_through_training.png")
    page.get_by_role("button", name="Open on the Sample page").click()
    page.wait_for_url(re.compile(r"/sample\?"), timeout=60_000)
    page.get_by_role("heading", name="Sample", exact=True).wait_for(timeout=60_000)
    expect(page.get_by_label(re.compile(r"^Sample index"))).to_have_value(str(first["index"]), timeout=30_000)
    assert parse_qs(urlparse(page.url).query)["bundle"] == [f"path:runs/{RUN}/bundle"]
    serve.wait_rendered(page)
    assert page.locator(serve.EXCEPTION).count() == 0 and not errors, errors
