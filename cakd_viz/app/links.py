"""Links: the view lives in the URL, so that a link reproduces it, and a value a link asks for that the app
cannot use is said in one visible line ("The link asks for T=abc, not a number; showing T = 4."), never
dropped silently. Widgets are bound by Streamlit (``bind="query-params"``), ``bound`` adds the line; values
that are no widget go through ``param``/``write`` (docs/architecture.md §9, "Adding a page").
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import streamlit as st

from cakd_viz.app.config import plain, shown

_K_NOTES = "_link_notes"  # URL key -> (text, widget key or None, the widget's value when the note was made)


# -- the notes -------------------------------------------------------------------------------------------


def asked(name: str, raw: object) -> str:
    """``name=value`` as a link wrote it, quoted for a line of Markdown and cut short when long."""
    return f"{name}={shown(raw, limit=60)}"


def note(name: str, text: str, widget: str | None = None) -> None:
    """Keep ``text`` about URL key ``name``; shown while session-state ``widget`` keeps its current value
    (without a widget: until ``drop(name)``)."""
    ss = st.session_state
    ss.setdefault(_K_NOTES, {})[name] = (text, widget, ss.get(widget) if widget else None)


def drop(name: str) -> None:
    st.session_state.get(_K_NOTES, {}).pop(name, None)


def current(names: Sequence[str]) -> list[str]:
    """The notes still valid for the URL keys ``names`` (every note no longer valid is dropped)."""
    ss = st.session_state
    kept = ss.get(_K_NOTES, {})
    out = []
    for name, (text, widget, value) in list(kept.items()):
        if widget is not None and ss.get(widget) != value:  # the user picked something else
            del kept[name]
        elif name in names:
            out.append(text)
    return out


def show(names: Sequence[str]) -> None:
    """Draw the valid notes for ``names`` as warnings in the main area."""
    for text in current(names):
        st.warning(text, icon=":material/link_off:")


# -- widgets bound to the URL ----------------------------------------------------------------------------


_NON_FINITE = "_links_non_finite"  # {key: a link's non-finite number}, kept over the rerun that drops it


def bound(
    draw: Callable,
    label: str,
    *args,
    key: str,
    why: Callable[[str], str],
    says: Callable[[object], str] = str,
    url: Callable[[object], str] | None = None,
    **kwargs,
):
    """Draw a widget bound to the URL, ``draw(label, *args, key=key, bind="query-params", **kwargs)``
    (``draw``: ``st.selectbox``, ``st.sidebar.number_input``, ``column.toggle``, ...), and return its value.

    When a link's value for ``key`` did not become the widget's value (Streamlit could not use it), keep
    one line: "The link asks for KEY=VALUE, ``why(value)``; showing ``says(widget value)``." ``url``
    writes a widget value as the URL holds it (default: ``format_func`` for option widgets, else ``str``).
    A link's value is the URL's when the widget is drawn afresh (a new session, a page opened with it);
    on a rerun the URL holds what the widget wrote there."""
    raw = st.query_params.get(key) if key not in st.session_state else None
    if raw is not None and getattr(draw, "__name__", "") == "number_input" and not _finite(raw):
        # Streamlit's own seeding fails on "inf" for a whole number: the link's value leaves the URL and the
        # run starts over (the widget then at its default), keeping the value for the note below
        st.session_state.setdefault(_NON_FINITE, {})[key] = raw
        del st.query_params[key]
        st.rerun()
    raw = st.session_state.get(_NON_FINITE, {}).pop(key, raw)
    value = draw(label, *args, key=key, bind="query-params", **kwargs)
    if raw is not None and not _same(raw, value, url or kwargs.get("format_func") or str):
        note(
            key, f"The link asks for {asked(key, raw)}, {plain(why(raw))}; showing {plain(says(value))}.", key
        )
    elif raw is not None:
        drop(key)
    return value


def _finite(raw: str) -> bool:
    """Whether the URL's ``raw`` text is a finite number, or no number at all (Streamlit refuses that itself)."""
    try:
        return math.isfinite(float(raw))
    except ValueError:
        return True


def _same(raw: str, value: object, url: Callable[[object], str]) -> bool:
    """Whether the URL's ``raw`` text is the widget's ``value`` (numbers by value, booleans by word)."""
    if isinstance(value, bool):
        return raw.strip().lower() == str(value).lower()
    if isinstance(value, int | float):
        try:
            return float(raw) == float(value)
        except ValueError:
            return False
    return raw == url(value)


def worded(draw: Callable, label: str, words: dict | Sequence, *, key: str, most: int = 12, **kwargs):
    """``bound`` for an option widget (``st.selectbox``, ``column.radio``, ...) over the keys of ``words``
    (or over a list of options that are their own words), each shown, said in a note and held in the URL
    as its words (a link's value that is none of them: "which is not one of" the first ``most``); the
    note, if any, is drawn under it. Returns the option picked."""
    words = words if isinstance(words, dict) else {w: w for w in words}
    value = bound(
        draw,
        label,
        list(words),
        key=key,
        why=one_of(list(words), words.get, most),
        says=words.get,
        format_func=words.get,
        **kwargs,
    )
    show((key,))
    return value


