"""Overview: which divergence terms dominate?"""

import streamlit as st

from cakd_viz.app import compute, explorer, links, state, ui, viewspec
from cakd_viz.app.config import plain
from cakd_viz.figures import compare as compare_fig
from cakd_viz.figures import overview as fig
from cakd_viz.grouping import parse_grouping
from cakd_viz.terms import KL_UNIT

TABS = ["Distributions", "Per class", "vs temperature", "vs grouping", "Standardization (LS)"]

ui.title(
    "Overview",
    "**Which divergence terms dominate?** The KL of every sample splits exactly into "
    r"$\mathrm{BCD} + p_S\,\mathrm{SCD} + p_W\,\mathrm{WCD}$: how much of the total does each part carry?",
)
sel = state.selection()
explorer.follow()  # a button into the samples explorer, clicked in the last run
b = sel.bundle

if b.labels is None and st.session_state.get("dkd"):
    st.session_state["dkd"] = False  # a rerun after a bundle without labels opened
dkd = links.bound(
    st.toggle,
    "DKD view (grouping `target`: BCD = TCKD, WCD = NCKD)",
    key="dkd",
    why=links.boolean,
    says=lambda v: "the DKD view" if v else "the sidebar's grouping",
    disabled=b.labels is None,
    help="S = {true label}: the split of Zhao et al. (CVPR 2022). Needs labels.",
)
if dkd and b.labels is None:  # a link's dkd=true on a bundle without labels
    links.note(
        "dkd", f"The DKD view needs labels, and this bundle has none; showing grouping {sel.grouping}."
    )
    dkd = False
links.show(("dkd",))
grouping = "target" if dkd else sel.grouping
res = state.results(sel.students, grouping=grouping)  # every student
here = res[sel.student]
context = ui.context(grouping=grouping)
ui.caption(f"Grouping `{grouping}`, {sel.setting}. KL(teacher ‖ student) in {KL_UNIT}, over {here.scope()}.")

summary = compute.shares_by_student(res)
cols = st.columns(min(len(summary), 6))
for col, row in zip(cols, summary.head(6).itertuples(), strict=False):
    ui.metric(col, f"mean KL, {plain(row.student)}", f"{row.kl_mean:.4f} {KL_UNIT}")
ui.chart(fig.shares_figure(summary), key="overview_shares")
wrong = "Student wrong" if b.labels is not None else "Student disagrees with teacher"
explorer.button(
    st,
    f"The samples {plain(sel.student)} gets wrong"
    if b.labels is not None
    else f"Where {plain(sel.student)} disagrees with the teacher",
    explorer.link(sel.class_names, failure=wrong),
    key="overview_to_failures",
    help="Open them in the samples explorer, largest KL first; its most frequent confusions are one click away.",
)
with st.expander("Every student's numbers"):
    ui.table(
        summary.drop(columns=["grouping", "temperature"]),
        name="students",
        headings={"student": "student"},
        context=context | {"student": "all"},
        key="overview_students",
    )

if sel.compare:
    ui.subheader(f"{sel.student} (A) against {sel.compare} (B)")
    cmp = compute.compare_summary(here, res[sel.compare])
    ui.chart(
        compare_fig.mean_terms_figure(cmp, sel.student, sel.compare),
        f"Mean KL and mean parts under {grouping} at {sel.setting}: B − A above B's bars "
        f"(negative: {sel.compare} is closer to the teacher).",
        key="overview_compare",
    )
    ui.measures_table(
        cmp, a=sel.student, b=sel.compare, name="compare", context=context, key="overview_compare_table"
    )

# Only the open tab computes (it is part of the URL, so a link reopens it).
dist, per_class, by_t, by_g, by_ls = links.tabs(TABS, "view")
snippet = viewspec.spec(sel, "summary", grouping=grouping)
by = "label" if b.labels is not None else "teacher_pred"  # the classes of per-class views
scanned = (sel.student, sel.compare) if sel.compare else tuple(sel.students[:6])  # what the scans cover
if dist.open:
    with dist:
        hists = compute.histograms(here)
        ui.chart(
            fig.histogram_figure(hists, student=ui.who(sel.student, sel)),
            f"{sel.student}: each sample's KL and its three contributions, binned on a log scale; "
            f"{here.scope()}.",
            key="overview_hist",
        )
