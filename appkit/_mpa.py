"""Keep Streamlit in `st.navigation` mode although the page scripts live in a folder named `pages/`.

Streamlit decides once per server process whether a `pages/` folder next to the entry point means the
old (v1) multipage mode; until some session runs `st.navigation`, a request for a page URL (a shared
link such as /correlation?bundle=...) runs that page script alone, without app.py's navigation and
sidebar. Every page imports `appkit`, so the first such run lands here: it switches the process to
`st.navigation` mode for good and reruns, which executes app.py as the entry point.
"""

from __future__ import annotations


def leave_pages_directory_mode() -> None:
    """Switch a v1-mode run over to `st.navigation` (no-op outside a script run or when already done)."""
    try:
        import streamlit as st
        from streamlit.runtime.scriptrunner import get_script_run_ctx, script_runner
    except ImportError:  # a Streamlit without these internals: nothing to fix
        return
    manager = getattr(script_runner, "PagesManager", None)  # the flag exactly as the script runner reads it
    if getattr(manager, "uses_pages_directory", False) and get_script_run_ctx() is not None:
        manager.uses_pages_directory = False
        st.rerun()
