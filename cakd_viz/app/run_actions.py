"""What the Tune page's run view does to a run (note, archive, restore, delete, open, compare) as one
visible outcome each (a toast, or one error line), and which runs "Compare runs" shows."""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import streamlit as st

from cakd_viz.app import config as app_config
from cakd_viz.app import state, tracker, views
from cakd_viz.runs.results import RunInfo

PICKED = "tune_compare_picked"  # session key: the user chose the compared runs themselves
COMPARED = "tune_compare"  # session key: their choice
NEWEST = 4  # runs compared until the user picks


def act(action: Callable, *args, done: str, refused: str = "Not done", **kwargs) -> None:
    """Do ``action(*args, **kwargs)`` (a ``results`` call that writes, moves or deletes): once done, a toast
    saying ``done`` and a full rerun (the tables show the change); refused, one line "``refused``: <why>"."""
    try:
        action(*args, **kwargs)
    except (ValueError, OSError) as exc:
        st.error(f"{refused}: {app_config.one_line(app_config.scrub(str(exc)))}")
        return
    st.toast(done)
    st.rerun()  # a full rerun: a fragment-scoped one fails outside fragment reruns


def open_in_explorer(run: RunInfo) -> None:
    """Open the run's bundle on the Overview page; one error line when it lies outside the data roots."""
    try:
        path = app_config.resolve_server_path(run.bundle_path)
    except ValueError:
        st.error(
            "This run's bundle lies outside the app's data roots; the operator can add the runs folder to "
            f"${app_config.DATA_ROOT_ENV}."
        )
        return
    state.goto_overview(f"path:{app_config.display_path(path)}")  # the data-root form: no server path


def compare_with_bundle(run: RunInfo) -> None:
    """The Overview with the run's student (B) beside the first student of the bundle it was trained on."""
    source = tracker.compare_source(run, state.selection(required=False).source)
    if not source:
        st.error("No bundle is open to compare the run's student with; open the one it was trained on first.")
        return
    state.goto_overview(source, runs=(run.id,), compare=f"{views.RUN_PREFIX}{run.id}")


def pick_compared(options: list[str], labels: dict[str, str]) -> list[str]:
    """The "Runs" multiselect of the comparison: the newest ``NEWEST`` runs with epochs until the user
    picks, so new runs join without a reload; from then on the user's choice (runs that are gone drop
    out). ``options``: run ids, newest first."""
    ss = st.session_state
    if ss.get(PICKED):
        ss[COMPARED] = [i for i in ss.get(COMPARED, []) if i in options]
        return st.multiselect("Runs", options, key=COMPARED, format_func=labels.get)
    newest = options[:NEWEST]
    # a widget keyed by that list: a value pushed into a kept widget during a fragment rerun does not show
    key = "tune_compare_auto_" + hashlib.sha1(",".join(newest).encode()).hexdigest()[:10]
    return st.multiselect(
        "Runs", options, default=newest, key=key, format_func=labels.get, on_change=_picked, args=(key,)
    )


def _picked(key: str) -> None:
    """The user changed the newest-runs selection: from now on it is theirs."""
    ss = st.session_state
    ss[PICKED] = True
    ss[COMPARED] = list(ss[key])
