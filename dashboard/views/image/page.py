"""The image page (``/``): class activation maps of one image at a time.

It opens on the offline default model with a sample photo already explained. ``main()``
only wires the pieces: sidebar inputs → cached engine calls → figures.

What reruns when (each part reruns alone, so a click costs what it changes):

- the whole page: a new model, image, fit, method or layer (the tree's click);
- :func:`_view` (a fragment): a class toggle, top-k, the class search: classes, scores,
  overlays, exports, and the debug section when it is open;
- :func:`_overlays` (a fragment inside it): a display change (views, colormaps, opacity):
  the overlay figures and the exports only;
- each debug tab: its own widgets (see :mod:`dashboard.views.image.debug.section`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from functools import partial

import streamlit as st

from cam_core.engine.methods import METHODS
from dashboard import shell, state
from dashboard.display import current as current_display
from dashboard.display import display_toolbar
from dashboard.feedback import boundary, bounded, guarded
from dashboard.model import Bundle, ImageItem, ModelSpec
from dashboard.text import plain
from dashboard.views.compare.section import show_comparison
from dashboard.views.compare.sidebar import compare_ui
from dashboard.views.image import debug, panels
from dashboard.views.image.compute import (
    ViewResult,
    cached_scores,
    compute_view,
    is_slow,
    pending,
    ranking,
)
from dashboard.views.image.sidebar import images_ui, methods_ui
from dashboard.widgets.layer_panel import layer_panel
from dashboard.widgets.model_tree import signed_output


def page() -> st.Page:
    """This page for ``st.navigation`` (the default page, ``/``)."""
    return st.Page(boundary(main, "drawing the image page"), title="Image", icon=":material/image:", default=True)


def main() -> None:
    """Wire the page: sidebar inputs, the shared model, the selected image and layer, then the workspace."""
    shared = shell.current()
    url = state.read_url_once()
    with st.sidebar:
        st.header("Images", anchor=False)
        items = images_ui(url)
        st.header("Methods", anchor=False)
        methods_box = st.container()  # filled once the layer is known: the costs depend on its channels
        st.header("Compare", anchor=False)
        spec_b = compare_ui(url)
    panels.show_header()
    bundle = shared.bundle
    if bundle is None:
        with methods_box:
            methods_ui(url)
        st.info("Choose a model in the sidebar.", icon=":material/arrow_back:")
        return
    layer = _layer(bundle, url)
    with methods_box:
        methods = methods_ui(url, layer, bundle.channels.get(layer or ""))
    panels.show_model_info(bundle, shared.device, layer)
    if layer is None:
        st.error("No layer of this model gives a spatial map, so no CAM can be taken (see the notes above).")
        return
    if not items:
        st.info("Upload an image, pick a sample photo or take a snapshot (sidebar).", icon=":material/image:")
        return
    with st.container(key="image_switcher"):  # always there: what follows keeps its place (and its DOM)
        item = replace(panels.image_ui(items, url), fit=shared.fit)
    with st.container(key="workspace"):
        main_col, rail = st.columns([2.3, 1.05], gap="medium")
    with rail:
        scores = st.container(key="scores_box")
        tree = st.container(key="tree_box")
    compare_box = st.container(key="compare")  # under the workspace, the page's whole width
    with main_col:
        _view(bundle, item, layer, tuple(methods), url, scores, spec_b, compare_box)
    with tree:  # after the overlays, so the first overlay is drawn first
        layer_panel(bundle, layer)


def _layer(bundle: Bundle, url: state.UrlView) -> str | None:
    """The selected layer; a layer named in the URL applies once, if the model has it."""
    if url.layer and not st.session_state.get(state.K.URL_LAYER_USED):
        st.session_state[state.K.URL_LAYER_USED] = True
        if url.layer in bundle.camable:
            state.set_layer(bundle.spec.key, url.layer)
        else:
            st.warning(
                f"The link asks for layer {plain(url.layer)}, which this model does not have as a CAM-able "
                "layer; showing the recommended one.",
                icon=":material/link_off:",
            )
    layer = state.layer_for(bundle.spec.key, bundle.recommended or "")
    return layer or None


@st.fragment
@bounded("drawing the classes and maps")
def _view(
    bundle: Bundle,
    item: ImageItem,
    layer: str,
    methods: tuple[str, ...],
    url: state.UrlView,
    scores_box,
    spec_b: ModelSpec | None,
    compare_box,
) -> None:
    """Classes, overlays, downloads and the debug section; the scores go to the right rail, the comparison with
    model B (when one is chosen) under the workspace, last: loading B never holds model A's results back."""
    state.honour_full_rerun()
    names = bundle.model.class_names
    ctx = (bundle.spec.key, item.digest)
    row = st.container(horizontal=True, vertical_alignment="bottom", gap="small", key="class_row")
    cls_col, find_col, k_col = row.container(width="stretch"), row.container(width=230), row.container(width=92)
    with k_col:
        k = panels.topk_ui(url, len(names), ctx, lambda: ranking(bundle.spec.key, item.key))
    wanted = st.session_state.setdefault(state.K.CLASSES, {}).get(ctx)
    if wanted is None and url.classes and not st.session_state.get(state.K.URL_CLASSES_USED):
        st.session_state[state.K.URL_CLASSES_USED] = True
        wanted = [c for c in url.classes if 0 <= c < len(names)] or None
    notes = st.container()
    figures = st.container(key="figures")
    with figures:
        view = _compute(bundle, item, layer, list(methods), wanted, k)
    if view is None:  # the maps failed (the message is shown): the classes stay editable, to undo what failed
        scores = cached_scores(bundle.spec.key, item.key)
        if scores is not None:
            with cls_col:
                panels.classes_ui(ctx, names)
            with find_col:
                panels.find_classes_ui(ctx, names, scores[0])
        return
    result, ids = view
    result = result.with_probabilities(st.session_state.get(state.K.PROBS) or "softmax")
    state.class_selection(ctx, ids)
    with cls_col:
        ids = panels.classes_ui(ctx, names)
    with find_col:
        panels.find_classes_ui(ctx, names, result.logits)
    with notes:
        panels.class_messages_ui(ctx, names, result.probs)
    with figures:
        _overlays(bundle, item, layer, methods, result, tuple(ids))
    with scores_box:  # after the overlays: its chart, sent first, had Plotly's script run before the stills were drawn
        panels.show_scores(ctx, item, result, ids, names)
    shared = bundle.spec.url_model
    state.write_url(
        model=shared[0] if shared else None,
        weights=shared[1] if shared else None,
        layer=layer,
        methods=methods,
        classes=ids,
        image=item.sample,
        k=k,
        fit=item.fit if item.fit != bundle.model.fit else None,
    )
    panels.blank_maps_note(result, ids, names, methods)
    debug.debug_toggle(bundle, item, layer, result, ids, methods)
    layer_b = None
    if spec_b is not None:
        with compare_box:
            layer_b = show_comparison(bundle, item, layer, methods, result, ids, spec_b, url, current_display())
    state.write_url_compare(spec_b.url_model if spec_b is not None else None, layer_b)


