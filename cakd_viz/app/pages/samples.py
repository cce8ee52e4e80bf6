"""Samples: find any sample by its classes, predictions, failures and terms, and open it."""

import streamlit as st

from cakd_viz import export
from cakd_viz.app import compute, explorer, links, state, ui
from cakd_viz.app.config import plain
from cakd_viz.embedding import LIMITS, METHODS
from cakd_viz.explore import CLASS_COLUMNS, filter_samples, page_count, page_rows, sample_table
from cakd_viz.figures import explore as fig
from cakd_viz.terms import PART, heading

TABS = ["Samples", "Map"]
COLORS = {"family": "family", "class": "class", "term": "largest part"}
TILES_PER_ROW = 8

ui.title(
    "Samples",
    "**Which samples are these?** Filter every sample by its classes, the students' predictions, failures "
    "and the part of the KL that dominates; sort them by any term; open one on the Sample page.",
)
sel = state.selection()
explorer.follow_open()  # a tile's button or a point of the map, clicked in the last run
b = sel.bundle
res = state.results()  # A (and B when set)
a, rb = res[sel.student], res.get(sel.compare) if sel.compare else None
db = None if rb is None else rb.d  # B's decomposition, when a student B is set
names = list(sel.class_names)
family, family_words = compute.families_of_classes(sel.key, sel.class_names, sel.standardize)

f, pairs = explorer.filters(
    sel, a.d, family_words, lambda loose: compute.confusions_here(a, rb, loose, family=family)
)
by, descending = explorer.sort_controls()
# what the downloads say they hold
view_context = ui.context(**explorer.words(f, names, family_words, by, descending))
# the bundle's indices of the samples that pass, in order (numpy masks: milliseconds, even for 1,280,000)
rows = filter_samples(a.d, db, filters=f, family=family, by=by, descending=descending)
n = len(a.d)
ui.markdown(f"**{len(rows):,} of {n:,} samples match** ({a.scope()}; {sel.grouping} at {sel.setting}).")
explorer.confusion_pills(pairs, names, f.pair, labels=b.labels is not None)

grid_tab, map_tab = links.tabs(TABS, explorer.K_TAB)
if grid_tab.open:
    with grid_tab:
        pages = page_count(len(rows), explorer.PER_PAGE)
        page = links.pager(
            f"Page (1 – {pages:,})",
            1,
            pages,
            key=explorer.K_PAGE,
            says=lambda v: f"page {v:,}",
            button_keys=("samples_prev", "samples_next"),
        )
        shown = page_rows(rows, page, explorer.PER_PAGE)
        table = sample_table(a.d, shown, d_b=db, class_names=names)
        images = compute.thumbnails(sel.key, tuple(int(i) for i in shown)) if len(shown) else None
        if images is not None:
            refs = table["label_name" if "label_name" in table else "teacher_name"]
            tiles = list(zip(table["index"], refs, table["a_says"], strict=True))
            cols = [c for _ in range(0, len(tiles), TILES_PER_ROW) for c in st.columns(TILES_PER_ROW)]
            for col, image, (i, ref, says) in zip(cols, images, tiles, strict=False):  # rows of TILES_PER_ROW
                col.image(image, width="stretch")
                col.button(
                    f"#{i}",
                    key=f"tile_{i}",
                    on_click=explorer.open_sample,
                    args=(int(i),),
                    width="stretch",
                    help=f"Open sample {i} on the Sample page",
                )
                col.caption(plain(ref) if ref == says else f"{plain(ref)} → {plain(says)}")
        view = table.drop(columns=list(CLASS_COLUMNS), errors="ignore")
        view["dominant"] = view["dominant"].map(PART)
        where = st.expander("These samples as a table") if images is not None else st.container()
        with where:
            row = ui.table(
                view,
                name="samples",
                a=sel.student,
                b=sel.compare or "B",
                key="samples_rows",
                selectable=images is None,
                height=420,
                caption=f"Page {page:,} of {pages:,}: samples {len(shown) and (page - 1) * explorer.PER_PAGE + 1:,}"
                f"–{(page - 1) * explorer.PER_PAGE + len(shown):,} of the {len(rows):,} that match.",
                context=view_context,
            )
            if row is not None:
                i = int(table["index"].iloc[row])
                st.button(
                    f"Open sample #{i} on the Sample page",
                    type="primary",
                    on_click=explorer.open_sample,
                    args=(i,),
                )
            elif images is None:
                ui.caption("Select a row to open it on the Sample page.")

        def _every() -> bytes:
            whole = sample_table(a.d, rows, d_b=db, class_names=names)
            whole["dominant"] = whole["dominant"].map(PART)
            frame = whole.rename(columns=lambda c: heading(c, a=sel.student, b=sel.compare or "B"))
            return export.to_csv_bytes(frame, view_context)

        st.download_button(
            f"Download all {len(rows):,} matching rows as CSV",
            data=_every,
            file_name=ui.file_stem("samples") + ".csv",
            mime="text/csv",
            on_click="ignore",
            disabled=not len(rows),
        )
if map_tab.open:
    with map_tab:
        left, right = st.columns(2)
        method = links.worded(
            left.radio,
            "Placed by",
            METHODS,
            key=explorer.K_METHOD,
            horizontal=True,
            help=f"PCA: a linear view of every sample (up to {LIMITS['pca']:,}). t-SNE keeps neighbours together; "
            f"it is slow: at most {LIMITS['tsne']:,} samples, a minute or more.",
        )
        color = links.worded(right.radio, "Colour by", COLORS, key=explorer.K_COLOR, horizontal=True)
        with st.spinner(f"Placing the samples with {METHODS[method]}…"):
            m = compute.sample_map(sel.key, sel.temperature, method)
        points = compute.map_points(a, m, color, family, family_words, sel.class_names, rows)
        ui.chart(
            fig.map_figure(m, **points),
            f"Each point a sample, placed by {METHODS[method]} of the teacher's probabilities at T = "
            f"{sel.temperature:g}: {m.scope()}; {int(points['matched'].sum()):,} of them match the filters "
            "(in colour). "
            "Hover for a sample's classes and KL; click a point to open it on the Sample page.",
            key="samples_map",
            on_select=lambda: explorer.open_point("samples_map"),
            selection_mode="points",
        )
ui.finish(explorer.snippet(sel, f, by, descending))
