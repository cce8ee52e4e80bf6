"""The app's entry: page config, navigation, the shared sidebar, the optional login and the guard around
every page. Both entry scripts only call ``main()`` (docs/architecture.md §2, "Entry scripts")."""

import functools

import numpy as np
import streamlit as st

from cakd_viz.app import config as app_config  # first: cakd_viz.app sets OMP_WAIT_POLICY before torch loads
from cakd_viz.app import guard, state
from cakd_viz.figures.style import TERM_COLORS

# (key, title, icon, section); every page script lives in pages/ beside this module (state.PAGE_FILES).
PAGES = [
    ("data", "Data", ":material/database:", "Data"),
    ("overview", "Overview", ":material/stacked_bar_chart:", "Explore"),
    ("correlation", "Correlation groups", ":material/grid_on:", "Explore"),
    ("samples", "Samples", ":material/grid_view:", "Explore"),
    ("sample", "Sample", ":material/image_search:", "Explore"),
    ("diagnose", "Diagnose", ":material/troubleshoot:", "Explore"),
    ("learn", "Learn", ":material/school:", "Learn & tune"),
    ("tune", "Tune", ":material/tune:", "Learn & tune"),
]


# The app's one stylesheet: no animated transitions on what changes while a pass runs. Streamlit fades a
# rerun's stale elements over 1 s (after 0.5 s) and slides its progress bar for 0.5 s after each redraw
# (every 0.25 s, so without end), and every frame of either repaints the page's charts: on a 2-core server
# that shares the CPU with the pass, that was about 0.4-0.6 s of a browser's CPU per temperature change on
# the 1.28M-sample view (benchmarks/bench_app_render.py). Stale elements still dim after Streamlit's half
# second (an element redrawn sooner never dims), at once instead of fading; the bar moves in steps.
_STYLE = """<style>
[data-stale="true"], [data-stale="true"] *, [data-testid="stExpander"] *, [data-testid="stTabs"] *
{ transition-duration: 0s !important; }
[data-testid="stProgressBarTrack"] * { transition: none !important; }
</style>"""


@functools.cache
def _icon():
    """The app's icon, a 64 x 64 image: three stacked bars in the colours of BCD, SCD and WCD."""
    from PIL import Image

    img = np.zeros((64, 64, 4), np.uint8)
    for (top, bottom), colour in zip(((8, 28), (28, 44), (44, 56)), TERM_COLORS.values(), strict=False):
        img[top:bottom, 10:54] = (*(int(colour[i : i + 2], 16) for i in (1, 3, 5)), 255)  # "#0072B2"
    return Image.fromarray(img, "RGBA")


def _start() -> None:
    """The app's root URL: open the Overview with whatever the link asked for. (Streamlit serves its
    default page at "/" only, so a page that should also open from its own link, /overview?..., must
    not be the default.) It runs before the sidebar, so that a new session's link reaches the Overview
    whole; later in a session the sidebar's bound values stay by themselves."""
    params = st.query_params.to_dict()
    if any(key in st.session_state for key in state.SIDEBAR_KEYS):
        params = {k: v for k, v in params.items() if k not in state.SIDEBAR_KEYS}
    st.switch_page(state.PAGE_FILES["overview"], query_params=params)


def main() -> None:
    # The icon is drawn here: a Material icon as page_icon makes the browser fetch it from Google's servers.
    st.set_page_config(page_title="cakd-viz", page_icon=_icon(), layout="wide")
    st.html(_STYLE)  # style only: Streamlit adds it to the page without a container
    sections: dict[str, list] = {
        "": [st.Page(_start, title="Start", url_path="start", default=True, visibility="hidden")]
    }
    for key, title, icon, section in PAGES:
        page = st.Page(state.PAGE_FILES[key], title=title, icon=icon, url_path=key)
        sections.setdefault(section, []).append(page)
    current = st.navigation(sections)
    if problems := app_config.problems():  # a setting not understood: serve nothing rather than guess
        st.error(f"This server's settings are not usable: {app_config.plain(problems[0])}. Ask its operator.")
        st.stop()
    if current.url_path == "":  # the hidden start page (the default page is served at "/")
        current.run()  # switches to the Overview
    if app_config.login_required() and not st.user.get("is_logged_in", False):
        st.title("cakd-viz")
        st.info("This server asks you to log in first.")
        if st.button("Log in", type="primary"):
            try:
                st.login()
            except Exception as exc:  # no [auth] section in secrets.toml, or Authlib missing
                st.error(f"Login is not set up on this server ({type(exc).__name__}); ask its operator.")
        st.stop()
    # Every page runs inside the guard: an unexpected error is one line with an id (the log has the rest).
    if guard.run(state.sidebar, "the sidebar"):
        guard.run(current.run, f"page {current.title}")
