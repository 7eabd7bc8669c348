"""What every page shares, drawn by ``app.py`` before the page runs: the model (sidebar), its fit, the device.

Drawn in the entry script, the model widgets keep their state whichever page is open, so the
model chosen on one page is the model of every page. Pages read it with :func:`current`.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from cam_core.models import FIT_TITLES, WeightsUnavailable
from dashboard import access, state, uploads, warmup
from dashboard.access import ENV_TRUST, Access
from dashboard.feedback import show_error
from dashboard.figures import Panel, overlay_figure
from dashboard.model import Bundle, ModelSpec, device_label, load_bundle
from dashboard.model_ui import model_ui
from dashboard.text import plain

__all__ = ["FIT_HELP", "Shared", "current", "load", "page", "register_pages", "shared_sidebar"]

FIT_HELP = (
    "How the photo meets the model's input size. Whole image: the shorter side is resized, nothing is cut "
    "(models that take any size). Centre crop: the weights' own recipe, the middle square. Squash: stretched "
    "to the model's size. Letterbox: the whole photo inside the model's size, padded (the pad is left out of "
    "the maps). The scores change with it."
)
_SHARED = "_shared_view"
_PAGES = "_pages"
WARM_WAIT_S = 90.0


@dataclass(frozen=True)
class Shared:
    """The model every page works with (``bundle`` is ``None`` while none is loaded) and how images meet it."""

    spec: ModelSpec | None
    bundle: Bundle | None
    device: str
    fit: str


@st.cache_resource(show_spinner=False)
def _offline() -> set[str]:
    """Specs whose pretrained weights could not be fetched (so the check is not repeated every rerun)."""
    return set()


def _offline_note() -> None:
    """Say once, after the switch, why the *Pretrained* toggle went off."""
    name = st.session_state.pop(state.K.TV_OFFLINE_NOTE, None)
    if name:
        st.warning(
            f"Pretrained weights for {plain(name)} are not in this machine's cache and cannot be downloaded "
            "(offline), so *Pretrained weights* is now off: these are random, untrained weights, and every result "
            "says so.",
            icon=":material/cloud_off:",
        )


def load(spec: ModelSpec, prefix: str = "") -> Bundle | None:
    """The model for ``spec``; pretrained weights that cannot be had turn the *Pretrained* toggle off (of the model
    form ``prefix`` names: the page's model, or a second one)."""
    if spec.source in ("torchvision", "timm") and spec.weights is not None and spec.key in _offline():
        state.pretrained_unavailable(spec.name, spec.source, prefix)
        st.rerun(scope="app")
    try:
        with st.spinner(f"Loading {plain(spec.name)} and tracing its layers…"):
            return load_bundle(spec)
    except WeightsUnavailable:
        _offline().add(spec.key)
        state.pretrained_unavailable(spec.name, spec.source, prefix)
        st.rerun(scope="app")
    except Exception as exc:
        show_error(exc, "loading the model")
    return None


def _wait_for_warm_start(spec: ModelSpec) -> None:
    """A visitor who arrives while the server is still warming up the default model sees its progress."""
    now = warmup.status()
    if now.done or spec != ModelSpec():
        return
    bar = st.progress(now.fraction, text=f"Getting the dashboard ready: {now.step}…")
    give_up = time.monotonic() + WARM_WAIT_S
    while not now.done and time.monotonic() < give_up:  # past that, the page loads the model itself
        now = warmup.wait(now, timeout=min(1.0, max(0.0, give_up - time.monotonic())))
        bar.progress(min(1.0, now.fraction), text=f"Getting the dashboard ready: {now.step}…")
    bar.empty()


def _fit_ui(bundle: Bundle, url: state.UrlView) -> str:
    """The fit, among those the model can take (its default until the user picks another)."""
    fits = list(bundle.model.fits)
    if state.K.FIT not in st.session_state and url.fit in fits:
        st.session_state[state.K.FIT] = url.fit
    if st.session_state.get(state.K.FIT) not in fits:
        st.session_state[state.K.FIT] = bundle.model.fit
    fit = st.segmented_control(
        "Fit", fits, format_func=FIT_TITLES.get, key=state.K.FIT, required=True, help=FIT_HELP, width="stretch",
        persist_state="session",
    )
    return fit or bundle.model.fit


def _kept_fit(bundle: Bundle) -> str:
    """The fit the user left on another page, where this page draws no *Fit* control."""
    fit = st.session_state.get(state.K.FIT)
    return fit if fit in bundle.model.fits else bundle.model.fit


def _access_notes(rights: Access) -> None:
    """Tell every visitor what the operator allowed, when it matters."""
    if rights.shared_with_code:
        st.warning(
            "This dashboard is served to other machines and lets every visitor use model sources that run code "
            "on the server (Python factories, pickles, TorchScript): its operator started it that way "
            f"(`{ENV_TRUST}=yes`).",
            icon=":material/shield:",
        )


_PRELOAD_CSS = """
<style>
/* Out of sight and out of the layout (no gap): it is there only to be drawn once. */
.st-key-plotly_preload { position: absolute !important; left: -10000px; top: 0; width: 420px !important;
  height: 180px; overflow: hidden; visibility: hidden; pointer-events: none; }
</style>
"""


@functools.cache
def _preload_figure() -> go.Figure:
    """A tiny overlay figure: an image, a heatmap with its colorbar, an annotation and a slider."""
    background = np.zeros((8, 8, 3), np.uint8)
    return overlay_figure(background, [Panel("·", np.zeros((8, 8), np.float32), "·")], views=("relu",), panel_height=60)


def _preload_plotly() -> None:
    """An overlay figure of 8×8 pixels, drawn out of sight before the page's own charts.

    Streamlit's browser code fetches and runs Plotly (a 4.7 MB script) only when the first chart
    arrives; a fresh browser then spent a second or more on it after the maps had come. This chart comes
    as soon as the model is ready, before the page computes its maps, so that work starts earlier (a small
    gain in ``benchmarks/bench_ui.py``'s cold opens).
    Sent before the warm-start wait instead, it competed with the warm start for the 2 cores and gained
    nothing. It is the same on every run (the browser keeps it: Streamlit's message cache) and always
    in the same place, so nothing after it moves.
    """
    with st.container(key="plotly_preload"):
        st.html(_PRELOAD_CSS)
        st.plotly_chart(_preload_figure(), config={"staticPlot": True}, key="plotly_preload_chart")


def shared_sidebar(with_fit: bool = True, charts_first: bool = True) -> Shared:
    """Draw the model section of the sidebar, load the model, and remember the result for the page.

    Args:
        with_fit: Draw the *Fit* control (pages that feed photos to the model; the video page has its own
            scale). Without it the fit stays what it was (its default until the user picks one).
        charts_first: The page's first view draws Plotly charts: warm Plotly up (:func:`_preload_plotly`).
            Elsewhere (the Dataset page) its 4.7 MB script would only hold up the page's own elements.
    """
    url = state.read_url_once()
    rights = access.current()
    uploads.sweep()
    # Whatever the shell says in the page (notes, progress, load errors) goes in one container that is always
    # there, so the page after it keeps its place from run to run and the browser keeps its elements.
    notes = st.container(key="shell_notes")
    with notes:
        _access_notes(rights)
    with st.sidebar:
        st.header("Model", anchor=False)
        spec = model_ui(url, rights)
        if not rights.trust_visitors and not rights.pinned:
            st.caption(
                ":material/shield: A shared server: model sources that run code (Python factories, pickles, "
                "TorchScript) are off; weights-only files for known architectures work."
            )
        device = device_label()
    with notes:
        _offline_note()
        if spec is not None:
            _wait_for_warm_start(spec)
        if charts_first:
            _preload_plotly()
        bundle = load(spec) if spec is not None else None
    with st.sidebar:
        fit = "whole" if bundle is None else _fit_ui(bundle, url) if with_fit else _kept_fit(bundle)
        st.caption(f":material/memory: Computing on **{device}**")
    shared = Shared(spec=spec, bundle=bundle, device=device, fit=fit)
    st.session_state[_SHARED] = shared
    return shared


def current() -> Shared:
    """The shared model of this run (drawn by ``app.py`` before the page)."""
    return st.session_state[_SHARED]


def register_pages(pages: dict[str, st.Page]) -> None:
    """Remember this run's pages by name, so a page can send the user to another (:func:`page`)."""
    st.session_state[_PAGES] = pages


def page(name: str) -> st.Page:
    """The page registered as ``name`` (``image``, ``video``), for ``st.switch_page``."""
    return st.session_state[_PAGES][name]
