"""Running the app's script in Streamlit's AppTest, shared by the AppTest files."""

from __future__ import annotations

import re
from pathlib import Path

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
    """A Markdown message as a person reads it: the backslash escapes of ``cakd_viz.text.markdown`` out."""
    return re.sub(r"\\(.)", r"\1", markdown)


def assert_ok(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
