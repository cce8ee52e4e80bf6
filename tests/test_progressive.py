"""A big view: the pages show a marked preview at once, and the exact view replaces it (AppTest).

"Big" is forced on a small bundle with ``CAKD_VIZ_PREVIEW_ABOVE`` and ``CAKD_VIZ_PREVIEW_ROWS``. The test
holds the results cache's locks of the exact passes (as another process computing them would), so the
preview is certainly what the first run shows; releasing them lets the background passes finish.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
import pytest
from conftest import make_logits
from streamlit.testing.v1 import AppTest

from cakd_viz.app import config as app_config
from cakd_viz.app import jobs, progressive, results_store
from cakd_viz.bundle import load_bundle, write_bundle
from cakd_viz.decomposition import decompose
from cakd_viz.grouping import DEFAULT_GROUPING
from cakd_viz.results_cache import decomposition_key
from cakd_viz.subsample import preview_rows
from cakd_viz.terms import heading

APP = Path(__file__).resolve().parent.parent / "app.py"
N, C, ROWS = 600, 10, 120
STUDENTS = ("kd", "ce")
T = float(app_config.DEFAULT_TEMPERATURE)
GROUPING = DEFAULT_GROUPING


@pytest.fixture
def big(tmp_path, monkeypatch):
    """A 600-sample bundle the app treats as big: previews of 120 rows, exact passes in the background."""
    student, teacher, labels = make_logits(N, C, seed=4)
    path = write_bundle(
        tmp_path / "data" / "big",
        teacher=teacher,
        students={"kd": (0.4 * student + 0.6 * teacher).astype(np.float32), "ce": student},
        labels=labels,
    )
    monkeypatch.setenv(app_config.DATA_ROOT_ENV, str(tmp_path / "data"))
    monkeypatch.setenv("CAKD_SAMPLES_DIR", str(tmp_path / "no-samples"))
    monkeypatch.setenv(progressive.PREVIEW_ABOVE_ENV, "1000")
    monkeypatch.setenv(progressive.PREVIEW_ROWS_ENV, str(ROWS))
    return load_bundle(path)


def _keys(b, students=STUDENTS) -> list[str]:
    return [
        decomposition_key(b.student(s), b.teacher, b.labels, grouping=GROUPING, temperature=T)
        for s in students
    ]


@contextlib.contextmanager
def _exact_passes_held(b):
    """Hold the cache locks of both students' exact passes (they wait, as for another process)."""
    store = results_store.cache()
    with contextlib.ExitStack() as stack:
        for key in _keys(b):
            assert stack.enter_context(store.lock(key))
        yield


def _app(page: str | None = None) -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=120)
    at.query_params["bundle"] = "path:big"
    if page:
        at.switch_page(page)
    return at.run()


def _text(at: AppTest) -> str:
    return "\n".join(el.value for el in [*at.markdown, *at.caption])


def _mean_kl(at: AppTest, student: str) -> float:
    return float({m.label: m.value for m in at.metric}[f"mean KL, {student}"].split()[0])


def _wait_for_exact(b, students=STUDENTS) -> None:
    for key in _keys(b, students):
        job = jobs.runner().wait(key, 120)
        assert job is not None and job.state == "done", job


def test_overview_shows_a_marked_preview_then_the_exact_view(big):
    sub = preview_rows(N, np.asarray(big.labels), ROWS)
    with _exact_passes_held(big):
        at = _app()
        assert not at.exception, [e.value for e in at.exception]
        text = _text(at)
        assert "Preview." in text and "120 of 600 samples, stratified by true class" in text
        assert "over a preview on 120 of 600 samples, stratified by true class." in text
        for name in STUDENTS:
            preview = decompose(
                big.student(name)[sub.rows],
                big.teacher[sub.rows],
                big.labels[sub.rows],
                grouping=GROUPING,
                temperature=T,
            )
            assert _mean_kl(at, name) == pytest.approx(float(preview.kl.mean()), abs=1e-4)
        assert any("Exact pass" in p.proto.text for p in at.get("progress"))
    _wait_for_exact(big)
    at.run()
    assert not at.exception
    text = _text(at)
    assert "Preview." not in text and "over all 600 samples." in text
    assert not at.get("progress")
    for name in STUDENTS:
        exact = decompose(big.student(name), big.teacher, big.labels, grouping=GROUPING, temperature=T)
        assert _mean_kl(at, name) == pytest.approx(float(exact.kl.mean()), abs=1e-4)


