"""Diagnose: where and why does the student fail?"""

import streamlit as st

from appkit import compute, state
from cakd_viz import diagnose
from cakd_viz.figures import diagnose as fig
from cakd_viz.terms import KL_UNIT, PART

TABLE_ROWS = 300  # rows of the ranking that reach the browser; the CSV holds the whole set
FAMILY_THRESHOLD = 0.5  # classes whose average teacher-logit correlation reaches this share a family

st.title("Diagnose")
st.markdown(
    "**Where and why does the student fail?** Pick a set of failures; rank them by the KL or by one term, "
    "see which term dominates each class's failures and which classes the student confuses."
)
sel = state.selection()
if (target := st.session_state.pop("_diagnose_open", None)) is not None:
    state.goto_sample(target)  # asked for by the "Open sample" button's callback on the last click
b = sel.bundle
d = state.decomposition()
names = b.class_names


def _open(index: int) -> None:
    # A callback keeps the request through any rerun that happens before this script reaches the button.
    st.session_state["_diagnose_open"] = index


sets = diagnose.available_sets(d)
slugs = {diagnose.FAILURE_SETS[name].slug: name for name in sets}
if st.session_state.get("diagnose_set") not in sets:  # e.g. a bundle without labels was opened
    st.session_state.pop("diagnose_set", None)
state.restore_choice("set", "diagnose_set", slugs)
which = st.radio(
    "Failure set",
    sets,
    key="diagnose_set",
    horizontal=True,
    help="; ".join(f"{k}: {diagnose.FAILURE_SETS[k].description}" for k in sets),
)
state.store_choice("set", diagnose.FAILURE_SETS[which].slug, sets[0] == which)
if b.labels is None:
    st.caption("This bundle has no labels: only disagreement with the teacher can be diagnosed.")
fs = diagnose.FAILURE_SETS[which]
mask = diagnose.failure_mask(d, which)
count = int(mask.sum())
if count == 0:
    st.success(f"No sample where {fs.description}.")
    st.stop()
shares = d.subset(mask).shares()
top = max(shares, key=shares.get)
c1, c2, c3, c4 = st.columns(4)
c1.metric(
    "Samples in the set",
    f"{count:,}",
    f"{count / len(d):.1%} of {len(d):,}",
    delta_color="off",
    delta_arrow="off",
)
c2.metric(f"Mean KL in the set ({KL_UNIT})", f"{d.kl[mask].mean():.4g}")
c3.metric(f"Mean KL overall ({KL_UNIT})", f"{d.kl.mean():.4g}")
c4.metric(
    "Largest part of the set's KL", PART[top], f"{shares[top]:.0%}", delta_color="off", delta_arrow="off"
)

st.subheader("The failures, ranked")
state.restore_choice("rank", "diagnose_rank", {v: k for k, v in diagnose.RANK_KEYS.items()})
rank = st.selectbox(
    "Rank by",
    list(diagnose.RANK_KEYS),
    key="diagnose_rank",
    help="Largest first. BCD, p_S·SCD and p_W·WCD add up to KL.",
)
state.store_choice("rank", diagnose.RANK_KEYS[rank], rank == next(iter(diagnose.RANK_KEYS)))
by = diagnose.RANK_KEYS[rank]
table = diagnose.failure_table(d, mask, by=by, limit=TABLE_ROWS, class_names=names)
shown = table.rename(columns=diagnose.COLUMN_LABELS).drop(
    columns=["label", "teacher_pred", "student_pred"], errors="ignore"
)
shown["dominant"] = shown["dominant"].map(PART)
picked = st.dataframe(
    shown,
    hide_index=True,
    on_select="rerun",
    selection_mode="single-row",
    key="diagnose_rows",
    column_config={
        c: st.column_config.NumberColumn(format="%.4g") for c in shown.select_dtypes("float").columns
    },
)
rows = picked.selection.rows if picked is not None else []
left, right = st.columns([2, 1], vertical_alignment="center")
if rows:
    idx = int(table["index"].iloc[rows[0]])
    left.button(f"Open sample #{idx} in the Sample page", type="primary", on_click=_open, args=(idx,))
else:
    left.caption(
        f"The top {min(TABLE_ROWS, count):,} of {count:,} by {rank}. Select a row to open it in the Sample page."
    )
right.download_button(
    f"Download all {count:,} as CSV",
    data=lambda: diagnose.spreadsheet_csv(diagnose.failure_table(d, mask, by=by, class_names=names)),
    file_name=f"failures_{sel.student}_{d.grouping.replace(':', '-')}_T{d.temperature:g}.csv",
    mime="text/csv",
    on_click="ignore",
)

ref_title = "true class" if fs.reference == "label" else "teacher's class"
st.subheader(f"Which term dominates each class's failures (by {ref_title})")
normalize = st.toggle("As shares of each class's failure KL", value=True)
classes = diagnose.class_failures(d, mask, by=fs.reference, num_classes=b.num_classes, class_names=names)
st.plotly_chart(fig.class_failure_chart(classes, normalize=normalize), width="stretch")
st.caption(f"The {min(25, len(classes))} classes with the most failures, of {len(classes)} with any.")

st.subheader(f"Confusions: {ref_title} → student's prediction")
_, family = compute.clusters(sel.key, FAMILY_THRESHOLD)
in_strong = compute.in_strong(d, sel.key, sel.student, d.grouping, d.temperature, sel.device, which)
pairs = diagnose.confusion_pairs(
    d, mask, by=fs.reference, class_names=names, family=family, in_strong=in_strong
)
st.plotly_chart(fig.confusion_chart(pairs), width="stretch")
st.caption(
    f"'same family': both classes fall in one cluster of the teacher's class-correlation matrix (average "
    f"correlation ≥ {FAMILY_THRESHOLD}). 'in S': how often the student's prediction lay in the sample's strong "
    f"set under {d.grouping}."
)
with st.expander(f"The {min(len(pairs), TABLE_ROWS):,} most frequent of {len(pairs):,} confusion pairs"):
    st.dataframe(
        pairs.head(TABLE_ROWS)
        .drop(columns=["true", "predicted"])
        .rename(
            columns={
                "true_name": ref_title,
                "predicted_name": "student says",
                "kl_mean": f"mean KL ({KL_UNIT})",
            }
        ),
        hide_index=True,
    )
