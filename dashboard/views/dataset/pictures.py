"""The Dataset page's row pictures (:mod:`cam_core.analysis.row_pictures`), kept once per file version for every
session of this process."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from cam_core.analysis.row_pictures import Picture, picture, with_map
from cam_core.cache import BoundedCache
from cam_core.models.preprocess import Preprocess

__all__ = ["cached_picture", "with_map"]


@st.cache_resource(show_spinner=False)
def _pictures() -> BoundedCache[Picture]:
    """Pictures for every session of this process (a few tens of kB each)."""
    return BoundedCache(max_entries=512)


def cached_picture(path: str, preprocess: Preprocess, fit: str) -> Picture:
    """:func:`picture`, built once per file version, preprocessing and fit.

    Raises:
        OSError, CamError: The file is gone or cannot be decoded.
    """
    stamp = Path(path).stat().st_mtime_ns
    return _pictures().get_or_build((path, stamp, preprocess, fit), lambda: picture(path, preprocess, fit))
