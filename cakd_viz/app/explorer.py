"""The samples explorer's Streamlit glue: its controls bound to the URL (the ``K_*`` query parameters), and
the ways in (``button(label, link(...))`` then ``follow()``) and back (``back_button``); docs/architecture.md
§9, "Opening a page with its controls set"."""

from __future__ import annotations

import streamlit as st

from cakd_viz import explore, export
from cakd_viz.app import bundles, compute, links, state, viewspec
from cakd_viz.app.config import plain
from cakd_viz.app.links import asked
from cakd_viz.diagnose import available_sets
from cakd_viz.terms import PART, TERMS

PAGE = "samples"
K_TRUE, K_TEACHER, K_PRED, K_PRED_B, K_PAIR = "true", "teacher", "pred", "predb", "pair"
K_FAILURE, K_CHANGE, K_TERM, K_FAMILY = "failure", "change", "term", "fam"
K_SORT, K_ORDER, K_PAGE = "sort", "order", "page"
K_TAB, K_METHOD, K_COLOR = "tab", "map", "color"
FILTER_KEYS = (K_TRUE, K_TEACHER, K_PRED, K_PAIR, K_PRED_B, K_FAILURE, K_CHANGE, K_TERM, K_FAMILY)
KEYS = FILTER_KEYS + (K_SORT, K_ORDER, K_PAGE, K_TAB, K_METHOD, K_COLOR)
ANY = "(any)"
CHANGES = {"fixed": "Fixed by B", "broken": "Broken by B"}
ORDERS = ("largest first", "smallest first")
PER_PAGE = 48
PAIR_CHOICES = 500  # confusion pairs listed in the pair filter (most frequent first)
PILLS = 10  # the most frequent of them also as one-click pills

_K_GO = "_samples_go"  # the explorer's query parameters asked for by a button (None: back, as it was)
_K_OPEN = "_samples_open"  # a sample asked for by a tile's button or a point of the map
_K_BACK = "_samples_back"  # the Sample page was opened from the explorer: it offers the way back
_K_PILLS = "samples_pills"


def link(names, *, pair=None, change=None, failure=None, sort=None, **classes: int) -> dict[str, str]:
    """The explorer's query parameters for these filters (``classes``: ``true``, ``teacher`` or ``pred``, by
    index; ``names``: the classes as shown, which the explorer's class boxes hold), ``pair`` (reference,
    predicted) and sort (a key of ``explore.SORT_KEYS``)."""
    out = {k: str(names[int(c)]) for k, c in classes.items() if c is not None}
    if pair is not None:
        out[K_PAIR] = _pair_words(list(names))(pair)
    if change is not None:
        out[K_CHANGE] = CHANGES[change]
    return out | {k: v for k, v in {K_FAILURE: failure, K_SORT: sort}.items() if v is not None}


def button(where, label: str, params: dict[str, str], *, key: str, **kwargs) -> None:
    """A button (in ``where``: ``st``, a column) that opens the explorer with ``params`` (``link``)."""
    where.button(label, key=key, on_click=_ask, args=(dict(params),), icon=":material/grid_view:", **kwargs)


def _ask(params: dict[str, str] | None) -> None:
    st.session_state[_K_GO] = params


def follow() -> None:
    """At the top of a page that links into the explorer: follow a button's request of the last run."""
    ss = st.session_state
    if _K_GO not in ss:
        return
    params = ss.pop(_K_GO)
    if params is not None:  # a new view: none of the explorer's previous values holds
        for key in KEYS:
            ss.pop(key, None)
    st.switch_page(state.PAGE_FILES[PAGE], query_params=state.link_params() | (params or {}))


def back_button() -> None:
    """On the Sample page: "← back to the samples" when the explorer opened it."""
    if st.session_state.get(_K_BACK):
        st.button("← back to the samples", key="samples_back", on_click=_ask, args=(None,), type="tertiary")


def open_sample(index: int) -> None:
    """Callback of a tile's button: open sample ``index`` on the next run (``follow_open``)."""
    st.session_state[_K_OPEN] = int(index)


def open_point(key: str) -> None:
    """Callback of the map: open the sample of the point clicked in chart ``key`` (its customdata).
    What the browser sent is checked: anything but a sample index of a point is ignored."""
    event = st.session_state.get(key) or {}
    points = (event.get("selection") or {}).get("points") or []
    data = points[0].get("customdata") if points and isinstance(points[0], dict) else None
    data = data[0] if isinstance(data, list | tuple) and data else data
    if isinstance(data, int | float) and not isinstance(data, bool) and 0 <= data < 2**62:
        open_sample(int(data))


def follow_open() -> None:
    """At the top of the explorer: open the sample a click of the last run asked for."""
    ss = st.session_state
    ss.pop(_K_BACK, None)
    if (index := ss.pop(_K_OPEN, None)) is not None:
        ss[_K_BACK] = True
        state.goto_sample(index)


def _first_page() -> None:
    st.session_state[K_PAGE] = 1  # a filter or the sort changed: back to the first page


