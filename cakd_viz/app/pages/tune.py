"""Tune: which weights help this student?

Each run or sweep is a separate process writing a folder under the runs directory (docs/architecture.md §6);
this page launches them, then only reads those folders, live, through a fragment that polls them.
"""

import streamlit as st

from cakd_viz import export
from cakd_viz.app import config as app_config
from cakd_viz.app import links, run_actions, run_status, sweep_view, tracker, trajectory_panel, tune_form, ui
from cakd_viz.app.config import plain
from cakd_viz.figures import runs as fig
from cakd_viz.models import ARCHS
from cakd_viz.runs import cancel, engine, loss_names, results, runs_dir, store
from cakd_viz.runs.presets import PRESETS
from cakd_viz.runs.results import NOTE_MAX_CHARS, read_note, write_note

POLL_S = 2.0  # how often the live part re-reads the run folders
CONFIRM = "tune_confirm"  # session key: the run whose deletion waits for a confirmation
ss = st.session_state
root = runs_dir()

ui.title(
    "Tune",
    "**Which weights help this student?** Train a student with cross-entropy plus a distillation loss, "
    "re-weighting BCD, SCD and WCD, pick the weights on a validation split and compare with the KD and "
    f"DKD baselines. Runs train in their own processes and write `{app_config.public_path(root)}`; they "
    f"keep going if you close this page. {run_status.concurrency_text()}.",
)

if "tune_name" not in ss:  # first visit: RunConfig's run settings, the first preset, validation 10%
    tune_form.start(ss)
params = tune_form.prepare(ss)  # the chosen loss's parameters, the ones not drawn since at their defaults
top = st.columns(3)
top[0].selectbox("Preset", list(PRESETS), key="tune_preset", on_change=tune_form.apply_preset, args=(ss,))
top[1].selectbox("Loss", loss_names(), key="tune_lossname", format_func=str.upper)
top[2].selectbox(
    "Data",
    list(tune_form.DATA),
    key="tune_data",
    on_change=tune_form.apply_data,
    args=(ss,),
    help="Shipped samples; type any data spec below.",
)
st.caption(tune_form.preset_note(ss))

with st.form("tune_form"):
    a, b, c = st.columns(3)
    a.text_input("Teacher (model spec)", key="tune_teacher")
    a.text_input(
        "Student: an architecture (from scratch) or a model spec (fine-tuned)",
        key="tune_student",
        help=f"Architectures: {', '.join(ARCHS)}. Model specs as in `cakd-viz extract`.",
    )
    a.text_input("Run name (optional)", key="tune_name")
    b.markdown(f"**{ss['tune_lossname'].upper()}**" + ("" if params else ": no distillation, nothing to set"))
    for param in params:
        tune_form.draw(b, param)
    c.number_input("Epochs", min_value=1, step=1, key="tune_epochs")
    c.number_input("Batch size", min_value=1, step=16, key="tune_batch_size")
    c.number_input("Learning rate", min_value=1e-5, step=0.01, format="%.4f", key="tune_lr")
    c.number_input("Seed", min_value=0, step=1, key="tune_seed")
    v = c.columns(2)
    v[0].number_input("Validation split", min_value=0.0, max_value=0.9, step=0.05, key="tune_val_split")
    v[1].number_input("Validation seed", min_value=0, step=1, key="tune_val_seed")
    c.caption(
        "Weights are picked on validation: this fraction of the training data, per class and seeded, is "
        "held out and evaluated after every epoch; the test split once, at the end (0: no validation, "
        "every epoch on the test split)."
    )
    with st.expander("Your own data (instead of the sample above)"):
        own = st.columns(2)
        own[0].text_input(
            "Training data spec", key="tune_own_data", placeholder="e.g. data/train.npz or a folder"
        )
        own[1].text_input("Held-out data spec", key="tune_own_test", placeholder="e.g. data/test.npz")
    with st.expander("Sweep: values to try (comma-separated; empty = keep the value above)"):
        cols = st.columns(4)
        for i, p in enumerate(tune_form.sweep_params(ss["tune_lossname"])):
            cols[i % 4].text_input(
                p.label, key=f"tune_grid_{p.name}", placeholder=tune_form.placeholder(p), help=p.help
            )
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
        st.success(tune_form.launch(ss, root, sweep=sweep_clicked))
        if warning := tune_form.clipped_grouping(ss):
            st.warning(plain(warning))
    except (ValueError, OSError) as exc:
        st.error(tune_form.refusal(exc))


