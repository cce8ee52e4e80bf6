"""The comparison, tracker, export and link views in a real Chromium: no exception or error box, the charts
drawn, what a user types kept, files that download and open offline; a screenshot of each view lands in
artifacts/screenshots/ (gitignored). Runs on the shipped glyphs sample (a synthetic bundle without it)."""

from __future__ import annotations

import csv
import io
import time
from pathlib import Path

import numpy as np
import pytest
from fake_runs import write_run, write_sweep

from cakd_viz.app import config as app_config  # noqa: E402
from cakd_viz.app import serve  # noqa: E402
from cakd_viz.bundle import load_bundle, write_bundle  # noqa: E402
from cakd_viz.runs import store  # noqa: E402

pytestmark = pytest.mark.browser

SHOTS = Path(__file__).resolve().parent.parent / "artifacts" / "screenshots"
ERROR_BOX = '[data-testid="stAlertContentError"]'
WARNING_BOX = '[data-testid="stAlertContentWarning"]'


def _base(tmp: Path) -> tuple[str, dict, object]:
    """(query selecting the bundle, extra env, the bundle): the glyphs sample, else a synthetic one."""
    if "glyphs" in app_config.available_samples():
        return "bundle=sample:glyphs", {}, load_bundle(app_config.sample_path("glyphs"))
    from cakd_viz.bundle.synth import synth_arrays

    teacher, students, labels = synth_arrays(1200, 30, seed=0)
    path = write_bundle(tmp / "data" / "synth", teacher=teacher, students=students, labels=labels)
    return (
        "bundle=path:synth",
        {app_config.DATA_ROOT_ENV: f"{tmp / 'data'}:{tmp / 'runs'}"},
        load_bundle(path),
    )


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    """(base URL, bundle query, runs dir, base bundle) of a running app with a few runs written beforehand."""
    missing = serve.chromium_missing()
    if missing:
        pytest.fail(missing)
    tmp = tmp_path_factory.mktemp("views")
    runs = tmp / "runs"
    runs.mkdir()
    query, env, bundle = _base(tmp)
    teacher = np.asarray(bundle.teacher, dtype=np.float32)
    tuned = (0.5 * np.asarray(bundle.student(), dtype=np.float32) + 0.5 * teacher).astype(np.float32)
    arrays = {
        "teacher": teacher,
        "students": {"tuned": tuned},
        "labels": np.asarray(bundle.labels),
        "class_names": list(bundle.class_names),
    }
    write_run(runs, "20260101-000000-cakd-tuned", bundle=arrays, name="tuned", created=time.time() - 100)
    write_run(runs, "20260101-000001-kd-old", loss={"name": "kd"}, terms=False, created=time.time() - 90)
    ids = []
    for i, (alpha, seed) in enumerate((a, s) for a in (0.5, 1.0, 2.0) for s in (0, 1)):
        rid = f"20260101-000002-sweep-{i:03d}"
        write_run(
            runs,
            rid,
            loss={"alpha": alpha},
            seed=seed,
            accs=(0.9, 0.978 + 0.002 * i),
            sweep="20260101-000002-sweep",
            params={"alpha": alpha, "seed": seed},
            created=time.time() - 80 + i,
        )
        ids.append(rid)
    write_sweep(runs, "20260101-000002-sweep", ids, {"alpha": [0.5, 1, 2], "seed": [0, 1]})
    env |= {store.RUNS_DIR_ENV: str(runs)}
    log = tmp / "streamlit.log"
    with serve.running_app(env=env, log=log) as url:
        yield url, query, runs, bundle


@pytest.fixture
def page(chromium):
    context = chromium.new_context(viewport={"width": 1400, "height": 900}, accept_downloads=True)
    p = context.new_page()
    p.js_errors = []
    p.on("pageerror", lambda exc: p.js_errors.append(str(exc)))
    yield p
    context.close()


def _check(page, name: str, *, charts: int = 0, warnings: int = 0) -> int:
    """Wait until the page is drawn with at least ``charts`` charts; no exception, error box or JavaScript
    error, exactly ``warnings`` warnings; a full-page screenshot. Returns the number of charts drawn."""
    page.locator("h1").first.wait_for(timeout=60_000)  # the page script has started drawing
    page.wait_for_timeout(500)
    serve.wait_rendered(page, charts=charts)
    charts = page.locator(".js-plotly-plot").count()
    serve.wait_rendered(page, charts=charts)
    assert page.locator(serve.EXCEPTION).count() == 0, page.locator(serve.EXCEPTION).first.inner_text()[:2000]
    assert page.locator(ERROR_BOX).count() == 0, page.locator(ERROR_BOX).first.inner_text()[:500]
    assert page.locator(WARNING_BOX).count() == warnings, page.locator(WARNING_BOX).all_inner_texts()
    assert not page.js_errors, page.js_errors
    SHOTS.mkdir(parents=True, exist_ok=True)
    serve.full_screenshot(page, SHOTS / f"{name}.png")
    return charts


def _students(bundle) -> tuple[str, str]:
    names = bundle.student_names
    return names[0], names[-1]


