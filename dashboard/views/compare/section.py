"""Model A beside model B on the image page's photo, under the workspace.

Drawn after model A's overlays and scores (so loading B never holds them back): B loaded through the same bounded
model cache, its maps through the same map cache (:func:`~dashboard.views.image.compute.compute_view`), each
model at its own layer and fit; then both models' top classes, one line per explained class (map shift, peak
shift, probability change) and one figure per class: A's map, B's map and B − A, all over the photo itself
(each model's map carried back through its own fit). The numbers are :mod:`cam_core.analysis.compare_photo`'s.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from dataclasses import replace
from functools import partial

import numpy as np
import plotly.graph_objects as go
import streamlit as st
from PIL import Image

from cam_core.analysis.compare import match_classes
from cam_core.analysis.compare_photo import (
    ClassComparison,
    ModelSide,
    compare_classes,
    map_difference,
    photo_grid,
    prediction_changed,
    resized,
)
from cam_core.engine.methods import METHODS
from cam_core.report import SecondModel
from dashboard import shell
from dashboard.caches import figure_cache
from dashboard.display import Display
from dashboard.feedback import guarded
from dashboard.figures import PLOTLY_CONFIG, Panel, format_prob, overlay_figure, panel_height
from dashboard.model import Bundle, ImageItem, ModelSpec
from dashboard.state import K, UrlView, set_layer
from dashboard.text import plain
from dashboard.views.image.compute import ViewResult, compute_view
from dashboard.views.image.report_export import comparison_button, report_html

__all__ = ["show_comparison"]

FIGURE_WIDTH = 1100  # the section spans the page under the workspace: three panels a row
TOP_ROWS = 5
SHIFT_HELP = (
    "**map shift** = 1 − the correlation of the two ReLU'd maps over the photo: 0 the same place, 1 unrelated, up "
    "to 2 opposite (a map that only changed in strength did not move). **peak shift**: how far the maps' hottest "
    "points lie apart, in the photo's pixels. **B − A**: B's map minus A's, each scaled to its own maximum (or "
    "both to the larger one, with *Same colour scale*): red where B looks more, blue where it looks less."
)


def show_comparison(
    bundle_a: Bundle,
    item: ImageItem,
    layer_a: str,
    methods: Sequence[str],
    view_a: ViewResult,
    ids: Sequence[int],
    spec_b: ModelSpec,
    url: UrlView,
    display: Display,
) -> str | None:
    """The comparison section; returns model B's layer (for the URL; ``None`` while B is not loaded)."""
    st.markdown("### Model A vs model B", help=SHIFT_HELP)
    bundle_b = shell.load(spec_b, K.B_PREFIX)
    if bundle_b is None:
        return None
    names_a, names_b = bundle_a.model.class_names, bundle_b.model.class_names
    controls = st.container(horizontal=True, gap="medium", vertical_alignment="bottom", key="compare_controls")
    with controls:
        _layer_a_ui(bundle_a, layer_a)
        layer_b = _layer_b_ui(bundle_b, url)
        method = _method_ui(methods)
        shared = st.toggle("Same colour scale", key=K.COMPARE_SHARED,
                           help="Both maps (and their difference) on one scale: the larger maximum of the two. Off: "
                           "each map on its own scale (where each model looks, whatever its map's magnitude).")
    if layer_b is None:
        st.error("No layer of model B gives a spatial map, so no CAM can be taken.", icon=":material/error:")
        return None
    item_b = replace(item, fit=item.fit if item.fit in bundle_b.model.fits else bundle_b.model.fit)
    matched = match_classes(names_a, names_b)
    ids_b = list(dict.fromkeys(j for c in ids if (j := matched[c]) is not None))
    with st.spinner(f"Computing model B's {METHODS[method].title} maps…"):
        view_b = guarded("computing model B's maps", compute_view, bundle_b, item_b, layer=layer_b, methods=[method],
                         classes=ids_b, k=max(1, len(ids)))
    if view_b is None:
        return layer_b
    view_b = view_b[0].with_probabilities(view_a.probs_kind)
    _models_line(bundle_a, bundle_b, layer_a, layer_b, item, item_b, view_a, view_b)
    for who, view in (("A", view_a), ("B", view_b)):
        if method in view.errors:
            st.error(f"{METHODS[method].title} at model {who}'s layer: {plain(view.errors[method])}",
                     icon=":material/error:")
            return layer_b
    side_a, side_b = _side(view_a, method, names_a), _side(view_b, method, names_b)
    rows = compare_classes(side_a, side_b, list(ids), item.image.size)
    _top_classes(side_a, side_b)
    second = SecondModel(bundle_b.model.name, layer_b, item_b.fit, method, rows, _top(side_a), _top(side_b),
                         bool(shared))
    comparison_button(partial(report_html, bundle_a, item, view_a, list(ids), list(methods), layer_a, display, second))
    background = np.asarray(item.image.convert("RGB").resize(photo_grid(item.image.size), Image.Resampling.BILINEAR))
    for row in rows:
        st.markdown(_summary(row, view_a.probs_kind))
        if row.shift is None:
            continue
        key = ("compare", bundle_a.spec.key, bundle_b.spec.key, item.key, item_b.fit, layer_a, layer_b, method,
               row.id_a, shared, display.cmap, display.signed_cmap, display.opacity, view_a.probs_kind)
        fig = figure_cache().get_or_build(key, partial(_figure, background, row, shared, display))
        st.plotly_chart(fig, config=PLOTLY_CONFIG, key=f"compare_{row.id_a}")
    return layer_b


