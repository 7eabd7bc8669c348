"""The main area: header, image switcher, layer tree, classes, overlays, scores, downloads.

``*_ui`` functions read widgets and return plain values; ``show_*`` functions draw
values (figures come from :mod:`dashboard.figures`). Widget callbacks only write
session state through :mod:`dashboard.state`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial

import numpy as np
import streamlit as st
import torch

from cam_core.engine import resolve_classes
from cam_core.engine.methods import METHODS
from cam_core.errors import CamError
from dashboard import exports
from dashboard.compute import Bundle, ImageItem, ViewResult
from dashboard.figures import PLOTLY_CONFIG, Panel, overlay_figure, scores_figure
from dashboard.sidebar import Display
from dashboard.state import K, UrlView, set_classes, set_layer, toggle_class
from dashboard.widgets.model_tree import model_tree_ui

__all__ = [
    "HOW_TO_READ",
    "classes_ui",
    "find_classes_ui",
    "image_ui",
    "layer_panel",
    "show_exports",
    "show_header",
    "show_model_info",
    "show_overlays",
    "show_scores",
    "topk_ui",
]

HOW_TO_READ = (
    "**How to read this:** each panel is the photo as the model saw it (resized, cropped) under a class "
    "activation map: where the chosen layer's features raised that class's score. *ReLU'd* shows positive "
    "evidence only, each map scaled to its own maximum (empty = no positive evidence). *Signed* shows the raw "
    "map around zero: warm for the class, cool against it. Hover for values; the slider under a figure fades "
    "the maps."
)
MAX_COLUMNS = 4  # panels per row of a figure; more classes wrap into another figure
SCORE_ROWS = 10  # top classes in the scores chart (selected ones are added)


_CSS = """
<style>
/* Less empty space above the title: the first overlay should be visible without scrolling. */
[data-testid="stMainBlockContainer"] { padding-top: 2.5rem; }
</style>
"""


def show_header() -> None:
    """Title and the short guide."""
    st.html(_CSS)
    st.title(":material/local_fire_department: Class activation maps", anchor=False)
    st.caption(HOW_TO_READ)


def show_model_info(bundle: Bundle, device: str, layer: str | None) -> None:
    """Badges for the model, device and layer; a loud badge for untrained weights; the loader's notes."""
    model = bundle.model
    with st.container(horizontal=True, gap="small", key="model_info"):
        st.badge(model.name, icon=":material/neurology:", color="blue")
        st.badge(f"{len(model.class_names)} classes · input {model.input_size[0]}×{model.input_size[1]}", color="gray")
        st.badge(device, icon=":material/memory:", color="gray")
        if layer:
            st.badge(f"layer {layer}", icon=":material/layers:", color="violet")
        if not model.pretrained:
            st.badge("UNTRAINED WEIGHTS: maps mean nothing", icon=":material/warning:", color="red")
    if model.notes:
        with st.expander("Notes about this model", expanded=not model.pretrained):
            for note in model.notes:
                st.markdown(f"- {note}")


def image_ui(items: Sequence[ImageItem], url: UrlView) -> ImageItem:
    """Which image to show (the others stay loaded, and their maps stay cached).

    An image that just arrived (an upload, a sample switched on, a new camera snapshot) is
    shown at once: that is what the user added it for, and in a live demo there is no time
    to hunt for it in the switcher.
    """
    labels = [item.label for item in items]
    seen = st.session_state.get(K.IMAGES_SEEN)
    st.session_state[K.IMAGES_SEEN] = {(item.label, item.digest) for item in items}
    arrived = [item.label for item in items if seen is not None and (item.label, item.digest) not in seen]
    if arrived:
        st.session_state[K.IMAGE] = arrived[0]
    elif st.session_state.get(K.IMAGE) not in labels:
        wanted = url.image if url.image in labels else labels[0]
        st.session_state[K.IMAGE] = wanted
    if len(items) > 1:
        st.segmented_control("Image", labels, key=K.IMAGE, required=True)
    return items[labels.index(st.session_state[K.IMAGE])]


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
        on_select=partial(set_layer, bundle.spec.key),
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