def one_of(options: Sequence, url: Callable[[object], str] = str, most: int = 12) -> Callable[[str], str]:
    """``why`` for an option widget: "which is not one of A, B, C"."""
    words = ", ".join(url(o) for o in list(options)[:most]) + (" and more" if len(options) > most else "")
    return lambda raw: f"which is not one of {words or 'none here'}"


def number(lo: float, hi: float, *, whole: bool = False) -> Callable[[str], str]:
    """``why`` for a number widget: not a (whole) number, or outside the range."""

    def why(raw: str) -> str:
        try:
            value = float(raw)
        except ValueError:
            return "not a whole number" if whole else "not a number"
        if value != value:
            return "not a number"
        if whole and math.isfinite(value) and value != int(value):
            return "not a whole number"
        return f"outside {lo:,g} to {hi:,g}"

    return why


def boolean(raw: str) -> str:
    """``why`` for a toggle: the URL holds true or false."""
    return "which is neither true nor false"


def pager(
    label: str, lo: int, hi: int, *, key: str, says: Callable[[int], str], button_keys=(None, None)
) -> int:
    """◀ Previous / a whole number from ``lo`` to ``hi`` bound to the URL's ``key`` / Next ▶ (the buttons
    keyed ``button_keys``); returns the number. A value the range no longer holds (a filter left fewer
    pages, a smaller bundle opened) is brought back into it."""
    ss = st.session_state
    if key in ss:
        ss[key] = min(max(int(ss[key]), lo), hi)

    def step(delta: int) -> None:
        ss[key] = min(max(int(ss.get(key, lo)) + delta, lo), hi)

    prev, pick, nxt = st.columns([1, 2, 1], vertical_alignment="bottom")
    value = int(
        bound(pick.number_input, label, lo, hi, step=1, key=key, why=number(lo, hi, whole=True), says=says)
    )
    prev.button(
        "◀ Previous", key=button_keys[0], on_click=step, args=(-1,), disabled=value <= lo, width="stretch"
    )
    nxt.button("Next ▶", key=button_keys[1], on_click=step, args=(1,), disabled=value >= hi, width="stretch")
    show((key,))
    return value


def choice(draw: Callable, label: str, options: Sequence, *, key: str, name: str, **kwargs):
    """A widget over ``options`` whose link value is the option itself, not its label (a run picked by its
    id, shown by its name): the URL's ``name`` is checked and written here, left out while the first
    option is picked."""
    ss = st.session_state
    if (raw := incoming(name)) is not None:  # a link, or in-app navigation
        if raw in options:
            ss[key] = raw
            drop(name)
        else:
            ss[key] = ss.get(key) if ss.get(key) in options else options[0]
            says = plain(kwargs.get("format_func", str)(ss[key]))  # a run's name: text from a folder
            note(name, f"The link asks for {asked(name, raw)}, which is not one here; showing {says}.", key)
    if ss.get(key) not in options:
        ss[key] = options[0]
    value = draw(label, options, key=key, **kwargs)
    write(name, None if value == options[0] else value)
    return value


def tabs(labels: list[str], key: str):
    """``st.tabs`` bound to the URL's ``key`` (a link reopens a tab; only the open one computes); a
    link's tab that is not one of ``labels`` is said in one line."""
    if (raw := param(key)) is not None and raw not in labels and key not in st.session_state:
        note(
            key,
            f"The link asks for {asked(key, raw)}, which is not one of {', '.join(labels)}; showing {labels[0]}.",
            key,
        )
    show((key,))
    return st.tabs(labels, key=key, bind="query-params")


# -- values that are no widget -----------------------------------------------------------------------------


def param(name: str) -> str | None:
    """A query parameter that no widget is bound to (None when the URL does not hold it)."""
    return st.query_params.get(name)


def incoming(name: str) -> str | None:
    """The URL's ``name`` when it is not what this session last wrote there with ``write`` (a link, or
    in-app navigation); None for no change."""
    raw = param(name)
    return None if raw is None or raw == st.session_state.get(f"_wrote_{name}") else raw


def write(name: str, value: object | None) -> None:
    """``set_param``, remembering what was written (so that ``incoming`` tells a new value from it)."""
    set_param(name, value)
    st.session_state[f"_wrote_{name}"] = None if value is None or value == "" else str(value)


def set_param(name: str, value: object | None) -> None:
    """Write an unbound query parameter (None or "" removes it); no rerun is triggered."""
    if value is None or value == "":
        if name in st.query_params:
            del st.query_params[name]
    elif st.query_params.get(name) != str(value):
        st.query_params[name] = str(value)
