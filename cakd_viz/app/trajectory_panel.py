"""The Tune page's "Classes through training" parts, laid out: one run's (in "A run") and the compared
runs' (in "Compare runs"). Layout only: the numbers come from ``cakd_viz.runs.trajectory`` through
``trajectory_view``, the figures from ``cakd_viz.figures.trajectory``."""

from __future__ import annotations

import streamlit as st

from cakd_viz.app import links, state, ui
from cakd_viz.app import trajectory_view as tv
from cakd_viz.app.config import plain
from cakd_viz.figures import trajectory as tfig


def run_part(r) -> None:
    """A run's classes through training: the heatmap, its table and the samples that changed."""
    st.markdown("#### Classes through training")
    try:
        t = tv.of(r)
    except ValueError as exc:
        st.info(f"Classes through training cannot be shown: {plain(exc)}")
        return
    if not t.epochs:
        why = "; ".join(t.notes) or "its first epoch's logits are not written yet"
        st.info(f"No epoch of this run is kept: {plain(why)}.")
        return
    names = tv.class_names(r, t.num_classes)
    sel = state.selection(required=False)
    if line := tv.settings_line(t, sel.grouping, sel.temperature, sel.standardize):
        st.caption(line)
    column = links.worded(st.selectbox, "Per-class term", tfig.TRAJECTORY_TERMS, key="term")
    extra, beside = None, ""
    if st.toggle("Beside the bundle's students", key="tune_traj_beside", help=tv.BESIDE_HELP):
        found = tv.beside_bundle(r, t, tv.column_for(t, column))
        if isinstance(found, str):
            st.caption(f"Not set beside the bundle's students: {plain(found)}.")
        else:
            extra, beside = found[0], " " + plain(found[1])
    heat = tfig.trajectory_heatmap(t, tv.column_for(t, column), names, extra=extra)
    ui.chart(heat, tv.heatmap_caption(t, column) + beside, key="tune_traj_heatmap")
    with st.expander("Per-class table (class, family, epoch, every term)"):
        ui.table(
            t.table(names),
            name=f"classes-{r.id}",
            key="tune_traj_table",
            context=tv.epoch_context(r, t),
            headings={"family": "family"},
            caption=f"One row per class and kept epoch, on {tv.scope(t)}.",
        )
    changed_samples(r, t, names)


def changed_samples(r, t, names) -> None:
    """The samples that became right or wrong between two kept epochs, and a way to open one."""
    if len(t.epochs) < 2:
        st.caption("One epoch kept: no change between epochs to list.")
        return
    a, b = st.columns(2)
    first = a.selectbox("From epoch", t.epochs, index=0, key=f"tune_traj_from_{r.id}")
    last = b.selectbox("To epoch", t.epochs, index=len(t.epochs) - 1, key=f"tune_traj_to_{r.id}")
    frame = t.changes(first, last, names)
    shown, headings = tv.changes_view(frame, t, first, last)
    ui.table(
        shown,
        name=f"changes-{r.id}-{first}-{last}",
        key="tune_traj_changes",
        context=tv.epoch_context(r, t),
        headings=headings,
        height=min(420, 38 + 35 * max(len(shown), 1)),
        caption=tv.changes_caption(frame, t, first, last),
    )
    if frame.empty:
        return
    token, why = tv.sample_token(r, t)
    if token is None:
        st.caption(f"Open a sample: {plain(why)}.")
        return
    pick, go = st.columns([4, 1], vertical_alignment="bottom")
    k = pick.selectbox(
        "Sample to open",
        range(min(len(frame), tv.PICK_LIMIT)),
        format_func=lambda i: tv.pick_label(frame.iloc[i]),
        key=f"tune_traj_pick_{r.id}",
    )
    if go.button("Open on the Sample page", key="tune_traj_open", width="stretch"):
        state.goto_sample(int(frame.iloc[k]["index"]), token)


def compare_part(runs, labels: dict[str, str]) -> None:
    """The compared runs' per-class views: side by side (up to 4), or the difference of two."""
    st.markdown("#### Classes through training, runs compared")
    panels, left = tv.compared(runs, labels)
    if left:
        st.caption("Not shown: " + "; ".join(plain(line) for line in left) + ".")
    if not panels:
        return
    column = links.worded(
        st.selectbox, "Per-class term of the compared runs", tfig.TRAJECTORY_TERMS, key="cterm"
    )
    first = next(r for r in runs if labels[r.id] in panels)
    names = tv.class_names(first, panels[labels[first.id]].num_classes)
    mode = "side by side"
    if len(panels) > 1:
        mode = st.radio("Show", ["side by side", "difference of two"], horizontal=True, key="tune_cls_mode")
    if note := tv.settings_note(panels):
        st.caption(note)
    if mode == "side by side":
        side = tfig.trajectories_side_by_side(panels, column, names)
        ui.chart(side, tv.side_caption(panels, column), key="tune_cls_side")
        ui.table(
            tv.side_by_side_table(panels, names),
            name="classes-compared",
            key="tune_cls_table",
            context=tv.context(panels),
            caption="One row per run, class and kept epoch, each run on its own split, grouping, T and LS.",
        )
        return
    options = list(panels)
    a, b = st.columns(2)
    la = a.selectbox("A", options, index=0, key="tune_cls_a")
    lb = b.selectbox("B", options, index=1, key="tune_cls_b")
    try:
        epochs, delta = tv.difference(panels[la], panels[lb], column)
    except ValueError as exc:
        st.info(f"No difference to show: {plain(exc)}.")
        return
    by_label = {labels[r.id]: r for r in runs}
    same = tv.same_samples(tv.identity(by_label[la]), tv.identity(by_label[lb]))
    ui.chart(
        tfig.difference_heatmap(panels[la], epochs, delta, column, names),
        tv.difference_caption(panels[la], la, lb, epochs, column, same),
        key="tune_cls_diff",
    )
    ui.table(
        tv.difference_table(panels[la], panels[lb], column, names),
        name="classes-difference",
        key="tune_cls_diff_table",
        context=tv.context({la: panels[la], lb: panels[lb]}, column),
        caption="Per class and epoch kept by both runs: A's value, B's, and B − A.",
    )
