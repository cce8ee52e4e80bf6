"""Learn: how does the decomposition work?"""

from dataclasses import replace

import numpy as np
import pandas as pd
import streamlit as st

from cakd_viz.app import links, state, ui
from cakd_viz.export import learn_snippet
from cakd_viz.figures import learn as learn_fig
from cakd_viz.figures import sample as fig
from cakd_viz.grouping import parse_grouping
from cakd_viz.learn import (
    LEARN_CLASSES,
    LOGIT_RANGE,
    PRESETS,
    TEMPERATURE_RANGE,
    LearnView,
    learn_grouping,
    learn_rules,
    learn_slider,
    worked_example,
)
from cakd_viz.standardize import setting
from cakd_viz.terms import KL_UNIT
from cakd_viz.worked import class_numbers, example_row, format_number

ui.title(
    "Learn",
    "**How does the decomposition work?** Six classes, two families of look-alikes. Move the teacher's and "
    "the student's logits and watch the KL split into its three parts; the identity holds for every setting.",
)
ss = st.session_state
C = len(LEARN_CLASSES)
KEEP = dict(persist_state="session")  # the example survives a visit to another page
PARAMS = ("zt", "zs", "lt", "lg", "ly", "ls")  # the example's query parameters (LearnView.to_params)


def _load(view: LearnView) -> None:
    """Put a view into the widgets (before they are drawn, or from a callback)."""
    for i in range(C):
        ss[f"learn_t{i}"], ss[f"learn_s{i}"] = view.teacher[i], view.student[i]
    ss["learn_T"], ss["learn_label"] = view.temperature, LEARN_CLASSES[view.label]
    ss["learn_ls"] = view.standardize
    g = parse_grouping(view.grouping)  # the rule and its parameter, as the widgets hold them
    ss["learn_kind"] = g.name
    if g.symbol is not None:
        ss[f"learn_{g.symbol}"] = g.param


def _floats(text: str) -> list[float]:
    try:
        return [round(float(v), 2) for v in str(text).split(",")]
    except ValueError:
        return []


# The example lives in the URL, so a link reproduces it; a link this page did not write wins.
_asked = {k: links.param(k) for k in PARAMS}
incoming = LearnView.from_params(_asked)
if "learn_t0" not in ss:
    ss["learn_preset"] = next(iter(PRESETS))
    _load(PRESETS[ss["learn_preset"]].view())
if incoming is not None and incoming.to_params() != ss.get("_learn_url"):
    _load(incoming)
    same = (name for name, p in PRESETS.items() if p.view().to_params() == incoming.to_params())
    ss["learn_preset"] = next(same, ss["learn_preset"])
if any(v is not None for v in _asked.values()) and ss.get("_learn_said") != _asked:  # said, not ignored
    ss["_learn_said"] = _asked
    if incoming is None:  # a broken link
        links.note(
            "learn",
            "The link asks for "
            + ", ".join(links.asked(k, v) for k, v in _asked.items() if v is not None)
            + ": an example that is incomplete or out of range; showing the example you had, or the first preset.",
            "learn_T",
        )
    elif clipped := [
        f"{k}={_asked[k]} became {v}"
        for k, v in incoming.to_params().items()
        if k in ("zt", "zs", "lt") and _floats(_asked[k]) != _floats(v)
    ]:
        links.note(
            "learn",
            "The link asks for an example outside the sliders' ranges (logits "
            f"{LOGIT_RANGE[0]:g} to {LOGIT_RANGE[1]:g}, T {TEMPERATURE_RANGE[0]:g} to {TEMPERATURE_RANGE[1]:g}): "
            + "; ".join(c[:120] for c in clipped)
            + ".",
            "learn_T",
        )
links.show(("learn",))
preset = st.selectbox(
    "Start from a typical student failure",
    list(PRESETS),
    key="learn_preset",
    on_change=lambda: _load(PRESETS[ss["learn_preset"]].view()),
    **KEEP,
)
story = st.empty()

