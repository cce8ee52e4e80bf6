"""The app's last line of defence: an unexpected error is logged on the server with a short id, and the
browser sees one line with that id, never a traceback, an exception's text or a server path.

Errors a user caused (a bad file, a refused path) are caught where they happen and said in one line;
what reaches here is a bug or a broken environment. Streamlit's own control flow (``st.stop``,
``st.rerun``, ``st.switch_page``) raises BaseExceptions, which pass through untouched.
"""

from __future__ import annotations

import logging
import sys
import uuid
from collections.abc import Callable

import streamlit as st

LOG = logging.getLogger("cakd_viz.app")
if not LOG.handlers:  # Streamlit configures only its own loggers: give ours a line format on stderr
    _handler = logging.StreamHandler(sys.stderr)
    _handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    LOG.addHandler(_handler)
    LOG.setLevel(logging.INFO)
    LOG.propagate = False


def run(fn: Callable[[], object], where: str) -> bool:
    """Call ``fn()``; on an unexpected error log it with an id, show one line, return False."""
    try:
        fn()
    except Exception as exc:
        error_id = uuid.uuid4().hex[:8]
        LOG.error("error %s in %s: %s: %s", error_id, where, type(exc).__name__, exc, exc_info=exc)
        st.error(
            f"Something went wrong here (error id {error_id}); the server's log has the details, "
            "and the rest of the app keeps working."
        )
        return False
    return True
