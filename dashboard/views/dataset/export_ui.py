"""The Dataset page's downloads: the filtered, sorted table as CSV or Parquet, built only when clicked."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import streamlit as st

from dashboard.views.dataset import table as tb

__all__ = ["export_ui"]


def export_ui(n: int, rows: Callable[[], pa.Table], root: Path) -> None:
    """Two download buttons for the ``n`` rows ``rows()`` gives (paths relative to the data ``root``)."""
    c = st.columns([1, 1, 2])
    c[0].download_button(
        f"Download these {n:,} rows (CSV)", lambda: tb.export_csv(rows(), root),
        file_name="results_filtered.csv", mime="text/csv", icon=":material/download:", key="ds_csv",
        help="The filtered, sorted table (no maps: those stay in the results' Parquet files).",
    )
    c[1].download_button(
        "… as Parquet", lambda: tb.export_parquet(rows(), root),
        file_name="results_filtered.parquet", mime="application/vnd.apache.parquet", icon=":material/download:",
        key="ds_parquet", help="The same table as Parquet (lists such as the boxes kept as lists).",
    )