def _class_box(where, label: str, key: str, names: list[str], help: str) -> int | None:
    """A class filter: a class index, or None for any. The widget's options are the classes' names (what
    the URL holds; text, since ``links.bound`` reads a number option as a number)."""
    why = "which is not a class of this bundle"
    return _choice_box(where, label, key, dict(enumerate(names)), help, lambda raw: why, every="every class")


def _choice_box(where, label: str, key: str, words: dict, help: str, why=None, every: str = "every sample"):
    """A filter over the keys of ``words`` (their words are the widget's options and what the URL holds);
    returns a key, or None for any (said as ``every`` when a link's value cannot be used)."""
    keys = {w: k for k, w in words.items()}
    value = links.bound(
        where.selectbox,
        label,
        [None, *keys],
        key=key,
        format_func=lambda w: ANY if w is None else w,
        why=why or links.one_of(list(keys)),
        says=lambda w: every if w is None else w,
        on_change=_first_page,
        help=help,
    )
    return None if value is None else keys[value]


def _not_here(key: str, why: str) -> str | None:
    """The line for a link's filter that this view cannot apply (no labels, no student B), or None."""
    raw = links.param(key)
    return None if raw is None else f"The link asks for {asked(key, raw)}, {why}; showing every sample."


def filters(sel: state.Selection, d, family_words: dict[int, str], confusions):
    """Draw the filters; return them (``explore.Filters``) and the confusion pairs they leave. ``d``:
    student A's decomposition (which failure sets apply); ``confusions(filters)``: the confusion pairs
    among the samples that pass ``filters`` (most frequent first: ``compute.confusions_here``)."""
    names = list(sel.class_names)
    a, b = plain(sel.student), plain(sel.compare)  # in labels, which read Markdown
    labels = d.labels is not None
    top, low = st.columns(4), st.columns(4)
    f = {"true": _class_box(top[0], "True class", K_TRUE, names, "The sample's label.") if labels else None}
    if not labels:
        top[0].caption("This bundle has no labels: no true class to filter on.")
    f["teacher"] = _class_box(top[1], "Teacher predicts", K_TEACHER, names, "The teacher's top class.")
    f["pred"] = _class_box(top[2], f"{a} (A) predicts", K_PRED, names, "Student A's top class.")
    sets = ([explore.ANY_FAILURE] if labels else []) + available_sets(d)
    f["failure"] = _choice_box(
        low[0],
        f"Failure of {a}",
        K_FAILURE,
        {s: s for s in sets},
        "; ".join(f"{s}: {explore.FAILURES[s]}" for s in sets),
    )
    f["term"] = _choice_box(
        low[1],
        "Largest part of the KL",
        K_TERM,
        {t: PART[t] for t in TERMS},
        "The part of this sample's KL that is largest: BCD, p_S·SCD or p_W·WCD.",
    )
    ref = "true class" if labels else "teacher's class"
    f["family"] = _choice_box(
        low[2],
        f"Family of the {ref}",
        K_FAMILY,
        family_words,
        "Classes whose average teacher-logit correlation is at least 0.5 (the Correlation page's families).",
        lambda raw: "which is not a family of this bundle's classes",
    )
    if b:  # student B's filters, a row of their own: its prediction, and fixed or broken against A
        row = st.columns(4)
        f["pred_b"] = _class_box(row[0], f"{b} (B) predicts", K_PRED_B, names, "Student B's top class.")
        f["change"] = _choice_box(
            row[1],
            f"{b} (B) against {a} (A)",
            K_CHANGE,
            CHANGES,
            "Fixed by B: A wrong, B right; broken by B: A right, B wrong (right: the true class, or the "
            "teacher's without labels).",
        )
    pairs = confusions(explore.Filters(**f))
    f["pair"] = _pair_box(top[3], pairs, names, labels, a)
    notes = [
        _not_here(K_TRUE, "and this bundle has no labels") if not labels else None,
        *([] if b else [_not_here(k, "and no student B is set") for k in (K_PRED_B, K_CHANGE)]),
    ]
    for line in filter(None, notes):
        st.warning(line, icon=":material/link_off:")
    links.show(FILTER_KEYS)
    return explore.Filters(**f), pairs


def _pair_words(names: list[str]):
    return lambda p: ANY if p is None else f"{names[p[0]]} → {names[p[1]]}"


