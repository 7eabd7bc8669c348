"""Two models on one photo: their scores and maps for the same classes, side by side.

Each model sees the photo its own way (its own input size and fit), so its maps are first carried back onto the
photo (:func:`cam_core.analysis.compare.on_photo`, each through its own placement) and compared there, on the
grid the ``compare`` command uses (:data:`~cam_core.analysis.compare.PHOTO_SIDE` on the longer side), so the page
and ``compare.parquet`` give the same numbers for the same photo: the map shift
(:func:`~cam_core.analysis.compare.map_shift`), the probability change, and a signed difference to draw. Classes
are matched by name (:func:`~cam_core.analysis.compare.match_classes`), so a fine-tuned head with another label
set still lines up, and a class model B lacks is said to be missing rather than skipped.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from cam_core.analysis.compare import (
    PHOTO_SIDE,
    MapShift,
    map_shift,
    match_classes,
    normalise_class_name,
    on_grid,
    on_photo,
)
from cam_core.models import Placement

__all__ = [
    "ClassComparison",
    "ModelSide",
    "compare_classes",
    "map_difference",
    "photo_grid",
    "prediction_changed",
    "resized",
]

DRAW_SIDE = 256  # the longer side of a photo drawn beside its maps (the maps are smooth: they are resized to it)


@dataclass(frozen=True)
class ModelSide:
    """One model's view of the photo: its class names, scores (C,), how the photo met it, and its maps
    (class id → signed map over the model's whole input, any resolution: the layer's grid is enough)."""

    names: Sequence[str]
    logits: np.ndarray
    probs: np.ndarray
    place: Placement
    maps: Mapping[int, np.ndarray]


@dataclass(frozen=True)
class ClassComparison:
    """One class of model A beside the same class (by name) of model B.

    ``id_b``, ``prob_b``, ``logit_b``, ``map_b`` and ``shift`` are ``None`` when B has no such class; ``map_a`` and
    ``map_b`` lie over the photo on the grid they were compared on (signed; :func:`resized` brings them to a
    drawing's size); ``shift`` is ``None`` also when a model has no map for the class.
    """

    name: str
    id_a: int
    id_b: int | None
    prob_a: float
    prob_b: float | None
    logit_a: float
    logit_b: float | None
    map_a: np.ndarray | None
    map_b: np.ndarray | None
    shift: MapShift | None

    @property
    def prob_change(self) -> float | None:
        """B's probability minus A's (``None`` when B lacks the class)."""
        return None if self.prob_b is None else self.prob_b - self.prob_a


def photo_grid(size: tuple[int, int], side: int = DRAW_SIDE) -> tuple[int, int]:
    """(width, height) of the grid over a photo of ``size`` (width, height): the photo's own, or smaller with
    its longer side ``side``, at the photo's aspect."""
    width, height = size
    scale = min(1.0, side / max(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


def _on_photo(cam: np.ndarray | None, place: Placement, size: tuple[int, int], side: int) -> np.ndarray | None:
    return None if cam is None else on_photo(np.asarray(cam)[None], place, size, side)[0]


def compare_classes(
    a: ModelSide, b: ModelSide, classes: Sequence[int], photo_size: tuple[int, int], side: int = PHOTO_SIDE
) -> list[ClassComparison]:
    """A's ``classes`` (ids of A) beside B's class of the same name, on the photo.

    Args:
        a, b: The two models' views of the photo.
        classes: The classes to compare, as A's ids.
        photo_size: The photo's (width, height) in pixels (``peak_px`` is in these pixels).
        side: The longer side of the grid over the photo the maps are compared on (the ``compare`` command's).
    """
    matched = match_classes(a.names, b.names)
    width, height = photo_size
    out = []
    for c in classes:
        j = matched[c]
        map_a = _on_photo(a.maps.get(c), a.place, photo_size, side)
        map_b = None if j is None else _on_photo(b.maps.get(j), b.place, photo_size, side)
        shift = None if map_a is None or map_b is None else map_shift(map_a, map_b, photo_size=(height, width))
        out.append(
            ClassComparison(
                name=a.names[c],
                id_a=c,
                id_b=j,
                prob_a=float(a.probs[c]),
                prob_b=None if j is None else float(b.probs[j]),
                logit_a=float(a.logits[c]),
                logit_b=None if j is None else float(b.logits[j]),
                map_a=map_a,
                map_b=map_b,
                shift=shift,
            )
        )
    return out


def map_difference(map_a: np.ndarray, map_b: np.ndarray, shared_scale: bool = False) -> np.ndarray:
    """B's map minus A's, both ReLU'd on the finer grid, in −1…1: each scaled to its own maximum (where each
    model looks, whatever its map's magnitude), or both to the larger maximum with ``shared_scale`` (how strongly
    each looks). Positive: B looks there more; negative: less."""
    grid = (max(map_a.shape[0], map_b.shape[0]), max(map_a.shape[1], map_b.shape[1]))
    ra, rb = on_grid(map_a, grid), on_grid(map_b, grid)
    top_a, top_b = float(ra.max()), float(rb.max())
    if shared_scale:
        top_a = top_b = max(top_a, top_b)
    return (rb / top_b if top_b > 0 else rb) - (ra / top_a if top_a > 0 else ra)


def prediction_changed(
    names_a: Sequence[str], probs_a: np.ndarray, names_b: Sequence[str], probs_b: np.ndarray
) -> bool:
    """Whether the two models' top classes differ, by name (two label sets in another order predict the same
    class when its name is the same)."""
    top_a, top_b = names_a[int(np.argmax(probs_a))], names_b[int(np.argmax(probs_b))]
    return normalise_class_name(top_a) != normalise_class_name(top_b)


def resized(cam: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A signed map (h, w) bilinearly at ``size`` (rows, columns), to draw over a photo of that size."""
    t = torch.from_numpy(np.ascontiguousarray(cam, dtype=np.float32))[None, None]
    return F.interpolate(t, size=size, mode="bilinear", align_corners=False)[0, 0].numpy()
