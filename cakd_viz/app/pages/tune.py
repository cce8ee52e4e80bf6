"""Tune: which weights help this student?

Each run or sweep is a separate process writing a folder under the runs directory (docs/architecture.md §6);
this page launches them, then only reads those folders, live, through a fragment that polls them.
"""

import hashlib

import streamlit as st

from cakd_viz import export
from cakd_viz.app import config as app_config
from cakd_viz.app import links, state, tracker, tune_form, ui, views
from cakd_viz.app.tune_form import LOSS_WIDGETS, SWEEPABLE
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
    store,
    sweep_frame,
)
from cakd_viz.runs.presets import PRESETS
from cakd_viz.runs.results import (
    NOTE_MAX_CHARS,
    archive_run,
    delete_run,
    list_archived,
    read_note,
    restore_run,
    safe_label,
    tracker_table,
    write_note,
)
from cakd_viz.runs.sweep import SweepConfig, sweep_trials

POLL_S = 2.0  # how often the live part re-reads the run folders
DATA = {"sample:glyphs": "sample:glyphs/teacher", "sample:digits": "sample:digits/teacher"}
ss = st.session_state
root = store.runs_dir()

ui.title(
    "Tune",
    "**Which weights help this student?** Train a student with cross-entropy plus a distillation loss, "
    "re-weighting BCD, SCD and WCD, and compare held-out accuracy with the KD and DKD baselines. "
    f"Runs train in their own processes (at most {launcher.default_max_concurrent()} at once; the rest "
    f"wait queued) and write `{app_config.public_path(root)}`; they keep going if you close this page.",
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
    b.number_input(
        "Warm-up W (epochs; loss × min(e / W, 1) in epoch e, DKD's schedule)",
        min_value=0.0,
        step=1.0,
        key="tune_warmup",
        help="DKD's own per-epoch schedule, as in its public code: the first epoch already gets 1/W; 0 or 1 "
        'means no warm-up. A per-step ramp needs "warmup_schedule": "step" in a run config.',
    )
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
    try:  # the specs pass the gate (cakd_viz/app/spec_gate.py) before anything is created
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
    """Everything that reads run folders: re-read every POLL_S seconds, so new runs show everywhere."""
    runs = list_runs(root)
    if not runs:
        st.info("No runs yet: pick a preset and launch one above.")
        _archived()
        return
    for r in [r for r in runs if r.active]:
        with st.container(border=True):
            info, stop = st.columns([5, 1])
            done = int(r.status.get("epoch") or 0) if isinstance(r.status.get("epoch"), int) else 0
            total = int(r.config.get("epochs") or 1) if isinstance(r.config.get("epochs"), int) else 1
            info.progress(
                min(done / total, 1.0),
                text=f"**{safe_label(r)}** · {r.state} · epoch {done}/{total} · `{r.id}`",
            )
            if stop.button("Cancel", key=f"cancel_{r.id}"):
                cancel(r.path)
                st.rerun()
            steps = metrics_frame(r, "step")
            if not steps.empty:
                st.plotly_chart(fig.terms_figure(steps), key=f"terms_{r.id}")
                st.caption(fig.STEP_NOTE)
    table = tracker_table(runs)
    by_id = {r.id: r for r in runs}
    _tracker(table)
    for r in [r for r in runs if r.state in ("failed", store.CORRUPT)][:5]:
        with st.expander(f"{r.state}: {safe_label(r)} ({r.id})"):
            st.error(app_config.scrub(r.error or "no error recorded"))  # no server paths in the browser
            st.code(app_config.scrub(r.log_tail(40)) or "(log.txt is empty)", language=None)
    _run_view(table, by_id)
    _compare(table, by_id)
    _sweeps()
    _archived()


def _tracker(table) -> None:
    st.subheader("Runs")
    f1, f2, f3, f4 = st.columns([2, 2, 3, 2])
    states = f1.multiselect("State", sorted(table["state"].unique()), key="tune_f_state", placeholder="any")
    losses = f2.multiselect(
        "Loss", sorted(table["loss"].dropna().unique()), key="tune_f_loss", placeholder="any"
    )
    text = f3.text_input("Search name, id, sweep or note", key="tune_f_text", max_chars=100)
    sort = f4.selectbox("Sort by", list(tracker.SORTS), key="tune_sort")
    every = st.toggle(
        "All columns", key="tune_all_columns", help="Also batch size, student, data, sweep and run id."
    )
    shown = tracker.sorted_table(tracker.filtered(table, states=states, losses=losses, text=text), sort)
    columns = list(tracker.COLUMNS) if every else tracker.DEFAULT_COLUMNS
    view = shown[columns].rename(columns=tracker.HEADINGS)
    st.dataframe(
        view,
        hide_index=True,
        key="tune_table",
        column_config=tracker.column_config(columns),
        width="stretch",
        height=min(420, 38 + 35 * len(view)),
    )
    st.caption(
        f"{len(shown):,} of {len(table):,} runs. Sweep trials are named by the values they vary. Click a heading "
        "to sort by it; pick a run below to see its curves, write a note, archive or delete it."
    )
    ui.download(view, name="runs", context={"runs directory": root.name}, key="dl_runs")


def _run_view(table, by_id) -> None:
    st.subheader("A run")
    ids = list(table.sort_values("created", ascending=False, na_position="last")["id"])
    labels = {row["id"]: tracker.run_label(row) for _, row in table.iterrows()}
    rid = links.choice(st.selectbox, "Run", ids, key="tune_run", name="run", format_func=labels.get)
    links.show(("run",))
    r = by_id[rid]
    params = {k: v for k, v in table.set_index("id").loc[rid].items() if k in tracker.HEADINGS}
    st.caption(
        " · ".join(
            f"{tracker.HEADINGS[k]} {v:g}" if isinstance(v, float) else f"{tracker.HEADINGS[k]} {v}"
            for k, v in params.items()
            if k in ("loss", "grouping", "T", "w_b", "alpha", "beta", "warmup", "lr", "epochs", "seed")
            and v is not None
            and v == v
        )
    )
    epochs = metrics_frame(r)
    left, right = st.columns(2)
    with left:
        acc = {safe_label(r): epochs}
        st.plotly_chart(fig.curves_figure(acc, "val_acc"), key="tune_run_acc")
    with right:
        if not epochs.empty and all(k in epochs for k in fig.HELD_OUT[:4]):
            raw = st.toggle("Raw terms (instead of the parts that add up to the KL)", key="tune_run_raw")
            st.plotly_chart(fig.held_out_terms_figure(epochs, raw=raw), key="tune_run_terms")
            st.caption(fig.HELD_OUT_NOTE)
        elif r.epochs:
            st.info(
                "This run's epochs carry no held-out decomposition (val_kl, val_bcd, …): it was made before runs "
                "recorded it, so only its accuracy and losses can be shown."
            )
        else:
            st.caption("Curves appear once the run has finished its first epoch.")
    with st.form(f"note_form_{rid}", border=False):
        note = st.text_area(
            "Note", value=read_note(r.path), max_chars=NOTE_MAX_CHARS, height=80, key=f"note_{rid}"
        )
        saved = st.form_submit_button("Save note")
    if saved:
        try:
            write_note(r.path, note)
        except (ValueError, OSError) as exc:
            st.error(f"The note was not saved: {exc}")
        else:
            st.toast(f"Note saved for {rid}.")
            st.rerun()  # the table above shows it (a full rerun: a fragment-scoped one fails outside fragment reruns)
    a, b, c, d = st.columns([2, 3, 1.4, 1.4])
    finished = r.bundle_path is not None
    if a.button(
        "Open in explorer",
        key="tune_open",
        disabled=not finished,
        width="stretch",
        help="Opens the run's own bundle.",
    ):
        _open(r.bundle_path)
    if b.button(
        "Compare with the bundle's students",
        key="tune_compare_bundle",
        disabled=not finished,
        width="stretch",
        help="The run's student beside the students of the bundle it was trained against (same data and teacher).",
    ):
        _compare_in_explorer(r)
    busy = r.active
    if c.button(
        "Archive",
        key="tune_archive",
        disabled=busy,
        width="stretch",
        help="Moves the run into the runs directory's .archive folder."
        + (" Cancel it first." if busy else ""),
    ):
        _act(archive_run, rid, f"Archived {rid}.")
    if d.button(
        "Delete…",
        key="tune_delete",
        disabled=busy,
        width="stretch",
        help="Deletes the run's folder, after you confirm." + (" Cancel it first." if busy else ""),
    ):
        ss["tune_confirm"] = rid
    if ss.get("tune_confirm") == rid:
        st.warning(
            f"Delete run {rid} and everything in its folder (weights, bundle, log)? This cannot be undone."
        )
        yes, no = st.columns(2)
        if yes.button(f"Yes, delete {rid}", type="primary", key="tune_delete_yes"):
            ss.pop("tune_confirm", None)
            _act(delete_run, rid, f"Deleted {rid}.")
        if no.button("Keep it", key="tune_delete_no"):
            ss.pop("tune_confirm", None)
            st.rerun()


def _act(action, rid: str, done: str) -> None:
    try:
        action(root, rid)
    except (ValueError, OSError) as exc:
        st.error(f"Not done: {exc}")
        return
    st.toast(done)
    st.rerun()


def _compare(table, by_id) -> None:
    st.subheader("Compare runs")
    with_epochs = [
        i for i in table.sort_values("created", ascending=False, na_position="last")["id"] if by_id[i].epochs
    ]
    if not with_epochs:
        st.caption("Curves appear once a run has finished its first epoch.")
        return
    labels = {row["id"]: tracker.run_label(row) for _, row in table.iterrows()}
    # Until someone picks runs here, the newest four are compared, so new runs join without a reload. (A
    # widget keyed by that list: a value pushed into a kept widget during a fragment rerun does not show.)
    newest = with_epochs[:4]
    if not ss.get("tune_compare_picked"):
        key = "tune_compare_auto_" + hashlib.sha1(",".join(newest).encode()).hexdigest()[:10]
        chosen = st.multiselect(
            "Runs",
            with_epochs,
            default=newest,
            key=key,
            format_func=labels.get,
            on_change=_picked,
            args=(key,),
        )
    else:
        ss["tune_compare"] = [i for i in ss.get("tune_compare", []) if i in with_epochs]
        chosen = st.multiselect("Runs", with_epochs, key="tune_compare", format_func=labels.get)
    metric = links.bound(
        st.selectbox,
        "Curve",
        list(fig.METRICS),
        key="curve",
        why=links.one_of(list(fig.METRICS), fig.METRICS.get, most=6),
        says=fig.METRICS.get,
        format_func=fig.METRICS.get,
    )
    links.show(("curve",))
    curves = {labels[i]: metrics_frame(by_id[i]) for i in chosen}
    st.plotly_chart(fig.curves_figure(curves, metric), key="tune_curves")
    lacking = [safe_label(by_id[i]) for i in chosen if metric not in curves[labels[i]]]
    if lacking:
        st.caption(
            f"Without {fig.METRICS[metric]}: {', '.join(lacking)}"
            + (" (made before runs recorded the held-out terms)." if metric in fig.HELD_OUT else ".")
        )
    if metric in fig.HELD_OUT:
        st.caption(fig.HELD_OUT_NOTE)


def _picked(key: str) -> None:
    """The user changed the newest-runs selection: from now on it is theirs."""
    ss["tune_compare_picked"] = True
    ss["tune_compare"] = list(ss[key])


def _open(path) -> None:
    """Open a run's bundle on the Overview page (the shared sidebar reads the bundle from the URL)."""
    try:
        app_config.resolve_server_path(path)
    except ValueError:
        st.error(
            f"This run's bundle lies outside the app's data roots; the operator can add the runs folder to ${app_config.DATA_ROOT_ENV}."
        )
        return
    state.goto_overview(f"path:{path}")


def _compare_in_explorer(run) -> None:
    """The Overview with the run's student (B) beside the first student of the bundle it was trained on."""
    source = tracker.compare_source(run, state.selection(required=False).source)
    if not source:
        st.error("No bundle is open to compare the run's student with; open the one it was trained on first.")
        return
    state.goto_overview(source, runs=(run.id,), compare=f"{views.RUN_PREFIX}{run.id}")


def _sweeps() -> None:
    sweeps = list_sweeps(root)
    if not sweeps:
        return
    st.subheader("Sweeps")
    names = {s.id: f"{s.name} · {s.state} · {s.counts_text()}" for s in sweeps}
    sid = links.choice(
        st.selectbox, "Sweep", list(names), key="tune_sweep", name="sweep", format_func=names.get
    )
    links.show(("sweep",))
    s = next(s for s in sweeps if s.id == sid)
    if s.error:
        st.error(app_config.scrub(s.error))
    if s.state in ("queued", "running") and st.button("Cancel sweep", key=f"cancel_sweep_{s.id}"):
        engine.cancel_sweep(s.path)
        st.rerun()
    frame = sweep_frame(list(s.trials))
    cases = ["case"] if s.config.get("cases") else []  # e.g. one case per loss, crossed with seeds
    swept = cases + [k for k in (s.config.get("grid") or {}) | (s.config.get("random") or {}) if k in frame]
    if not swept:
        st.dataframe(frame, hide_index=True)
        return
    across, down = fig.default_axes(frame, swept)
    if ss.get("_tune_axes_for") != sid:  # a newly picked sweep starts on its default axes
        ss["_tune_axes_for"] = sid
        ss["tune_hx"], ss["tune_hy"] = across or swept[0], down or "(averaged)"
    x = st.selectbox("Across", swept, key="tune_hx")
    others = [k for k in swept if k != x]
    if ss.get("tune_hy") not in ["(averaged)", *others]:
        ss["tune_hy"] = "(averaged)"
    down = st.selectbox("Down", ["(averaged)", *others], key="tune_hy")
    y = None if down == "(averaged)" else down
    st.plotly_chart(fig.sweep_heatmap(frame, x, y), key="tune_heatmap")
    averaged = [k for k in fig.varied_columns(frame, swept) if k not in (x, y)]
    cells = fig.cell_table(frame, [x] if y is None else [y, x])
    lo, hi, why = fig.colour_range(cells)
    st.caption(
        "Mean best held-out accuracy per cell, ± the standard deviation of the trials it averages "
        f"({', '.join(averaged) or 'nothing'} averaged)."
        + (f" Colours span {lo:.1f}–{hi:.1f}%: {why}." if y is not None else "")
    )


def _archived() -> None:
    archived = list_archived(root)
    if not archived:
        return
    with st.expander(f"Archived runs ({len(archived)})"):
        labels = {r.id: f"{safe_label(r)} · {r.state} · {r.id}" for r in archived}
        rid = st.selectbox("Archived run", list(labels), format_func=labels.get, key="tune_archived")
        a, b = st.columns(2)
        if a.button("Restore", key="tune_restore"):
            _act(restore_run, rid, f"Restored {rid}.")
        if b.button("Delete for good", key="tune_delete_archived"):
            try:
                delete_run(root, rid, archived=True)
                st.toast(f"Deleted {rid}.")
            except (ValueError, OSError) as exc:
                st.error(f"Not deleted: {exc}")
            st.rerun()


live()
ui.finish(export.runs_snippet(app_config.public_path(root)))  # never a server path in the browser