@st.fragment(run_every=POLL_S)
def live() -> None:
    """Everything that reads run folders: re-read every POLL_S seconds, so new runs show everywhere."""
    runs = results.list_runs(root)
    if not runs:
        st.info("No runs yet: pick a preset and launch one above.")
        archived()
        return
    for r in [r for r in runs if r.active]:  # queued or running, here or elsewhere
        with st.container(border=True):
            info, stop = st.columns([5, 1])
            fraction, text = run_status.progress(r)
            info.progress(fraction, text=text)
            if stop.button("Cancel", key=f"cancel_{r.id}"):
                cancel(r.path)
                st.rerun()
            steps = results.metrics_frame(r, "step")
            if not steps.empty:
                st.plotly_chart(fig.terms_figure(steps), key=f"terms_{r.id}")
                st.caption(fig.STEP_NOTE)
    table = results.tracker_table(runs)
    by_id = {r.id: r for r in runs}
    runs_tracker(table)
    for r in [r for r in runs if r.state in ("failed", store.CORRUPT)][:5]:  # the newest five
        with st.expander(f"{r.state}: {plain(r.label)} ({r.id})"):
            st.error(plain(app_config.scrub(r.error or "no error recorded")))  # text, no server paths
            st.code(run_status.public_log(r), language=None)
    run_view(table, by_id)
    compare(table, by_id)
    sweeps()
    archived()


def runs_tracker(table) -> None:
    st.subheader("Runs")
    f1, f2, f3, f4 = st.columns([2, 2, 3, 2])
    states = f1.multiselect("State", sorted(table["state"].unique()), key="tune_f_state", placeholder="any")
    losses = f2.multiselect(
        "Loss", sorted(table["loss"].dropna().unique()), key="tune_f_loss", placeholder="any"
    )
    text = f3.text_input("Search name, id, sweep or note", key="tune_f_text", max_chars=100)
    sort = f4.selectbox("Sort by", list(tracker.SORTS), key="tune_sort")
    every = st.toggle(
        "All columns", key="tune_all_columns", help="Also warm-up schedule, batch size, student, …"
    )
    shown = tracker.sorted_table(tracker.filtered(table, states=states, losses=losses, text=text), sort)
    keys = list(tracker.columns()) if every else tracker.default_columns()
    view = tracker.view(shown, keys)
    st.dataframe(
        view,
        hide_index=True,
        key="tune_table",
        column_config=tracker.column_config(keys),
        width="stretch",
        height=min(420, 38 + 35 * len(view)),
    )
    st.caption(
        f"{len(shown):,} of {len(table):,} runs. Best acc is on the validation split (what weights are picked "
        f"on); a run marked '{tracker.NO_VALIDATION}' has none. Sweep trials are named by the values they "
        "vary. Pick a run below to see its curves, write a note, archive or delete it."
    )
    ui.download(view, name="runs", context={"runs directory": root.name}, key="dl_runs")


def run_view(table, by_id) -> None:
    st.subheader("A run")
    labels = tracker.run_labels(table)
    rid = links.choice(
        st.selectbox, "Run", tracker.newest_first(table), key="tune_run", name="run", format_func=labels.get
    )
    links.show(("run",))
    r = by_id[rid]
    st.caption(plain(tracker.settings_line(table, rid)))  # names from the run folder: text
    epochs = results.metrics_frame(r)
    left, right = st.columns(2)
    with left:
        if r.epochs:
            curves = {labels[rid]: epochs}
            st.plotly_chart(fig.curves_figure(curves, "val_acc", splits=[r.eval_split]), key="tune_run_acc")
        else:
            st.info("Waiting for the first epoch: the curves appear when it ends.")
    with right:
        if not epochs.empty and all(k in epochs for k in fig.HELD_OUT[:4]):
            raw = st.toggle("Raw terms (instead of the parts that add up to the KL)", key="tune_run_raw")
            st.plotly_chart(fig.held_out_terms_figure(epochs, raw=raw), key="tune_run_terms")
            st.caption(tracker.held_out_note(r))
        elif r.epochs:
            st.info(
                "This run's epochs carry no held-out decomposition (val_kl, val_bcd, …): it was made before runs "
                "recorded it, so only its accuracy and losses can be shown."
            )
    with st.form(f"note_form_{rid}", border=False):
        note = st.text_area(
            "Note", value=read_note(r.path), max_chars=NOTE_MAX_CHARS, height=80, key=f"note_{rid}"
        )
        if st.form_submit_button("Save note"):
            run_actions.act(
                write_note, r.path, note, done=f"Note saved for {r.id}.", refused="The note was not saved"
            )
    finished, busy = r.bundle_path is not None, r.active
    wait = " Cancel it first." if busy else ""
    buttons = (  # (label, key, disabled, help, what a click does)
        (
            "Open in explorer",
            "tune_open",
            not finished,
            "Opens the run's own bundle.",
            lambda: run_actions.open_in_explorer(r),
        ),
        (
            "Compare with the bundle's students",
            "tune_compare_bundle",
            not finished,
            "The run's student beside the students of the bundle it was trained against (same data and teacher).",
            lambda: run_actions.compare_with_bundle(r),
        ),
        (
            "Archive",
            "tune_archive",
            busy,
            "Moves the run into the runs directory's .archive folder." + wait,
            lambda: run_actions.act(results.archive_run, root, rid, done=f"Archived {rid}."),
        ),
        (
            "Delete…",
            "tune_delete",
            busy,
            "Deletes the run's folder, after you confirm." + wait,
            lambda: ss.update({CONFIRM: rid}),
        ),
    )
    for where, (label, key, disabled, help_text, click) in zip(
        st.columns([2, 3, 1.4, 1.4]), buttons, strict=True
    ):
        if where.button(label, key=key, disabled=disabled, width="stretch", help=help_text):
            click()
    if ss.get(CONFIRM) == rid:  # the deletion waits for a confirmation
        st.warning(
            f"Delete run {rid} and everything in its folder (weights, bundle, log)? This cannot be undone."
        )
        yes, no = st.columns(2)
        if yes.button(f"Yes, delete {rid}", type="primary", key="tune_delete_yes"):
            ss.pop(CONFIRM)
            run_actions.act(results.delete_run, root, rid, done=f"Deleted {rid}.")
        if no.button("Keep it", key="tune_delete_no"):
            ss.pop(CONFIRM)
            st.rerun()
    if r.epochs:
        trajectory_panel.run_part(r)


