"""Does a map point at the object? The pointing game and the energy in the box, against ground truth.

Both are measured **in the original image's pixels**: each map is carried back through the fit
(:func:`cam_core.render.maps_on_image`, the same bilinear inverse the overlays use, so the number
describes the picture a person sees) and the boxes or masks stay as the user drew them. The other
way round (boxes onto the map's grid) would make the 15-pixel tolerance mean a different distance
for every image size and fit, and would turn a mask into a handful of coarse cells; the maps, on
the other hand, are smooth, so upsampling them loses nothing.

- **Pointing game** (Zhang et al. 2016, Quantus' ``PointingGame``): a hit when a pixel where the
  ReLU'd map is largest lies on the object or within :data:`TOLERANCE_PX` of it (Euclidean, pixel
  centres), the usual tolerance. A map that is blank after ReLU points nowhere: a miss.
- **Energy in the box** (Quantus' ``AttributionLocalisation``, unweighted): the share of the ReLU'd
  map's mass that lies on the object, 0..1 (0 for a blank map).

A box is a set of pixels: those whose centre lies inside it. A class's object is the union of its
boxes. Under the *crop* fit the model never saw what the crop cut away: that part of a box is left
out of the object (the map is zero there, no evidence) and the image is flagged ``cut``; a class
whose boxes were all cut away is not scored (``None``, not a miss).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy.ndimage import distance_transform_edt

from ..models.preprocess import Placement
from ..render import maps_on_image

__all__ = [
    "TOLERANCE_PX",
    "WRONG_REASONS_ENERGY",
    "box_mask",
    "class_objects",
    "energy_in_box",
    "localise",
    "pointing_game",
    "visible_mask",
]

TOLERANCE_PX = 15.0
"""The pointing game's tolerance, in the original image's pixels (Zhang et al.; Quantus leaves it to the mask)."""
WRONG_REASONS_ENERGY = 0.5
"""A correct prediction whose map has less than this share of its mass on the object is "right for the wrong
reasons": most of what the map shows lies outside the object."""
_CHUNK = 2**24  # map values carried to the image at once (64 MB of float32): a 12-MP photo takes one map a time

Box = tuple[float, float, float, float]


def _span(lo: float, hi: float, n: int) -> tuple[int, int]:
    """The pixels ``[first, stop)`` of ``n`` whose centre ``k + 0.5`` lies in ``[lo, hi)``."""
    return min(max(math.ceil(lo - 0.5), 0), n), min(max(math.ceil(hi - 0.5), 0), n)


def box_mask(boxes: Sequence[Box], size: tuple[int, int]) -> np.ndarray:
    """(H, W) bool: the pixels of a ``size`` = (width, height) image whose centre lies in any of ``boxes``."""
    width, height = size
    mask = np.zeros((height, width), dtype=bool)
    for x0, y0, x1, y1 in boxes:
        (c0, c1), (r0, r1) = _span(x0, x1, width), _span(y0, y1, height)
        mask[r0:r1, c0:c1] = True
    return mask


def visible_mask(place: Placement, size: tuple[int, int]) -> np.ndarray:
    """(H, W) bool: the pixels the model saw (all but what a centre crop cut away), as :func:`maps_on_image`."""
    width, height = size
    left, top, right, bottom = place.used
    cols = np.arange(width) + 0.5
    rows = np.arange(height) + 0.5
    return ((rows >= top) & (rows <= bottom))[:, None] & ((cols >= left) & (cols <= right))[None, :]


def class_objects(
    boxes: Sequence[Box],
    labels: Sequence[int],
    labelled: bool,
    class_ids: Sequence[int],
    visible: np.ndarray,
    mask: np.ndarray | None = None,
) -> tuple[list[np.ndarray | None], bool]:
    """Each explained class's object (bool (H, W), only what the model saw; ``None``: nothing to score), and
    whether the fit cut part of any object away.

    Args:
        boxes: The image's boxes in its pixels.
        labels: Their class ids (−1: a name that matched no class of the model).
        labelled: Whether the source names classes: then a class is scored on its own boxes only; if not,
            on all of them.
        class_ids: The explained classes.
        visible: :func:`visible_mask`.
        mask: A mask image's object (bool (H, W)) instead of boxes: it counts for every class.
    """
    height, width = visible.shape
    if mask is not None:
        seen = mask & visible
        return [seen if seen.any() else None] * len(class_ids), bool((mask & ~visible).any())
    cut = False
    pixels = []
    for box in boxes:
        whole = box_mask([box], (width, height))
        pixels.append(whole & visible)
        cut = cut or bool((whole & ~visible).any())
    objects: list[np.ndarray | None] = []
    for c in class_ids:
        mine = [p for p, lab in zip(pixels, labels, strict=True) if lab == c or not labelled]
        union = np.logical_or.reduce(mine) if mine else None
        objects.append(union if union is not None and union.any() else None)
    return objects, cut


def pointing_game(cam: np.ndarray, obj: np.ndarray | None, tolerance: float = TOLERANCE_PX) -> bool | None:
    """Whether a maximum of ``cam`` (ReLU'd, (H, W) on the image) lies within ``tolerance`` pixels of ``obj``.

    Every pixel that ties for the maximum counts (Quantus' rule: any of them on the object is a hit).
    ``None`` when there is no object; a miss when the map is blank.
    """
    if obj is None or not obj.any():
        return None
    top = cam.max(initial=0.0)
    if not top > 0:
        return False
    peak = cam == top
    if (peak & obj).any():
        return True
    if tolerance <= 0:
        return False
    rows, cols = np.nonzero(peak)
    reach = math.ceil(tolerance)
    r0, r1 = max(rows.min() - reach, 0), rows.max() + reach + 1
    c0, c1 = max(cols.min() - reach, 0), cols.max() + reach + 1
    near = obj[r0:r1, c0:c1]  # an object pixel outside this window is farther than the tolerance from every peak
    if not near.any():
        return False
    distance = distance_transform_edt(~near)  # to the nearest object pixel
    return bool((distance[peak[r0:r1, c0:c1]] <= tolerance).any())


def energy_in_box(cam: np.ndarray, obj: np.ndarray | None) -> float | None:
    """The share of ``cam``'s mass (ReLU'd, (H, W) on the image) on ``obj``; ``None`` without an object."""
    if obj is None or not obj.any():
        return None
    total = float(cam.sum(dtype=np.float64))
    return float(cam[obj].sum(dtype=np.float64)) / total if total > 0 else 0.0


def localise(
    maps: np.ndarray, place: Placement, size: tuple[int, int], objects: Sequence[np.ndarray | None]
) -> tuple[list[bool | None], list[float | None]]:
    """Pointing-game hits and energies of ``maps`` against ``objects``, one each per map.

    Args:
        maps: (N, h, w) raw signed maps over the model's input (a letterbox's pad already zero).
        place: How the image met the model.
        size: (width, height) of the original image.
        objects: The object of each map (``N`` of them; ``None``: not scored), on the image's pixels.
    """
    hits: list[bool | None] = [None] * len(maps)
    energies: list[float | None] = [None] * len(maps)
    todo = [i for i, o in enumerate(objects) if o is not None]
    step = max(1, _CHUNK // max(1, size[0] * size[1]))
    for start in range(0, len(todo), step):
        idx = todo[start : start + step]
        cams = np.maximum(maps_on_image(maps[idx], place, size), 0.0)  # what the overlay shows: ReLU on the image
        for i, cam in zip(idx, cams, strict=True):
            hits[i] = pointing_game(cam, objects[i])
            energies[i] = energy_in_box(cam, objects[i])
    return hits, energies
