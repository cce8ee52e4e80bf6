"""Every value a link can carry (except the bundle token) is checked: an unusable one leaves ONE visible line
saying what was asked for and what is shown instead; never an exception box, never a silent fallback.
Valid values are applied. Driven through AppTest on a small bundle written here."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from apptest_support import as_read, assert_ok, open_app
from conftest import make_logits
from fake_runs import write_run
from streamlit.testing.v1 import AppTest

from cakd_viz.app import config as app_config
from cakd_viz.app import names as app_names
from cakd_viz.bundle import write_bundle
from cakd_viz.runs import store

HUGE = "x" * 10_000
NAMES = ["0", "O", "o", "1", "l", "I", "cat", "dog", "b", "c"]


@pytest.fixture
def root(tmp_path, monkeypatch) -> Path:
    student, teacher, labels = make_logits(150, 10, seed=7)
    data = tmp_path / "data"
    kd = (0.5 * student + 0.5 * teacher).astype(np.float32)
    write_bundle(
        data / "a", teacher=teacher, students={"ce": student, "kd": kd}, labels=labels, class_names=NAMES
    )
    runs = tmp_path / "runs"
    runs.mkdir()
    monkeypatch.setenv(app_config.DATA_ROOT_ENV, f"{data}:{runs}")
    monkeypatch.setenv(store.RUNS_DIR_ENV, str(runs))
    monkeypatch.setenv("CAKD_SAMPLES_DIR", str(tmp_path / "no-samples"))
    return tmp_path


def _open(page: str, **params) -> AppTest:
    at = open_app("path:a", page, **params)
    assert_ok(at)
    return at


def _lines(at: AppTest) -> list[str]:
    """The notes about the link: warnings in the main area."""
    return [as_read(w.value) for w in at.main.warning]


BAD = [
    ("overview", "student", "zzz", "showing ce"),
    ("overview", "student", HUGE, "showing ce"),
    ("overview", "vs", "zzz", "showing no comparison"),
    ("overview", "vs", "ce", "same student as A"),
    ("overview", "T", "abc", "showing T = 4"),
    ("overview", "T", "500", "outside the allowed 0.05 to 100"),
    ("overview", "T", "nan", "not a finite number"),
    ("overview", "T", "-1", "outside"),
    ("overview", "grouping", "topk:0", "showing topk:5"),
    ("overview", "grouping", "nonsense", "showing topk:5"),
    ("overview", "grouping", HUGE, "showing topk:5"),
    ("overview", "view", "nope", "showing Distributions"),
    ("overview", "view", HUGE, "showing Distributions"),
    ("overview", "dkd", "7", "showing the sidebar's grouping"),
    ("overview", "standardize", "maybe", "showing the logits as they are (not standardized)"),
    ("sample", "standardize", "1", "showing the logits as they are"),
    ("overview", "names", "zzz", "showing the bundle's own class names"),
    ("overview", "names", "0123456789abcdef", "showing the bundle's own class names"),
    ("overview", "runs", "../../etc", "not a run id"),
    (
        "overview",
        "runs",
        "20260101-000000-nope-0000",
        "no run 20260101-000000-nope-0000 in the runs directory",
    ),
    ("overview", "runs", HUGE, "not a run id"),
    ("sample", "i", "-5", "showing sample 0"),
    ("sample", "i", "abc", "not a whole number"),
    ("sample", "i", "99999", "outside 0 to 149; showing sample 0"),
    ("sample", "i", "1.5", "not a whole number"),
    ("sample", "i", "inf", "showing sample 0"),
    ("sample", "i", "-1e400", "showing sample 0"),
    ("sample", "i", "nan", "not a number; showing sample 0"),
    ("sample", "log", "maybe", "showing a linear scale"),
    ("diagnose", "set", "zzz", "showing Student wrong, teacher right"),
    ("diagnose", "rank", "zzz", "showing KL"),
    ("diagnose", "share", "2", "showing shares"),
    ("correlation", "family", "abc", "showing threshold 0.5"),
    ("correlation", "family", "0.95", "showing threshold 0.5"),
    ("correlation", "P", "2", "showing P = 0.9"),
    ("learn", "lt", "abc", "incomplete or out of range"),
    ("learn", "ls", "yes", "incomplete or out of range"),
    ("overview", "device", "tpu", "showing auto"),
    ("tune", "curve", "zzz", "showing held-out accuracy"),
    ("tune", "run", "zzz", "showing"),
    ("tune", "run", HUGE, "showing"),
]


@pytest.mark.parametrize(
    ("page", "key", "value", "shown"), BAD, ids=[f"{p}-{k}-{v[:12]}" for p, k, v, _ in BAD]
)
def test_an_unusable_link_value_says_what_is_shown_instead(root, page, key, value, shown):
    if page == "tune":
        write_run(root / "runs", "20260101-000000-kd-aaaa")
    at = _open(page, **{key: value})
    lines = [line for line in _lines(at) if f"{key}=" in line]
    assert len(lines) == 1, _lines(at)
    assert shown in lines[0] and "The link asks" in lines[0]
    assert len(lines[0]) < 400  # a 10,000-character value is quoted cut short
    assert not at.main.error


def test_a_note_stays_until_the_user_picks_something_else(root):
    at = _open("overview", student="zzz")
    at.run()
    assert any("student=`zzz`" in w for w in _lines(at))  # still there after a rerun
    at.selectbox(key="student").set_value("kd").run()
    assert not any("student=`zzz`" in w for w in _lines(at))


GOOD = [
    ("overview", {"student": "kd", "vs": "ce", "T": "2.5", "grouping": "mass:0.8", "device": "cpu"}),
    ("overview", {"view": "Per class", "dkd": "true"}),
    ("overview", {"view": "Standardization (LS)", "standardize": "true"}),
    ("sample", {"i": "17", "log": "true"}),
    ("diagnose", {"set": "Student disagrees with teacher", "rank": "SCD", "share": "false"}),
    ("correlation", {"family": "0.35", "P": "0.7"}),
]


@pytest.mark.parametrize(("page", "params"), GOOD)
def test_usable_link_values_are_applied_quietly(root, page, params):
    at = _open(page, **params)
    assert not _lines(at)
    for key, value in params.items():
        if key != "view":
            assert at.query_params[key] == value, key
    if "student" in params:
        assert at.selectbox(key="student").value == "kd" and at.selectbox(key="vs").value == "ce"
    if "T" in params:
        assert at.sidebar.number_input[0].value == 2.5
    if "standardize" in params:
        assert at.toggle(key="standardize").value is True
    if page == "sample":
        assert at.number_input(key="i").value == 17 and at.toggle(key="log").value
    if page == "correlation":
        assert at.select_slider(key="family").value == 0.35
        assert at.select_slider(key="P").value == 0.7


def test_topk_at_or_above_the_number_of_classes_is_clamped_with_a_note(root):
    at = _open("overview", grouping="topk:100")
    notes = [w.value for w in at.sidebar.warning]
    assert len(notes) == 1 and "topk:100" in notes[0] and "using topk:9" in notes[0]
    assert not any("top-100" in c.value for c in at.sidebar.caption)
    assert any("top-9" in c.value for c in at.sidebar.caption)
    assert any("Grouping `topk:9`" in c.value for c in at.main.caption)  # what the page computes with


def test_a_typed_temperature_out_of_range_is_said_in_words(root):
    at = _open("overview")
    at.sidebar.number_input[0].set_value(500.0).run()
    assert not at.exception
    assert [e.value for e in at.sidebar.error] == [
        "T = 500 is outside the allowed 0.05 to 100: still using T = 4."
    ]
    # ... under the field, and on the page too (a sidebar scrolled elsewhere still shows it)
    assert [e.value for e in at.main.error] == [
        "The sidebar's temperature: T = 500 is outside the allowed 0.05 to 100: still using T = 4."
    ]
    assert any("T = 4." in c.value for c in at.main.caption)  # the page still computes at T = 4
    assert not _lines(at)  # typed, not a link: no note about a link


def test_a_class_name_list_from_the_link(root, monkeypatch, tmp_path):
    monkeypatch.setattr(app_names, "NAMES_DIR", tmp_path / "names")
    token = app_names.store("\n".join(f"name {i}" for i in range(10)).encode(), "n.txt", 10)
    at = _open("sample", names=token, i="3")
    assert not _lines(at)
    assert at.metric[0].value.startswith("name ")  # the true class, by the override list
    wrong = app_names.store("\n".join(f"z{i}" for i in range(4)).encode(), "n.txt", 4)
    at = _open("sample", names=wrong)
    assert any("the bundle 10 classes" in w for w in _lines(at))


def test_runs_in_the_link_must_be_finished_runs_of_the_same_data(root):
    student, teacher, labels = make_logits(150, 10, seed=7)
    tuned = (0.2 * student + 0.8 * teacher).astype(np.float32)
    same = {"teacher": teacher, "students": {"t": tuned}, "labels": labels, "class_names": NAMES}
    other = {"teacher": teacher + 1.0, "students": {"t": tuned}, "labels": labels, "class_names": NAMES}
    runs = root / "runs"
    write_run(runs, "20260101-000000-good-aaaa", bundle=same)
    write_run(runs, "20260101-000001-other-bbbb", bundle=other)
    write_run(runs, "20260101-000002-live-cccc", state="running")
    ids = "20260101-000000-good-aaaa,20260101-000001-other-bbbb,20260101-000002-live-cccc"
    at = _open("overview", runs=ids, vs="run:20260101-000000-good-aaaa")
    (line,) = [w for w in _lines(at) if "runs" in w]
    assert "another teacher" in line and "is running" in line and "Added: 20260101-000000-good-aaaa" in line
    assert at.query_params["runs"] == "20260101-000000-good-aaaa"
    # the run's student is named by the run's name; a link's older "run:RUN_ID" still finds it
    name = "run:CAKD topk:5 (1-1-8, T=4)"
    assert at.selectbox(key="vs").value == name
    assert "20260101-000000-good-aaaa" in at.selectbox(key="vs").help  # the id, on hover
    assert not [w for w in _lines(at) if "vs=" in w]
    snippet = "\n".join(c.value for c in at.code)  # "Reproduce in Python" loads the run's bundle from runs/
    assert f"{name!r}: (load_bundle('runs/20260101-000000-good-aaaa/bundle'), 't')," in snippet
    at.multiselect(key="sb_runs").set_value([]).run()
    assert "runs" not in at.query_params and name not in at.selectbox(key="student").options


def test_a_link_with_too_many_runs_says_how_many_it_asks_for(root):
    ids = ",".join(f"20260101-0000{i:02d}-nope-{i:04d}" for i in range(30))
    at = _open("overview", runs=ids)
    (line,) = [w for w in _lines(at) if "runs" in w]
    assert "only the first 6 of 30 runs are added" in line


def test_a_class_name_list_that_no_longer_fits_names_itself(root, monkeypatch, tmp_path):
    monkeypatch.setattr(app_names, "NAMES_DIR", tmp_path / "names")
    student, teacher, labels = make_logits(40, 4, seed=3)
    write_bundle(root / "data" / "four", teacher=teacher, students={"ce": student}, labels=labels)
    token = app_names.store("\n".join(f"name {i}" for i in range(10)).encode(), "n.txt", 10)
    at = _open("overview", names=token)
    assert not _lines(at)
    at.query_params["bundle"] = "path:data/four"  # another bundle, of 4 classes, opened in this session
    at.run()
    (line,) = [w for w in _lines(at) if "names=" in w]
    assert f"names=`{token}`" in line and "the bundle 4 classes" in line
