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
    """A Markdown message as a person reads it: the backslash escapes of ``cakd_viz.text.markdown`` out, and
    the zero-width spaces it puts into addresses (which nobody sees)."""
    return re.sub(r"\\(.)", r"\1", markdown).replace("\u200b", "")


def assert_ok(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


# -- what download buttons hand out ----------------------------------------------------------------------


class Downloads:
    """The files behind an AppTest's download buttons. The app builds them only when clicked (a callable
    ``data``, registered with Streamlit's media file manager); this records every callable registered,
    by the id the button's proto carries, so a test gets exactly the bytes a click would."""

    def __init__(self) -> None:
        self.made: dict[str, tuple] = {}

    def install(self, monkeypatch) -> Downloads:
        from streamlit.runtime.media_file_manager import MediaFileManager

        original = MediaFileManager.add_deferred
        made = self.made

        def add_deferred(mgr, data_callable, mimetype, coordinates, file_name=None, *, element_id=""):
            file_id = original(
                mgr, data_callable, mimetype, coordinates, file_name=file_name, element_id=element_id
            )
            made[file_id] = (data_callable, file_name)
            return file_id

        monkeypatch.setattr(MediaFileManager, "add_deferred", add_deferred)
        return self

    def buttons(self, at: AppTest) -> dict[str, object]:
        """The page's download buttons by key (the end of the widget id), e.g. "dl_overview_students_csv"."""
        return {b.proto.id.rsplit("-", 1)[-1]: b.proto for b in at.get("download_button")}

    def get(self, at: AppTest, key: str) -> tuple[bytes, str]:
        """(the bytes, the file name) the button ``key`` hands out."""
        proto = self.buttons(at)[key]
        data_callable, file_name = self.made[proto.deferred_file_id]
        data = data_callable()
        return (data.encode("utf-8") if isinstance(data, str) else bytes(data)), file_name