def compare(table, by_id) -> None:
    st.subheader("Compare runs")
    with_epochs = [i for i in tracker.newest_first(table) if by_id[i].epochs]
    if not with_epochs:
        st.caption("Waiting for the first epoch of a run: curves appear once one has ended.")
        return
    labels = tracker.run_labels(table)
    chosen = run_actions.pick_compared(with_epochs, labels)
    metric = links.worded(st.selectbox, "Curve", fig.METRICS, key="curve", most=6)
    curves = {labels[i]: results.metrics_frame(by_id[i]) for i in chosen}
    splits = [by_id[i].eval_split for i in chosen]
    st.plotly_chart(fig.curves_figure(curves, metric, splits=splits), key="tune_curves")
    lacking = [plain(by_id[i].label) for i in chosen if metric not in curves[labels[i]]]
    if lacking:
        st.caption(
            f"Without {fig.METRICS[metric]}: {', '.join(lacking)}"
            + (" (made before runs recorded the held-out terms)." if metric in fig.HELD_OUT else ".")
        )
    if fig.held_out_word(splits) == "held-out":
        st.caption(
            "Runs marked 'no validation: test split' show test-split numbers, the others validation ones."
        )
    if metric in fig.HELD_OUT:
        st.caption(fig.HELD_OUT_NOTE)
    trajectory_panel.compare_part([by_id[i] for i in chosen], labels)


def sweeps() -> None:
    found = results.list_sweeps(root)
    if not found:
        return
    st.subheader("Sweeps")
    names = {s.id: f"{s.name} · {s.state} · {s.counts_text()}" for s in found}
    sid = links.choice(
        st.selectbox, "Sweep", list(names), key="tune_sweep", name="sweep", format_func=names.get
    )
    links.show(("sweep",))
    s = next(s for s in found if s.id == sid)
    if s.error:
        st.error(plain(app_config.scrub(s.error)))
    if s.state in ("queued", "running") and st.button("Cancel sweep", key=f"cancel_sweep_{s.id}"):
        engine.cancel_sweep(s.path)
        st.rerun()
    frame, split, note = sweep_view.heatmap_trials(results.sweep_frame(list(s.trials)))
    keys = sweep_view.swept(s, frame)
    if not keys:  # nothing varied: its trials as the runs tracker shows runs
        trials, shown = tracker.trials_view(frame)
        st.dataframe(trials, hide_index=True, column_config=tracker.column_config(shown))
        return
    sweep_view.axes(ss, sid, frame, keys)
    x = st.selectbox("Across", keys, key=sweep_view.X)
    down = st.selectbox("Down", sweep_view.down_options(keys, x, ss), key=sweep_view.Y)
    y = None if down == sweep_view.AVERAGED else down
    st.plotly_chart(fig.sweep_heatmap(frame, x, y, split=split), key="tune_heatmap")
    st.caption(sweep_view.caption(frame, x, y, keys, split, note))


def archived() -> None:
    runs = results.list_archived(root)
    if not runs:
        return
    with st.expander(f"Archived runs ({len(runs)})"):
        labels = {r.id: f"{r.label} · {r.state} · {r.id}" for r in runs}
        rid = st.selectbox("Archived run", list(labels), format_func=labels.get, key="tune_archived")
        a, b = st.columns(2)
        if a.button("Restore", key="tune_restore"):
            run_actions.act(results.restore_run, root, rid, done=f"Restored {rid}.")
        if b.button("Delete for good", key="tune_delete_archived"):
            run_actions.act(results.delete_run, root, rid, done=f"Deleted {rid}.", archived=True)


live()
ui.finish(export.runs_snippet(app_config.public_path(root)))  # never a server path in the browser
