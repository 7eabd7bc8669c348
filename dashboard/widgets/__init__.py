"""Custom widgets of the dashboard: ``st.components.v2`` components whose HTML/CSS/JS sit beside their module."""

from pathlib import Path

from streamlit.components.v2 import component

__all__ = ["inline_component"]

_HERE = Path(__file__).parent


def inline_component(stem: str):  # -> Streamlit's component callable
    """The component ``cam_dashboard_<stem>`` with ``<stem>.js`` and ``<stem>.css`` of this folder passed inline
    (no build step, no CDN)."""
    return component(
        f"cam_dashboard_{stem}",
        js=(_HERE / f"{stem}.js").read_text(encoding="utf-8"),
        css=(_HERE / f"{stem}.css").read_text(encoding="utf-8"),
    )