def _pair_box(where, pairs, names: list[str], labels: bool, a: str) -> tuple[int, int] | None:
    """The confusion filter: (reference class, A's class) among ``pairs`` (``explore.top_confusions``),
    the first ``PAIR_CHOICES`` and the one a link asks for. The URL holds "TRUE → PREDICTED" by name."""
    every = [(int(t), int(p)) for t, p in zip(pairs["true"], pairs["predicted"], strict=True)]
    options = every[:PAIR_CHOICES]
    asked_for = _parse_pair(links.param(K_PAIR), names) if K_PAIR not in st.session_state else None
    chosen = st.session_state.get(K_PAIR)
    for extra in (asked_for, chosen):  # a rare pair asked for by a link or a pill stays choosable
        if extra is not None and extra not in options and extra in every:
            options.append(extra)
    if chosen is not None and chosen not in options:
        st.session_state[K_PAIR] = None  # no longer among these samples (another filter changed)
    ref = "true" if labels else "teacher's"
    return links.bound(
        where.selectbox,
        f"Confusion ({ref} → {a} predicts)",
        [None, *options],
        key=K_PAIR,
        format_func=_pair_words(names),
        why=lambda raw: "which is not a confusion of these samples",
        says=lambda p: "every sample" if p is None else _pair_words(names)(p),
        on_change=_first_page,
        help=f"The {ref} class and A's prediction of the samples A gets wrong, the most frequent first "
        f"(the {PAIR_CHOICES:,} most frequent are listed).",
    )


def _parse_pair(raw: str | None, names: list[str]) -> tuple[int, int] | None:
    """(reference, predicted) from a link's "TRUE → PREDICTED" (class names as shown), or None."""
    if not raw or len(raw) > 1000:
        return None
    index = {n: i for i, n in enumerate(names)}
    parts = raw.split(" → ")
    for cut in range(1, len(parts)):
        left, right = " → ".join(parts[:cut]), " → ".join(parts[cut:])
        if left in index and right in index:
            return index[left], index[right]
    return None


def sort_controls() -> tuple[str, bool]:
    """The sort (a value of ``explore.SORT_KEYS``) and whether largest first."""
    left, right = st.columns([2, 1])
    by = links.worded(
        left.selectbox,
        "Sort by",
        list(explore.SORT_KEYS),
        key=K_SORT,
        on_change=_first_page,
        help="BCD, p_S·SCD and p_W·WCD add up to the KL; SCD and WCD alone are the raw terms.",
    )
    way = links.worded(right.radio, "Order", ORDERS, key=K_ORDER, horizontal=True, on_change=_first_page)
    return explore.SORT_KEYS[by], way == ORDERS[0]


def confusion_pills(pairs, names: list[str], current: tuple[int, int] | None, *, labels: bool) -> None:
    """The ``PILLS`` most frequent confusions (``pairs``: ``explore.top_confusions``) as pills with their
    counts; picking one sets the confusion filter."""
    if pairs.empty:
        return
    ss = st.session_state
    top = pairs.head(PILLS)
    choices = [(int(t), int(p)) for t, p in zip(top["true"], top["predicted"], strict=True)]
    counts = dict(zip(choices, top["count"].astype(int), strict=True))
    ss[_K_PILLS] = current if current in choices else None

    def picked() -> None:
        ss[K_PAIR] = ss.get(_K_PILLS)
        ss[K_PAGE] = 1

    st.pills(
        f"Most frequent confusions here ({'true' if labels else 'teacher'} → A predicts)",
        choices,
        key=_K_PILLS,
        format_func=lambda p: f"{plain(names[p[0]])} → {plain(names[p[1]])} · {counts[p]:,}",
        on_change=picked,
    )


def words(f: explore.Filters, names: list[str], families: dict, by: str, descending: bool) -> dict[str, str]:
    """The filters and the sort in words, for a download's context: {"true class": "O (upper o)", ...}."""
    said = {"true": "true class", "teacher": "teacher predicts", "pred": "A predicts", "pred_b": "B predicts"}
    out = {said[k]: names[v] for k, v in f.active().items() if k in said}
    out["confusion"] = None if f.pair is None else _pair_words(names)(f.pair)
    out |= {"failure": f.failure, "change": CHANGES.get(f.change), "largest part": PART.get(f.term)}
    out["family"] = None if f.family is None else families[f.family]
    sort = next(k for k, v in explore.SORT_KEYS.items() if v == by)
    out["sorted by"] = f"{sort}, {ORDERS[0] if descending else ORDERS[1]}"
    return {k: v for k, v in out.items() if v}


def snippet(sel: state.Selection, f: explore.Filters, by: str, descending: bool) -> str:
    """The page's "reproduce in Python" code: the library's usual preamble (``export.python_snippet``: the
    bundle, names, ``terms(student)``) and ``explore.snippet_lines``, which prints the matching rows."""
    view = viewspec.spec(sel, "summary", student_b=sel.compare or None, class_names=viewspec.class_names(sel))
    head, mark, rest = export.python_snippet(view).partition("\ndef terms(")
    preamble = head + mark + rest.partition("\n\n\n")[0] + "\n\n\n"
    preamble = preamble.replace(
        "recompute the summary of this view", "print the samples this view's filters match"
    )
    body = explore.snippet_lines(
        sel.student,
        sel.compare or None,
        f,
        by=by,
        descending=descending,
        class_names=sel.class_names,
        family_threshold=compute.FAMILY_THRESHOLD,
        correlation_rows=bundles.CORRELATION_ROWS,
    )
    return preamble + "\n".join(body) + "\n"
