"""What every page shares, drawn by ``app.py`` before the page runs: the model (sidebar), its fit, the device.

Drawn in the entry script, the model widgets keep their state whichever page is open, so the
model chosen on one page is the model of every page. Pages read it with :func:`current`.
"""

from __future__ import annotations

from dataclasses import dataclass

import streamlit as st

from cam_core.models import FIT_TITLES, WeightsUnavailable
from dashboard import state
from dashboard.compute import Bundle, ModelSpec, device_label, load_bundle
from dashboard.feedback import show_error
from dashboard.sidebar import model_ui

__all__ = ["FIT_HELP", "Shared", "current", "shared_sidebar"]

FIT_HELP = (
    "How the photo meets the model's input size. Whole image: the shorter side is resized, nothing is cut "
    "(models that take any size). Centre crop: the weights' own recipe, the middle square. Squash: stretched "
    "to the model's size. Letterbox: the whole photo inside the model's size, padded (the pad is left out of "
    "the maps). The scores change with it."
)
_SHARED = "_shared_view"


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
            f"Pretrained weights for {name} are not in this machine's cache and cannot be downloaded (offline), so "
            "*Pretrained weights* is now off: these are random, untrained weights, and every result says so.",
            icon=":material/cloud_off:",
        )


def _load(spec: ModelSpec) -> Bundle | None:
    """The model for ``spec``; pretrained weights that cannot be had turn the *Pretrained* toggle off."""
    if spec.source in ("torchvision", "timm") and spec.weights is not None and spec.key in _offline():
        state.pretrained_unavailable(spec.name, spec.source)
        st.rerun()
    try:
        with st.spinner(f"Loading {spec.name} and tracing its layers…"):
            return load_bundle(spec)
    except WeightsUnavailable:
        _offline().add(spec.key)
        state.pretrained_unavailable(spec.name, spec.source)
        st.rerun()
    except Exception as exc:
        show_error(exc, "loading the model")
    return None


def _fit_ui(bundle: Bundle, url: state.UrlView) -> str:
    """The fit, among those the model can take (its default until the user picks another)."""
    fits = list(bundle.model.fits)
    if state.K.FIT not in st.session_state and url.fit in fits:
        st.session_state[state.K.FIT] = url.fit
    if st.session_state.get(state.K.FIT) not in fits:
        st.session_state[state.K.FIT] = bundle.model.fit
    fit = st.segmented_control(
        "Fit", fits, format_func=FIT_TITLES.get, key=state.K.FIT, required=True, help=FIT_HELP, width="stretch"
    )
    return fit or bundle.model.fit


def shared_sidebar() -> Shared:
    """Draw the model section of the sidebar, load the model, and remember the result for the page."""
    url = state.read_url_once()
    with st.sidebar:
        st.header("Model", anchor=False)
        spec = model_ui(url)
        device = device_label()
    _offline_note()
    bundle = _load(spec) if spec is not None else None
    with st.sidebar:
        fit = _fit_ui(bundle, url) if bundle is not None else "whole"
        st.caption(f":material/memory: Computing on **{device}**")
    shared = Shared(spec=spec, bundle=bundle, device=device, fit=fit)
    st.session_state[_SHARED] = shared
    return shared


def current() -> Shared:
    """The shared model of this run (drawn by ``app.py`` before the page)."""
    return st.session_state[_SHARED]
