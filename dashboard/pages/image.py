"""The image page (``/``): class activation maps of one image at a time.

It opens on the offline default model with a sample photo already explained.
``main()`` only wires the pieces: sidebar inputs → cached engine calls → figures.
"""

from __future__ import annotations

from dataclasses import replace
from functools import partial

import streamlit as st

from cam_core.engine.methods import METHODS
from cam_core.models import WeightsUnavailable
from dashboard import debug, panels, state
from dashboard.compute import (
    Bundle,
    ImageItem,
    ModelSpec,
    ViewResult,
    compute_view,
    device_label,
    is_slow,
    load_bundle,
    pending,
    ranking,
)
from dashboard.feedback import guarded, show_error
from dashboard.sidebar import Display, display_ui, images_ui, methods_ui, model_ui


@st.cache_resource(show_spinner=False)
def _offline() -> set[str]:
    """Specs whose pretrained weights could not be fetched (so the check is not repeated every rerun)."""
    return set()


def _load(spec: ModelSpec) -> Bundle | None:
    """The model for ``spec``; offline torchvision weights fall back to random ones, said loudly."""
    if spec.key in _offline():
        st.warning(
            f"Pretrained weights for {spec.name} cannot be downloaded (offline); showing the same "
            "architecture with random, untrained weights.",
            icon=":material/cloud_off:",
        )
        spec = replace(spec, weights=None)
    try:
        with st.spinner(f"Loading {spec.name} and tracing its layers…"):
            return load_bundle(spec)
    except WeightsUnavailable as exc:
        _offline().add(spec.key)
        st.warning(f"{exc}. Showing random, untrained weights instead.", icon=":material/cloud_off:")
        return guarded("loading the model", load_bundle, replace(spec, weights=None))
    except Exception as exc:
        show_error(exc, "loading the model")
        return None


def _layer(bundle: Bundle, url: state.UrlView) -> str | None:
    """The selected layer; a layer named in the URL applies once, if the model has it."""
    if url.layer and not st.session_state.get(state.K.URL_LAYER_USED):
        st.session_state[state.K.URL_LAYER_USED] = True
        if url.layer in bundle.camable:
            state.set_layer(bundle.spec.key, url.layer)
        else:
            st.warning(
                f"The link asks for layer {url.layer!r}, which this model does not have as a CAM-able "
                "layer; showing the recommended one.",
                icon=":material/link_off:",
            )
    layer = state.layer_for(bundle.spec.key, bundle.recommended or "")
    return layer or None


def _sidebar(url: state.UrlView) -> tuple[ModelSpec | None, str, list[ImageItem], list[str], Display]:
    with st.sidebar:
        st.header("Model", anchor=False)
        spec = model_ui(url)
        device = device_label()
        st.caption(f":material/memory: Computing on **{device}**")
        st.header("Images", anchor=False)
        items = images_ui(url)
        st.header("Methods", anchor=False)
        methods = methods_ui(url)
        st.header("Display", anchor=False)
        display = display_ui()
    return spec, device, items, methods, display


def _workspace(
    bundle: Bundle, item: ImageItem, layer: str, methods: list[str], url: state.UrlView, display: Display
) -> None:
    """Classes, overlays and downloads; scores and the layer tree in the right rail."""
    names = bundle.model.class_names
    ctx = (bundle.spec.key, item.digest)
    main_col, rail = st.columns([2.3, 1.05], gap="medium")
    with main_col:
        cls_col, find_col, k_col = st.columns([2.8, 1.4, 0.62], vertical_alignment="bottom")
        with k_col:
            k = panels.topk_ui(url, len(names), ctx, lambda: ranking(*ctx))
        wanted = st.session_state.setdefault(state.K.CLASSES, {}).get(ctx)
        if wanted is None and url.classes and not st.session_state.get(state.K.URL_CLASSES_USED):
            st.session_state[state.K.URL_CLASSES_USED] = True
            wanted = [c for c in url.classes if 0 <= c < len(names)] or None
        figures = st.container()
        with figures:
            view = _compute(bundle, item, layer, methods, wanted, k)
    with rail:
        scores = st.container()
        panels.layer_panel(bundle, layer)
    if view is None:
        return
    result, ids = view
    state.class_selection(ctx, ids)
    with cls_col:
        ids = panels.classes_ui(ctx, names)
    with find_col:
        panels.find_classes_ui(ctx, names, result.logits)
    with figures:
        if methods:
            panels.show_overlays(result, ids, names, methods, display, not bundle.model.pretrained)
        else:
            st.info("Pick at least one method.", icon=":material/tune:")
        panels.show_exports(item, result, ids, names, methods, layer, display, bundle.model.name)
    with scores:
        panels.show_scores(ctx, result, ids, names)
    shared = bundle.spec.url_model
    state.write_url(
        model=shared[0] if shared else None,
        weights=shared[1] if shared else None,
        layer=layer,
        methods=methods,
        classes=ids,
        image=item.sample,
        k=k,
    )
    with main_col:  # under the overlays: the diagnosis, the sweep and the checks of the maps shown
        debug.debug_section(bundle, item, layer, result, ids, methods, display)


def main() -> None:
    """Wire the page: sidebar inputs, the model, the selected image and layer, then the workspace."""
    url = state.read_url_once()
    spec, device, items, methods, display = _sidebar(url)
    panels.show_header()
    bundle = _load(spec) if spec is not None else None
    if bundle is None:
        st.info("Choose a model in the sidebar.", icon=":material/arrow_back:")
        return
    layer = _layer(bundle, url)
    panels.show_model_info(bundle, device, layer)
    if layer is None:
        st.error("No layer of this model gives a spatial map, so no CAM can be taken (see the notes above).")
        return
    if not items:
        st.info("Upload an image, pick a sample photo or take a snapshot (sidebar).", icon=":material/image:")
        return
    _workspace(bundle, panels.image_ui(items, url), layer, methods, url, display)


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

