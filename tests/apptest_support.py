"""Running the app's script in Streamlit's AppTest, shared by the AppTest files."""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import streamlit as st
from streamlit.testing.v1 import AppTest

APP = Path(__file__).resolve().parent.parent / "app.py"


def open_app(
    bundle: str | None = None,
    page: str | None = None,
    *,
    first_run: bool = False,
    timeout: float = 120,
    **params,
) -> AppTest:
    """One run of app.py with `?bundle=` (when given) and `params` in the URL, on `page`: a page's key
    ("sample") or its file ("cakd_viz/app/pages/sample.py"). ``first_run``: run the default page first, as
    AppTest needs for a page switch that the script itself makes (st.switch_page) to take effect."""
    at = AppTest.from_file(str(APP), default_timeout=timeout)
    if bundle is not None:
        at.query_params["bundle"] = bundle
    for key, value in params.items():
        at.query_params[key] = str(value)
    if first_run:
        at.run()
    if page:
        at.switch_page(page if page.endswith(".py") else f"cakd_viz/app/pages/{page}.py")
    return at.run()


def as_read(markdown: str) -> str:
    """A Markdown message as a person reads it: the backslash escapes of ``cakd_viz.text.markdown`` out, and
    the zero-width spaces it puts into addresses (which nobody sees)."""
    return re.sub(r"\\(.)", r"\1", markdown).replace("\u200b", "")


def assert_ok(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


def run_snippet(code: str, cwd: Path) -> subprocess.CompletedProcess:
    """A page's "Reproduce in Python" snippet run as a user runs it: a fresh interpreter in ``cwd`` that
    imports this checkout's cakd_viz and nothing else from the environment; it must exit 0."""
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        env={"PYTHONPATH": str(APP.parent), "PATH": "/usr/bin:/bin"},
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return out


# -- what download buttons hand out ----------------------------------------------------------------------


@dataclass(frozen=True)
class Button:
    """One download button as the page's script made it."""

    label: str
    data: object  # bytes, str, or the callable the app builds the file with when clicked
    file_name: str | None


class Downloads:
    """The files behind an AppTest's download buttons. The app builds them only when clicked (a callable
    ``data``); this wraps the public ``st.download_button`` to record each button of the latest script run
    (by its key, else its label), so a test gets exactly the bytes a click would."""

    def __init__(self) -> None:
        self.made: dict[str, Button] = {}

    def install(self, monkeypatch) -> Downloads:
        made = self.made
        button, run = st.download_button, AppTest.run

        def download_button(label, data, file_name=None, *args, **kwargs):
            made[kwargs.get("key") or label] = Button(label, data, file_name)
            return button(label, data, file_name, *args, **kwargs)

        def fresh_run(at, *args, **kwargs):
            made.clear()  # the buttons of this run only
            return run(at, *args, **kwargs)

        monkeypatch.setattr(st, "download_button", download_button)
        monkeypatch.setattr(AppTest, "run", fresh_run)
        return self

    def buttons(self, at: AppTest) -> dict[str, Button]:
        """The page's download buttons by key, in the order the page made them (e.g.
        "dl_overview_students_csv"; a button without a key by its label)."""
        return dict(self.made)

    def get(self, at: AppTest, key: str) -> tuple[bytes, str]:
        """(the bytes, the file name) the button ``key`` hands out."""
        b = self.made[key]
        data = b.data() if callable(b.data) else b.data
        return (data.encode("utf-8") if isinstance(data, str) else bytes(data)), b.file_name
