"""Diagnose: where and why does the student fail?"""

import streamlit as st

from cakd_viz import compare, diagnose, export
from cakd_viz.app import compute, explorer, links, state, ui, viewspec
from cakd_viz.app.config import plain
from cakd_viz.figures import compare as compare_fig
from cakd_viz.figures import diagnose as fig
from cakd_viz.terms import KL_UNIT, PART, readable

TABLE_ROWS = 300  # rows of the ranking that reach the browser; the CSV holds the whole set

ui.title(
    "Diagnose",
    "**Where and why does the student fail?** Pick a set of failures; rank them by the KL or by one term, "
    "see which term dominates each class's failures and which classes the student confuses.",
)
sel = state.selection()
explorer.follow()  # a button into the samples explorer, clicked in the last run
if (target := st.session_state.pop("_diagnose_open", None)) is not None:
    state.goto_sample(target)  # asked for by the "Open sample" button's callback on the last click
b = sel.bundle
res = state.results()  # A (and B when set)
r = res[sel.student]
d = r.d
names = list(sel.class_names)


def _open(index: int) -> None:
    # A callback keeps the request through any rerun that happens before this script reaches the button.
    st.session_state["_diagnose_open"] = index


def _failures(limit: int | None = None):
    """The ranked failures as the page shows them: without the class-index columns, the part in words."""
    table = diagnose.failure_table(d, mask, by=by, limit=limit, class_names=names)
    shown = table.drop(columns=["label", "teacher_pred", "student_pred"], errors="ignore")
    return table, shown.assign(dominant=shown["dominant"].map(PART))


sets = diagnose.available_sets(d)
if st.session_state.get("set") not in (None, *sets):  # e.g. a bundle without labels was opened
    st.session_state["set"] = sets[0]
which = links.worded(
    st.radio,
    "Failure set",
    sets,
    key="set",
    horizontal=True,
    help="; ".join(f"{k}: {diagnose.FAILURE_SETS[k].description}" for k in sets),
)
if b.labels is None:
    ui.caption("This bundle has no labels: only disagreement with the teacher can be diagnosed.")
ui.caption(
    f"Failures among {r.scope()}, split under {sel.grouping} at {sel.setting}; sample numbers are the bundle's own."
)
fs = diagnose.FAILURE_SETS[which]
mask = diagnose.failure_mask(d, which)
count = int(mask.sum())
by = next(iter(diagnose.RANK_KEYS.values()))  # the ranking's column (KL unless picked below)
if count == 0:
    ui.note(f"No sample where {fs.description}.", "success")
