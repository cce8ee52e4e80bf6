"""Tune: which weights help this student?

Each run or sweep is a separate process writing a folder under the runs directory (docs/architecture.md §6);
this page launches them, then only reads those folders, live, through a fragment that polls them.
"""

import streamlit as st

from appkit import config as app_config
from appkit import state, tune_form
from appkit.tune_form import LOSS_WIDGETS, SWEEPABLE
from cakd_viz.figures import runs as fig
from cakd_viz.models import ARCHS
from cakd_viz.runs import (
    LOSS_NAMES,
    RunConfig,
    cancel,
    engine,
    launcher,
    list_runs,
    list_sweeps,
    metrics_frame,
    runs_table,
    store,
    sweep_frame,
)
from cakd_viz.runs.presets import PRESETS
from cakd_viz.runs.sweep import SweepConfig, sweep_trials

POLL_S = 2.0  # how often the live part re-reads the run folders
DATA = {"sample:glyphs": "sample:glyphs/teacher", "sample:digits": "sample:digits/teacher"}
ss = st.session_state
root = store.runs_dir()

st.title("Tune")
st.markdown(
    "**Which weights help this student?** Train a student with cross-entropy plus a distillation loss, "
    "re-weighting BCD, SCD and WCD, and compare held-out accuracy with the KD and DKD baselines. "
    f"Runs train in their own processes (at most {launcher.default_max_concurrent()} at once; the rest "
    f"wait queued) and write `{app_config.public_path(root)}`; they keep going if you close this page."
)


def _apply_preset() -> None:
    loss = RunConfig().loss.__dict__ | PRESETS[ss["tune_preset"]].loss
    ss["tune_lossname"] = loss["name"]
    for key in LOSS_WIDGETS:
        ss[f"tune_{key}"] = loss[key]


def _apply_data() -> None:
    ss["tune_teacher"] = DATA.get(ss["tune_data"], ss.get("tune_teacher", ""))


if "tune_name" not in ss:  # first visit: the defaults of RunConfig and the first preset
    base = RunConfig()
    for key in ("data", "teacher", "student", "epochs", "batch_size", "lr", "seed", "name"):
        ss[f"tune_{key}"] = getattr(base, key)
    ss["tune_own_data"] = ss["tune_own_test"] = ""
    ss["tune_preset"] = next(iter(PRESETS))
    _apply_preset()

top = st.columns(2)
top[0].selectbox("Preset", list(PRESETS), key="tune_preset", on_change=_apply_preset)
top[1].selectbox(
    "Data",
    list(DATA),
    key="tune_data",
    on_change=_apply_data,
    help="Shipped samples; type any data spec below.",
)
st.caption(PRESETS[ss["tune_preset"]].source)

with st.form("tune_form"):
    a, b, c = st.columns(3)
    a.text_input("Teacher (model spec)", key="tune_teacher")
    a.text_input(
        "Student: an architecture (from scratch) or a model spec (fine-tuned)",
        key="tune_student",
        help=f"Architectures: {', '.join(ARCHS)}. Model specs as in `cakd-viz extract`.",
    )
    a.text_input("Run name (optional)", key="tune_name")
    b.selectbox("Loss", LOSS_NAMES, key="tune_lossname", format_func=str.upper)
    b.text_input("Grouping (CAKD): the strong set S", key="tune_grouping")
    b.number_input("Temperature T", min_value=0.05, step=0.5, key="tune_temperature")
    w = b.columns(3)
    w[0].number_input("w_b (BCD)", min_value=0.0, step=0.5, key="tune_w_b")
    w[1].number_input("alpha (SCD)", min_value=0.0, step=0.5, key="tune_alpha", help="DKD: weight of TCKD.")
    w[2].number_input("beta (WCD)", min_value=0.0, step=0.5, key="tune_beta", help="DKD: weight of NCKD.")
    b.number_input("Warm-up (epochs)", min_value=0.0, step=0.5, key="tune_warmup")
    c.number_input("Epochs", min_value=1, step=1, key="tune_epochs")
    c.number_input("Batch size", min_value=1, step=16, key="tune_batch_size")
    c.number_input("Learning rate", min_value=1e-5, step=0.01, format="%.4f", key="tune_lr")
    c.number_input("Seed", min_value=0, step=1, key="tune_seed")
    with st.expander("Your own data (instead of the sample above)"):
        own = st.columns(2)
        own[0].text_input(
            "Training data spec", key="tune_own_data", placeholder="e.g. data/train.npz or a folder"
        )
        own[1].text_input("Held-out data spec", key="tune_own_test", placeholder="e.g. data/test.npz")
    with st.expander("Sweep: values to try (comma-separated; empty = keep the value above)"):
        cols = st.columns(len(SWEEPABLE))
        for col, (key, label) in zip(cols, SWEEPABLE.items(), strict=True):
            col.text_input(label, key=f"tune_grid_{key}", placeholder="e.g. 1, 2, 4")
        engines = ["local", "ray"] if engine.ray_available() else ["local"]
        st.radio(
            "Engine",
            engines,
            key="tune_engine",
            horizontal=True,
            help="local: processes on this machine; ray: Ray Tune (installed here).",
        )
    go_run, go_sweep = st.columns(2)
    run_clicked = go_run.form_submit_button("Launch run", type="primary")
    sweep_clicked = go_sweep.form_submit_button("Launch sweep")