numbers = st.container()  # filled once the controls below have been read
controls, charts = st.columns([2, 3], gap="large")
with controls:
    temperature = st.slider("Temperature T", *TEMPERATURE_RANGE, step=0.25, key="learn_T", **KEEP)
    standardize = st.toggle(
        "Standardize logits (LS)",
        key="learn_ls",
        help="Logit standardization: each row of logits z-scored, (z − mean) / (std + 1e-7), before T.",
        **KEEP,
    )
    shared = state.selection(required=False)
    ui.caption(
        f"This example has its own T, grouping (K from 1 to {C - 1} for its {C} classes) and "
        f"standardization: they do not change the sidebar's {shared.setting} and {shared.grouping}, which "
        "apply to the open bundle on the other pages."
    )
    rules = {rule.name: rule for rule in learn_rules()}
    kind = st.radio(
        "Grouping: which classes form the strong set S",
        list(rules),
        key="learn_kind",
        horizontal=True,
        **KEEP,
        captions=[rule.words for rule in rules.values()],
    )
    slider, value = learn_slider(kind), None
    if slider is not None:
        key = f"learn_{rules[kind].symbol}"
        ss.setdefault(key, slider[3])
        value = st.slider(rules[kind].symbol, *slider[:2], step=slider[2], key=key, **KEEP)
    grouping = learn_grouping(kind, value)
    label = st.selectbox("True class", LEARN_CLASSES, key="learn_label", **KEEP)
    teacher_col, student_col = st.columns(2)
    teacher_col.markdown("**Teacher logits** z_t")
    student_col.markdown("**Student logits** z_s")
    named = list(enumerate(LEARN_CLASSES))
    teacher, student = (  # the teacher's sliders, then the student's
        np.array([col.slider(n, *LOGIT_RANGE, step=0.1, key=f"learn_{side}{i}", **KEEP) for i, n in named])
        for col, side in ((teacher_col, "t"), (student_col, "s"))
    )

view = LearnView(
    tuple(teacher), tuple(student), temperature, grouping, LEARN_CLASSES.index(label), standardize
)
ss["_learn_url"] = view.to_params()
for key in PARAMS:
    links.set_param(key, ss["_learn_url"].get(key))
same_as_preset = (
    replace(view, standardize=False).to_params()
    == replace(PRESETS[preset].view(), standardize=False).to_params()
)
ui.set_context(
    {"example": preset if same_as_preset else f"changed from {preset}"}
    | {"grouping": grouping, "T": temperature, "standardize": standardize, "true class": label}
)
story_text = (
    PRESETS[preset].story
    if same_as_preset
    else f"Your own example (changed from “{preset}”). Pick a preset to start again."
)
ex, other = (  # other: the same example with the other standardization setting, for one line
    worked_example(student, teacher, view.label, grouping=grouping, temperature=temperature, standardize=ls)
    for ls in (standardize, not standardize)
)
with numbers:
    if same_as_preset:
        ui.note(story_text, "info", where=story)
    else:
        ui.caption(story_text, where=story)
    cols = st.columns(4)
    ui.metric(cols[0], f"KL ({KL_UNIT})", format_number(ex.kl, 4), border=True)
    ui.contributions(cols[1:], ex, decimals=4, border=True)
    ui.identity(ex, decimals=4, prefix=r"\Large ")
    strong = ", ".join(LEARN_CLASSES[i] for i in ex.strong_classes)
    other_way = "Without standardization this example's" if standardize else "With standardization (LS) its"
    ui.caption(
        f"Grouping {grouping} at {setting(temperature, standardize)}: S = {{{strong}}}, shaded in the bars. "
        f"{other_way} KL would be {format_number(other.kl, 4)} {KL_UNIT}."
    )
