"""The Dataset page's confusions explained: a confusion-matrix cell (true A, predicted B) shows its images with the
contrast map "why B and not A" beside each class's own map.

The contrast comes from ``cam_core.analysis.confusions``: for CAM, Grad-CAM, XGrad-CAM and HiResCAM it is
exactly map_B − map_A, taken from the stored maps when the run explained both classes (``pred,label``);
otherwise (the other class was not explained, or the method is not linear in the score's gradient) it is
computed with the run's model, for the few images shown only. The page calls :func:`contrast_ui`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import streamlit as st

from cam_core.analysis.confusions import ConfusionMaps, confusion_maps, contrast_route, stored_contrast
from cam_core.cache import BoundedCache
from cam_core.engine.methods import METHODS
from cam_core.errors import CamError
from cam_core.io.images import load_image
from cam_core.models.preprocess import Preprocess
from dashboard.feedback import show_error
from dashboard.text import plain
from dashboard.views.dataset.pictures import cached_picture, with_map

__all__ = ["SHOWN", "ContrastRow", "contrast_ui"]

SHOWN = 6  # images of the cell explained at a time (the first of the gallery's page)


@dataclass(frozen=True)
class ContrastRow:
    """A row of the cell: its file (readable), its explained classes and their stored raw maps (K, h, w)."""

    path: str
    name: str
    class_ids: tuple[int, ...]
    maps: np.ndarray | None
    caption: str = ""


@st.cache_resource(show_spinner=False)
def _computed() -> BoundedCache[object]:
    """Contrasts computed with the model, for every session of this process (a few maps each)."""
    return BoundedCache(max_entries=512)


def _stored(row: ContrastRow, a: int, b: int, method: str) -> ConfusionMaps | None:
    """The maps from storage alone, when the run explained both classes and the method's contrast is their
    difference."""
    route = contrast_route(method)
    if row.maps is None or route.how != "difference" or route.method != method:
        return None
    diff = stored_contrast(row.maps, row.class_ids, a, b)
    if diff is None:
        return None
    ids = list(row.class_ids)
    return ConfusionMaps(row.maps[ids.index(a)], row.maps[ids.index(b)], diff, route)


def _with_model(model: object, row: ContrastRow, a: int, b: int, method: str, layer: str, preprocess: Preprocess,
                fit: str) -> ConfusionMaps:
    def build() -> ConfusionMaps:
        x, place = preprocess.prepare(load_image(row.path), fit)  # type: ignore[arg-type]
        return confusion_maps(model, x.unsqueeze(0), a, b, method, layer, place.content if place.padded else None)

    key = ("contrast", row.path, Path(row.path).stat().st_mtime_ns, id(model), a, b, method, layer, fit)
    return _computed().get_or_build(key, build)  # type: ignore[return-value]


def _panel_row(row: ContrastRow, found: ConfusionMaps, names: Sequence[str], a: int, b: int,
               preprocess: Preprocess, fit: str, opacity: float) -> None:
    pic = cached_picture(row.path, preprocess, fit)
    cols = st.columns([1.1, 1, 1, 1, 1.2], vertical_alignment="center")
    cols[0].markdown(f"**{plain(row.name)}**  \n{plain(row.caption)}")
    cols[1].image(with_map(pic, found.map_a, "relu", opacity), caption=f"{plain(names[a])} (true)", width="stretch")
    cols[2].image(with_map(pic, found.map_b, "relu", opacity), caption=f"{plain(names[b])} (predicted)",
                  width="stretch")
    pos = float(np.maximum(found.contrast, 0).sum())
    total = float(np.abs(found.contrast).sum()) or 1.0
    share = f"{pos / total:.0%} of it for {plain(names[b])}"
    cols[3].image(with_map(pic, found.contrast, "signed", opacity),
                  caption=f"why {plain(names[b])}, not {plain(names[a])}: {share}", width="stretch")


def contrast_ui(a: int, b: int, names: Sequence[str], rows: Sequence[ContrastRow], total: int, method: str,
                layer: str, preprocess: Preprocess, fit: str, model: object | None, no_model: str,
                opacity: float = 0.6) -> None:
    """The cell's first images, each with A's map, B's map and the contrast (warm: for B, cool: for A).

    Args:
        rows: The images shown (at most :data:`SHOWN`), in the gallery's order.
        total: The cell's images.
        model: The run's model, loaded (``None``: only stored contrasts are shown, and ``no_model`` says why).
    """
    route = contrast_route(method)
    with st.container(border=True, key="ds_contrast"):
        st.markdown(f"**Why {plain(names[b])} and not {plain(names[a])}?** · the contrast map beside each class's "
                    "own map")
        shown = f"the first {len(rows)} of the cell's {total} images" if total > len(rows) else f"its {total} images"
        st.caption(f"{plain(route.note)}. Warm: where the features favour {plain(names[b])} (predicted) over "
                   f"{plain(names[a])} (true); cool: the other way. Showing {shown}, in the gallery's order.")
        slow = METHODS[route.method].slow and route.how == "model"
        go = not slow or st.button(f"Compute the contrast of {len(rows)} images with the model ({METHODS[method].title}"
                                   " runs a forward per channel)", key="ds_contrast_go", icon=":material/play_arrow:")
        missing, computed = 0, 0
        for row in rows:
            found = _stored(row, a, b, method)
            if found is None and model is not None and go:
                computed += 1
                try:
                    with st.spinner(f"Explaining {row.name}…"):
                        found = _with_model(model, row, a, b, method, layer, preprocess, fit)
                except (CamError, OSError) as exc:
                    show_error(exc if isinstance(exc, CamError) else CamError(f"{row.name} cannot be read"),
                               "computing the contrast")
                    continue
            if found is None:
                missing += 1
                continue
            try:
                _panel_row(row, found, names, a, b, preprocess, fit, opacity)
            except (CamError, OSError) as exc:
                show_error(exc if isinstance(exc, CamError) else CamError(f"{row.name} cannot be read"),
                           "showing the image")
        stored = len(rows) - missing - computed
        st.caption(f"{stored} from the run's stored maps, {computed} computed with the model now"
                   + (f", {missing} left out" if missing else "") + ".")
        if missing and model is None:
            st.info(f"{missing} image(s) need the model for their contrast: {plain(no_model)}",
                    icon=":material/info:")
