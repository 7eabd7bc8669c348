"""The Dataset page's report download: the opened run as one self-contained HTML file (:mod:`cam_core.report`),
built when the button is clicked. Its own module, so the page calls it in one line, under the results."""

from __future__ import annotations

from pathlib import Path

import streamlit as st
from streamlit.runtime.scriptrunner import get_script_run_ctx

from cam_core.batch.query import ResultsQuery
from cam_core.report import dataset_report
from dashboard.views.dataset.ui import DS
from dashboard.views.image.exports import safe_stem

__all__ = ["report_button"]


def report_button(results: ResultsQuery, root: Path) -> None:
    """A download button for the report of the opened run; paths in it are shown from the data root ``root``
    (a report leaves the server).

    Its maps are the method the gallery shows when the button is clicked, not when the button was drawn: the
    gallery is a fragment of its own, which reruns without this button. The file is built on Streamlit's download
    thread, outside the session's script context, so the session's state is held here and read then.
    """
    folder, methods = Path(results.folder), list(results.methods)
    ctx = get_script_run_ctx()
    live = ctx.session_state if ctx is not None else None

    def build() -> str:
        method = live[DS.MAP_METHOD] if live is not None and DS.MAP_METHOD in live else None
        return dataset_report(folder, method=method if method in methods else None, root=root)

    st.download_button(
        "Download report (HTML)",
        build,
        file_name=f"{safe_stem(folder.name)}_report.html",
        mime="text/html",
        icon=":material/description:",
        key="ds_report",
        on_click="ignore",
        help="One self-contained file to hand on: the summary, per-class table, confusion matrix and the odd "
        "predictions with the maps of the method shown; opens offline in any browser and prints well.",
    )
