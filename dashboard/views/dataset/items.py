"""The gallery's items for one page of results: caption lines, badge, and the thumbnail (base picture and heat
layer) from the process-wide cache, built now only for the rows on screen.

Thumbnails are built on a few threads (decoding, resizing and encoding release the GIL), and the page's maps
are read from the results together, once, when the first missing heat layer needs one.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import streamlit as st

from cam_core.batch.query import ResultsQuery
from cam_core.errors import CamError
from dashboard.views.dataset import localisation_ui
from dashboard.views.dataset.thumbs import ThumbCache, caption_lines, file_stamp

__all__ = ["gallery_items", "thumb_cache"]

THUMB_THREADS = min(4, os.cpu_count() or 1)


@st.cache_resource(show_spinner=False)
def thumb_cache() -> ThumbCache:
    """Thumbnails for every session of this process."""
    return ThumbCache()


def gallery_items(results: ResultsQuery, page: list[dict], method: str, whose: str, view: str,
                  reachable: Callable[[str], Path]) -> list[dict]:
    """The gallery items of one page; thumbnails come from the cache or are built now (only these), on a few
    threads (decoding and encoding release the GIL), the page's maps read together the first time one is needed."""
    cache = thumb_cache()
    pre, fit = results.preprocess, results.fit
    cmap = "bwr" if view == "signed" else "jet"
    rids = [int(r["rid"]) for r in page]
    maps = _page_maps(results, rids, method)
    truth = results.truth_of(rids, method, whose)  # boxes, energy, hit ({}: no boxes)
    labelled = bool(results.run.get("boxes", {}).get("labelled"))

    def where(row: dict) -> tuple[str, str]:
        """(the file to show, why not): checked here, as the session's rights are read on the script's thread."""
        try:
            return str(reachable(row["path"])), ""
        except CamError:
            return "", "outside the data root: not shown"

    def item(row: dict, found: tuple[str, str]) -> dict:
        rid, slot = int(row["rid"]), int(row["slot"])
        lines, badge = caption_lines(row)
        out = {"id": rid, "title": Path(row["path"]).name, "lines": lines, "badge": badge}
        path, problem = found
        stamp = file_stamp(path) if path else None
        if stamp is None:
            return {**out, "problem": problem or "file not found"}

        def cam() -> np.ndarray | None:
            values = maps().get(rid)
            return None if values is None else values[min(slot, len(values) - 1)]

        thumb = cache.thumb(path, stamp, pre, fit, (str(results.folder), results.stamp, rid, method, slot), cam,
                            view, cmap)
        item = {**out, "base": thumb.base, "heat": thumb.heat, "blank": bool(row["shown_blank"]),
                "problem": thumb.problem}
        localisation_ui.decorate_item(item, truth.get(rid), thumb.place, labelled)
        return item

    return list(_thumb_pool().map(item, page, [where(row) for row in page]))


@st.cache_resource(show_spinner=False)
def _thumb_pool() -> ThreadPoolExecutor:
    """Threads that build a page's thumbnails (shared by the sessions: at most this many builds at once)."""
    return ThreadPoolExecutor(max_workers=THUMB_THREADS, thread_name_prefix="thumbs")


def _page_maps(results: ResultsQuery, rids: list[int], method: str) -> Callable[[], dict[int, np.ndarray | None]]:
    """The maps of a page's rows, read in one pass over their row groups when first asked for (never, when every
    heat layer is cached)."""
    lock, box = threading.Lock(), {}

    def get() -> dict[int, np.ndarray | None]:
        with lock:
            if "maps" not in box:
                box["maps"] = results.maps(rids, method)
            return box["maps"]

    return get
