"""Does a map point at the object? The pointing game and the energy in the box, against ground truth.

Both are measured **in the original image's pixels**: each map is carried back through the fit
(the bilinear inverse the overlays use, :func:`cam_core.render.maps_on_image`, as two small matrices:
:func:`~cam_core.render.carry_matrices`), so the number describes the picture a person sees, and
the boxes or masks stay as the user drew them. The other
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
from dataclasses import dataclass

import numpy as np
import torch
from scipy.ndimage import distance_transform_edt

from ..models.preprocess import Placement
from ..render import carry_matrices

__all__ = [
    "TOLERANCE_PX",
    "WRONG_REASONS_ENERGY",
    "Region",
    "box_window",
    "boxes_on_input",
    "class_objects",
    "energy_in_box",
    "localise",
    "pointing_game",
    "visible_window",
]

TOLERANCE_PX = 15.0
"""The pointing game's tolerance, in the original image's pixels (Zhang et al.; Quantus leaves it to the mask)."""
WRONG_REASONS_ENERGY = 0.5
"""A correct prediction whose map has less than this share of its mass on the object is "right for the wrong
reasons": most of what the map shows lies outside the object."""

Box = tuple[float, float, float, float]
Window = tuple[int, int, int, int]  # top, bottom, left, right: rows [top, bottom), columns [left, right)


def _span(lo: float, hi: float, n: int) -> tuple[int, int]:
    """The pixels ``[first, stop)`` of ``n`` whose centre ``k + 0.5`` lies in ``[lo, hi)``."""
    return min(max(math.ceil(lo - 0.5), 0), n), min(max(math.ceil(hi - 0.5), 0), n)


def box_window(box: Box, size: tuple[int, int]) -> Window:
    """The pixels of a ``size`` = (width, height) image whose centre lies in ``box`` (x0, y0, x1, y1)."""
    (left, right), (top, bottom) = _span(box[0], box[2], size[0]), _span(box[1], box[3], size[1])
    return top, bottom, left, right


def visible_window(place: Placement, size: tuple[int, int]) -> Window:
    """The pixels the model saw (all but what a centre crop cut away): centres within ``place.used``, inclusive,
    as :func:`~cam_core.render.maps_on_image` decides."""
    u_left, u_top, u_right, u_bottom = place.used
    width, height = size
    return (min(max(math.ceil(u_top - 0.5), 0), height), min(max(math.floor(u_bottom - 0.5) + 1, 0), height),
            min(max(math.ceil(u_left - 0.5), 0), width), min(max(math.floor(u_right - 0.5) + 1, 0), width))


def boxes_on_input(boxes: Sequence[Box], place: Placement) -> list[Box | None]:
    """Boxes on the original image → on the model's input (what the Dataset page's thumbnails show), the fit
    applied forwards and each box cut to what the model saw; ``None`` for a box the crop cut away entirely."""
    top, left, ch, cw = place.content
    u_left, u_top, u_right, u_bottom = place.used
    sx, sy = cw / (u_right - u_left), ch / (u_bottom - u_top)
    out: list[Box | None] = []
    for x0, y0, x1, y1 in boxes:
        x0, x1 = max(x0, u_left), min(x1, u_right)
        y0, y1 = max(y0, u_top), min(y1, u_bottom)
        out.append((left + (x0 - u_left) * sx, top + (y0 - u_top) * sy, left + (x1 - u_left) * sx,
                    top + (y1 - u_top) * sy) if x1 > x0 and y1 > y0 else None)
    return out


def _meet(a: Window, b: Window) -> Window:
    top, bottom, left, right = max(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), min(a[3], b[3])
    return top, max(top, bottom), left, max(left, right)


@dataclass(frozen=True)
class Region:
    """An object's pixels: a window of the image and which of its pixels belong (``inside``, bool)."""

    window: Window
    inside: np.ndarray

    @classmethod
    def union(cls, windows: Sequence[Window]) -> Region | None:
        """The pixels of any of ``windows`` (``None`` when they hold none)."""
        windows = [w for w in windows if w[1] > w[0] and w[3] > w[2]]
        if not windows:
            return None
        top, bottom = min(w[0] for w in windows), max(w[1] for w in windows)
        left, right = min(w[2] for w in windows), max(w[3] for w in windows)
        inside = np.zeros((bottom - top, right - left), dtype=bool)
        for t, b, lo, hi in windows:
            inside[t - top : b - top, lo - left : hi - left] = True
        return cls((top, bottom, left, right), inside)

    @classmethod
    def of_mask(cls, mask: np.ndarray, within: Window) -> Region | None:
        """The pixels of ``mask`` (bool (H, W)) inside the window ``within``; ``None`` when there are none."""
        part = mask[within[0] : within[1], within[2] : within[3]]
        rows, cols = np.nonzero(part.any(axis=1))[0], np.nonzero(part.any(axis=0))[0]
        if not len(rows):
            return None
        top, left = within[0] + rows[0], within[2] + cols[0]
        window = (top, within[0] + rows[-1] + 1, left, within[2] + cols[-1] + 1)
        return cls(window, mask[window[0] : window[1], window[2] : window[3]].copy())

    @property
    def pixels(self) -> int:
        """How many pixels the object has."""
        return int(self.inside.sum())

    def within(self, window: Window) -> np.ndarray:
        """bool over ``window`` of the image: which of its pixels are the object's."""
        out = np.zeros((window[1] - window[0], window[3] - window[2]), dtype=bool)
        t, b, lo, hi = _meet(self.window, window)
        if b > t and hi > lo:
            out[t - window[0] : b - window[0], lo - window[2] : hi - window[2]] = self.inside[
                t - self.window[0] : b - self.window[0], lo - self.window[2] : hi - self.window[2]]
        return out

    def mask(self, shape: tuple[int, int]) -> np.ndarray:
        """bool (H, W) over the whole image."""
        return self.within((0, shape[0], 0, shape[1]))


