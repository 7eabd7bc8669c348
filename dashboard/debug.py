"""Debug this prediction: why a map looks as it does, and whether to trust it.

One section, :func:`debug_section`, under the overlays: a page-level summary when
a map is blank after ReLU (the seed question: a correct prediction whose Grad-CAM
is empty), then six tabs: Diagnosis · Layer sweep · Methods · Contrast · Inspect a
point · Trust. Every number comes from ``cam_core`` (``diagnose``, ``sweep``,
``compare_methods``, ``contrast``, ``inspect_point``, ``deletion_insertion``,
``randomisation_check``). This module measures the layer for the diagnosis and
lays out the section; the cards are in :mod:`dashboard.debug_cards`, the tabs in
:mod:`dashboard.debug_tabs`, the session cache and run buttons in
:mod:`dashboard.debug_session`, the figures in :mod:`dashboard.debug_figures`.

Cost rules:

- The diagnosis needs the layer's statistics: one ``explain`` (one forward, one
  backward, every gradient method at once, activations kept for point
  inspection) and one forward for the head probe, per (model, image, layer,
  classes), cached in the session.
- The sweep, the method grid, the contrast and the trust checks run only on a
  button, with a progress bar where the engine reports progress; their results
  are cached in the session keyed on their inputs (plain hashable values), so a
  rerun (opacity, class toggles, tab switches) recomputes nothing.
- The tabs are lazy (``st.tabs(..., on_change="rerun")``): only the open one runs.

Session-state keys of the section start with ``dbg_`` (widgets) or ``_dbg_``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import partial

import numpy as np
import streamlit as st
import torch

from cam_core import ExplainResult, explain
from cam_core.diagnose import (
    Diagnosis,
    HeadProbe,
    diagnose,
    layer_context,
    probe_head,
)
from cam_core.errors import CamError
from cam_core.layers import LayerInfo
from cam_core.sweep import SWEEP_METHODS
from dashboard.compute import Bundle, ImageItem, ViewResult, map_cache, ranking
from dashboard.debug_cards import diagnosis_card, diagnosis_rows, findings_summary, layer_notes, method_title
from dashboard.debug_session import DK, Timed, keep, keep_shared, pick, recall, recall_shared
from dashboard.debug_tabs import contrast_tab, diagnosis_tab, inspect_tab, methods_tab, sweep_tab, trust_tab
from dashboard.feedback import show_error
from dashboard.sidebar import Display

__all__ = [
    "DK",
    "TABS",
    "Ctx",
    "LayerFacts",
    "debug_section",
    "diagnosis_card",
    "diagnosis_rows",
    "findings_summary",
    "layer_notes",
    "view_diagnoses",
]

TABS = ("Diagnosis", "Layer sweep", "Methods", "Contrast", "Inspect a point", "Trust")

_CSS = """
<style>
/* Diagnosis cards: compact numbers and findings, so three or four fit under the overlays. */
table.dbg-nums { width: 100%; border-collapse: collapse; font-size: 0.8rem; line-height: 1.3; margin: 0; }
table.dbg-nums td { padding: 0.15rem 0.3rem; border: 0; border-bottom: 1px solid rgba(128, 128, 128, 0.18);
  vertical-align: top; }
