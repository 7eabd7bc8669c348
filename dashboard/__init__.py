"""Streamlit dashboard for class activation maps: UI only, every computation is a ``cam_core`` call.

Start it with ``streamlit run dashboard/app.py`` or ``camdash``.
"""
