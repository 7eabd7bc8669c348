"""The Dataset page's report download: the opened run as one self-contained HTML file (:mod:`cam_core.report`),
built when the button is clicked. Its own module, so the page's layout calls it in one line."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import streamlit as st

from cam_core.report import dataset_report
from dashboard.views.image.exports import safe_stem

__all__ = ["report_button"]


def report_button(folder: Path, root: Path, method: str) -> None:
    """A download button for the report of the run in ``folder`` with ``method``'s maps; paths in it are shown
    relative to the data root ``root`` (a report leaves the server)."""
    st.download_button(
        "Download report (HTML)",
        partial(dataset_report, folder, method=method, root=root),
        file_name=f"{safe_stem(folder.name)}_report.html",
        mime="text/html",
        icon=":material/description:",
        key="ds_report",
        on_click="ignore",
        help="One self-contained file to hand on: the summary, per-class table, confusion matrix and the odd "
        "predictions with their maps; opens offline in any browser and prints well.",
    )
