"""Correlation groups: which classes travel together?"""

import numpy as np
import streamlit as st

from cakd_viz.app import bundles, compute, links, state, ui, views, viewspec
from cakd_viz.figures import correlation as fig
from cakd_viz.grouping import parse_grouping

ui.title(
    "Correlation groups",
    "**Which classes travel together?** Classes whose teacher logits rise and fall together form families; "
    "the grouping's strong sets should follow them.",
)
sel = state.selection()
b = sel.bundle
names = list(sel.class_names)
THRESHOLDS = [round(x, 2) for x in np.arange(0.1, 0.91, 0.05)]
MASSES = [0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99]

threshold = links.bound(
    st.select_slider,
    "Family threshold (average correlation within a family)",
    THRESHOLDS,
    value=0.5,
    key="family",
    why=links.one_of(THRESHOLDS, lambda t: f"{t:g}"),
    says=lambda v: f"threshold {v:g}",
    help="Average-linkage clustering on 1 − r, cut where the average correlation drops below this.",
)
links.show(("family",))
corr = views.correlation(sel.key, sel.standardize)  # what corr:R reads (under LS the standardized teacher's)
corr_scope = bundles.correlation_scope(b.num_samples)  # over which samples
corr_of = "standardized teacher logits (LS: each sample z-scored)" if sel.standardize else "teacher logits"
order, family = compute.clusters(sel.key, threshold, sel.standardize)
families = fig.family_table(family)
multi = families[families["size"] > 1]  # families of two or more classes
ui.caption(
    f"{len(families):,} families among {b.num_classes:,} classes; "
    f"{len(multi):,} of them have two or more classes. Families are boxed on the diagonal."
)
only = None
if b.num_classes > fig.SHOW_ALL_UP_TO:
    options = {"overview": "overview: a few classes of each of the largest families"} | {
        str(f): f"family {f} ({s} classes)" for f, s in multi.itertuples(index=False)
    }
    pick = links.worded(
        st.selectbox, f"Show (at most {fig.HEATMAP_LIMIT} classes at a time)", options, key="show", most=4
    )
    only = None if pick == "overview" else int(pick)
classes = fig.pick_classes(order, family, only=only)

counts, counted = compute.comembership(sel.key, sel.grouping, sel.temperature, sel.standardize)
heat_corr, heat_shared = st.tabs(["Teacher's class correlations", f"Shared strong sets under {sel.grouping}"])
with heat_corr:
    ui.chart(
        fig.correlation_heatmap(corr, classes, family, names),
        f"Pearson r between classes' {corr_of} {corr_scope}, ordered by hierarchical clustering; "
        "every row and column is labelled. The `corr:R` groupings use this matrix.",
        key="corr_heatmap",
    )
with heat_shared:
    ui.chart(
        fig.comembership_heatmap(counts, classes, family, names),
        f"Row i, column j: how often j is in S when i is, over {counted:,} samples at {sel.setting}.",
        key="corr_shared",
    )

ui.subheader("Pairs that most often share a strong set")
pairs = fig.top_pairs(counts, corr, names, family)
ui.table(
    pairs,
    name="pairs",
    headings={"together": "samples with both in S", "r": "Pearson r"},
    key="corr_pairs",
)
ui.subheader("Families")
members = {int(f): ", ".join(names[i] for i in order if family[i] == f) for f in multi["family"]}
ui.table(
    multi.assign(classes=lambda t: t["family"].map(members)),
    name="families",
    headings={"family": "family", "size": "classes in it", "classes": "members"},
    key="corr_families",
    height=240,
)

left, right = st.columns(2)
with left:
    ui.subheader("Strong-set size under mass:P")
    p = links.bound(
        st.select_slider,
        "P (teacher mass the strong set must reach)",
        MASSES,
        value=0.9,
        key="P",
        why=links.one_of(MASSES, lambda m: f"{m:g}"),
        says=lambda v: f"P = {v:g}",
    )
    links.show(("P",))
    if str(parse_grouping(sel.grouping)) == f"mass:{p:g}":  # the sidebar's own: its decomposition has them
        sizes = state.results([sel.student])[sel.student].d.strong_size
    else:
        sizes = compute.strong_sizes(sel.key, f"mass:{p:g}", sel.temperature, sel.standardize)
    ui.chart(
        fig.strong_size_figure(sizes, grouping=f"mass:{p:g}"),
        f"Mean |S| = {sizes.mean():.2f} classes at {sel.setting}, over all {len(sizes):,} samples.",
        key="corr_size",
    )
with right:
    who = [sel.student] + ([sel.compare] if sel.compare else [])
    ui.subheader("Strong-group mass: teacher vs " + " and ".join(who))
    res = state.results(who)
    for name in who:
        d = res[name].d
        ui.chart(
            fig.strong_mass_figure(d, student=ui.who(name, sel)),
            f"{name} under `{d.grouping}` at {sel.setting}: mean p_S = {d.teacher_strong_mass.mean():.3f} (teacher), "
            f"q_S = {d.student_strong_mass.mean():.3f} (student), over {res[name].scope()}. Above the "
            "diagonal the student over-weights S.",
            key=f"corr_mass_{name}",
        )
ui.finish(viewspec.spec(sel, "families", threshold=threshold, class_names=viewspec.class_names(sel)))
