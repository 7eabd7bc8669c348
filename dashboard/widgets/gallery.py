"""Gallery widget: a page of thumbnails with their maps; a click opens one, the opacity changes in the browser.

Built on ``st.components.v2`` with the HTML/CSS/JS in this folder passed inline (no build step,
no CDN). Python owns the items (and the opacity it last heard); the widget reports two things:
the ``open`` trigger with the clicked row's id, and the ``opacity`` state when the slider is let go.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import streamlit as st

from dashboard.widgets import inline_component

__all__ = ["gallery_ui"]

_COMPONENT = inline_component("gallery")


def gallery_ui(
    items: Sequence[dict[str, Any]],
    *,
    opacity: float,
    on_open: Callable[[int], None],
    on_opacity: Callable[[float], None],
    columns: int = 6,
    key: str = "gallery",
) -> None:
    """Draw the thumbnails; ``on_open(row id)`` and ``on_opacity(value)`` run as callbacks before the rerun.

    Args:
        items: ``{id, base, heat, title, lines, badge, blank, problem[, boxes]}`` per thumbnail (see gallery.js).
        opacity: The maps' opacity to start from.
        on_open: Called with the id of a clicked thumbnail.
        on_opacity: Called with the opacity where the user left the slider.
        columns: Thumbnails per row.
        key: Widget key.
    """

    def _open() -> None:
        row = (st.session_state.get(key) or {}).get("open")
        if isinstance(row, int):
            on_open(row)

    def _opacity() -> None:
        value = (st.session_state.get(key) or {}).get("opacity")
        if isinstance(value, int | float):
            on_opacity(float(value))

    _COMPONENT(
        key=key,
        data={"items": list(items), "opacity": opacity, "columns": columns},
        on_open_change=_open,
        on_opacity_change=_opacity,
    )
