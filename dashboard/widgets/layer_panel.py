"""The layer panel: the model tree with the picked layer's facts, shared by the image and video pages."""

from __future__ import annotations

from functools import partial

import streamlit as st

from dashboard.model import Bundle
from dashboard.state import set_layer
from dashboard.widgets.model_tree import model_tree_ui

__all__ = ["layer_panel"]


def layer_panel(bundle: Bundle, layer: str) -> None:
    """The model tree; picking a row stores the layer for this model."""
    info = next((n for n in bundle.nodes if n["name"] == layer), None)
    st.subheader("Layer", anchor=False)
    if info is not None:
        st.markdown(f"`{layer}` · {info['type']} · {info['shape']}")
        for hint in info["hints"]:
            st.caption(f":material/info: {hint['text'][0].upper()}{hint['text'][1:]}")
    model_tree_ui(
        bundle.nodes,
        selected=layer,
        model_key=bundle.spec.key,
        on_select=partial(_layer_picked, bundle.spec.key),
    )
    if bundle.recommended and layer != bundle.recommended:
        st.button(
            f"Back to the recommended layer ({bundle.recommended})",
            on_click=set_layer,
            args=(bundle.spec.key, bundle.recommended),
            type="tertiary",
            icon=":material/star:",
            key="back_to_recommended",
        )


def _layer_picked(model_key: str, layer: str) -> None:
    """A click in the tree: the page follows; a toast says so where the tree sits under the overlays."""
    set_layer(model_key, layer)
    st.toast(f"Layer `{layer}`: the maps above now show it.", icon=":material/layers:")