def class_objects(
    boxes: Sequence[Box],
    labels: Sequence[int],
    labelled: bool,
    class_ids: Sequence[int],
    size: tuple[int, int],
    visible: Window,
    mask: np.ndarray | None = None,
) -> tuple[list[Region | None], bool]:
    """Each explained class's object (only what the model saw; ``None``: nothing to score), and whether the
    fit cut part of any object away.

    Args:
        boxes: The image's boxes in its pixels.
        labels: Their class ids (−1: a name that matched no class of the model).
        labelled: Whether the source names classes: then a class is scored on its own boxes only; if not,
            on all of them.
        class_ids: The explained classes.
        size: (width, height) of the image.
        visible: :func:`visible_window`.
        mask: A mask image's object (bool (H, W)) instead of boxes: it counts for every class.
    """
    if mask is not None:
        whole = Region.of_mask(mask, (0, size[1], 0, size[0]))
        seen = Region.of_mask(mask, visible)
        cut = whole is not None and (seen is None or seen.pixels < whole.pixels)
        return [seen] * len(class_ids), cut
    windows = [box_window(b, size) for b in boxes]
    seen = [_meet(w, visible) for w in windows]
    cut = any(s != w and w[1] > w[0] and w[3] > w[2] for s, w in zip(seen, windows, strict=True))
    objects = [Region.union([s for s, lab in zip(seen, labels, strict=True) if lab == c or not labelled])
               for c in class_ids]
    return objects, cut


def pointing_game(cam: np.ndarray, obj: Region | None, tolerance: float = TOLERANCE_PX) -> bool | None:
    """Whether a maximum of ``cam`` (ReLU'd, (H, W) on the image) lies within ``tolerance`` pixels of ``obj``.

    Every pixel that ties for the maximum counts (Quantus' rule: any of them on the object is a hit).
    ``None`` when there is no object; a miss when the map is blank.
    """
    if obj is None:
        return None
    top = cam.max(initial=0.0)
    if not top > 0:
        return False
    rows, cols = np.divmod(np.flatnonzero(cam == top), cam.shape[1])
    reach = math.ceil(max(tolerance, 0))
    window = (max(int(rows.min()) - reach, 0), int(rows.max()) + reach + 1,
              max(int(cols.min()) - reach, 0), int(cols.max()) + reach + 1)
    near = obj.within(window)  # an object pixel outside this window is farther than the tolerance from every peak
    if not near.any():
        return False
    rows, cols = rows - window[0], cols - window[2]
    if near[rows, cols].any():
        return True
    distance = distance_transform_edt(~near)  # to the nearest object pixel
    return bool((distance[rows, cols] <= tolerance).any())


def energy_in_box(cam: np.ndarray, obj: Region | None) -> float | None:
    """The share of ``cam``'s mass (ReLU'd, (H, W) on the image) on ``obj``; ``None`` without an object."""
    if obj is None:
        return None
    total = float(cam.sum())  # float32, summed pairwise: close to float64's, at a third of the time
    if not total > 0:
        return 0.0
    t, b, lo, hi = obj.window
    part = cam[t:b, lo:hi]
    return float(part.sum() if obj.inside.all() else part[obj.inside].sum()) / total


def localise(
    maps: np.ndarray, place: Placement, size: tuple[int, int], objects: Sequence[Region | None]
) -> tuple[list[bool | None], list[float | None]]:
    """Pointing-game hits and energies of ``maps`` against ``objects``, one each per map.

    Args:
        maps: (N, h, w) raw signed maps over the model's input (a letterbox's pad already zero).
        place: How the image met the model.
        size: (width, height) of the original image.
        objects: The object of each map (``N`` of them; ``None``: not scored).
    """
    hits: list[bool | None] = [None] * len(maps)
    energies: list[float | None] = [None] * len(maps)
    if all(o is None for o in objects):
        return hits, energies
    # torch's matrix product, not numpy's: it keeps to the thread count the batch engine's streams set
    wy, wx = (torch.from_numpy(a) for a in carry_matrices(place, size, maps.shape[-2:]))
    wxt = wx.T.contiguous()
    for i, obj in enumerate(objects):
        if obj is not None:
            m = torch.from_numpy(np.ascontiguousarray(maps[i], dtype=np.float32))
            cam = torch.mm(wy @ m, wxt).clamp_(min=0).numpy()  # the overlay's picture: the map on the photo, ReLU'd
            hits[i], energies[i] = pointing_game(cam, obj), energy_in_box(cam, obj)
    return hits, energies
