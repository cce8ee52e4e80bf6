"""The app's shared state: the open bundle, student A and B, grouping, T, logit standardization, device and
class names, kept in the URL (docs/architecture.md §3). ``main.py`` calls ``sidebar()`` on every run;
pages call ``selection()`` and ``results()``.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import streamlit as st
import torch

from cakd_viz.app import bundles, links, names, progressive, ui, views
from cakd_viz.app import config as app_config
from cakd_viz.app.config import plain, shown
from cakd_viz.app.links import asked
from cakd_viz.bundle import Bundle
from cakd_viz.classnames import readable_names
from cakd_viz.device import describe_device
from cakd_viz.grouping import DEFAULT_GROUPING, GROUPING_FORMS, parse_grouping
from cakd_viz.standardize import setting

PAGES_DIR = Path(__file__).resolve().parent / "pages"
PAGE_KEYS = ("data", "overview", "correlation", "samples", "sample", "diagnose", "learn", "tune")
PAGE_FILES = {key: str(PAGES_DIR / f"{key}.py") for key in PAGE_KEYS}  # absolute: any entry script works
# The sidebar's widgets, each bound to the query parameter of its key; and what the app writes itself.
W_STUDENT, W_COMPARE, W_GROUPING, W_TEMPERATURE, W_DEVICE = "student", "vs", "grouping", "T", "device"
W_STANDARDIZE = "standardize"  # logit standardization (LS): the URL holds standardize=true while it is on
SIDEBAR_KEYS = (W_STUDENT, W_COMPARE, W_GROUPING, W_TEMPERATURE, W_STANDARDIZE, W_DEVICE)
LINK_KEYS = ("bundle", "runs", "names")

_K_SOURCE = "bundle_source"  # token of the open bundle, e.g. "sample:glyphs"
_K_ERROR = "bundle_error"  # last failure to open a bundle: {"asked"|"broken": token, "reason"} (shown until the next success)
_K_GOOD_GROUPING = "grouping_ok"  # last grouping spec that parsed (and fits the bundle)
_K_SELECTION = "_selection"
_K_PENDING_B = "_pending_vs"  # a student B asked for by in-app navigation, set once its options exist
W_RUNS = "sb_runs"  # the runs' students added (no binding: the URL's "runs" is checked and written here)
_K_GOOD_T = "T_ok"  # last temperature inside [T_MIN, T_MAX]
_K_RUNS = "_runs"  # ids of the finished runs whose students are added to the open bundle
_K_NAMES = "_names"  # token of the class-name override in use (cakd_viz.app.names), or None
_K_PREV_STUDENT = "_prev_student"
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
    key: tuple = ("", 0.0)  # the view's identity for caches (cakd_viz.app.views): (path, stamp[, runs])
    compare: str = ""  # student B, compared with `student` (A); "" for none
    class_names: tuple[str, ...] = ()  # what pages show: readable, distinct (cakd_viz.classnames)
    names_token: str | None = None  # the class-name override in use (cakd_viz.app.names), if any
    runs: tuple[str, ...] = ()  # finished runs whose students were added to the bundle ("run:<id>")
    standardize: bool = False  # logit standardization (LS): every decomposition is of z-scored logits

    @property
    def setting(self) -> str:
        """T (and LS) as captions state it: "T = 4" or "T = 4, standardized"."""
        return setting(self.temperature, self.standardize)


def sidebar() -> Selection:
    """Draw the shared sidebar (bundle status, student, grouping, temperature, backend); return the selection."""
    ss = st.session_state
    # the values of LINK_KEYS a link or in-app navigation changed (a key left out: no change)
    incoming = {name: raw for name in LINK_KEYS if (raw := links.incoming(name)) is not None}
    if "bundle" in incoming:
        try:
            switch_bundle(incoming["bundle"])
        except ValueError as exc:  # said, with what is shown instead, until a bundle opens
            ss[_K_ERROR] = {"asked": incoming["bundle"], "reason": str(exc)}
    if _K_SOURCE not in ss:
        _open_default()
    opened = _reopen(ss.get(_K_SOURCE))
    bundle, key = _add_runs(opened.key, incoming.get("runs")) if opened else (None, ("", 0.0))
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
    names = views.run_names(key) if bundle is not None else {}  # run id -> its student's name
    listed = "; ".join(f"{n} is run {i}" for i, n in names.items())  # hover help: "run:tuned is run 2026..."
    _runs_widget(side, names, listed)
    said = f" Runs' students: {listed}." if listed else ""
    student = _student_widget(side, bundle, said)
    compare = _compare_widget(side, bundle, student, said)
    grouping = _grouping_widget(side, bundle)
    temperature = _temperature_widget(side)
    standardize = _standardize_widget(side)
    device = _device_widget(side)
    class_names, token = _class_names(bundle, incoming.get("names"))
    box = side.container()  # "Export this view", filled by ui.finish() at the end of a page
    sel = Selection(
        bundle=bundle,
        source=ss.get(_K_SOURCE) or "",
        student=student,
        students=bundle.student_names if bundle else [],
        grouping=grouping,
        temperature=temperature,
        device=device,
        label=opened.label if opened else "",
        key=key,
        compare=compare,
        class_names=tuple(class_names),
        names_token=token,
        runs=tuple(ss.get(_K_RUNS) or ()) if bundle is not None else (),
        standardize=standardize,
    )
    ss[_K_SELECTION] = sel
    for name, value in {"bundle": sel.source, "runs": ",".join(sel.runs), "names": sel.names_token}.items():
        links.write(name, value)
    links.show(SIDEBAR_KEYS + LINK_KEYS)
    context = {"bundle": sel.label or sel.source, "student": student, "grouping": grouping, "T": temperature}
    ui.start(context | {"standardize": standardize} | ({"student B": compare} if compare else {}), box)
    return sel


def selection(required: bool = True) -> Selection:
    """The current selection; with `required`, a page without a bundle shows a note and stops."""
    sel = st.session_state[_K_SELECTION]  # main.py draws the sidebar before any page
    if required and sel.bundle is None:
        st.info(
            "No bundle is open yet: open a shipped sample, upload a file or give a server path on the Data page."
        )
        st.stop()
    return sel


def results(
    students: list[str] | None = None,
    *,
    grouping: str | None = None,
    standardize: bool | None = None,
) -> dict[str, progressive.Result]:
    """The exact decompositions of some students of the open bundle (default: student A, and B when set)
    under the sidebar's T, and its grouping and logit standardization unless given: kept, or computed now
    with a progress bar (``cakd_viz.app.progressive``)."""
    sel = selection()
    names = students or [sel.student] + ([sel.compare] if sel.compare else [])
    return progressive.results(
        sel.key,
        names,
        grouping or sel.grouping,
        sel.temperature,
        sel.device,
        sel.standardize if standardize is None else bool(standardize),
    )


def goto_sample(index: int, source: str | None = None) -> None:
    """Open the Sample page on sample ``index``, keeping the view; or, given a ``source`` (a bundle
    token), on that sample of that bundle."""
    params = {"bundle": source} if source else link_params()
    st.switch_page(PAGE_FILES["sample"], query_params=params | {"i": str(int(index))})


def goto_overview(source: str, *, runs: tuple[str, ...] = (), compare: str = "") -> None:
    """Open the Overview on bundle ``source``, with the students of ``runs`` added and ``compare`` as B."""
    if compare:
        st.session_state[_K_PENDING_B] = compare  # applied once the sidebar knows B's options
    params = {"bundle": source} | ({"runs": ",".join(runs)} if runs else {})
    st.switch_page(PAGE_FILES["overview"], query_params=params)


def link_params() -> dict[str, str]:
    """The query parameters that no widget is bound to and that every page keeps (bundle, runs, names):
    what in-app navigation passes to ``st.switch_page`` (the bound ones stay by themselves)."""
    return {k: v for k, v in st.query_params.to_dict().items() if k in LINK_KEYS}


def switch_bundle(source: str) -> None:
    """Open another bundle (a source token); on failure keep the current one and raise ValueError
    (the reason, one markdown-safe line; see ``bundles.open_source``)."""
    st.session_state[_K_SOURCE] = bundles.open_source(source).source  # the sidebar fits its widgets to it
    st.session_state[_K_ERROR] = None


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


def _open_default() -> None:
    """Open the bundle ``cakd-viz app PATH`` names (``$CAKD_VIZ_OPEN``), else the first shipped sample that
    is present (glyphs first); stay empty if none can be opened.

    A failure already recorded (the link's bundle that could not be opened) is kept: the sidebar says
    it, and that the default is shown instead."""
    ss = st.session_state
    ss[_K_SOURCE] = None
    first = os.environ.get(app_config.OPEN_ENV, "").strip()
    tokens = ([f"path:{first}"] if first else []) + [f"sample:{n}" for n in app_config.available_samples()]
    for token in tokens:
        try:
            ss[_K_SOURCE] = bundles.open_source(token).source
            return
        except ValueError as exc:
            ss[_K_ERROR] = ss.get(_K_ERROR) or {"asked": token, "reason": str(exc)}


def _error_line(error: dict, opened) -> str:
    """One line: what was asked for, why it could not be opened, and what is shown instead."""
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
    """Before the widgets are drawn: keep student A and the grouping when they fit the bundle, else reset
    them (a rerun after another bundle opened; a link's values are checked by the widgets themselves)."""
    ss = st.session_state
    if W_STUDENT in ss and ss[W_STUDENT] not in bundle.student_names:
        ss[W_STUDENT] = bundle.student_names[0]
    if bundle.labels is None and parse_grouping(ss.get(_K_GOOD_GROUPING, DEFAULT_GROUPING)).needs_labels:
        ss[_K_GOOD_GROUPING] = DEFAULT_GROUPING
        if W_GROUPING in ss:
            ss[W_GROUPING] = DEFAULT_GROUPING


# -- widgets -----------------------------------------------------------------------------------------


def _add_runs(key: tuple, incoming: str | None) -> tuple[Bundle, tuple]:
    """The open bundle with the students of the runs the URL (or the session) names; one note per refusal."""
    ss = st.session_state
    if incoming is not None:
        ss[_K_RUNS] = views.parse_runs(incoming)  # add_runs takes MAX_RUNS, saying of how many
        links.drop("runs")
    asked_for = asked("runs", incoming) if incoming is not None else "runs=" + ",".join(ss.get(_K_RUNS) or ())
    wanted = list(ss.get(_K_RUNS) or ())
    if not wanted:
        return views.load(key), key
    view_key, added, refused = views.add_runs(key, wanted)
    if refused:
        shown = ", ".join(added) if added else "none"
        ss[W_RUNS] = added
        # the reasons come from run folders and libraries: no server path, no markup
        why = "; ".join(plain(app_config.scrub(r if len(r) < 200 else r[:199] + "…")) for r in refused)
        text = f"The link asks for {asked_for}, whose students cannot all be added: {why}. Added: {shown}."
        links.note("runs", text, W_RUNS if added else _K_SOURCE)
    ss[_K_RUNS] = added
    _rename_run_students(view_key)
    return views.load(view_key), view_key


def _rename_run_students(view_key: tuple) -> None:
    """A student A or B asked for as "run:RUN_ID" (a link of the older form, the Tune page's "compare")
    becomes that run's student name before the widgets are drawn."""
    ss = st.session_state
    for key in (W_STUDENT, W_COMPARE, _K_PENDING_B):
        asked_for = ss.get(key) if key in ss else (links.param(key) if key != _K_PENDING_B else None)
        name = views.renamed(view_key, asked_for)
        if name != asked_for:
            ss[key] = name


def _runs_widget(side, names: dict[str, str], listed: str) -> None:
    """The runs whose students are added (a link's ``runs=``); un-ticking one removes it."""
    ss = st.session_state
    added = list(ss.get(_K_RUNS) or ())
    if not added:
        ss.pop(W_RUNS, None)
        return
    if ss.get(W_RUNS) is None or not set(ss[W_RUNS]) <= set(added):
        ss[W_RUNS] = added

    def _changed() -> None:
        ss[_K_RUNS] = list(ss[W_RUNS])

    side.multiselect(
        "Runs' students added",
        added,
        key=W_RUNS,
        on_change=_changed,
        format_func=lambda run_id: names.get(run_id, run_id),
        help="Finished runs trained against this bundle's teacher and data, shown as students named "
        "'run:' and the run's name: " + listed + ". "
        "Their files are read from the runs' own folders; the bundle is not changed.",
    )


def _student_widget(side, bundle: Bundle | None, said: str) -> str:
    if bundle is None:
        return ""
    names = bundle.student_names
    listed = ", ".join(names[:6]) + (f" and {len(names) - 6} more" if len(names) > 6 else "")
    return links.bound(
        side.selectbox,
        "Student (A)",
        names,
        key=W_STUDENT,
        why=lambda raw: f"which this bundle does not have (it has {listed})",
        help="Which student's logits are compared with the teacher's." + said,
    )


def _compare_widget(side, bundle: Bundle | None, student: str, said: str) -> str:
    """Student B (or ""): every page that can sets A and B side by side. Picking B as A swaps them."""
    ss = st.session_state
    if bundle is None or len(bundle.student_names) < 2:
        ss[_K_PREV_STUDENT] = student
        ss.pop(W_COMPARE, None)
        if (asked_for := links.param(W_COMPARE)) and ss.get("_vs_said") != asked_for:
            ss["_vs_said"] = asked_for
            links.note(
                W_COMPARE,
                f"The link asks to compare with {asked(W_COMPARE, asked_for)}, but this bundle has one "
                "student only; showing no comparison.",
                W_STUDENT,
            )
        return ""
    options = [""] + [n for n in bundle.student_names if n != student]
    pending = ss.pop(_K_PENDING_B, None)
    if pending in options:
        ss[W_COMPARE] = pending
    elif ss.get(W_COMPARE) == student:  # A was set to B: B becomes the previous A
        previous = ss.get(_K_PREV_STUDENT)
        ss[W_COMPARE] = previous if previous in options else ""
    elif W_COMPARE in ss and ss[W_COMPARE] not in options:  # another bundle opened
        ss[W_COMPARE] = ""
    ss[_K_PREV_STUDENT] = student
    return links.bound(
        side.selectbox,
        "Compare with (B)",
        options,
        key=W_COMPARE,
        why=lambda raw: "the same student as A" if raw == student else "not a student of this bundle",
        says=lambda n: n or "no comparison",
        url=lambda n: n,
        format_func=lambda n: n or "nobody",
        help="A second student of the bundle: pages show both, and differences as B − A." + said,
    )


def _grouping_widget(side, bundle: Bundle | None) -> str:
    ss = st.session_state
    ss.setdefault(_K_GOOD_GROUPING, DEFAULT_GROUPING)
    from_link = W_GROUPING not in ss and links.param(W_GROUPING) is not None
    text = links.bound(
        side.text_input,
        "Grouping (strong set S)",
        DEFAULT_GROUPING,
        key=W_GROUPING,
        why=lambda raw: "which is too long",
        says=lambda value: ss[_K_GOOD_GROUPING],
        max_chars=200,
        help="Which classes form each sample's strong set S. Forms: " + ", ".join(GROUPING_FORMS),
    )
    try:  # the grouping to use, and a note when K was clamped to the bundle's classes
        g = parse_grouping(text)
        if g.needs_labels and bundle is not None and bundle.labels is None:
            raise ValueError(f"grouping {g} needs labels, and this bundle has none")
        g, clamped = (g, None) if bundle is None else g.clamp(bundle.num_classes)
        ss[_K_GOOD_GROUPING] = str(g)
        if clamped:
            side.warning(clamped)
        side.caption(g.describe())
        if g.needs_correlation and bundle is not None and bundle.num_samples > bundles.CORRELATION_ROWS:
            side.caption(
                f"{g} uses the teacher's class correlation {bundles.correlation_scope(bundle.num_samples)}."
            )
    except ValueError as exc:
        why, good = f"which is not usable here ({_first_line(exc)})", ss[_K_GOOD_GROUPING]
        if _say_here(W_GROUPING, from_link, why, good):
            side.error(f"{_first_line(exc)}. Still using {good}.")
    return ss[_K_GOOD_GROUPING]


def _say_here(key: str, from_link: bool, why: str, showing: str) -> bool:
    """For a widget value that is not used: a link's value is said once, by the link's note (kept while the
    widget holds it); True when the caller says it instead (no link set it, and no note of one is kept)."""
    if from_link:
        links.note(key, f"The link asks for {asked(key, links.param(key))}, {why}; showing {showing}.", key)
    return not from_link and not links.current((key,))


def _first_line(exc: Exception) -> str:
    """An error's first line, cut to 200 characters and made text for Markdown (it may quote a value from
    a link: a URL there must not become a link, nor `$$...$$` typeset)."""
    return plain(app_config.one_line(str(exc), 200).rstrip(".") or type(exc).__name__)


def _temperature_problem(value) -> str | None:
    """Why ``value`` cannot be the temperature (None when it can)."""
    try:
        t = float(value)
    except (TypeError, ValueError):
        return "not a number"
    if not math.isfinite(t):
        return "not a finite number"
    if not T_MIN <= t <= T_MAX:
        return f"outside the allowed {T_MIN:g} to {T_MAX:g}"
    return None


def _temperature_widget(side) -> float:
    ss = st.session_state
    ss.setdefault(_K_GOOD_T, float(app_config.DEFAULT_TEMPERATURE))
    from_link = W_TEMPERATURE not in ss and links.param(W_TEMPERATURE) is not None
    value = links.bound(
        side.number_input,
        "Temperature T",
        value=float(app_config.DEFAULT_TEMPERATURE),
        step=0.5,
        key=W_TEMPERATURE,
        why=lambda raw: _temperature_problem(raw) or "not a number",
        says=lambda v: f"T = {ss[_K_GOOD_T]:g}",
        help=f"p = softmax(z_teacher / T), q = softmax(z_student / T); from {T_MIN:g} to {T_MAX:g}.",
    )
    problem = _temperature_problem(value)
    if problem is None:
        ss[_K_GOOD_T] = float(value)
    elif _say_here(W_TEMPERATURE, from_link, problem, f"T = {ss[_K_GOOD_T]:g}"):
        # said under the field, and at the top of the page, where it is seen whatever the sidebar's scroll
        said = f"T = {value:g} is {problem}: still using T = {ss[_K_GOOD_T]:g}."
        side.error(said, icon=":material/thermostat:")
        st.error(f"The sidebar's temperature: {said}", icon=":material/thermostat:")
    return float(ss[_K_GOOD_T])


def _standardize_widget(side) -> bool:
    """Logit standardization for every page (the URL's ``standardize=true`` while it is on)."""
    return links.bound(
        side.toggle,
        "Standardize logits (LS)",
        key=W_STANDARDIZE,
        why=links.boolean,
        says=lambda v: "standardized logits" if v else "the logits as they are (not standardized)",
        help="Logit standardization (Sun et al., CVPR 2024): each sample's teacher and student logits "
        "are z-scored, (z − mean) / (std + 1e-7), before T, so the split compares the teacher's logit "
        "relations, not their scale. Every page then shows the split of the standardized logits.",
    )


def _class_names(bundle: Bundle | None, incoming: str | None) -> tuple[list[str], str | None]:
    """(display names of the classes, override token or None): the bundle's names, or an override list."""
    ss = st.session_state
    if bundle is None:
        return [], None
    if incoming is not None:
        set_class_names(incoming)
    token = ss.get(_K_NAMES)
    raw = bundle.class_names
    if token:
        try:
            raw = names.load(token, bundle.num_classes)
        except ValueError as exc:
            ss[_K_NAMES] = None
            links.note(
                "names",
                f"The link asks for {asked('names', incoming or token)} ({_first_line(exc)}); showing the "
                "bundle's own class names.",
                _K_SOURCE,
            )
            token = None
    return readable_names(raw), token


def set_class_names(token: str | None) -> None:
    """Use an override list (a token from cakd_viz.app.names.store), or the bundle's own names (None)."""
    st.session_state[_K_NAMES] = token
    links.drop("names")


def _device_widget(side) -> str:
    options = ["auto", "cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    device = links.bound(
        side.selectbox,
        "Compute on",
        options,
        key=W_DEVICE,
        why=lambda raw: f"which this server does not offer ({', '.join(options)})",
    )
    side.caption(f"Backend: {describe_device(device)}")
    return device