if run_clicked or sweep_clicked:
    try:  # the specs pass the gate (appkit/spec_gate.py) before anything is created
        tune_form.check_capacity(root)
        if run_clicked:
            run_dir = launcher.launch(RunConfig.from_dict(tune_form.launch_config(ss)), root)
            st.success(f"Started run {run_dir.name}.")
        else:
            sweep = SweepConfig(
                base=tune_form.launch_config(ss),
                grid=tune_form.sweep_grid(ss),
                engine=ss.get("tune_engine", "local"),
            )
            sweep_dir = engine.launch_sweep(sweep, root)
            st.success(f"Started sweep {sweep_dir.name}: {len(sweep_trials(sweep_dir))} trials.")
    except (ValueError, OSError) as exc:
        st.error(f"Not launched: {app_config.one_line(app_config.scrub(str(exc)), limit=500)}")


@st.fragment(run_every=POLL_S)
def live() -> None:
    runs = list_runs(root)
    if not runs:
        st.info("No runs yet: pick a preset and launch one above.")
        return
    for r in [r for r in runs if r.active]:
        with st.container(border=True):
            info, stop = st.columns([5, 1])
            done = int(r.status.get("epoch") or 0)
            total = int(r.config.get("epochs") or 1)
            info.progress(done / total, text=f"**{r.label}** · {r.state} · epoch {done}/{total} · `{r.id}`")
            if stop.button("Cancel", key=f"cancel_{r.id}"):
                cancel(r.path)
                st.rerun(scope="fragment")
            steps = metrics_frame(r, "step")
            if not steps.empty:
                st.plotly_chart(fig.terms_figure(steps), key=f"terms_{r.id}")
    st.subheader("Runs")
    st.dataframe(
        runs_table(runs).drop(columns=["error"]),
        hide_index=True,
        key="tune_table",
        column_config={
            "best_acc": st.column_config.NumberColumn("best held-out acc", format="percent"),
            "last_acc": st.column_config.NumberColumn("last held-out acc", format="percent"),
            "duration_s": st.column_config.NumberColumn("duration (s)", format="%.0f"),
        },
    )
    for r in [r for r in runs if r.state in ("failed", store.CORRUPT)][:5]:
        with st.expander(f"{r.state}: {r.label} ({r.id})"):
            st.error(app_config.scrub(r.error or "no error recorded"))  # no server paths in the browser
            st.code(app_config.scrub(r.log_tail(40)) or "(log.txt is empty)", language=None)
    _compare(runs)
    _sweeps()


def _compare(runs) -> None:
    st.subheader("Compare runs")
    labels = {r.id: f"{r.label} · {r.id}" for r in runs if r.epochs}
    if not labels:
        st.caption("Curves appear once a run has finished its first epoch.")
        return
    default = [i for i in labels][:4]
    chosen = st.multiselect("Runs", list(labels), default=default, format_func=labels.get, key="tune_compare")
    metric = st.selectbox("Curve", list(fig.METRICS), format_func=fig.METRICS.get, key="tune_metric")
    by_id = {r.id: r for r in runs}
    curves = {labels[i]: metrics_frame(by_id[i]) for i in chosen}
    st.plotly_chart(fig.curves_figure(curves, metric), key="tune_curves")
    finished = [i for i in chosen if by_id[i].bundle_path is not None]
    if finished:
        pick = st.selectbox("Open a finished run's student in the explorer", finished, format_func=labels.get)
        if st.button("Open in explorer", key="tune_open"):
            _open(by_id[pick].bundle_path)


def _open(path) -> None:
    """Open a run's bundle on the Overview page (the shared sidebar reads the bundle from the URL)."""
    try:
        app_config.resolve_server_path(path)
    except ValueError:
        st.error(
            f"This run's bundle lies outside the app's data roots; the operator can add the runs folder to ${app_config.DATA_ROOT_ENV}."
        )
        return
    st.switch_page(state.PAGE_FILES["overview"], query_params={"bundle": f"path:{path}"})


def _sweeps() -> None:
    sweeps = list_sweeps(root)
    if not sweeps:
        return
    st.subheader("Sweeps")
    names = {s.id: f"{s.name} · {s.state} · {s.counts_text()}" for s in sweeps}
    sid = st.selectbox("Sweep", list(names), format_func=names.get, key="tune_sweep")
    s = next(s for s in sweeps if s.id == sid)
    if s.error:
        st.error(app_config.scrub(s.error))
    if s.state in ("queued", "running") and st.button("Cancel sweep", key=f"cancel_sweep_{s.id}"):
        engine.cancel_sweep(s.path)
        st.rerun(scope="fragment")
    frame = sweep_frame(list(s.trials))
    cases = ["case"] if s.config.get("cases") else []  # e.g. one case per loss, crossed with seeds
    swept = cases + [k for k in (s.config.get("grid") or {}) | (s.config.get("random") or {}) if k in frame]
    if not swept:
        st.dataframe(frame, hide_index=True)
        return
    x = st.selectbox("Across", swept, key="tune_hx")
    others = [k for k in swept if k != x]
    down = st.selectbox("Down", ["(none)", *others], index=0 if cases or not others else 1, key="tune_hy")
    y = None if down not in others else down
    st.plotly_chart(fig.sweep_heatmap(frame, x, y), key="tune_heatmap")
    st.caption(
        "Mean best held-out accuracy per cell (per dot: ± its standard deviation); trials that differ only in "
        "values not shown are averaged."
    )


live()