with charts:
    ui.chart(fig.probability_bars(ex, LEARN_CLASSES, np.arange(C), font_size=16), key="learn_bars")
    ui.chart(
        learn_fig.group_mass_bars(ex, title="What BCD compares: the mass on S and on W"), key="learn_masses"
    )
    ui.chart(
        fig.contribution_bars(ex, title="The three contributions add up to KL", font_size=16, decimals=4),
        key="learn_parts",
    )
with st.expander("The example's numbers, as tables"):
    ui.table(pd.DataFrame([example_row(ex)]), name="learn_terms", key="learn_terms")
    ui.table(class_numbers(ex, LEARN_CLASSES), name="learn_classes", key="learn_classes")

HOW = {  # "How it works": per tab, its paragraphs (markdown) and formulas (LaTeX, and as plain text)
    "The three terms": [
        "Teacher p = softmax(z_t / T), student q = softmax(z_s / T). A grouping rule picks a strong set S for each "
        "sample; W is the rest. p_S is the teacher's total mass on S, p_W = 1 − p_S (q_S, q_W for the student).",
        (
            r"\mathrm{BCD} = p_S \log\frac{p_S}{q_S} + p_W \log\frac{p_W}{q_W}",
            "BCD = p_S log(p_S / q_S) + p_W log(p_W / q_W)",
        ),
        (
            r"\mathrm{SCD} = \sum_{i \in S} \frac{p_i}{p_S} \log\frac{p_i / p_S}{q_i / q_S} \qquad "
            r"\mathrm{WCD} = \sum_{i \in W} \frac{p_i}{p_W} \log\frac{p_i / p_W}{q_i / q_W}",
            "SCD = Σ over i in S of (p_i / p_S) log((p_i / p_S) / (q_i / q_S));   "
            "WCD = Σ over i in W of (p_i / p_W) log((p_i / p_W) / (q_i / q_W))",
        ),
        (
            r"\mathrm{KL}(p \,\|\, q) = \mathrm{BCD} + p_S \cdot \mathrm{SCD} + p_W \cdot \mathrm{WCD}",
            "KL(p ‖ q) = BCD + p_S · SCD + p_W · WCD",
        ),
        "BCD asks: does the student put the right mass on the strong group? SCD: does it rank the strongly "
        "correlated classes like the teacher? WCD: does it keep the teacher's 'dark knowledge' in the tail? "
        "The identity is the chain rule of KL: exact for every sample and every choice of S. SCD is 0 when S "
        "has one class, WCD is 0 when W is empty.",
    ],
    "DKD's special case": [
        "With S = {true class y}, SCD vanishes and the split is DKD's (Zhao et al., CVPR 2022):",
        (
            r"\mathrm{KD} = \underbrace{\mathrm{BCD}}_{\mathrm{TCKD}} + (1 - p_y)\,\underbrace{\mathrm{WCD}}_{\mathrm{NCKD}}",
            "KD = BCD (TCKD) + (1 − p_y) · WCD (NCKD)",
        ),
        (
            r"L_{\mathrm{DKD}} = \mathrm{CE} + \alpha\,\mathrm{TCKD} + \beta\,\mathrm{NCKD}",
            "L_DKD = CE + α · TCKD + β · NCKD",
        ),
        "DKD's public defaults on CIFAR-100: α = 1, β = 8, T = 4 (β is tuned per teacher-student pair), and a "
        "warm-up over the first 20 of 240 epochs: in epoch e (counted from 1) the loss is multiplied by "
        "min(e / 20, 1), one factor per epoch, as in DKD's public code (mdistiller). Runs here use that same "
        "per-epoch schedule for DKD and CAKD whenever a warm-up is set; KD's recipe has none. Choose *target* "
        "above to see this case.",
    ],
    "The CAKD loss": [
        "CAKD trains with the teacher's weights p_S and p_W replaced by tuned constants, the way DKD replaces "
        "1 − p_target, next to the cross-entropy (each KL term scaled by T², as in KD):",
        (
            r"L = \mathrm{CE} + w_b \cdot \mathrm{BCD} + \alpha \cdot \mathrm{SCD} + \beta \cdot \mathrm{WCD}",
            "L = CE + w_b · BCD + α · SCD + β · WCD",
        ),
        "Raising α makes the student rank the look-alikes like the teacher; raising β makes it keep the tail. "
        "A three-term variant with S = the teacher's top-k (GDKD, arXiv 2512.04625) uses k = 5 and weights "
        "1 / 1 / 8 at T = 4 on CIFAR-100, with DKD's 20-epoch warm-up.",
    ],
    "Logit standardization": [
        "**Logit standardization** (LS: Sun et al., “Logit Standardization in Knowledge Distillation”, "
        "CVPR 2024, arXiv 2403.01427) z-scores each sample's teacher and student logits separately before "
        "the temperature, as the paper's public code does:",
        (
            r"z' = \frac{z - \operatorname{mean}(z)}{\operatorname{std}(z) + 10^{-7}} \qquad p = \operatorname{softmax}(z'_t / T), \quad q = \operatorname{softmax}(z'_s / T)",
            "z' = (z − mean(z)) / (std(z) + 1e-7);   p = softmax(z'_t / T), q = softmax(z'_s / T)",
        ),
        "(std with Bessel's correction, over the classes of one sample). KD normally asks the student to "
        "match the teacher's logits in magnitude too, which a small student may not manage; standardized, it "
        "only has to match their relations: a student whose logits are the teacher's times 0.4 has a KL of "
        "0 (the preset “Right ranking, smaller logit scale”). Softmax ignores the mean, so standardizing "
        "amounts to a per-sample temperature (std + 10⁻⁷)·T, one for the teacher and one for the student. "
        "The split KL = BCD + p_S·SCD + p_W·WCD holds for the standardized logits as for any others; S is "
        "the standardized teacher's (top-k: the same classes; mass:P: its probabilities change).\n\n"
        "Every loss here takes it (`standardize=True`: KD + LS is the paper's KD), and GDKD (Zheng & Cheng, "
        "arXiv 2512.04625) reports further gains with it. The sidebar's “Standardize logits (LS)” applies it "
        "to the open bundle on every page; the Overview's “Standardization (LS)” tab shows whether it changes "
        "which term dominates. The toggle above applies to this example only.",
    ],
    "What the paper prescribes": [
        "CAKD (Zhang et al., arXiv 2410.14741, IEEE ICDM 2024) names BCD, SCD and WCD and trains with "
        "CE + w_b·BCD + α·SCD + β·WCD, the tuned weights α and β taking the place of the teacher's masses p_S "
        "and p_W. What it prescribes, as far as is known to us (its full text is not available to us; these "
        "points come from public summaries of it, not from its own equations):\n\n"
        "- **At the logit level**, for single-label classification, S is the **target class**, so the "
        "logit part is DKD: BCD = TCKD, WCD = NCKD and SCD = 0. That is the *target* grouping above.\n"
        "- **At the feature level** it also splits features by their correlation with the prediction. This "
        "app works on logits only and does **not** do that.\n"
        "- Its default weights and accuracy tables are not available to us, so no numbers are shown for them. "
        "Reported qualitatively: the SCD weight matters more when the teacher is accurate (CIFAR-100); an "
        "adequate WCD weight matters when it is less reliable (Tiny-ImageNet).\n\n"
        "Every other grouping rule here (those above; corr:R, which needs a bundle's class correlation, on "
        "the other pages) is **this project's extension** of the split to several classes in S, not the "
        "paper's rule.",
    ],
}
ui.header("How it works")
for tab, (title, parts) in zip(st.tabs(list(HOW)), HOW.items(), strict=True):
    with tab:
        ui.section(title)
        for (
            part
        ) in parts:  # statements, not one conditional expression: Streamlit's magic would write its None
            if isinstance(part, tuple):
                ui.latex(*part)
            else:
                ui.markdown(part)
ui.finish(learn_snippet(view))
