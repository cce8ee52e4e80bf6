"""The app's shared state: which bundle, student, grouping, temperature and device are selected.

`app.py` calls `sidebar()` on every run; pages call `selection()` and `decomposition()`. The view lives
in the URL query string (bundle, student, grouping, T, plus page keys such as "i"), so a link
reproduces it: a value in the URL that differs from what the app last wrote there is applied to the
widgets before they are drawn (a new session, an edited URL, or `goto_sample`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import streamlit as st
import torch

from appkit import bundles
from appkit import config as app_config
from appkit.config import plain, shown
from cakd_viz.bundle import Bundle
from cakd_viz.decomposition import Decomposition, decompose
from cakd_viz.device import describe_device
from cakd_viz.grouping import GROUPING_FORMS, parse_grouping

PAGE_FILES = {
    "data": "app_pages/data.py",
    "overview": "app_pages/overview.py",
    "correlation": "app_pages/correlation.py",
    "sample": "app_pages/sample.py",
    "diagnose": "app_pages/diagnose.py",
    "learn": "app_pages/learn.py",
    "tune": "app_pages/tune.py",
}
URL_KEYS = ("bundle", "student", "grouping", "T")  # shared by every page; pages add their own keys

_K_SOURCE = "bundle_source"  # token of the open bundle, e.g. "sample:glyphs"
_K_ERROR = "bundle_error"  # last failure to open a bundle: {"asked"|"broken": token, "reason"} (shown until the next success)
_K_GOOD_GROUPING = "grouping_ok"  # last grouping spec that parsed (and fits the bundle)
_K_SEEN = "_url_seen"  # the shared URL values this session last wrote
_K_SELECTION = "_selection"
W_STUDENT, W_GROUPING, W_TEMPERATURE, W_DEVICE = "sb_student", "sb_grouping", "sb_T", "sb_device"
T_MIN, T_MAX = 0.05, 100.0


@dataclass(frozen=True)
class Selection:
    """What every page works on. `bundle` is None only when no bundle could be opened."""

    bundle: Bundle | None
    source: str  # where it came from, as a URL token: "sample:glyphs", "path:runs/x/bundle", "upload:<hash>"
    student: str
    students: list[str]
    grouping: str  # a valid grouping spec (docs/architecture.md §4)
    temperature: float
    device: str  # "auto" | "cpu" | "cuda"
    label: str = ""  # human-readable origin, e.g. "upload: logits.npz"
    key: tuple[str, float] = field(default=("", 0.0))  # bundle identity for caches: (path, meta mtime)


def sidebar() -> Selection:
    """Draw the shared sidebar (bundle status, student, grouping, temperature, backend); return the selection."""
    ss = st.session_state
    incoming = _incoming_url_values()
    if "bundle" in incoming:
        _try_switch(incoming["bundle"])
    if _K_SOURCE not in ss:
        _open_default()
    opened = _reopen(ss.get(_K_SOURCE))
    bundle = opened.bundle if opened else None
    if bundle is not None:
        _fit_widgets_to(bundle)
    side = st.sidebar
    side.subheader("Bundle")
    if opened:
        side.text(f"{opened.label}\n{bundle.num_samples:,} samples × {bundle.num_classes:,} classes")
    else:
        side.info("No bundle is open. Open one on the Data page.")
    if ss.get(_K_ERROR):
        side.error(_error_line(ss[_K_ERROR], opened))
    student = _student_widget(side, bundle, incoming.get("student"))
    grouping = _grouping_widget(side, bundle, incoming.get("grouping"))
    temperature = _temperature_widget(side, incoming.get("T"))
    device = _device_widget(side)
    sel = Selection(
        bundle=bundle,
        source=ss.get(_K_SOURCE) or "",
        student=student,
        students=bundle.student_names if bundle else [],
        grouping=grouping,
        temperature=temperature,
        device=device,
        label=opened.label if opened else "",
        key=opened.key if opened else ("", 0.0),
    )
    ss[_K_SELECTION] = sel
    _write_url(sel)
    return sel


def selection(required: bool = True) -> Selection:
    """The current selection; with `required`, a page without a bundle shows a note and stops."""
    sel = st.session_state.get(_K_SELECTION)
    if sel is None:
        sel = sidebar()
    if required and sel.bundle is None:
        st.info(
            "No bundle is open yet: open a shipped sample, upload a file or give a server path on the Data page."
        )
        st.stop()
    return sel


def decomposition(
    student: str | None = None, *, grouping: str | None = None, temperature: float | None = None
) -> Decomposition:
    """The decomposition of one student of the open bundle (cached per bundle, student, grouping, T, device)."""
    sel = selection()
    return _decompose(
        sel.key,
        student or sel.student,
        str(parse_grouping(grouping or sel.grouping)),
        float(sel.temperature if temperature is None else temperature),
        sel.device,
    )


def goto_sample(index: int, student: str | None = None) -> None:
    """Open the Sample page on sample `index` (and optionally another student), keeping the view."""
    params = dict(st.session_state.get(_K_SEEN, {}))
    params["i"] = str(int(index))
    if student:
        params["student"] = student
    st.switch_page(PAGE_FILES["sample"], query_params=params)


def url_param(name: str, default: str | None = None) -> str | None:
    """A page-specific value from the URL query string (e.g. "i" on the Sample page)."""
    return st.query_params.get(name, default)


def set_url_param(name: str, value) -> None:
    """Write a page-specific value into the URL (None removes it); no rerun is triggered."""
    if value is None:
        if name in st.query_params:
            del st.query_params[name]
    elif st.query_params.get(name) != str(value):
        st.query_params[name] = str(value)


def restore_choice(name: str, widget_key: str, values: dict) -> None:
    """Before a widget is drawn: apply the URL's ``name`` to the widget ``widget_key`` when the URL holds
    a value this page did not write itself (a shared link). ``values`` maps URL values to widget values;
    a value outside it leaves the widget as it is and says so in one line."""
    raw = url_param(name)
    if raw is None or raw == st.session_state.get(f"_url_choice_{name}"):
        return
    if raw in values:
        st.session_state[widget_key] = values[raw]
        return
    st.session_state[f"_url_choice_{name}"] = raw  # said once, not on every rerun
    allowed = ", ".join(map(str, values)) or "none here"
    st.warning(f"The link asks for {name}={raw[:60]!r}, which is not one of {allowed}; showing the default.")


def store_choice(name: str, value: str, is_default: bool) -> None:
    """Write a page's choice into the URL (left out while it is the default)."""
    set_url_param(name, None if is_default else value)
    st.session_state[f"_url_choice_{name}"] = None if is_default else value


