"""The CAM dashboard: ``streamlit run dashboard/app.py`` (or ``camdash``).

Only navigation lives here: ``st.navigation`` over the pages in :mod:`dashboard.pages`.
"""

from __future__ import annotations

import sys
from pathlib import Path

import streamlit as st

if __package__ in (None, ""):  # `streamlit run dashboard/app.py` runs this file as a script
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dashboard.pages import image


def main() -> None:
    """Route to the page the URL names (the image page is ``/``)."""
    st.set_page_config(page_title="CAM dashboard", page_icon="🔥", layout="wide")
    pages = [st.Page(image.main, title="Image", icon=":material/image:", default=True)]
    st.navigation(pages).run()


main()