else:
    shares = d.subset(mask).shares()
    top = max(shares, key=shares.get)
    c1, c2, c3, c4 = st.columns(4)
    plain_delta = dict(delta_color="off", delta_arrow="off")
    ui.metric(c1, "Samples in the set", f"{count:,}", f"{count / len(d):.1%} of {len(d):,}", **plain_delta)
    ui.metric(c2, f"Mean KL in the set ({KL_UNIT})", f"{d.kl[mask].mean():.4g}")
    ui.metric(c3, f"Mean KL overall ({KL_UNIT})", f"{d.kl.mean():.4g}")
    ui.metric(c4, "Largest part of the set's KL", PART[top], f"{shares[top]:.0%}", **plain_delta)

    ui.subheader("The failures, ranked")
    rank = links.worded(
        st.selectbox,
        "Rank by",
        list(diagnose.RANK_KEYS),
        key="rank",
        help="Largest first. BCD, p_S·SCD and p_W·WCD add up to KL; SCD and WCD alone are the raw terms.",
    )
    by = diagnose.RANK_KEYS[rank]
    table, shown = _failures(TABLE_ROWS)
    row = ui.table(shown, name="failures", key="diagnose_rows", selectable=True, height=360)
    left, right = st.columns([2, 1], vertical_alignment="center")
    if row is not None:
        idx = int(table["index"].iloc[row])
        left.button(f"Open sample #{idx} in the Sample page", type="primary", on_click=_open, args=(idx,))
    else:
        ui.caption(
            f"The top {min(TABLE_ROWS, count):,} of {count:,} by {rank}. Select a row to open it in the Sample page.",
            left,
        )

    def _every() -> bytes:
        context = ui.context(**{"failure set": which, "ranked by": rank})
        return export.to_csv_bytes(readable(_failures()[1]), context)

    explorer.button(
        left,
        f"All {count:,} in the samples explorer",
        explorer.link(sel.class_names, failure=which, sort=rank),
        key="diagnose_to_samples",
    )
    with right:
        st.download_button(
            f"Download all {count:,} as CSV",
            data=_every,
            file_name=ui.file_stem("failures") + ".csv",
            mime="text/csv",
            on_click="ignore",
        )

    ref_title = "true class" if fs.reference == "label" else "teacher's class"
    ui.subheader(f"Which term dominates each class's failures (by {ref_title})")
    normalize = links.bound(
        st.toggle,
        "As shares of each class's failure KL",
        value=True,
        key="share",
        why=links.boolean,
        says=lambda v: "shares" if v else "nats",
    )
    links.show(("share",))
    classes = diagnose.class_failures(d, mask, by=fs.reference, num_classes=b.num_classes, class_names=names)
    ui.chart(
        fig.class_failure_chart(classes, normalize=normalize, student=ui.who(sel.student, sel)),
        f"The {min(25, len(classes))} classes with the most failures, of {len(classes)} with any.",
        key="diagnose_classes",
    )
    ref_filter = "true" if fs.reference == "label" else "teacher"
    with st.expander(f"All {len(classes)} classes with failures"):
        row = ui.table(
            classes.assign(dominant=classes["dominant"].map(PART)),
            name="class_failures",
            key="diagnose_class_table",
            height=300,
            selectable=True,
        )
        if row is not None:
            c = int(classes["class"].iloc[row])
            explorer.button(
                st,
                f"The failures of {plain(names[c])} in the samples explorer",
                explorer.link(sel.class_names, failure=which, **{ref_filter: c}),
                key="diagnose_class_to_samples",
            )
        else:
            ui.caption("Select a class to open its failures in the samples explorer.")

    ui.subheader(f"Confusions: {ref_title} → student's prediction")
    _, family = compute.clusters(sel.key, compute.FAMILY_THRESHOLD, sel.standardize)
    in_strong = compute.in_strong(r, sel.key, which)
    pairs = diagnose.confusion_pairs(
        d, mask, by=fs.reference, class_names=names, family=family, in_strong=in_strong
    )
    in_s = f"'in S': how often the student's prediction lay in the sample's strong set under {d.grouping}."
    ui.chart(
        fig.confusion_chart(pairs, student=ui.who(sel.student, sel)),
        f"'same family': both classes fall in one cluster of the teacher's class-correlation matrix (average "
        f"correlation ≥ {compute.FAMILY_THRESHOLD}). {in_s}",
        key="diagnose_pairs",
    )
    with st.expander(f"The {min(len(pairs), TABLE_ROWS):,} most frequent of {len(pairs):,} confusion pairs"):
        row = ui.table(
            pairs.head(TABLE_ROWS)
            .drop(columns=["true", "predicted"])
            .assign(dominant=lambda t: t["dominant"].map(PART)),
            name="confusions",
            headings={"true_name": ref_title, "kl_mean": f"mean KL ({KL_UNIT})"},
            key="diagnose_pair_table",
            height=300,
            selectable=True,
        )
        if row is not None:
            pair = pairs.iloc[row]
            t, p = int(pair["true"]), int(pair["predicted"])
            # the confusion pair (true class → student's), or the teacher's class and the student's
            to = {"pair": (t, p)} if fs.reference == "label" else {"teacher": t, "pred": p}
            explorer.button(
                st,
                f"The {int(pair['count']):,} samples of {plain(names[t])} → {plain(names[p])} in the samples explorer",
                explorer.link(sel.class_names, failure=which, **to),
                key="diagnose_pair_to_samples",
            )
        else:
            ui.caption("Select a pair to open its samples in the samples explorer.")

if sel.compare:
    a_name, b_name = sel.student, sel.compare
    ui.subheader(f"What {b_name} (B) fixes and breaks against {a_name} (A)")
    right_means = "the true class" if b.labels is not None else "the teacher's top class"
    kinds = {"fixed": "Fixed by B", "broken": "Broken by B"}
    kind = links.worded(st.radio, "Set", kinds, key="cmp", horizontal=True)
    size, change, rows_b = compute.compare_set(res[a_name], res[b_name], kind, sel.class_names, TABLE_ROWS)
    ui.caption(
        f"{size:,} samples that {compare.SETS[kind].format(a=a_name, b=b_name)} "
        f"(right = {right_means}); differences are {b_name} − {a_name}, under {sel.grouping} at {sel.setting}."
    )
    if size:
        ui.chart(
            compare_fig.mean_terms_figure(change, a_name, b_name),
            f"Over these {size:,} samples: the mean KL and mean parts of both students.",
            key="diagnose_cmp_chart",
        )
        ui.table(
            rows_b.assign(changed_most=rows_b["changed_most"].map(PART)),
            name=f"{kind}_by_B",
            a=a_name,
            b=b_name,
            key="diagnose_cmp_table",
            height=320,
            caption=f"The {len(rows_b):,} of {size:,} samples whose KL changed most.",
            context=ui.context(**{"set": f"{kind} by {b_name}"}),
        )
        explorer.button(
            st,
            f"All {size:,} in the samples explorer",
            explorer.link(sel.class_names, change=kind),
            key="diagnose_cmp_to_samples",
        )
ui.finish(
    viewspec.spec(
        sel, "failures", failure_set=which, rank=by, limit=TABLE_ROWS, class_names=viewspec.class_names(sel)
    )
)