def _top(side: ModelSide) -> tuple[str, float]:
    top = int(np.argmax(side.probs))
    return side.names[top], float(side.probs[top])


def _side(view: ViewResult, method: str, names: Sequence[str]) -> ModelSide:
    maps = {c: entry.raw for (m, c), entry in view.maps.items() if m == method}
    return ModelSide(names=names, logits=view.logits, probs=view.probs, place=view.place, maps=maps)


def _layer_label(bundle: Bundle, name: str) -> str:
    return f"★ {name}" if name == bundle.recommended else name


def _layers(bundle: Bundle) -> list[str]:
    """The CAM-able layers in the model tree's order."""
    return [node["name"] for node in bundle.nodes if node["name"] in bundle.camable]


def _layer_a_ui(bundle: Bundle, layer: str) -> None:
    """Model A's layer (the same selection as the layer tree's: the whole page follows)."""
    options = _layers(bundle)
    key = f"compare_layer_a_{bundle.spec.key}"
    st.session_state[key] = layer  # the tree may have changed it since
    st.selectbox("Layer of model A", options, key=key, format_func=partial(_layer_label, bundle), width=260,
                 on_change=lambda: set_layer(bundle.spec.key, st.session_state[key]),
                 help="The same as the layer tree's selection (★ recommended).")


def _layer_b_ui(bundle: Bundle, url: UrlView) -> str | None:
    """Model B's layer: its recommended one until the user picks another; a link's ``layer_b`` applies once."""
    options = _layers(bundle)
    if not options:
        return None
    key = f"{K.B_LAYER}_{bundle.spec.key}"
    if url.layer_b and not st.session_state.get(K.URL_LAYER_B_USED):
        st.session_state[K.URL_LAYER_B_USED] = True
        if url.layer_b in options:
            st.session_state[key] = url.layer_b
        else:
            st.warning(f"The link asks for model B's layer {plain(url.layer_b)}, which it does not have as a CAM-able "
                       "layer; showing the recommended one.", icon=":material/link_off:")
    if st.session_state.get(key) not in options:
        st.session_state[key] = bundle.recommended if bundle.recommended in options else options[-1]
    return st.selectbox("Layer of model B", options, key=key, format_func=partial(_layer_label, bundle), width=260,
                        help="★ recommended: the last spatial map before the head.")


def _method_ui(methods: Sequence[str]) -> str:
    """The method both models are compared with: one of the page's (the first until the user picks another)."""
    methods = list(methods) or ["gradcam"]
    if st.session_state.get(K.COMPARE_METHOD) not in methods:
        st.session_state[K.COMPARE_METHOD] = methods[0]
    if len(methods) == 1:
        return methods[0]
    return st.selectbox("Method", methods, key=K.COMPARE_METHOD, format_func=lambda m: METHODS[m].title, width=200)


