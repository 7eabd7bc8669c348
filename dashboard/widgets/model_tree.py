"""Model-tree widget: the module hierarchy, collapsible and searchable, single selection.

Built on ``st.components.v2`` with the HTML/CSS/JS in this folder passed inline:
no build step, no CDN, nothing fetched at run time. Each row shows the module's
name, type and output shape; rows where no CAM can be taken are greyed (the
reason is the tooltip) and cannot be picked; the recommended layer carries a
badge; hints (inside a residual branch, pre-activation, …) are chips with their
explanation as tooltip.

The selection lives in ``st.session_state`` (Python owns it, the tree mirrors it):
a click sends a ``select`` trigger, a callback stores the name before the rerun,
and the next run draws the tree with that row selected. That also lets the URL or
a test set the layer without a browser.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import streamlit as st

from cam_core.models.layers import shape_text
from dashboard.widgets import inline_component

__all__ = ["format_shape", "model_tree_ui", "signed_output", "tree_nodes"]

_COMPONENT = inline_component("model_tree")


def format_shape(shape: Sequence[int] | None, time_dim: int | None = None) -> str:
    """``(1280, 7, 7)`` → ``1280×7×7``, a video map's time axis marked (``512×t2×7×7``); unknown → ``–``."""
    return shape_text(shape, time_dim, missing="–")


# Compact chips (the tree is narrow) and their legend words; each chip's tooltip has the full sentence.
_CHIPS = {
    "residual_branch": ("res", "in a residual branch"),
    "pre_activation": ("\u00b1", "signed (pre-activation)"),
    "no_patch_gradient": ("\u2205\u2207", "no patch gradient"),
    "shared_module": ("\u00d72", "shared module"),
}


def _hint(key: str, hint_text: dict[str, str]) -> dict[str, str]:
    short, word = _CHIPS.get(key, (key.replace("_", " "), key.replace("_", " ")))
    return {"key": key, "short": short, "word": word, "text": hint_text.get(key, key)}


def signed_output(nodes: Sequence[dict[str, Any]], layer: str) -> bool:
    """Whether ``layer``'s output can be negative (its ``pre_activation`` hint; an unknown layer counts as signed)."""
    node = next((n for n in nodes if n["name"] == layer), None)
    return node is None or any(h.get("key") == "pre_activation" for h in node["hints"])


def tree_nodes(layers: Sequence[Any], hint_text: dict[str, str]) -> list[dict[str, Any]]:
    """Plain JSON rows for the widget from ``cam_core.models.layers.LayerInfo`` records."""
    nodes = []
    for info in layers:
        if not info.name:  # the root module is the tree itself
            continue
        nodes.append(
            {
                "name": info.name,
                "label": info.name.rsplit(".", 1)[-1],
                "type": info.type,
                "shape": format_shape(info.out_shape, getattr(info, "time_dim", None)),
                "camable": bool(info.camable),
                "reason": info.reason or "",
                "recommended": bool(info.recommended),
                "why": getattr(info, "why", None) or "",
                "hints": [_hint(h, hint_text) for h in info.hints if h != "recommended"],
                "parent": info.parent or "",
            }
        )
    return nodes


def model_tree_ui(
    nodes: list[dict[str, Any]],
    *,
    selected: str | None,
    model_key: str,
    on_select: Callable[[str], None],
    key: str = "model_tree",
    height: int = 520,
) -> None:
    """Draw the tree; a click on a CAM-able row calls ``on_select(name)`` before the rerun.

    Args:
        nodes: rows from :func:`tree_nodes`.
        selected: the layer to show as selected.
        model_key: identifies the model (a new model resets expansion and filter).
        on_select: stores the new layer name (runs as a widget callback).
        key: widget key.
        height: list height in pixels (the list scrolls).
    """

    def _changed() -> None:
        name = (st.session_state.get(key) or {}).get("select")
        if isinstance(name, str) and name:
            on_select(name)

    _COMPONENT(
        key=key,
        data={"nodes": nodes, "selected": selected, "model": model_key, "height": height},
        on_select_change=_changed,
    )
