"""Data: what am I looking at?"""

import streamlit as st

from cakd_viz import classnames
from cakd_viz.app import bundles, compute, state, ui
from cakd_viz.app import config as app_config
from cakd_viz.app import names as app_names
from cakd_viz.figures import data as fig

ui.title(
    "Data",
    "**What am I looking at?** The open bundle: its samples, classes and models, and how good they are.",
)
sel = state.selection(required=False)
b = sel.bundle

if b is not None:
    info = compute.bundle_summary(sel.key)
    ui.caption(f"Open: {app_config.plain(sel.label)}")
    c = st.columns(5)
    ui.metric(c[0], "samples", f"{info['num_samples']:,}")
    ui.metric(c[1], "classes", f"{info['num_classes']:,}")
    ui.metric(c[2], "students", len(info["students"]))
    ui.metric(c[3], "logit dtype", info["dtype"])
    ui.metric(c[4], "size on disk", f"{info['size_bytes'] / 2**20:,.1f} MiB")
    models = fig.models_table(info)
    left, right = st.columns(2)
    with left:
        ui.subheader("Accuracy and agreement")
        ui.chart(fig.accuracy_figure(models), key="data_accuracy")
    with right:
        ui.subheader("Models")
        ui.table(
            models.drop(columns=["role", "dtype"]),
            name="models",
            headings={"model": "model"},
            key="data_models",
            context=ui.context(student="all"),
        )
        if not info["has_labels"]:
            ui.caption("This bundle has no labels: accuracies and the `target` groupings are unavailable.")
    examples = compute.example_inputs(sel.key, sel.class_names)
    if examples is not None:
        ui.subheader("Example inputs")
        idx, images, captions = examples
        ui.chart(
            fig.image_grid_figure(images, captions),
            f"{len(idx)} samples picked at random (seeded), each with its sample number and true class.",
            key="data_examples",
            config={"displayModeBar": False},
        )
    classes = compute.class_table(sel.key, sel.class_names)
    ui.subheader("Classes")
    if "samples" in classes:
        ui.chart(
            fig.class_count_figure(classes["samples"].to_numpy(), list(classes["name"])), key="data_counts"
        )
    with st.expander(f"All {len(classes):,} class names, and names of your own"):
        ui.caption(
            "Pages show the names in the first column: single letters and digits that look alike (I, l, 1; "
            "O, o, 0) are spelled out, and repeated names get their index. The bundle keeps its own names."
            + (" Names from an uploaded list are in use." if sel.names_token else "")
        )
        ui.table(classes, name="classes", key="data_classes", height=300, context=ui.context(student=None))
        names_file = st.file_uploader(
            f"Use other class names: a .json list of {b.num_classes:,} strings, or a .txt file with one name "
            f"per line (at most {classnames.OVERRIDE_MAX_BYTES // 1000:,} kB)",
            type=["json", "txt"],
            key="data_names_file",
        )
        if names_file is not None and st.session_state.get("_names_seen") != names_file.file_id:
            st.session_state["_names_seen"] = names_file.file_id
            st.session_state["_names_error"] = None
            try:
                state.set_class_names(app_names.store(names_file.getvalue(), names_file.name, b.num_classes))
                st.rerun()
            except ValueError as exc:
                said = f"Class names not changed: {app_config.plain(exc)}"  # it names the browser's file
                st.session_state["_names_error"] = (names_file.file_id, said)
        said = st.session_state.get("_names_error")
        if said and (names_file is None or said[0] != names_file.file_id):
            st.session_state["_names_error"] = said = None
        if said:
            st.error(said[1])
        if sel.names_token and st.button("Use the bundle's own class names", key="data_names_reset"):
            state.set_class_names(None)
            st.rerun()

st.subheader("Open another bundle")
shipped, upload, server = st.tabs(["Shipped sample", "Upload a file", "Server path"])


def _open(source: str, *, typed: bool = False) -> None:
    token = source
    try:
        token = bundles.path_source(source) if typed else source
        state.switch_bundle(token)
    except ValueError as exc:
        st.error(f"Could not open {app_config.shown(token)}: {exc}. The previous bundle stays open.")
        return
    st.rerun()


with shipped:
    names = app_config.available_samples()
    if names:
        pick = st.selectbox("Sample", names, key="data_sample")
        if st.button("Open sample", key="data_open_sample"):
            _open(f"sample:{pick}")
    else:
        st.info("No shipped sample is present; build them with `cakd-viz samples build`.")

with upload:
    try:
        largest, expanded = bundles.upload_limits()
    except ValueError as exc:  # the operator's cap setting is not a number
        st.error(f"Uploads are off: {exc}.")
        largest = 0
    if largest:
        st.caption(
            f"A small .npz, .safetensors or .pt file with arrays `teacher`, `student` (or `student_NAME`), "
            f"optional `labels`, `class_names`, `inputs`; at most {largest / 2**20:,.0f} MB, and at most "
            f"{expanded / 2**20:,.0f} MB of arrays once decompressed; {bundles.UploadQuota.from_settings().describe()}. "
            "Large bundles are opened by server path instead."
        )
        up = st.file_uploader("Logits file", type=list(app_config.UPLOAD_EXTENSIONS), key="data_upload")
        if up is not None and st.session_state.get("_upload_seen") != up.file_id:
            st.session_state["_upload_seen"] = up.file_id
            st.session_state["_upload_error"] = None  # another file: the last one's refusal is gone
            try:
                token = bundles.import_upload(up.name, up.getvalue())  # getvalue(): the bytes, no copy
                _open(token)
            except ValueError as exc:
                name = app_config.shown(bundles.upload_name(up.name))
                st.session_state["_upload_error"] = (
                    up.file_id,
                    sel.source,
                    f"Could not import {name}: {exc}. The previous bundle stays open.",
                )
        said = st.session_state.get("_upload_error")
        # said while that file is in the uploader and the bundle it left open is still the open one
        if said and (up is None or said[:2] != (up.file_id, sel.source)):
            st.session_state["_upload_error"] = said = None
        if said:
            st.error(said[2])

with server:
    roots = app_config.data_roots()
    st.caption(f"Bundle directories under the data roots ({app_config.roots_text(roots)}).")
    found = [app_config.display_path(p, roots) for p in app_config.find_bundles(roots)]
    if found:
        pick = st.selectbox("Found bundles", found, key="data_found")
        if st.button("Open found bundle", key="data_open_found"):
            _open(f"path:{pick}")
    typed = st.text_input("…or type a path", key="data_path", placeholder="runs/my-run/bundle")
    if st.button("Open path", key="data_open_path") and typed:
        _open(typed, typed=True)
ui.finish()
