"""Sample: what happens on this one sample?"""

import pandas as pd
import streamlit as st

from cakd_viz.app import explorer, links, state, ui, views, viewspec
from cakd_viz.app.config import plain
from cakd_viz.figures import sample as fig
from cakd_viz.grouping import parse_grouping
from cakd_viz.learn import shown_classes, worked_example
from cakd_viz.terms import KL_UNIT
from cakd_viz.worked import example_row, format_number

ui.title(
    "Sample",
    "**What happens on this one sample?** The teacher's and the student's probabilities, the strong set S, "
    "and this sample's KL written out as BCD + p_S·SCD + p_W·WCD.",
)
sel = state.selection()
explorer.follow()  # "← back to the samples", clicked in the last run
explorer.back_button()
b = sel.bundle
n = b.num_samples

# The index lives in the URL ("i"), bound to its widget; a link's or another page's value is checked.
i = links.pager(f"Sample index (0 – {n - 1:,})", 0, n - 1, key="i", says=lambda v: f"sample {v:,}")

corr = views.correlation(sel.key, sel.standardize, sel.grouping)
label = None if b.labels is None else int(b.labels[i])

how = dict(grouping=sel.grouping, temperature=sel.temperature, correlation=corr, standardize=sel.standardize)
ex = worked_example(b.student(sel.student)[i], b.teacher[i], label, **how)
ex_b = worked_example(b.student(sel.compare)[i], b.teacher[i], label, **how) if sel.compare else None
names = list(sel.class_names)

left, right = st.columns([1, 2])
pairs = [(sel.student, ex)] + ([(sel.compare, ex_b)] if ex_b is not None else [])
with left:
    image = None if b.inputs is None else fig.input_image(b.inputs[i])
    if image is not None:
        ui.image(image, f"input #{i}")
    elif b.inputs is not None:
        ui.caption(f"This bundle's inputs have shape {tuple(b.inputs.shape[1:])}: not shown as an image.")
    if label is not None:
        ui.metric(st, "True class", plain(names[label]))
    for who, sym, probs in [("Teacher", "p", ex.p), *((plain(w), "q", e.q) for w, e in pairs)]:
        pred = int(probs.argmax())
        said = f"{sym} = {probs[pred]:.3f}"
        ui.metric(st, f"{who} predicts", plain(names[pred]), said, delta_color="off", delta_arrow="off")
    ui.caption(
        f"Strong set S: {int(ex.strong.sum())} of {ex.num_classes} classes — {parse_grouping(sel.grouping).describe()}."
    )
with right:
    shown = shown_classes(ex)
    log = links.bound(
        st.toggle,
        "Log scale",
        key="log",
        why=links.boolean,
        says=lambda v: "a log scale" if v else "a linear scale",
    )
    links.show(("log",))
    other = (sel.compare, ex_b.q) if ex_b is not None else None
    bars = fig.probability_bars(
        ex, names, shown if other is None else None, log=log, student=sel.student, other=other
    )
    rows = len(bars.data[0].y)
    ui.chart(
        bars,
        f"{rows} of {ex.num_classes} classes: the teacher's and "
        + ("both students'" if other else "the student's")
        + " most likely, plus S (shaded).",
        key="sample_bars",
    )

ui.subheader("The decomposition, with this sample's numbers")
ui.latex(
    r"\mathrm{KL}(p\,\|\,q) = \mathrm{BCD} + p_S \cdot \mathrm{SCD} + p_W \cdot \mathrm{WCD}",
    "KL(p ‖ q) = BCD + p_S · SCD + p_W · WCD",
)
for who, e in pairs:
    if ex_b is not None:
        ui.markdown(f"**{plain(who)}** ({'A' if e is ex else 'B'})")
    ui.identity(e)
    cols = st.columns(4)
    delta = None if e is ex else f"{e.kl - ex.kl:+.4g} vs {plain(sel.student)}"  # B's KL against A's
    ui.metric(cols[0], f"KL ({KL_UNIT})", format_number(e.kl), delta, delta_color="inverse")
    ui.contributions(cols[1:], e)
    ui.caption(
        f"Group masses: teacher p_S = {e.p_strong:.4g}, p_W = {e.p_weak:.4g}; {plain(who)} q_S = {e.q_strong:.4g}, "
        f"q_W = {e.q_weak:.4g}. {sel.setting}, grouping {sel.grouping}"
        + (": p and q are of the logits z-scored per sample (LS)." if sel.standardize else ".")
    )
    ui.chart(fig.contribution_bars(e, student=ui.who(who, sel)), key=f"sample_parts_{who}")
with st.expander("This sample's numbers, as a table"):
    ui.table(
        pd.DataFrame([{"student": who, **example_row(e)} for who, e in pairs]),
        name="sample",
        headings={"student": "student"},
        key="sample_numbers",
        context=ui.context(sample=i),
    )
ui.finish(viewspec.spec(sel, "sample", student_b=sel.compare or None, sample=i))
