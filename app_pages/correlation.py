"""Correlation groups: which classes travel together?"""

import streamlit as st

from appkit import compute, state
from cakd_viz.figures import correlation as fig

st.title("Correlation groups")
st.markdown(
    "**Which classes travel together?** Classes whose teacher logits rise and fall together form families; "
    "the grouping's strong sets should follow them."
)
sel = state.selection()
b = sel.bundle

threshold = st.slider(
    "Family threshold (average correlation within a family)",
    0.1,
    0.9,
    0.5,
    0.05,
    help="Average-linkage clustering on 1 − r, cut where the average correlation drops below this.",
)
corr = compute.correlation(sel.key)
order, family = compute.clusters(sel.key, threshold)
families = fig.family_table(family)
st.caption(
    f"{len(families):,} families among {b.num_classes:,} classes; "
    f"{int((families['size'] > 1).sum()):,} of them have two or more classes. Families are boxed on the diagonal."
)
only = None
if b.num_classes > fig.SHOW_ALL_UP_TO:
    multi = families[families["size"] > 1]
    options = ["overview: a few classes of each of the largest families"] + [
        f"family {f} ({s} classes)" for f, s in multi.itertuples(index=False)
    ]
    pick = st.selectbox(f"Show (at most {fig.HEATMAP_LIMIT} classes at a time)", options)
    only = None if pick == options[0] else int(pick.split()[1])
classes = fig.pick_classes(order, family, only=only)

counts, counted = compute.comembership(sel.key, sel.grouping, sel.temperature)
left, right = st.columns(2)
with left:
    st.subheader("Teacher's class correlations")
    st.plotly_chart(fig.correlation_heatmap(corr, classes, family, b.class_names), width="stretch")
    st.caption(
        "Pearson r between classes' teacher logits over all samples, ordered by hierarchical clustering."
    )
with right:
    st.subheader(f"Shared strong sets under `{sel.grouping}`")
    st.plotly_chart(fig.comembership_heatmap(counts, classes, family, b.class_names), width="stretch")
    st.caption(
        f"Row i, column j: how often j is in S when i is, over {counted:,} samples at T = {sel.temperature:g}."
    )

st.subheader("Pairs that most often share a strong set")
st.dataframe(fig.top_pairs(counts, corr, b.class_names, family), hide_index=True, width="stretch")

left, right = st.columns(2)
with left:
    st.subheader("Strong-set size under mass:P")
    p = st.select_slider(
        "P (teacher mass the strong set must reach)", [0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99], 0.9
    )
    d_mass = state.decomposition(grouping=f"mass:{p:g}")
    st.plotly_chart(fig.strong_size_figure(d_mass.strong_size, grouping=d_mass.grouping), width="stretch")
    st.caption(f"Mean |S| = {d_mass.strong_size.mean():.2f} classes at T = {sel.temperature:g}.")
with right:
    st.subheader(f"Strong-group mass: teacher vs {sel.student}")
    d = state.decomposition()
    st.plotly_chart(fig.strong_mass_figure(d, student=sel.student), width="stretch")
    st.caption(
        f"Under `{d.grouping}`: mean p_S = {d.teacher_strong_mass.mean():.3f} (teacher), "
        f"q_S = {d.student_strong_mass.mean():.3f} (student). Above the diagonal the student over-weights S."
    )
