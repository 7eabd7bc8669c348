"""Opacity sync: the value of the overlay figures' in-browser opacity slider, back in Python.

The figures' own sliders restyle the heatmaps in the browser (instant, no rerun), but a Plotly
slider's position never reaches Python, so every rerun used to start the figures again from the
preferred opacity and the exports ignored the slider. This invisible component (``st.components.v2``,
inline JS, nothing fetched) listens to those sliders and reports the stop where the user left one:
the callback stores it as the preferred opacity, so the next figures start there and the PNGs match.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import streamlit as st
from streamlit.components.v2 import component

__all__ = ["opacity_sync"]

_COMPONENT = component(
    "cam_dashboard_opacity_sync",
    js=(Path(__file__).with_name("opacity_sync.js")).read_text(encoding="utf-8"),
)


def opacity_sync(selector: str, opacity: float, on_change: Callable[[float], None], key: str = "opacity_sync") -> None:
    """Mount the listener for the plot divs matching ``selector``; ``on_change(value)`` runs before the rerun."""

    def _changed() -> None:
        value = (st.session_state.get(key) or {}).get("opacity")
        if isinstance(value, int | float):
            on_change(float(value))

    _COMPONENT(key=key, data={"selector": selector, "opacity": opacity}, on_opacity_change=_changed)
