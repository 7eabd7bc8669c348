"""Debug this prediction: why a map looks as it does, and whether to trust it.

One section, :func:`debug_section`, under the overlays: a page-level summary when
a map is blank after ReLU (the seed question: a correct prediction whose Grad-CAM
is empty), then six tabs: Diagnosis · Layer sweep · Methods · Contrast · Inspect a
point · Trust. Every number comes from ``cam_core`` (``diagnose``, ``sweep``,
``compare_methods``, ``contrast``, ``inspect_point``, ``deletion_insertion``,
``randomisation_check``). This module lays out the section; what it works from
(the layer's facts, the tabs' context) is in :mod:`.context`, the cards in :mod:`.cards`,
the tabs in :mod:`.tabs` and :mod:`.trust_tab`, the session cache and run buttons in
:mod:`.session`, the figures in :mod:`.figures`.

Cost rules:

- Nothing runs until the section is opened (:func:`debug_toggle`, a switch under the
  overlays): a blank map is flagged without it (``panels.blank_maps_note``).
- The section is a fragment and each tab another: switching it, a tab, or a tab's
  own widgets reruns only that part.
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

from collections.abc import Callable, Sequence
from functools import partial

import streamlit as st

from dashboard import state
from dashboard.display import Display
from dashboard.display import current as current_display
from dashboard.feedback import bounded, show_error
from dashboard.model import Bundle, ImageItem
from dashboard.views.image.compute import ViewResult, map_cache
from dashboard.views.image.debug.cards import findings_summary, method_title
from dashboard.views.image.debug.context import Ctx, prepare, shown_methods
from dashboard.views.image.debug.session import DK, pick
from dashboard.views.image.debug.tabs import contrast_tab, diagnosis_tab, inspect_tab, methods_tab, sweep_tab
from dashboard.views.image.debug.trust_tab import trust_tab

__all__ = ["TABS", "debug_section", "debug_toggle", "open_debug"]

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


def debug_toggle(
    bundle: Bundle, item: ImageItem, layer: str, view: ViewResult, ids: Sequence[int], methods: Sequence[str]
) -> None:
    """The section behind a switch, off until asked for: its diagnosis costs a forward and a backward.

    A fragment: switching it, or a tab, reruns the section only.
    """
    _debug(bundle, item, layer, view, tuple(int(c) for c in ids), tuple(methods))


@st.fragment
@bounded("drawing the debug section")
def _debug(
    bundle: Bundle, item: ImageItem, layer: str, view: ViewResult, ids: tuple[int, ...], methods: tuple[str, ...]
) -> None:
    state.honour_full_rerun()
    opened = st.toggle(
        "Debug this prediction",  # plain: the label is also the switch's accessible name (markdown was read out raw)
        key=DK.OPEN,
        help="Why each map looks as it does (blank after ReLU, signed layers, saturated scores), with the fix; "
        "a sweep over the layers, all methods side by side, a contrast of two classes, the channels behind a "
        "point, and checks of whether to trust a map.",
    )
    if not opened:
        st.caption(
            "Diagnosis of every map above, layer sweep, method comparison, contrast, point inspection and trust "
            "checks. Computed when you open it."
        )
        return
    debug_section(bundle, item, layer, view, ids, methods, current_display())


def open_debug() -> None:
    """Open the section (from a button elsewhere on the page)."""
    st.session_state[DK.OPEN] = True


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
        bundle: The loaded model (from :func:`dashboard.model.load_bundle`).
        item: The image shown.
        layer: The selected layer.
        view: The overlays' maps (from :func:`dashboard.views.image.compute.compute_view`).
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
    shown = shown_methods(view, ids, methods)
    if not ids or not shown:
        st.info("Pick a class and a method above to debug their maps.", icon=":material/touch_app:")
        return
    try:
        with st.spinner("Measuring the layer for the diagnosis (one forward and one backward)…"):
            facts, result, diags = prepare(bundle, item, layer, view, ids, shown)
    except Exception as exc:
        show_error(exc, "measuring the layer for the diagnosis")
        return
    signed_shown = "signed" in display.views
    x = map_cache().model_input(bundle, item).x

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
            _tab(draw, ctx)


@st.fragment
@bounded("drawing the tab")
def _tab(draw: Callable[[Ctx], None], ctx: Ctx) -> None:
    """One tab, as a fragment: its own widgets rerun it alone."""
    state.honour_full_rerun()
    draw(ctx)
