"""Sample: what happens on this one sample?"""

import streamlit as st

from appkit import compute, state
from cakd_viz.figures import sample as fig
from cakd_viz.figures.style import KL_UNIT
from cakd_viz.grouping import parse_grouping
from cakd_viz.learn import format_number, identity_latex, shown_classes, worked_example

st.title("Sample")
st.markdown(
    "**What happens on this one sample?** The teacher's and the student's probabilities, the strong set S, "
    "and this sample's KL written out as BCD + p_S·SCD + p_W·WCD."
)
sel = state.selection()
b = sel.bundle
n = b.num_samples
ss = st.session_state


def _clamp(i: int) -> int:
    return min(max(int(i), 0), n - 1)


# The index lives in the URL ("i"); a value there that this page did not write (a link, goto_sample) wins.
url_i = state.url_param("i")
if url_i is not None and url_i != ss.get("_sample_url_i"):
    try:
        ss["sample_index"] = _clamp(int(url_i))
    except ValueError:
        pass
ss["sample_index"] = _clamp(ss.get("sample_index", 0))


def _step(delta: int) -> None:
    ss["sample_index"] = _clamp(ss["sample_index"] + delta)


def _typed() -> None:
    ss["sample_index"] = _clamp(ss["w_sample_index"])


ss["w_sample_index"] = ss["sample_index"]
prev, pick, nxt = st.columns([1, 2, 1], vertical_alignment="bottom")
prev.button("◀ Previous", on_click=_step, args=(-1,), disabled=ss["sample_index"] == 0, width="stretch")
pick.number_input(f"Sample index (0 – {n - 1:,})", 0, n - 1, step=1, key="w_sample_index", on_change=_typed)
nxt.button("Next ▶", on_click=_step, args=(1,), disabled=ss["sample_index"] == n - 1, width="stretch")
i = ss["sample_index"]
ss["_sample_url_i"] = str(i)
state.set_url_param("i", i)

corr = compute.correlation(sel.key) if parse_grouping(sel.grouping).needs_correlation else None
label = None if b.labels is None else int(b.labels[i])
ex = worked_example(
    b.student(sel.student)[i],
    b.teacher[i],
    label,
    grouping=sel.grouping,
    temperature=sel.temperature,
    correlation=corr,
)
names = b.class_names
t_pred, s_pred = int(ex.p.argmax()), int(ex.q.argmax())

left, right = st.columns([1, 2])
with left:
    image = None if b.inputs is None else fig.input_image(b.inputs[i])
    if image is not None:
        st.image(image, caption=f"input #{i}")
    elif b.inputs is not None:
        st.caption(f"This bundle's inputs have shape {tuple(b.inputs.shape[1:])}: not shown as an image.")
    if label is not None:
        st.metric("True class", str(names[label]))
    st.metric(
        "Teacher predicts",
        str(names[t_pred]),
        f"p = {ex.p[t_pred]:.3f}",
        delta_color="off",
        delta_arrow="off",
    )
    st.metric(
        "Student predicts",
        str(names[s_pred]),
        f"q = {ex.q[s_pred]:.3f}",
        delta_color="off",
        delta_arrow="off",
    )
    st.caption(
        f"Strong set S: {int(ex.strong.sum())} of {ex.num_classes} classes — {parse_grouping(sel.grouping).describe()}."
    )
with right:
    shown = shown_classes(ex)
    st.plotly_chart(
        fig.probability_bars(ex, names, shown, log=st.toggle("Log scale", key="sample_log")),
        width="stretch",
    )
    st.caption(
        f"{len(shown)} of {ex.num_classes} classes: the teacher's and student's most likely, plus S (shaded)."
    )

st.subheader("The decomposition, with this sample's numbers")
st.latex(r"\mathrm{KL}(p\,\|\,q) = \mathrm{BCD} + p_S \cdot \mathrm{SCD} + p_W \cdot \mathrm{WCD}")
st.latex(identity_latex(ex))
cols = st.columns(4)
cols[0].metric(f"KL ({KL_UNIT})", format_number(ex.kl))
for col, (name, value) in zip(cols[1:], ex.contributions().items(), strict=True):
    share = value / ex.kl if ex.kl > 0 else 0.0
    col.metric(
        fig.CONTRIBUTION_LABELS[name],
        format_number(value),
        f"{share:.0%} of KL",
        delta_color="off",
        delta_arrow="off",
    )
st.caption(
    f"Group masses: teacher p_S = {ex.p_strong:.4g}, p_W = {ex.p_weak:.4g}; student q_S = {ex.q_strong:.4g}, "
    f"q_W = {ex.q_weak:.4g}. T = {sel.temperature:g}, grouping {sel.grouping}."
)
st.plotly_chart(fig.contribution_bars(ex), width="stretch")