@pytest.mark.parametrize(
    ("path", "charts"), [("overview", 3), ("sample", 3), ("diagnose", 3), ("correlation", 4)]
)
def test_two_students_side_by_side_on_every_page(app, page, path, charts):
    url, query, _, bundle = app
    a, b = _students(bundle)
    extra = "&i=18" if path == "sample" else ("&view=Per+class" if path == "overview" else "")
    page.goto(f"{url}/{path}?{query}&student={a}&vs={b}{extra}")
    assert _check(page, f"compare_{path}", charts=charts) >= charts
    assert page.get_by_text(b, exact=False).count() > 0


def test_a_runs_student_beside_the_bundles_students(app, page):
    url, query, _, bundle = app
    page.goto(f"{url}/overview?{query}&runs=20260101-000000-cakd-tuned&vs=run:20260101-000000-cakd-tuned")
    _check(page, "compare_run_student", charts=2)
    # named by the run's name in the sidebar and the legends (a link's older run:RUN_ID form still works)
    assert page.locator('[data-testid="stSidebar"]').get_by_text("run:tuned", exact=True).count() >= 1
    legend = page.locator(".js-plotly-plot .legendtext").evaluate_all("els => els.map(e => e.textContent)")
    assert "run:tuned (B)" in legend and not any("20260101" in t for t in legend), legend


def test_bad_link_values_each_leave_one_line(app, page):
    url, query, _, _ = app
    page.goto(f"{url}/overview?{query}&student=zzz&T=abc&grouping=topk:0&view=nope&vs=qq&runs=../x")
    _check(page, "bad_link", charts=2, warnings=6)
    texts = page.locator(WARNING_BOX).all_inner_texts()
    for asked in ("student=zzz", "T=abc", "grouping=topk:0", "view=nope", "vs=qq", "runs=../x"):
        assert sum(asked in t for t in texts) == 1, (asked, texts)


def test_every_heatmap_row_is_labelled(app, page):
    url, query, _, bundle = app
    page.goto(f"{url}/correlation?{query}")
    _check(page, "correlation_labels", charts=3)
    labels = (
        page.locator(".js-plotly-plot")
        .first.locator(".yaxislayer-above .ytick text")
        .evaluate_all("els => els.map(e => e.textContent)")
    )
    c = min(bundle.num_classes, 80)
    assert len(labels) == c, labels
    if "glyphs" in query:
        assert "I (upper i)" in labels and "l (lower L)" in labels and "1 (digit)" in labels


def test_the_tracker_and_a_note_typed_while_the_page_polls(app, page):
    url, query, runs, _ = app
    page.goto(f"{url}/tune?{query}&run=20260101-000000-cakd-tuned")
    _check(page, "tune_tracker", charts=2)
    box = page.get_by_role("textbox", name="Note", exact=True)
    box.fill("typed while the runs list polls")
    page.wait_for_timeout(5000)  # two or more polls of the runs list happen meanwhile
    assert box.input_value() == "typed while the runs list polls"
    page.get_by_role("button", name="Save note").click()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not (runs / "20260101-000000-cakd-tuned" / "note.txt").exists():
        page.wait_for_timeout(200)
    assert (
        runs / "20260101-000000-cakd-tuned" / "note.txt"
    ).read_text() == "typed while the runs list polls\n"
    # the run's held-out terms are drawn (the run recorded them): the chart titled by its unit
    assert page.locator(".js-plotly-plot").filter(has_text="held-out mean part of the KL").count() == 1


def test_a_new_run_appears_in_the_selectors_without_a_reload(app, page):
    url, query, runs, _ = app
    page.goto(f"{url}/tune?{query}")
    _check(page, "tune_before_new_run", charts=2)
    write_run(runs, "20260101-000009-kd-new", loss={"name": "kd"}, name="brand_new", created=time.time())
    # the "Compare runs" selector follows the newest runs until someone picks: the new one joins it
    page.locator('[data-testid="stMultiSelect"]').filter(has_text="brand_new").first.wait_for(timeout=20_000)
    store_dir = runs / "20260101-000009-kd-new"
    assert store_dir.is_dir()


def test_a_table_downloads_as_csv_with_its_view(app, page):
    url, query, _, bundle = app
    page.goto(f"{url}/overview?{query}&view=Per+class")
    _check(page, "download_table", charts=3)
    page.get_by_role("button", name="Download table").last.click()
    with page.expect_download() as info:
        page.get_by_role("button", name="CSV").last.click()
    text = Path(info.value.path()).read_text(encoding="utf-8-sig")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert rows and {"bundle", "student", "grouping", "T"} <= set(rows[0])
    assert rows[0]["student"] == bundle.student_names[0] and rows[0]["grouping"] == "topk:5"


def test_the_html_report_opens_offline(app, page, chromium, tmp_path):
    url, query, _, _ = app
    page.goto(f"{url}/overview?{query}")
    _check(page, "report_source", charts=2)
    with page.expect_download() as info:
        page.get_by_role("button", name="HTML report of this view").click()
    report = tmp_path / "report.html"
    Path(info.value.path()).rename(report)
    offline = chromium.new_context(offline=True)
    p = offline.new_page()
    errors = []
    p.on("pageerror", lambda exc: errors.append(str(exc)))
    p.goto(report.as_uri())
    p.wait_for_function("document.querySelectorAll('.js-plotly-plot .main-svg').length >= 2", timeout=30_000)
    assert not errors and p.locator("h1").inner_text().startswith("cakd-viz")
    p.screenshot(path=str(SHOTS / "html_report_offline.png"), full_page=True)
    offline.close()
