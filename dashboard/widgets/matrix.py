"""Confusion-matrix widget: a grid of HTML cells coloured by their row share; a click filters the gallery to a cell.

Built on ``st.components.v2`` with the HTML/CSS/JS in this folder passed inline (no build step, no CDN), as
the gallery is: a Plotly heatmap (with an invisible scatter over it, Streamlit's ``on_select`` ignoring heatmap
clicks) cost the browser's main thread over a second per page load and per click. Python owns the data and the
selected cell; the widget reports a click (or Enter on a focused cell) as the ``cell`` trigger, ``[row, col]``,
once per click, the same cell again included.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import streamlit as st

from dashboard.widgets import inline_component

__all__ = ["matrix_ui"]

_COMPONENT = inline_component("matrix")


def _cell(value: object) -> tuple[int, int] | None:
    """A trigger's ``[row, col]`` as integers (anything else: ``None``)."""
    if isinstance(value, list | tuple) and len(value) == 2 and all(isinstance(v, int) for v in value):
        return int(value[0]), int(value[1])
    return None


def matrix_ui(data: dict[str, Any], *, on_cell: Callable[[int, int], None], key: str = "matrix") -> None:
    """Draw the matrix; ``on_cell(row, col)`` runs as a callback before the rerun a click starts.

    Args:
        data: ``{rows, cols, row_labels, col_labels, counts, text, share, selected, cell}`` (see matrix.js), from
            :func:`dashboard.views.dataset.figures.confusion_data`.
        on_cell: Called with the clicked cell's row and column.
        key: Widget key.
    """

    def _clicked() -> None:
        cell = _cell((st.session_state.get(key) or {}).get("cell"))
        if cell is not None:
            on_cell(*cell)

    _COMPONENT(key=key, data=data, on_cell_change=_clicked)