def topk_ui(url: UrlView, num_classes: int, ctx: tuple[str, str], ranking: Callable[[], Sequence[int] | None]) -> int:
    """How many top classes are preselected; changing it resets the selection to the new top-k.

    ``ranking`` gives the image's classes by decreasing probability (``None`` before its first look).
    """
    limit = min(20, num_classes)
    if K.TOPK not in st.session_state:
        st.session_state[K.TOPK] = max(1, min(url.k or 3, limit))
    st.session_state[K.TOPK] = min(st.session_state[K.TOPK], limit)

    def reset() -> None:
        order = ranking()
        if order is not None:
            set_classes(ctx, list(order[: st.session_state[K.TOPK]]))

    return int(
        st.number_input(
            "Top-k",
            1,
            limit,
            key=K.TOPK,
            on_change=reset,
            help="Preselect the k most probable classes (resets the selection).",
        )
    )


def _find(ctx: tuple[str, str], names: Sequence[str], logits: np.ndarray) -> None:
    text = (st.session_state.get(K.CLASS_FIND) or "").strip()
    if not text:
        return
    try:
        ids = resolve_classes(text, torch.from_numpy(logits[None]), names)[0].tolist()
    except CamError as exc:
        st.session_state[K.CLASS_MSG] = str(exc)
        return
    current = st.session_state[K.CLASSES].get(ctx, [])
    set_classes(ctx, [*current, *(i for i in ids if i not in current)])
    st.session_state[K.CLASS_FIND] = ""
    st.session_state[K.CLASS_MSG] = None


def classes_ui(ctx: tuple[str, str], names: Sequence[str]) -> list[int]:
    """Selected classes: a picker over every class, searchable by name or index."""
    picked = st.multiselect(
        "Classes (type to search by name or index)",
        list(range(len(names))),
        format_func=lambda i: f"{names[i]} · {i}",
        key=K.CLASS_PICKER,
        on_change=lambda: set_classes(ctx, st.session_state[K.CLASS_PICKER]),
        placeholder="Pick classes to explain",
        wrap=True,
    )
    return list(picked)


def find_classes_ui(ctx: tuple[str, str], names: Sequence[str], logits: np.ndarray) -> None:
    """A box that adds classes by name or index (several, comma-separated); unknown names get a message."""
    st.text_input(
        "Add classes",
        key=K.CLASS_FIND,
        on_change=_find,
        args=(ctx, names, logits),
        placeholder="e.g. tabby, 285 or top5, then Enter",
        help="Names (exact, any case) or indices, comma-separated; top5 adds the five most probable.",
    )
    if st.session_state.get(K.CLASS_MSG):
        st.error(st.session_state[K.CLASS_MSG], icon=":material/search_off:")


