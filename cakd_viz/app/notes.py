"""One visible line for every value a link asks for that the app cannot show, kept until the user moves on.

A URL value that is unusable (``student=zzz``, ``i=-5``, ``T=abc``, ``view=nope``, a 10,000-character
string) never raises and never falls back silently: the code that reads it calls ``keep`` with a line
saying what was asked for and what is shown instead, and ``show`` draws the line on every rerun while
the widget still shows that substitute (the note goes once the user changes the widget).
"""

from __future__ import annotations

import streamlit as st

_K_NOTES = "_url_notes"  # name -> (text, widget key or None, the widget's value when the note was made)
SHOWN_CHARS = 60  # an asked-for value is quoted up to this many characters


def asked(name: str, raw) -> str:
    """``name=value`` as a link wrote it, cut to SHOWN_CHARS characters, for a note."""
    text = str(raw)
    if len(text) > SHOWN_CHARS:
        text = text[:SHOWN_CHARS] + f"… ({len(str(raw)):,} characters)"
    return f"{name}={text!r}" if any(ch.isspace() for ch in text) or not text else f"{name}={text}"


def keep(name: str, text: str, widget: str | None = None) -> None:
    """Record the note for URL key ``name``; it is shown while session-state ``widget`` keeps its current
    value (without a widget: until ``drop(name)``)."""
    ss = st.session_state
    ss.setdefault(_K_NOTES, {})[name] = (text, widget, ss.get(widget) if widget else None)


def drop(name: str) -> None:
    st.session_state.get(_K_NOTES, {}).pop(name, None)


def current(names=None) -> list[str]:
    """The notes still valid, for the URL keys ``names`` (all when None)."""
    ss = st.session_state
    notes = ss.get(_K_NOTES, {})
    out = []
    for name, (text, widget, shown) in list(notes.items()):
        if widget is not None and ss.get(widget) != shown:  # the user picked something else
            del notes[name]
            continue
        if names is None or name in names:
            out.append(text)
    return out


def show(names, where=None) -> None:
    """Draw the valid notes for ``names`` as warnings (in ``where``, default the main area)."""
    where = where or st
    for text in current(names):
        where.warning(text, icon=":material/link_off:")
