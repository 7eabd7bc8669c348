"""The figure cache every page shares (the cache class itself is :class:`cam_core.cache.BoundedCache`).

Building an overlay figure costs Plotly's validation; sending the same figure again costs nothing
(the browser keeps large messages it has seen), so figures are kept once per process for all sessions.
"""

from __future__ import annotations

from cam_core.cache import BoundedCache
from cam_core.limits import FIGURE_CACHE_ENTRIES

__all__ = ["figure_cache"]

_FIGURES: BoundedCache[object] = BoundedCache(max_entries=FIGURE_CACHE_ENTRIES)


def figure_cache() -> BoundedCache[object]:
    """The process-wide figure cache (one for every session)."""
    return _FIGURES
