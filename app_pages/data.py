"""Data: what am I looking at?"""

import streamlit as st

from appkit import bundles, compute, state
from appkit import config as app_config
from cakd_viz.figures import data as fig

st.title("Data")
st.markdown(
    "**What am I looking at?** The open bundle: its samples, classes and models, and how good they are."
)
sel = state.selection(required=False)
b = sel.bundle

if b is not None:
    info = compute.bundle_summary(sel.key)
    st.text(f"Open: {sel.label}")
    c = st.columns(5)
    c[0].metric("samples", f"{info['num_samples']:,}")
    c[1].metric("classes", f"{info['num_classes']:,}")
    c[2].metric("students", len(info["students"]))
    c[3].metric("logit dtype", info["dtype"])
    c[4].metric("size on disk", f"{info['size_bytes'] / 2**20:,.1f} MiB")
    models = fig.models_table(info)
    left, right = st.columns(2)
    with left:
        st.subheader("Accuracy and agreement")
        st.plotly_chart(fig.accuracy_figure(models), width="stretch")
    with right:
        st.subheader("Models")
        st.dataframe(
            models.drop(columns=["role", "dtype"]),
            hide_index=True,
            width="stretch",
            column_config={
                "accuracy": st.column_config.ProgressColumn(
                    "accuracy", format="percent", min_value=0, max_value=1
                ),
                "agreement": st.column_config.ProgressColumn(
                    "agrees with teacher", format="percent", min_value=0, max_value=1
                ),
            },
        )
        if not info["has_labels"]:
            st.caption("This bundle has no labels: accuracies and the `target` groupings are unavailable.")
    examples = compute.example_inputs(sel.key)
    if examples is not None:
        st.subheader("Example inputs")
        idx, images, captions = examples
        st.plotly_chart(
            fig.image_grid_figure(images, captions), width="stretch", config={"displayModeBar": False}
        )
    classes = compute.class_table(sel.key)
    st.subheader("Classes")
    if "samples" in classes:
        st.plotly_chart(
            fig.class_count_figure(classes["samples"].to_numpy(), list(classes["name"])), width="stretch"
        )
    with st.expander(f"All {len(classes):,} class names"):
        st.dataframe(classes, hide_index=True, width="stretch")

st.subheader("Open another bundle")
shipped, upload, server = st.tabs(["Shipped sample", "Upload a file", "Server path"])


def _open(source: str) -> None:
    try:
        state.switch_bundle(source)
    except ValueError as exc:
        st.error(f"Could not open {app_config.shown(source)}: {exc}. The previous bundle stays open.")
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
            f"{expanded / 2**20:,.0f} MB of arrays once decompressed. Large bundles are opened by server path "
            "instead."
        )
        up = st.file_uploader("Logits file", type=list(app_config.UPLOAD_EXTENSIONS), key="data_upload")
        if up is not None and st.session_state.get("_upload_seen") != up.file_id:
            st.session_state["_upload_seen"] = up.file_id
            try:
                token = bundles.import_upload(
                    up.name, up.getvalue()
                )  # getvalue(): the upload's bytes, no copy
                st.session_state["_upload_error"] = None
                _open(token)
            except ValueError as exc:
                name = app_config.shown(bundles.upload_name(up.name))
                st.session_state["_upload_error"] = (
                    f"Could not import {name}: {exc}. The previous bundle stays open."
                )
        if up is not None and st.session_state.get("_upload_error"):
            st.error(st.session_state["_upload_error"])

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
        try:
            token = bundles.path_source(typed)
        except ValueError as exc:
            st.error(f"Could not open {app_config.shown(typed)}: {exc}. The previous bundle stays open.")
        else:
            _open(token)