@st.fragment
@bounded("drawing the overlays")
def _overlays(
    bundle: Bundle, item: ImageItem, layer: str, methods: Sequence[str], view: ViewResult, ids: tuple[int, ...]
) -> None:
    """The display toolbar, one overlay figure per method, and the downloads (which show what is on screen)."""
    state.honour_full_rerun()
    display = display_toolbar(signed_output(bundle.nodes, layer))
    names = bundle.model.class_names
    panels.show_overlays(bundle, item, layer, view, ids, methods, display)
    panels.show_exports(bundle, item, view, ids, names, methods, layer, display)


def _compute(
    bundle: Bundle, item: ImageItem, layer: str, methods: list[str], classes: list[int] | None, k: int
) -> tuple[ViewResult, list[int]] | None:
    """Maps for the view; a spinner when something is computed, a progress bar for the slow methods."""
    todo = pending(bundle, item, layer=layer, methods=methods, classes=classes)
    run = partial(
        guarded, "computing the maps", compute_view, bundle, item, layer=layer, methods=methods, classes=classes, k=k
    )
    if not todo:
        return run()
    if not is_slow(todo):
        with st.spinner(f"Computing {', '.join(METHODS[m].title for m in todo)}…"):
            return run()
    with st.status("Running perturbation methods: one forward pass per channel…", expanded=True) as status:
        bar = st.progress(0.0)
        view = run(progress=lambda f, msg: bar.progress(min(1.0, f), text=msg))
        status.update(label="Maps ready" if view else "Failed", state="complete" if view else "error", expanded=False)
    return view
