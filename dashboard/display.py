"""How overlays are drawn: views, colormaps, opacity (the figures' own slider, synced back).

Drawing only: nothing here changes what is computed.

The toolbar sits with the overlay figures (their fragment reruns alone when it changes);
:func:`current` gives the same values to other parts of the page (the debug section's figures).
"""

from __future__ import annotations

from dataclasses import dataclass

import streamlit as st

from cam_core.render import DIVERGING
from dashboard.widgets.opacity_sync import opacity_sync

__all__ = [
    "OPACITY", "SEQUENTIAL", "SIGNED_OFF_NOTE", "VIEWS", "Display", "current", "display_toolbar", "show_signed",
    "sync_opacity",
]

SEQUENTIAL = ["jet", "inferno", "viridis"]  # jet first: the CLI's PNG default, readable on a projector
VIEWS = ("relu", "signed")  # the rows' order, whatever order they were switched on in
VIEW_WORDS = {"relu": "ReLU'd", "signed": "Signed"}
OPACITY = "opacity"
_KEYS = {"views": "views", "cmap": "cmap", "signed_cmap": "signed_cmap"}
# The views pills have one key per kind of layer output: signed layers show both rows by default; a layer whose
# output cannot be negative (after a ReLU-like activation) shows the ReLU'd row only, its signed row being mostly
# one colour that doubles the figure. Each kind keeps the user's own choice.
VIEWS_NONNEG = "views_nonneg"
_VIEWS_NOW = "_views_key"
SIGNED_OFF_NOTE = (
    "Signed view off by default: this layer's output cannot be negative (it comes after a ReLU-like activation), "
    "so its signed map is mostly one colour and repeats the ReLU'd one. Switch it on under *Views*."
)


@dataclass(frozen=True)
class Display:
    """How overlays are drawn (no effect on what is computed)."""

    views: tuple[str, ...] = VIEWS
    cmap: str = SEQUENTIAL[0]
    signed_cmap: str = DIVERGING[0]
    opacity: float = 0.6


def _ordered(views: object) -> tuple[str, ...]:
    chosen = set(views or ())
    return tuple(v for v in VIEWS if v in chosen) or ("relu",)


def current() -> Display:
    """The display the user chose (defaults before the toolbar was ever drawn)."""
    s = st.session_state
    return Display(
        views=_ordered(s.get(s.get(_VIEWS_NOW, _KEYS["views"]), VIEWS)),
        cmap=s.get(_KEYS["cmap"], Display.cmap),
        signed_cmap=s.get(_KEYS["signed_cmap"], Display.signed_cmap),
        opacity=float(s.get(OPACITY, Display.opacity)),
    )


def _set_opacity(value: float) -> None:
    st.session_state[OPACITY] = round(min(1.0, max(0.0, value)), 1)


def sync_opacity(selector: str) -> None:
    """Keep the preferred opacity where the user left the figures' own slider (see the widget's docstring)."""
    opacity_sync(selector, float(st.session_state.get(OPACITY, Display.opacity)), _set_opacity)


def show_signed() -> None:
    """Switch the signed view on, whatever the layer (the debug section's fix)."""
    st.session_state[_KEYS["views"]] = list(VIEWS)
    st.session_state[VIEWS_NONNEG] = list(VIEWS)


def display_toolbar(signed_output: bool = True) -> Display:
    """Views and colormaps, in one row above the overlays.

    Opacity has one control, each figure's own slider: it restyles in the browser, and where the user leaves it
    comes back through :func:`sync_opacity` as the preferred opacity (the next figures and the PNG downloads).

    Args:
        signed_output: Whether the layer's output can be negative (the layer tree's ``±`` hint); if not, the
            signed view starts off, and a caption says why while it is off.
    """
    key = _KEYS["views"] if signed_output else VIEWS_NONNEG
    st.session_state[_VIEWS_NOW] = key
    st.session_state.setdefault(key, list(VIEWS) if signed_output else ["relu"])
    st.session_state.setdefault(OPACITY, Display.opacity)
    with st.container(horizontal=True, gap="small", vertical_alignment="bottom", key="display_toolbar"):
        views = st.pills(
            "Views",
            list(VIEWS),
            selection_mode="multi",
            format_func=VIEW_WORDS.get,
            key=key,
            help="ReLU'd: positive evidence only, scaled to its maximum. Signed: the raw map, symmetric around 0 "
            "(warm = for the class, cool = against it).",
        )
        cmap = st.selectbox("Colormap", SEQUENTIAL, key=_KEYS["cmap"], width=120)
        signed_cmap = st.selectbox("Signed colormap", list(DIVERGING), key=_KEYS["signed_cmap"], width=130)
    if not signed_output and "signed" not in (views or ()):
        st.caption(SIGNED_OFF_NOTE)
    return Display(views=_ordered(views), cmap=cmap, signed_cmap=signed_cmap, opacity=float(st.session_state[OPACITY]))
