"""The CAM dashboard: ``streamlit run dashboard/app.py`` (or ``camdash``).

Navigation over the pages in :mod:`dashboard.pages` (each a short ``main()``), after the part
every page shares: the model in the sidebar (:mod:`dashboard.shell`). The image page is ``/``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import streamlit as st

if __package__ in (None, ""):  # `streamlit run dashboard/app.py` runs this file as a script
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dashboard import shell
from dashboard.pages import dataset, image


def main() -> None:
    """Draw the shared sidebar, then the page the URL names."""
    st.set_page_config(page_title="CAM dashboard", page_icon="🔥", layout="wide")
    nav = st.navigation([image.page(), dataset.page()])
    shell.shared_sidebar()
    nav.run()


main()