def show_overlays(
    view: ViewResult,
    ids: Sequence[int],
    names: Sequence[str],
    methods: Sequence[str],
    display: Display,
    untrained: bool,
) -> None:
    """One figure per method (classes side by side, views stacked), each with its own opacity slider."""
    if untrained:
        st.warning("Untrained (random) weights: these maps say nothing about the image.", icon=":material/warning:")
    if not ids:
        st.info("No class selected: pick one above, or click a bar in the scores.", icon=":material/touch_app:")
        return
    for m in methods:
        title = METHODS[m].title
        st.markdown(f"##### {title}")
        if m in view.errors:
            st.error(f"{title} at this layer: {view.errors[m]}", icon=":material/error:")
            continue
        drawn = [c for c in ids if (m, c) in view.maps]
        for start in range(0, len(drawn), MAX_COLUMNS):
            chunk = drawn[start : start + MAX_COLUMNS]
            panels = [
                Panel(
                    # Two lines, so side-by-side titles do not run into each other on a narrow screen.
                    title=f"{names[c]} ({c})<br><span style='font-size:0.85em'>p = {view.probs[c]:.1%}</span>",
                    cam=view.maps[(m, c)].up,
                    name=f"{names[c]} · {title}",
                )
                for c in chunk
            ]
            fig = overlay_figure(
                view.background,
                panels,
                views=display.views,
                cmap=display.cmap,
                signed_cmap=display.signed_cmap,
                opacity=display.opacity,
                panel_height=min(300, 720 // len(chunk)),  # about square panels in the main column
            )
            st.plotly_chart(fig, config=PLOTLY_CONFIG, key=f"overlay_{m}_{start}")
    if view.computed:
        st.caption(f"Computed {len(view.computed)} maps in {view.seconds:.2f} s; the rest came from the cache.")
    else:
        st.caption("All maps from the cache: nothing was computed for this view.")


def _bar_clicked(ctx: tuple[str, str], chart_key: str) -> None:
    event = st.session_state.get(chart_key) or {}
    points = (event.get("selection") or {}).get("points") or []
    clicked = []
    for point in points:
        data = point.get("customdata")
        data = data[0] if isinstance(data, list) and data else data
        if isinstance(data, int | float) and int(data) not in clicked:
            clicked.append(int(data))
    for cid in clicked:
        toggle_class(ctx, cid)
    # A fresh chart next run: no lingering selection, so the same bar can be clicked again.
    st.session_state[K.CHART_NONCE] = st.session_state.get(K.CHART_NONCE, 0) + 1


def show_scores(ctx: tuple[str, str], view: ViewResult, ids: Sequence[int], names: Sequence[str]) -> None:
    """Probability and logit of the top classes (and any selected below them); a click toggles a class."""
    st.markdown("##### Scores")
    top = np.argsort(-view.probs, kind="stable")[:SCORE_ROWS].tolist()
    shown = top + [c for c in ids if c not in top]
    fig = scores_figure(shown, names, view.probs, view.logits, ids)
    chart_key = f"scores_{st.session_state.get(K.CHART_NONCE, 0)}"
    st.plotly_chart(
        fig,
        config={**PLOTLY_CONFIG, "displayModeBar": False},
        key=chart_key,
        on_select=partial(_bar_clicked, ctx, chart_key),
        selection_mode="points",
    )
    st.caption("Highlighted: explained classes. Click a bar to add or remove its class.")


def show_exports(
    item: ImageItem,
    view: ViewResult,
    ids: Sequence[int],
    names: Sequence[str],
    methods: Sequence[str],
    layer: str,
    display: Display,
    model_name: str,
) -> None:
    """Download buttons; files are built only when clicked."""
    stem = exports.safe_stem(item.label.rsplit(".", 1)[0])
    methods = [m for m in methods if m not in view.errors]
    ups = {key: entry.up for key, entry in view.maps.items()}
    raws = {key: entry.raw for key, entry in view.maps.items()}
    meta = {
        "model": model_name,
        "image": item.label,
        "layer": layer,
        "methods": list(methods),
        "selected_classes": list(ids),
    }
    with st.container(horizontal=True, gap="small", key="downloads"):
        st.download_button(
            "Overlays (PNG, zip)",
            partial(
                exports.overlays_zip,
                view.background,
                ups,
                names,
                stem=stem,
                views=display.views,
                cmap=display.cmap,
                signed_cmap=display.signed_cmap,
                opacity=display.opacity,
            ),
            file_name=f"{stem}_overlays.zip",
            mime="application/zip",
            icon=":material/image:",
            on_click="ignore",
            disabled=not ids,
        )
        st.download_button(
            "Maps (.npz)",
            partial(
                exports.maps_npz,
                logits=view.logits,
                probs=view.probs,
                class_ids=list(ids),
                class_names=names,
                layer=layer,
                methods=list(methods),
                raw=raws,
                up=ups,
            ),
            file_name=f"{stem}_maps.npz",
            mime="application/octet-stream",
            icon=":material/grid_on:",
            on_click="ignore",
            disabled=not ids or not methods,
        )
        st.download_button(
            "Scores (JSON)",
            partial(exports.scores_json, names, view.logits, view.probs, list(ids), meta=meta),
            file_name=f"{stem}_scores.json",
            mime="application/json",
            icon=":material/data_object:",
            on_click="ignore",
        )
        st.download_button(
            "Scores (CSV)",
            partial(exports.scores_csv, names, view.logits, view.probs, list(ids)),
            file_name=f"{stem}_scores.csv",
            mime="text/csv",
            icon=":material/table:",
            on_click="ignore",
        )
