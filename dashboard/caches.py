"""What every session of the process shares: the figure cache and the data root's walks.

Building an overlay figure costs Plotly's validation; sending the same figure again costs nothing
(the browser keeps large messages it has seen), so figures are kept once per process for all sessions
(the cache class itself is :class:`cam_core.cache.BoundedCache`). Walking a data root that holds a million
images takes seconds: one walk serves every session's folder lists (:class:`dashboard.dataroot.Survey`).
"""

from __future__ import annotations

from cam_core.cache import BoundedCache
from cam_core.limits import FIGURE_CACHE_ENTRIES
from dashboard.dataroot import Survey

__all__ = ["figure_cache", "root_survey"]

_FIGURES: BoundedCache[object] = BoundedCache(max_entries=FIGURE_CACHE_ENTRIES)
_SURVEY = Survey()


def figure_cache() -> BoundedCache[object]:
    """The process-wide figure cache (one for every session)."""
    return _FIGURES


def root_survey() -> Survey:
    """The process-wide walks of the data root (one for every session)."""
    return _SURVEY
