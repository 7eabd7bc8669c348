"""The image page's *Compare with a second model* control: a switch, then the same model form as the page's
model (any source the visitor may use, under the same access rules), with its own widgets."""

from __future__ import annotations

from dataclasses import replace

import streamlit as st

from dashboard import access
from dashboard.model import ModelSpec
from dashboard.model_ui import model_ui
from dashboard.state import K, UrlView

__all__ = ["compare_ui"]

COMPARE_HELP = (
    "Put a second model beside this one on the same photo (a fine-tuned checkpoint beside its base, a quantised or "
    "exported copy, another architecture): both models' scores, each one's maps for the same classes (matched by "
    "name), their difference, and how far each map moved."
)


def compare_ui(url: UrlView) -> ModelSpec | None:
    """Model B when the switch is on (``None`` while it is off or B's form is incomplete); a link naming a model B
    turns the switch on."""
    st.session_state.setdefault(K.COMPARE, bool(url.model_b))
    if not st.toggle("Compare with a second model", key=K.COMPARE, help=COMPARE_HELP):
        return None
    st.caption("Model B (the page's model is model A):")
    link = replace(url, model=url.model_b, weights=url.weights_b)  # the form reads a link's model from these
    return model_ui(link, access.current(), prefix=K.B_PREFIX)
