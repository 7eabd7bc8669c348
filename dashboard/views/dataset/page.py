"""The Dataset page (``/dataset``): explain a whole folder, then find the odd predictions in a gallery.

Choose a folder under the server's data root (or upload a zip), the layer and the method; the
model is the sidebar's. Run (resumable: a rerun adds only new files), or open earlier results
(``/dataset?folder=<path under the data root>``). Then: the summary, a clickable confusion matrix,
a paged, sortable, filterable gallery of thumbnails with their maps (click one to open it on the
image page with the same model and layer), and the filtered table as CSV.
"""

from __future__ import annotations

import streamlit as st

from cam_core.errors import CamError
from dashboard import dataroot, shell
from dashboard.feedback import boundary, show_error
from dashboard.views.dataset import compare_ui, ui
from dashboard.views.dataset.report_button import report_button

__all__ = ["main", "page"]


def page() -> st.Page:
    """This page for ``st.navigation``."""
    return st.Page(boundary(main, "drawing the Dataset page"), title="Dataset", icon=":material/photo_library:",
                   url_path="dataset")


def main() -> None:
    """Wire the page: the data root, the source and run, then the results."""
    shared = shell.current()
    st.title(":material/photo_library: Dataset", anchor=False)
    st.caption(
        "Explain every image of a folder, then sort and filter the gallery to find the odd predictions: wrong ones, "
        "unsure ones, blank maps. Click a thumbnail to debug it on the image page."
    )
    try:
        root = dataroot.data_root()
    except CamError as exc:  # the operator's setting: its path is not shown to visitors
        show_error(exc, "opening the data root")
        return
    ui.read_link(root)
    bundle = shared.bundle
    if bundle is None:
        st.info("Choose a model in the sidebar to run a folder.", icon=":material/arrow_back:")
    else:
        with st.container(border=True, key="ds_source_box"):
            src = ui.source_ui(root, bundle)
            if src is not None:
                ui.run_ui(root, bundle, src, shared.fit)
    compared = compare_ui.shown_comparison(root, st.session_state.get(ui.DS.RESULTS))
    if compared is not None:  # a comparison of two models (python -m cam_core compare): its own view
        compare_ui.compare_ui(root, compared)
        return
    results = ui.open_results(root)
    if results is not None:
        ui.results_ui(root, results, bundle, shell.page("image"))
        report_button(results, root)