def switch_bundle(source: str) -> None:
    """Open another bundle (a source token); on failure keep the current one and raise ValueError
    (the reason, one markdown-safe line; see ``bundles.open_source``)."""
    opened = bundles.open_source(source)
    ss = st.session_state
    ss[_K_SOURCE] = opened.source
    ss[_K_ERROR] = None  # the sidebar fits the student and grouping widgets to it on the next run


@st.cache_data(max_entries=16, show_spinner="Decomposing the KL of every sample…")
def _decompose(key: tuple[str, float], student: str, grouping: str, temperature: float, device: str):
    bundle = bundles.load(*key)
    corr = bundles.correlation(*key) if parse_grouping(grouping).needs_correlation else None
    return decompose(
        bundle.student(student),
        bundle.teacher,
        bundle.labels,
        grouping=grouping,
        temperature=temperature,
        device=device,
        correlation=corr,
    )


# -- URL ---------------------------------------------------------------------------------------------


def _incoming_url_values() -> dict[str, str]:
    """Shared URL values that differ from what this session last wrote (missing keys mean no change)."""
    seen = st.session_state.get(_K_SEEN, {})
    out = {}
    for key in URL_KEYS:
        value = st.query_params.get(key)
        if value is not None and value != seen.get(key):
            out[key] = value
    return out


def _write_url(sel: Selection) -> None:
    values = {
        "bundle": sel.source,
        "student": sel.student,
        "grouping": sel.grouping,
        "T": f"{sel.temperature:g}",
    }
    values = {k: v for k, v in values.items() if v}
    for key, value in values.items():
        if st.query_params.get(key) != value:
            st.query_params[key] = value
    st.session_state[_K_SEEN] = values


# -- bundle ------------------------------------------------------------------------------------------


def _reopen(source: str | None):
    """The open bundle (cached); if it can no longer be read (deleted, rewritten badly), say so and close it."""
    if not source:
        return None
    try:
        return bundles.open_source(source)
    except ValueError as exc:
        st.session_state[_K_ERROR] = {"broken": source, "reason": str(exc)}
        st.session_state[_K_SOURCE] = None
        return None


def _try_switch(source: str) -> None:
    """Open the bundle a link asks for; on failure remember what was asked and why (the sidebar says it,
    with what it shows instead, until a bundle opens)."""
    try:
        switch_bundle(source)
    except ValueError as exc:
        st.session_state[_K_ERROR] = {"asked": source, "reason": str(exc)}