def _models_line(
    bundle_a: Bundle, bundle_b: Bundle, layer_a: str, layer_b: str, item: ImageItem, item_b: ImageItem,
    view_a: ViewResult, view_b: ViewResult,
) -> None:
    """Which two models, at which layers and fits; a loud line for untrained weights."""
    size = item.image.size
    st.caption(
        f"**A**: {plain(bundle_a.model.name)} at `{layer_a}` ({view_a.place.describe(*size)}) · "
        f"**B**: {plain(bundle_b.model.name)} at `{layer_b}` ({view_b.place.describe(*size)})"
        + ("" if item_b.fit == item.fit else f" · model B cannot take the fit *{item.fit}*: its own default")
    )
    if bundle_b.spec == bundle_a.spec and layer_a == layer_b and item_b.fit == item.fit:
        st.info("Model B is model A at the same layer: pick another model for B in the sidebar (or another layer "
                "above) to see what changes.", icon=":material/compare:")
    if bundle_b.spec.url_model is None:
        st.caption(":material/link_off: Model B is an upload (or code): a link to this page cannot carry it.")
    if not bundle_b.model.pretrained:
        st.warning("Model B has untrained (random) weights: its maps say nothing about the image.",
                   icon=":material/warning:")


def _top_classes(a: ModelSide, b: ModelSide) -> None:
    """Both models' top classes side by side, and whether the prediction changed."""
    changed = prediction_changed(a.names, a.probs, b.names, b.probs)
    ta, tb = int(np.argmax(a.probs)), int(np.argmax(b.probs))
    verdict = ":red[**prediction changed**]" if changed else "**same prediction**"
    st.markdown(f"Top class: A says **{plain(a.names[ta])}** ({format_prob(a.probs[ta])}), B says "
                f"**{plain(b.names[tb])}** ({format_prob(b.probs[tb])}): {verdict}.")
    cols = st.columns(2)
    for col, who, side in ((cols[0], "A", a), (cols[1], "B", b)):
        top = np.argsort(-side.probs, kind="stable")[:TOP_ROWS]
        col.markdown(f"**Model {who}, top {TOP_ROWS}** (probability · logit)\n\n" + "\n".join(
            f"{i + 1}. {plain(side.names[c])}: {format_prob(side.probs[c])} · {side.logits[c]:.2f}"
            for i, c in enumerate(top)
        ))


def _summary(row: ClassComparison, kind: str) -> str:
    """One line for a class: in B or not, map shift, peak shift and the probability change."""
    name = f"**{plain(row.name)}**"
    if row.id_b is None:
        return (f"{name} ({row.id_a}): :orange[**not in model B**] (it has no class of that name) · A's {kind} p "
                f"{format_prob(row.prob_a)}")
    prob = f"{kind} p {format_prob(row.prob_a)} → {format_prob(row.prob_b)} ({100 * row.prob_change:+.1f} pts)"
    if row.shift is None:
        return f"{name}: no map to compare; {prob}."
    peak = "no peak (a blank map)" if math.isnan(row.shift.peak_px) else f"peak shift {row.shift.peak_px:.0f} px"
    return f"{name}: map shift {row.shift.shift:.2f} (r = {row.shift.correlation:.2f}) · {peak} · {prob}"


def _figure(background: np.ndarray, row: ClassComparison, shared: bool, display: Display) -> go.Figure:
    """A's map, B's map and B − A over the photo (ReLU'd, ReLU'd, signed)."""
    top = max(float(row.map_a.max()), float(row.map_b.max())) if shared else None
    name, size = html.escape(row.name), background.shape[:2]
    panels = [
        Panel(f"A: {name}<br><span style='font-size:0.85em'>p = {format_prob(row.prob_a)}</span>",
              resized(row.map_a, size), f"A · {row.name}", top=top),
        Panel(f"B: {name}<br><span style='font-size:0.85em'>p = {format_prob(row.prob_b)}</span>",
              resized(row.map_b, size), f"B · {row.name}", top=top),
        Panel("B − A<br><span style='font-size:0.85em'>signed: red where B looks more</span>",
              resized(map_difference(row.map_a, row.map_b, shared), size), f"B − A · {row.name}", top=1.0,
              view="signed"),
    ]
    return overlay_figure(background, panels, views=("relu",), cmap=display.cmap, signed_cmap="bwr",
                          opacity=display.opacity, panel_height=panel_height(background.shape[:2], 3, FIGURE_WIDTH))
