"""Running the app's script in Streamlit's AppTest, shared by the AppTest files."""

from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

APP = Path(__file__).resolve().parent.parent / "app.py"


def open_app(bundle: str | None = None, page: str | None = None, **params) -> AppTest:
    """One run of app.py with `?bundle=` (when given) and `params` in the URL, on `page` (a page file)."""
    at = AppTest.from_file(str(APP), default_timeout=120)
    if bundle is not None:
        at.query_params["bundle"] = bundle
    for key, value in params.items():
        at.query_params[key] = value
    if page:
        at.switch_page(page)
    return at.run()


def assert_ok(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