def _open_default() -> None:
    """Open the first shipped sample that is present (glyphs first); stay empty if none can be opened.

    A failure already recorded (the link's bundle that could not be opened) is kept: the sidebar says
    it, and that the default is shown instead."""
    ss = st.session_state
    ss[_K_SOURCE] = None
    for name in app_config.available_samples():
        try:
            ss[_K_SOURCE] = bundles.open_source(f"sample:{name}").source
            return
        except ValueError as exc:
            ss[_K_ERROR] = ss.get(_K_ERROR) or {"asked": f"sample:{name}", "reason": str(exc)}


def _error_line(error: dict | str, opened) -> str:
    """One line: what was asked for, why it could not be opened, and what is shown instead."""
    if isinstance(error, str):
        return error
    now = (
        f"Showing {plain(opened.label)} instead."
        if opened
        else "No bundle is open; open one on the Data page."
    )
    reason = str(error["reason"]).rstrip()
    reason = reason[:-2] if reason.endswith("\\.") else reason.rstrip(".")
    if "broken" in error:
        return f"The open bundle {shown(error['broken'])} can no longer be read: {reason}. {now}"
    return f"Could not open {shown(error['asked'])}: {reason}. {now}"


def _fit_widgets_to(bundle: Bundle) -> None:
    """Before the widgets are drawn: keep the student and grouping when they fit the bundle, else reset them."""
    ss = st.session_state
    if ss.get(W_STUDENT) not in bundle.student_names:
        ss[W_STUDENT] = bundle.student_names[0]
    if bundle.labels is None and parse_grouping(ss.get(_K_GOOD_GROUPING, "topk:5")).needs_labels:
        ss[_K_GOOD_GROUPING] = app_config.DEFAULT_GROUPING
        ss[W_GROUPING] = app_config.DEFAULT_GROUPING


# -- widgets -----------------------------------------------------------------------------------------


def _student_widget(side, bundle: Bundle | None, incoming: str | None) -> str:
    if bundle is None:
        return ""
    names = bundle.student_names
    ss = st.session_state
    if incoming in names:
        ss[W_STUDENT] = incoming
    if ss.get(W_STUDENT) not in names:
        ss[W_STUDENT] = names[0]
    return side.selectbox(
        "Student", names, key=W_STUDENT, help="Which student's logits are compared with the teacher's."
    )


def _grouping_widget(side, bundle: Bundle | None, incoming: str | None) -> str:
    ss = st.session_state
    ss.setdefault(_K_GOOD_GROUPING, app_config.DEFAULT_GROUPING)
    if incoming is not None:
        ss[W_GROUPING] = incoming
    ss.setdefault(W_GROUPING, ss[_K_GOOD_GROUPING])
    text = side.text_input(
        "Grouping (strong set S)",
        key=W_GROUPING,
        help="Which classes form each sample's strong set S. Forms: " + ", ".join(GROUPING_FORMS),
    )
    try:
        g = parse_grouping(text)
        if g.needs_labels and bundle is not None and bundle.labels is None:
            raise ValueError(f"grouping {g} needs labels, and this bundle has none")
        ss[_K_GOOD_GROUPING] = str(g)
        side.caption(g.describe())
    except ValueError as exc:
        side.error(f"{exc}. Still using {ss[_K_GOOD_GROUPING]}.")
    return ss[_K_GOOD_GROUPING]


def _temperature_widget(side, incoming: str | None) -> float:
    ss = st.session_state
    if incoming is not None:
        try:
            value = float(incoming)
            if value == value:  # not NaN
                ss[W_TEMPERATURE] = min(T_MAX, max(T_MIN, value))
        except ValueError:
            pass
    ss.setdefault(W_TEMPERATURE, app_config.DEFAULT_TEMPERATURE)
    return float(
        side.number_input(
            "Temperature T",
            min_value=T_MIN,
            max_value=T_MAX,
            step=0.5,
            key=W_TEMPERATURE,
            help="p = softmax(z_teacher / T), q = softmax(z_student / T).",
        )
    )


def _device_widget(side) -> str:
    options = ["auto", "cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    ss = st.session_state
    if ss.get(W_DEVICE) not in options:
        ss[W_DEVICE] = "auto"
    device = side.selectbox("Compute on", options, key=W_DEVICE)
    side.caption(f"Backend: {describe_device(device)}")
    return device
