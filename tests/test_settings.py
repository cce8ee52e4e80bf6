"""Settings from the environment are parsed strictly: a value cakd-viz does not understand is one line
naming the variable, and never switches a protection off (the app serves no page, `cakd-viz app` does not
start)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from apptest_support import open_app

from cakd_viz import settings
from cakd_viz.app import config as app_config

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(
    ("raw", "value"),
    [
        ("1", True),
        ("TRUE", True),
        ("yes", True),
        ("on", True),
        ("0", False),
        ("off", False),
        ("No", False),
        ("", False),
    ],
)
def test_a_flag_takes_the_words_it_documents(monkeypatch, raw, value):
    monkeypatch.setenv("CAKD_VIZ_REQUIRE_LOGIN", raw)
    assert settings.flag("CAKD_VIZ_REQUIRE_LOGIN") is value
    assert app_config.login_required() is value


@pytest.mark.parametrize("raw", ["maybe", "2", "enable", "1; rm -rf /"])
def test_a_flag_it_does_not_understand_is_refused_in_one_line(monkeypatch, raw):
    monkeypatch.setenv("CAKD_VIZ_REQUIRE_LOGIN", raw)
    with pytest.raises(
        ValueError, match=r"^CAKD_VIZ_REQUIRE_LOGIN='.*' is not understood .*: use 1 or 0"
    ) as err:
        app_config.login_required()
    assert "\n" not in str(err.value)
    assert app_config.problems() == [str(err.value)]


@pytest.mark.parametrize(
    ("name", "raw", "value"),
    [
        ("CAKD_VIZ_MAX_ACTIVE_RUNS", "3", 3),
        ("CAKD_VIZ_MAX_ACTIVE_RUNS", "1_000", 1000),
        ("CAKD_VIZ_MAX_RUNS", "2", 2),
        ("CAKD_VIZ_UPLOAD_MAX_EXPANDED_MB", "2.5", 2.5),
        ("CAKD_VIZ_RESULTS_MB", "0", 0.0),
        ("CAKD_VIZ_PROGRESS_ABOVE", "0", 0),
    ],
)
def test_numbers_within_their_range_are_read(monkeypatch, name, raw, value):
    monkeypatch.setenv(name, raw)
    assert settings.number(name) == value


@pytest.mark.parametrize(
    ("name", "raw", "accepts"),
    [
        ("CAKD_VIZ_MAX_ACTIVE_RUNS", "abc", "a whole number at least 1"),
        ("CAKD_VIZ_MAX_ACTIVE_RUNS", "0", "a whole number at least 1"),
        ("CAKD_VIZ_MAX_ACTIVE_RUNS", "2.5", "a whole number at least 1"),
        ("CAKD_VIZ_MAX_RUNS", "-1", "a whole number at least 1"),
        ("CAKD_VIZ_UPLOAD_MAX_EXPANDED_MB", "nan", "a number"),
        ("CAKD_VIZ_UPLOAD_MAX_EXPANDED_MB", "inf", "a number"),
        ("CAKD_VIZ_RESULTS_MB", "-3", "a number 0 to"),
        ("CAKD_VIZ_PROGRESS_ABOVE", "1e6", "a whole number at least 0"),
        ("CAKD_VIZ_MAX_RUNS", "_", "a whole number at least 1"),  # was read as unset: the default
        ("CAKD_VIZ_RESULTS_MB", "__", "a number 0 to"),
    ],
)
def test_numbers_it_does_not_understand_are_refused(monkeypatch, name, raw, accepts):
    monkeypatch.setenv(name, raw)
    with pytest.raises(ValueError, match=rf"^{name}={raw!r} is not understood .*: use {accepts}"):
        settings.number(name)


def test_unset_settings_take_their_defaults(monkeypatch):
    for name in settings.SETTINGS:
        monkeypatch.delenv(name, raising=False)
    assert settings.problems() == []
    assert app_config.max_active_runs() == 16 and not app_config.allow_code_specs()
    assert app_config.upload_expanded_cap(200) == 400 * 2**20


def test_a_data_root_that_is_not_a_folder_is_refused(monkeypatch, tmp_path):
    monkeypatch.setenv(app_config.DATA_ROOT_ENV, os.pathsep.join([str(tmp_path), str(tmp_path / "missing")]))
    with pytest.raises(ValueError, match=r"CAKD_VIZ_DATA_ROOT names '.*missing', which is not a folder"):
        app_config.data_roots()


def test_the_app_serves_no_page_while_a_setting_is_not_understood(monkeypatch):
    monkeypatch.setenv("CAKD_VIZ_REQUIRE_LOGIN", "on please")
    at = open_app(page="overview")
    assert not at.exception
    (line,) = [e.value.replace("\\", "") for e in at.error]  # the markdown escapes taken out
    assert line == (
        "This server's settings are not usable: CAKD_VIZ_REQUIRE_LOGIN='on please' is not understood (every "
        "page asks for Streamlit's login first): use 1 or 0 (also true/false, yes/no, on/off). Ask its operator."
    )
    assert not at.title and not at.sidebar.selectbox  # no page, no sidebar


def test_the_app_command_does_not_start_with_a_setting_it_does_not_understand(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO), "CAKD_VIZ_ALLOW_CODE_SPECS": "si"}
    out = subprocess.run(
        [sys.executable, "-m", "cakd_viz", "app"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=60,
    )
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr.splitlines() == [
        "cakd-viz app: error: CAKD_VIZ_ALLOW_CODE_SPECS='si' is not understood (the Tune form takes code, "
        "model files and own data): use 1 or 0 (also true/false, yes/no, on/off)"
    ]
