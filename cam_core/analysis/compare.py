"""How far a class's map moved between two models (or two runs) on the same photo.

One measure serves the image page, the ``compare`` command and the report, so that "the map moved by
0.4" means the same thing everywhere: ``shift = 1 − r``, with ``r`` the Pearson correlation of the two
ReLU'd maps on a common grid over the photo (0: same place, 1: unrelated, up to 2: opposite), and the
distance between the two maps' peaks in the photo's pixels. Correlation, not a difference of values, so
two models whose maps differ only in scale (a logit temperature, another layer's magnitude) did not move.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..models.preprocess import Placement
from ..render import maps_on_image, place_on_grid

__all__ = ["PHOTO_SIDE", "MapShift", "map_shift", "match_classes", "normalise_class_name", "on_grid", "on_photo"]


PHOTO_SIDE = 112  # the longer side of the grid two models' maps are compared on (``compare --photo-side``)

@dataclass(frozen=True)
class MapShift:
    """``shift`` = 1 − ``correlation``; ``peak_px``: the peaks' distance in photo pixels (nan when a map is blank)."""

    shift: float
    correlation: float
    peak_px: float


def on_grid(cam: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A map over the whole photo (h, w), bilinearly to ``size`` (rows, columns), ReLU'd."""
    t = torch.from_numpy(np.ascontiguousarray(cam, dtype=np.float32))[None, None]
    if tuple(t.shape[-2:]) != tuple(size):
        t = F.interpolate(t, size=size, mode="bilinear", align_corners=False)
    return np.maximum(t[0, 0].numpy(), 0.0)


def _peak(m: np.ndarray, cell: tuple[float, float]) -> tuple[float, float]:
    """Centre of the peak cell, in photo pixels (y, x)."""
    r, c = np.unravel_index(int(np.argmax(m)), m.shape)
    return (r + 0.5) * cell[0], (c + 0.5) * cell[1]


def on_photo(cams: np.ndarray, place: Placement, size: tuple[int, int], side: int = PHOTO_SIDE) -> np.ndarray:
    """Maps (K, h, w) over one model's input → over the photo (``size`` = (width, height)), its longer side
    shrunk to ``side`` (never enlarged): the grid two models' maps are compared on."""
    width, height = size
    scale = min(1.0, side / max(width, height))
    w, h = max(1, round(width * scale)), max(1, round(height * scale))
    return maps_on_image(cams, place_on_grid(place, size, (w, h)), (w, h))


def map_shift(map_a: np.ndarray, map_b: np.ndarray, photo_size: tuple[int, int] | None = None) -> MapShift:
    """How far the map moved from ``map_a`` to ``map_b``.

    Args:
        map_a, map_b: Two signed maps over the same whole photo (each (h, w), any resolution: callers bring a
            model's map onto the photo with :func:`on_photo`, which undoes that
            model's fit on a reduced copy of the photo).
        photo_size: The photo's (height, width) in pixels, for ``peak_px``; default the common grid's.

    Both are compared on the finer of the two grids. A map with no positive evidence (blank after ReLU) has no
    place: two blank maps did not move (shift 0); one blank map against a live one moved entirely (shift 1).
    """
    grid = (max(map_a.shape[0], map_b.shape[0]), max(map_a.shape[1], map_b.shape[1]))
    a, b = on_grid(map_a, grid).ravel(), on_grid(map_b, grid).ravel()
    live_a, live_b = bool(a.max() > 0), bool(b.max() > 0)
    if not (live_a and live_b):
        same = live_a == live_b
        return MapShift(shift=0.0 if same else 1.0, correlation=1.0 if same else 0.0, peak_px=math.nan)
    a, b = a.astype(np.float64) - a.mean(), b.astype(np.float64) - b.mean()
    norm = math.sqrt(float(a @ a) * float(b @ b))
    r = float(a @ b) / norm if norm > 0 else float(np.array_equal(a, b))
    H, W = photo_size or grid
    cell = (H / grid[0], W / grid[1])
    (ya, xa), (yb, xb) = _peak(on_grid(map_a, grid), cell), _peak(on_grid(map_b, grid), cell)
    return MapShift(shift=1.0 - r, correlation=r, peak_px=math.hypot(ya - yb, xa - xb))


def normalise_class_name(name: str) -> str:
    """A class name as matching reads it: case, underscores, hyphens and runs of spaces do not count
    (``"Egyptian_cat"``, ``"egyptian cat"`` and ``"Egyptian-Cat"`` are one class)."""
    return re.sub(r"[\s_\-]+", " ", name).strip().casefold()


def match_classes(names_a: Sequence[str], names_b: Sequence[str]) -> list[int | None]:
    """For each class of model A, the index of the same class in model B (``None``: B has no such class).

    Matched by normalised name (:func:`normalise_class_name`), not by index, so a fine-tuned head with another
    label set (fewer classes, another order) still lines up. A name A has several times (ImageNet's two
    *crane*s, two *maillot*s) matches B's occurrences of it in order: the first with the first, and so on.
    Two label sets equal once normalised therefore match index for index.
    """
    where: dict[str, list[int]] = defaultdict(list)
    for j, name in enumerate(names_b):
        where[normalise_class_name(name)].append(j)
    seen: dict[str, int] = defaultdict(int)
    out: list[int | None] = []
    for name in names_a:
        key = normalise_class_name(name)
        nth = seen[key]
        seen[key] += 1
        out.append(where[key][nth] if nth < len(where.get(key, ())) else None)
    return out
