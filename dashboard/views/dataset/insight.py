"""The atlas and the confusions' contrast wired to the Dataset page's table layer (:mod:`.table`).

:mod:`.atlas_ui` and :mod:`.confusion_ui` take plain values (a folder, paths, maps); this module gets those
from the page's results (which row a path is, its stored maps, the rows of a confusion cell) and narrows the
gallery to an atlas cluster, so the page itself gains a few calls.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from cam_core.batch.results import map_column
from cam_core.errors import CamError
from dashboard.figures import format_prob
from dashboard.views.dataset import atlas_ui
from dashboard.views.dataset import table as tb
from dashboard.views.dataset.confusion_ui import SHOWN, ContrastRow, contrast_ui
from dashboard.views.dataset.pictures import cached_picture, with_map

__all__ = ["atlas", "contrast", "narrow"]

Reachable = Callable[[str], Path]


def _row_of(results: tb.Results) -> dict[str, int]:
    return results.remember(("row_of_path",), lambda: {p: i for i, p in enumerate(results.frame.path)})


def _all_maps(results: tb.Results, row: int, method: str) -> np.ndarray | None:
    """Row ``row``'s K raw signed maps (K, h, w) of ``method`` (``None``: a failed file)."""
    values = results.table.column(map_column(method))[row]
    if not values.is_valid:
        return None
    return values.values.to_numpy(zero_copy_only=False).reshape(results.table.column("map_shape")[row].as_py())


def atlas(results: tb.Results, reachable: Reachable, method: str, opacity: float) -> None:
    """The atlas section, its examples drawn from the stored maps of the predicted class."""
    slot = results.remember(("slots", "pred"), lambda: tb.slots(results.frame, "pred"))
    rows = _row_of(results)

    def examples(paths: list[str]) -> dict[str, np.ndarray]:
        out = {}
        for p in paths:
            i = rows.get(p)
            cam = tb.map_of(results, i, method, int(slot[i])) if i is not None else None
            try:
                if cam is not None:
                    out[p] = with_map(cached_picture(str(reachable(p)), results.preprocess, results.fit), cam,
                                      "relu", opacity)
            except (CamError, OSError):
                continue  # a file gone or outside the root: the example is left out
        return out

    atlas_ui.atlas_ui(results.folder, results.run, method, examples)


def narrow(results: tb.Results, shown: pd.DataFrame) -> pd.DataFrame:
    """``shown`` narrowed to the atlas cluster chosen (with a line saying so and a button to show all)."""
    f = atlas_ui.cluster_filter(results.folder)
    if f is None:
        return shown
    keep = shown[shown.path.isin(atlas_ui.cluster_paths(f))]
    c1, c2 = st.columns([4, 1], vertical_alignment="center")
    c1.info(f"The gallery shows {f.title} of the atlas ({len(keep)} with the filters above).",
            icon=":material/filter_alt:")
    c2.button("Show all", key="ds_atlas_clear", on_click=atlas_ui.clear_cluster_filter, icon=":material/close:")
    return keep


def contrast(results: tb.Results, reachable: Reachable, filters: tb.Filters, shown: pd.DataFrame, method: str,
             model: object | None, no_model: str, opacity: float) -> None:
    """The contrast view when the gallery shows one confusion cell (one true class A, one predicted class B ≠ A)."""
    if len(filters.true) != 1 or len(filters.pred) != 1 or filters.true == filters.pred or shown.empty:
        return
    a, b = int(filters.true[0]), int(filters.pred[0])
    rows = []
    for row in shown.head(SHOWN).itertuples():
        try:
            path = str(reachable(row.path))
        except CamError:
            continue
        ids = tuple(int(c) for c in row.class_ids) if row.class_ids is not None else ()
        caption = f"p({results.class_names[b]}) {format_prob(float(row.prob_pred))}" + (
            "" if pd.isna(row.prob_label) else f" · p({results.class_names[a]}) {format_prob(float(row.prob_label))}")
        rows.append(ContrastRow(path, row.name, ids, _all_maps(results, int(row.Index), method), caption))
    contrast_ui(a, b, results.class_names, rows, len(shown), method, results.run["layer"], results.preprocess,
                results.fit, model, no_model, opacity)
