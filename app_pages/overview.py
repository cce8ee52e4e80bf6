"""Overview: which divergence terms dominate?"""

import streamlit as st

from appkit import compute, state
from cakd_viz.figures import overview as fig
from cakd_viz.figures.style import KL_UNIT

st.title("Overview")
st.markdown(
    "**Which divergence terms dominate?** The KL of every sample splits exactly into "
    r"$\mathrm{BCD} + p_S\,\mathrm{SCD} + p_W\,\mathrm{WCD}$: how much of the total does each part carry?"
)
sel = state.selection()
b = sel.bundle

dkd = st.toggle(
    "DKD view (grouping `target`: BCD = TCKD, WCD = NCKD)",
    value=state.url_param("dkd") == "1",
    disabled=b.labels is None,
    help="S = {true label}: the split of Zhao et al. (CVPR 2022). Needs labels.",
)
state.set_url_param("dkd", "1" if dkd else None)
grouping = "target" if dkd else sel.grouping
st.caption(
    f"Grouping `{grouping}`, T = {sel.temperature:g}. KL(teacher ‖ student) in {KL_UNIT}, over all samples."
)

summary = compute.shares_by_student(sel, grouping)
cols = st.columns(len(summary))
for col, row in zip(cols, summary.itertuples(), strict=True):
    col.metric(f"mean KL, {row.student}", f"{row.kl_mean:.4f} {KL_UNIT}")
st.plotly_chart(fig.shares_figure(summary), width="stretch")

# Only the open tab computes (it is part of the URL, so a link reopens it).
dist, per_class, by_t, by_g = st.tabs(
    ["Distributions", "Per class", "vs temperature", "vs grouping"], key="view", bind="query-params"
)
if dist.open:
    with dist:
        hists = compute.histograms(sel.key, sel.student, grouping, sel.temperature, sel.device)
        st.plotly_chart(fig.histogram_figure(hists), width="stretch")
        st.caption(f"{sel.student}: each sample's KL and its three contributions, binned on a log scale.")
if per_class.open:
    with per_class:
        by = "label" if b.labels is not None else "teacher_pred"
        table = compute.breakdown(sel.key, sel.student, grouping, sel.temperature, sel.device, by)
        st.plotly_chart(
            fig.class_breakdown_figure(table, by_title="true class" if by == "label" else "teacher's class"),
            width="stretch",
        )
        st.caption(
            f"{sel.student}: the {min(30, len(table))} classes with the largest total KL; all {len(table)} below."
        )
        st.dataframe(table, hide_index=True, width="stretch", height=300)
if by_t.open:
    with by_t:
        temps = (0.5, 1.0, 2.0, 4.0, 8.0, 16.0)
        tsweep = compute.temperature_scan(sel.key, tuple(sel.students), grouping, temps, sel.device)
        st.plotly_chart(
            fig.sweep_figure(
                tsweep, x="temperature", x_title="temperature T", log_x=True, current=sel.temperature
            ),
            width="stretch",
        )
        st.caption(f"Shares at each T on a fixed random subset of {int(tsweep['n'].iloc[0]):,} samples.")
if by_g.open:
    with by_g:
        param, specs, values = fig.sweep_groupings(grouping, b.num_classes, has_labels=b.labels is not None)
        gsweep = compute.grouping_scan(
            sel.key, tuple(sel.students), tuple(specs), tuple(values), sel.temperature, sel.device
        )
        here = fig.grouping_param(grouping)
        st.plotly_chart(fig.sweep_figure(gsweep, x="param", x_title=param, current=here), width="stretch")
        st.caption(
            f"Shares for {specs[0].split(':')[0]}:{param.split()[0]} on a fixed random subset of "
            f"{int(gsweep['n'].iloc[0]):,} samples, at T = {sel.temperature:g}."
        )
