"""The atlas and the confusions' contrast wired to the Dataset page's query engine (``cam_core.batch.query``).

:mod:`.atlas_ui` and :mod:`.confusion_ui` take plain values (a folder, paths, maps); this module gets those
from the opened results (the rows of a confusion cell in the gallery's order, which row a path is, its stored
maps) and narrows the gallery to an atlas cluster through the engine's ``paths`` filter, so the page itself
gains one call: :func:`sections`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import numpy as np
import streamlit as st

from cam_core.analysis.row_pictures import rows_with_maps
from cam_core.batch.query import Filters, ResultsQuery
from cam_core.errors import CamError
from dashboard.model import Bundle, ModelSpec
from dashboard.views.dataset import atlas_ui
from dashboard.views.dataset.confusion_ui import SHOWN, ContrastRow, contrast_ui
from dashboard.views.dataset.pictures import cached_picture
from dashboard.views.dataset.thumbs import caption_lines

__all__ = ["NO_MODEL", "sections"]

NO_MODEL = "choose the run's model in the sidebar (opening one of its images switches to it)"
Reachable = Callable[[str], Path]


def sections(results: ResultsQuery, reachable: Reachable, bundle: Bundle | None, run_spec: ModelSpec | None,
             sort: str, filters: Filters, method: str, whose: str, opacity: float) -> Filters:
    """Draw the contrast of the confusion cell shown (if one is) and the atlas; the filters narrowed to the atlas
    cluster chosen, if any.

    Args:
        reachable: A results path → the file, if this session may read it (raises ``CamError`` otherwise).
        bundle, run_spec: The sidebar's model and the spec of the run's model (the contrast needs the model only
            when the sidebar holds the run's).
    """
    model = bundle.model if bundle is not None and run_spec == bundle.spec else None
    _contrast(results, reachable, sort, filters, method, whose, model, opacity)
    _atlas(results, reachable, method, opacity)
    return _narrow(results, filters)


def _contrast(results: ResultsQuery, reachable: Reachable, sort: str, filters: Filters, method: str, whose: str,
              model: object | None, opacity: float) -> None:
    """The contrast view when the gallery shows one confusion cell (one true class A, one predicted class B ≠ A)."""
    if len(filters.true) != 1 or len(filters.pred) != 1 or filters.true == filters.pred:
        return
    a, b = int(filters.true[0]), int(filters.pred[0])
    page = results.page(sort, filters, 0, SHOWN, method, whose)
    if not page:
        return
    maps = results.maps([int(r["rid"]) for r in page], method)
    rows = []
    for r in page:
        try:
            path = str(reachable(r["path"]))
        except CamError:
            continue
        ids = tuple(int(c) for c in r["class_ids"] or ())
        rows.append(ContrastRow(path, Path(path).name, ids, maps.get(int(r["rid"])), " · ".join(caption_lines(r)[0])))
    contrast_ui(a, b, results.class_names, rows, results.count(filters, method, whose), method, results.run["layer"],
                results.preprocess, results.fit, model, NO_MODEL, opacity)


def _atlas(results: ResultsQuery, reachable: Reachable, method: str, opacity: float) -> None:
    """The atlas section; its examples are the images with their stored map of the predicted class."""

    def examples(paths: list[str]) -> dict[str, np.ndarray]:
        return rows_with_maps(results, paths, method, "pred",
                              lambda p: cached_picture(str(reachable(p)), results.preprocess, results.fit), opacity)

    atlas_ui.atlas_ui(results.folder, results.run, method, examples)


def _narrow(results: ResultsQuery, filters: Filters) -> Filters:
    """``filters`` narrowed to the atlas cluster chosen (with a line saying so and a button to show all)."""
    f = atlas_ui.cluster_filter(results.folder)
    if f is None:
        return filters
    c1, c2 = st.columns([4, 1], vertical_alignment="center")
    c1.info(f"The gallery shows {f.title} of the atlas, with the filters above.", icon=":material/filter_alt:")
    c2.button("Show all", key="ds_atlas_clear", on_click=atlas_ui.clear_cluster_filter, icon=":material/close:")
    return dataclasses.replace(filters, paths=tuple(sorted(atlas_ui.cluster_paths(f))))