def test_diagnose_on_a_preview_names_the_bundles_own_samples(big):
    exact = decompose(big.student("kd"), big.teacher, big.labels, grouping=GROUPING, temperature=T)
    sub = preview_rows(N, np.asarray(big.labels), ROWS)
    with _exact_passes_held(big):
        at = _app("cakd_viz/app/pages/diagnose.py")
        assert not at.exception, [e.value for e in at.exception]
        assert "Failures among a preview on 120 of 600 samples" in _text(at)
        table = at.dataframe[0].value
        index = table[heading("index")].to_numpy()
        assert len(index) > 0 and set(index) <= set(sub.rows.tolist())
        assert index.max() >= ROWS  # the bundle's sample numbers, not positions in the preview
        np.testing.assert_allclose(table[heading("kl")].to_numpy(), exact.kl[index], rtol=1e-4, atol=1e-6)
    _wait_for_exact(big, ["kd"])  # the page shows student A only
    at.run()
    assert "Failures among" not in _text(at)


def test_a_small_view_is_exact_at_once(big, monkeypatch):
    monkeypatch.delenv(progressive.PREVIEW_ABOVE_ENV)
    at = _app()
    assert not at.exception
    assert "Preview." not in _text(at) and "over all 600 samples." in _text(at)


def test_without_a_usable_cache_folder_the_app_says_so_and_keeps_results_in_memory(
    big, tmp_path, monkeypatch
):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    monkeypatch.setenv("CAKD_VIZ_CACHE_DIR", str(blocker))
    assert results_store.cache() is None
    at = _app()
    assert not at.exception
    warning = " ".join(w.value for w in at.sidebar.warning)
    assert "The results cache cannot be used" in warning and "kept in memory only" in warning
    assert str(tmp_path) not in warning  # no server path in the browser
    _wait_for_exact(big)  # still run in the background, keeping their results in memory
    at.run()
    assert "Preview." not in _text(at) and "over all 600 samples." in _text(at)
    exact = decompose(big.student("ce"), big.teacher, big.labels, grouping=GROUPING, temperature=T)
    assert _mean_kl(at, "ce") == pytest.approx(float(exact.kl.mean()), abs=1e-4)


@pytest.mark.parametrize(
    "page",
    [
        "cakd_viz/app/pages/correlation.py",
        "cakd_viz/app/pages/sample.py",
        "cakd_viz/app/pages/data.py",
        "cakd_viz/app/pages/diagnose.py",
    ],
)
def test_every_explore_page_renders_on_a_preview_and_says_so(big, page):
    with _exact_passes_held(big):
        at = _app(page)
        assert not at.exception, [e.value for e in at.exception]
        assert not at.error, [e.value for e in at.error]
        text = _text(at)
        if page in (
            "cakd_viz/app/pages/correlation.py",
            "cakd_viz/app/pages/diagnose.py",
        ):  # pages that decompose
            assert "Preview." in text and "a preview on 120 of 600 samples" in text
        else:  # these read the bundle's own rows: nothing to preview
            assert "Preview." not in text


def test_diagnose_completes_its_in_s_rates_from_a_background_pass(big, monkeypatch):
    from cakd_viz.app import compute
    from cakd_viz.results_cache import make_key

    monkeypatch.setattr(compute, "IN_STRONG_NOW_ROWS", 0)  # every failure set counts as many
    ik = make_key("in-strong/1", _keys(big, ["kd"])[0])
    # held from the start: the in-S pass waits, as for another process, whenever a page run submits it
    # (a run that finds kd's exact pass already done submits it at once)
    with results_store.cache().lock(ik) as held:
        assert held
        at = _app("cakd_viz/app/pages/diagnose.py")  # a preview first; the exact pass of kd runs meanwhile
        _wait_for_exact(big, ["kd"])
        at.run()
        assert not at.exception, [e.value for e in at.exception]
        text = _text(at)
        assert "Failures among" not in text  # the exact view...
        assert "Still computing." in text and "is being computed over all 600 samples" in text  # ...but in S
        assert not any(heading("in_strong_rate") in t.value.columns for t in at.dataframe)
    job = jobs.runner().wait(ik, 60)
    assert job is not None and job.state == "done"
    at.run()
    text = _text(at)
    assert "Still computing." not in text and "'in S': how often" in text
    assert any(heading("in_strong_rate") in t.value.columns for t in at.dataframe)
    assert results_store.cache().contains(ik)