table.dbg-nums td:first-child { opacity: 0.7; width: 44%; }
[class*="st-key-dbg_card_"] [data-testid="stAlert"] p,
[class*="st-key-dbg_card_"] [data-testid="stExpander"] p { font-size: 0.85rem; }
/* The current layer in the sweep's filmstrip. */
.st-key-dbg_stage_current { outline: 3px solid #e4572e; outline-offset: 2px; border-radius: 6px; }
</style>
"""


# ---- what the diagnosis needs --------------------------------------------------------------------------


@dataclass(frozen=True)
class LayerFacts:
    """The layer's statistics for one (model, image, layer, classes).

    Attributes:
        result: Every gradient method and Eigen-CAM for the classes, with the layer's
            statistics, Grad-CAM's channel weights and the activations (for point inspection).
        info: The layer's entry in the layer tree (for its hints).
        recommended: The recommended layer.
        head: Whether the head ignores the scale of the recommended layer (None if it could not be probed).
    """

    result: ExplainResult
    info: LayerInfo | None
    recommended: str | None
    head: HeadProbe | None


def _layer_facts(bundle: Bundle, item: ImageItem, layer: str, ids: tuple[int, ...]) -> Timed:
    """One explain (all gradient methods share one backward) and the head probe; cached per inputs."""
    key = (bundle.spec.key, item.digest, layer, ids)
    found = recall("facts", key) or recall_shared("facts", key)
    if found is not None:
        return found
    x, _ = map_cache().model_input(bundle, item)
    start = time.perf_counter()
    res = explain(bundle.model, x, layer=layer, classes=list(ids), methods=SWEEP_METHODS, keep_activations=True)
    info, rec = layer_context(bundle.model, layer)
    facts = LayerFacts(result=res, info=info, recommended=rec, head=_head_probe(bundle, item, x))
    return keep_shared("facts", key, Timed(facts, time.perf_counter() - start), limit=8)


def _head_probe(bundle: Bundle, item: ImageItem, x: torch.Tensor) -> HeadProbe | None:
    """Whether the head ignores the recommended layer's scale: per (model, image), whatever the layer or classes."""
    key = (bundle.spec.key, item.digest)
    found = recall("head", key) or recall_shared("head", key)
    if found is None:
        try:
            head = probe_head(bundle.model, x)
        except (CamError, RuntimeError):  # optional: a head that cannot be probed just gets no scale finding
            head = None
        found = keep_shared("head", key, Timed(head, 0.0), limit=8)
    return found.value


def _with_view_maps(res: ExplainResult, view: ViewResult, ids: Sequence[int], methods: Sequence[str]) -> ExplainResult:
    """``res`` plus the view's maps of the methods it lacks (CAM, Score-CAM, Ablation-CAM), as one result."""
    maps = dict(res.maps)
    for m in methods:
        if m not in maps:
            maps[m] = torch.from_numpy(np.stack([view.maps[(m, c)].raw for c in ids]))[None]
    return replace(res, maps=maps, methods=tuple(maps))


def _shown(view: ViewResult, ids: Sequence[int], methods: Sequence[str]) -> tuple[str, ...]:
    """The methods with a map for every class (a method the engine rejected at this layer has none)."""
    return tuple(m for m in methods if m not in view.errors and all((m, c) in view.maps for c in ids))


def _prepare(
    bundle: Bundle, item: ImageItem, layer: str, view: ViewResult, ids: tuple[int, ...], shown: tuple[str, ...]
) -> tuple[LayerFacts, ExplainResult, dict[tuple[str, int], Diagnosis]]:
    """The layer's facts, one result holding every shown map, and a diagnosis per (method, class); cached."""
    facts = _layer_facts(bundle, item, layer, ids).value
    result = _with_view_maps(facts.result, view, ids, shown)
    key = (bundle.spec.key, item.digest, layer, ids, shown)
    found = recall("diagnoses", key)
    if found is None:
        diags = {
            (m, c): diagnose(result, 0, k, m, facts.info, facts.recommended, facts.head)
            for m in shown
            for k, c in enumerate(ids)
        }
        found = keep("diagnoses", key, Timed(diags, 0.0), limit=8)
    return facts, result, found.value


def view_diagnoses(
    bundle: Bundle, item: ImageItem, layer: str, view: ViewResult, ids: Sequence[int], methods: Sequence[str]
) -> dict[tuple[str, int], Diagnosis]:
    """A :class:`~cam_core.diagnose.Diagnosis` per overlay of the view, keyed ``(method, class id)``.

    For a caller that places :func:`diagnosis_card` under each overlay. Costs one
    ``explain`` and one head probe per (model, image, layer, classes), cached in the session.

    Raises:
        CamError: the engine cannot take the layer's statistics (the overlays would fail too).
    """
    ids = tuple(int(c) for c in ids)
    return _prepare(bundle, item, layer, view, ids, _shown(view, ids, methods))[2]


# ---- the section -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Ctx:
    """Everything the tabs need, as plain values."""

    bundle: Bundle
    item: ImageItem
    layer: str
    view: ViewResult
    ids: tuple[int, ...]
    shown: tuple[str, ...]
    display: Display
    facts: LayerFacts
    result: ExplainResult
    diags: dict[tuple[str, int], Diagnosis]
    x: torch.Tensor
    focus_class: int
    focus_method: str

    @property
    def mk(self) -> str:
        return self.bundle.spec.key

    @property
    def names(self) -> list[str]:
        return self.bundle.model.class_names

    def label(self, c: int) -> str:
        return f"{self.names[c]} ({c})"

    def runner_up(self, c: int) -> tuple[int, str] | None:
        """The most probable other class, as (id, label)."""
        order = ranking(self.mk, self.item.digest) or []
        other = next((o for o in order if o != c), None)
        return None if other is None else (other, self.label(other))


def debug_section(
    bundle: Bundle,
    item: ImageItem,
    layer: str,
    view: ViewResult,
    ids: Sequence[int],
    methods: Sequence[str],
    display: Display,
) -> None:
    """The "Debug this prediction" section: summary of blank maps, then the six tabs.

    Args:
        bundle: The loaded model (from :func:`dashboard.compute.load_bundle`).
        item: The image shown.
        layer: The selected layer.
        view: The overlays' maps (from :func:`dashboard.compute.compute_view`).
        ids: The explained classes, in the overlays' order.
        methods: The selected methods, in the overlays' order.
        display: How the overlays are drawn (views, colormaps, opacity).
    """
    with st.container(key="dbg_section"):
        _section(bundle, item, layer, view, tuple(int(c) for c in ids), methods, display)


def _section(
    bundle: Bundle,
    item: ImageItem,
    layer: str,
    view: ViewResult,
    ids: tuple[int, ...],
    methods: Sequence[str],
    display: Display,
) -> None:
    st.html(_CSS)
    st.subheader(":material/troubleshoot: Debug this prediction", anchor=False)
    shown = _shown(view, ids, methods)
    if not ids or not shown:
        st.info("Pick a class and a method above to debug their maps.", icon=":material/touch_app:")
        return
    try:
        with st.spinner("Measuring the layer for the diagnosis (one forward and one backward)…"):
            facts, result, diags = _prepare(bundle, item, layer, view, ids, shown)
    except Exception as exc:
        show_error(exc, "measuring the layer for the diagnosis")
        return
    signed_shown = "signed" in display.views
    x, _ = map_cache().model_input(bundle, item)

    pick(DK.CLASS, ids)
    pick(DK.METHOD, shown)
    ctx_partial = partial(Ctx, bundle, item, layer, view, ids, shown, display, facts, result, diags, x)
    ctx0 = ctx_partial(ids[0], shown[0])
    findings_summary(
        [diags[(m, c)] for m in shown for c in ids],
        model_key=bundle.spec.key,
        signed_shown=signed_shown,
        contrast_with=ctx0.runner_up,
    )
    c1, c2 = st.columns(2)
    focus_class = c1.selectbox(
        "Class to debug",
        ids,
        format_func=ctx0.label,
        key=DK.CLASS,
        help="Used by the layer sweep, the method grid, the contrast (as A) and the trust checks.",
    )
    focus_method = c2.selectbox(
        "Method to debug",
        shown,
        format_func=method_title,
        key=DK.METHOD,
        help="The map that point inspection reads and the trust checks test.",
    )
    ctx = ctx_partial(int(focus_class), focus_method)
    tabs = st.tabs(TABS, key=DK.TAB, on_change="rerun")
    for tab, draw in zip(
        tabs, (diagnosis_tab, sweep_tab, methods_tab, contrast_tab, inspect_tab, trust_tab), strict=True
    ):
        if tab.open is False:  # lazy tabs: only the open one runs (None: state tracking off, draw all)
            continue
        with tab:
            draw(ctx)