if per_class.open:
    with per_class:
        by_title = "true class" if by == "label" else "teacher's class"
        if sel.compare:
            deltas = compute.compare_classes(here, res[sel.compare], by, sel.class_names)
            ui.chart(
                compare_fig.class_delta_figure(deltas, sel.student, sel.compare),
                f"The {min(30, len(deltas))} classes (by {by_title}) whose mean KL changes most from "
                f"{sel.student} to {sel.compare}; all {len(deltas)} below.",
                key="overview_class_delta",
            )
            ui.table(
                deltas,
                name="class_changes",
                a=sel.student,
                b=sel.compare,
                context=context,
                height=320,
                key="overview_class_delta_table",
            )
        table = compute.breakdown(here, by, sel.class_names)
        ui.chart(
            fig.class_breakdown_figure(table, by_title=by_title, student=ui.who(sel.student, sel)),
            f"{sel.student}: the {min(30, len(table))} classes with the largest total KL; all {len(table)} "
            f"below; {here.scope()}.",
            key="overview_classes",
        )
        row = ui.table(
            table, name="per_class", context=context, height=320, key="overview_class_table", selectable=True
        )
        if row is not None:
            c = int(table["class"].iloc[row])
            ref = {"true" if by == "label" else "teacher": c}
            of, (left, right) = f"The samples of {plain(sel.class_names[c])}", st.columns(2)
            explorer.button(left, of, explorer.link(sel.class_names, **ref), key="overview_class_samples")
            failures = explorer.link(sel.class_names, failure=wrong, **ref)
            explorer.button(
                right, f"{of} that {plain(sel.student)} gets wrong", failures, key="overview_class_failures"
            )
        else:
            ui.caption("Select a class to open its samples in the samples explorer.")
        snippet = viewspec.spec(
            sel, "per_class", grouping=grouping, by=by, class_names=viewspec.class_names(sel)
        )
if by_t.open:
    with by_t:
        temps = (0.5, 1.0, 2.0, 4.0, 8.0, 16.0)
        tsweep = compute.temperature_scan(sel.key, scanned, grouping, temps, sel.device, sel.standardize)
        ui.chart(
            fig.sweep_figure(
                tsweep, x="temperature", x_title="temperature T", log_x=True, current=sel.temperature
            ),
            f"Shares at each T {compute.scan_scope(int(tsweep['n'].iloc[0]), b.num_samples)}"
            + (", logits standardized." if sel.standardize else "."),
            key="overview_by_t",
        )
if by_g.open:
    with by_g:
        # the rule's own sweep around the grouping: (parameter name, specs, parameter values)
        param, specs, values = parse_grouping(grouping).sweep(b.num_classes, has_labels=b.labels is not None)
        gsweep = compute.grouping_scan(
            sel.key, scanned, tuple(specs), tuple(values), sel.temperature, sel.device, sel.standardize
        )
        ui.chart(
            fig.sweep_figure(gsweep, x="param", x_title=param, current=fig.grouping_param(grouping)),
            f"Shares for {specs[0].split(':')[0]}:{param.split()[0]} "
            f"{compute.scan_scope(int(gsweep['n'].iloc[0]), b.num_samples)}, at {sel.setting}.",
            key="overview_by_g",
        )
if by_ls.open:  # one more pass per student (the setting the sidebar does not show), only when opened
    with by_ls:
        as_is = state.results(sel.students, grouping=grouping, standardize=False)
        standardized = state.results(sel.students, grouping=grouping, standardize=True)
        both = compute.ls_students(as_is, standardized)
        changed = both.loc[both["changed"], "student"].tolist()
        ui.chart(
            fig.standardization_figure(both),
            f"Each student's shares of the total KL under {grouping} at T = {sel.temperature:g}, without "
            "and with logit standardization (LS: each sample's logits z-scored before T); over "
            f"{here.scope()}. "
            + (
                f"The largest part changes for {', '.join(changed)}."
                if changed
                else "Standardization changes no student's largest part."
            ),
            key="overview_ls",
        )
        ls_context = context | {"student": "all", "standardize": "without and with"}
        ui.table(both, name="standardization", context=ls_context, key="overview_ls_table")
        classes = compute.ls_classes(as_is[sel.student], standardized[sel.student], by, sel.class_names)
        moved = int(classes["changed"].sum())
        ui.subheader(f"{sel.student}: which classes' largest part changes with LS")
        ui.table(
            classes,
            name="standardization_per_class",
            caption=f"By {'true class' if by == 'label' else 'teacher’s class'}: {moved} of {len(classes)} "
            f"classes change their largest part (listed first), then by total KL without LS.",
            context=context | {"standardize": "without and with"},
            height=320,
            key="overview_ls_classes",
        )
        snippet = viewspec.spec(sel, "standardization", grouping=grouping)
if sel.compare:
    snippet = viewspec.spec(sel, "compare", grouping=grouping, student_b=sel.compare)
ui.finish(snippet)
