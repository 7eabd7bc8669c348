"""A results row's image as the model saw it (the run's preprocessing and fit), small, with a map blended over it.

What the atlas sheet's examples and the Dataset page's atlas and contrast panels draw: a few fixed pictures,
blended here (``render.overlay``) rather than in the browser.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from PIL import Image

from ..engine import upsample
from ..errors import CamError
from ..io.images import load_image
from ..models.preprocess import Preprocess
from ..render import model_view, overlay

if TYPE_CHECKING:
    from ..batch.query import ResultsQuery

__all__ = ["PICTURE_SIDE", "Picture", "picture", "rows_with_maps", "with_map"]

PICTURE_SIDE = 200


@dataclass(frozen=True)
class Picture:
    """The model's view of an image, shrunk (``rgb``), with the input's size and the image's box in it."""

    rgb: np.ndarray
    input_size: tuple[int, int]
    region: tuple[int, int, int, int] | None


def picture(path: str, preprocess: Preprocess, fit: str, side: int = PICTURE_SIDE) -> Picture:
    """Decode ``path`` and preprocess it as the run did; the model's view with its longer side ``side``."""
    x, place = preprocess.prepare(load_image(path), fit)  # type: ignore[arg-type]
    view = model_view(x, preprocess.mean, preprocess.std)
    scale = side / max(view.shape[:2])
    size = (max(1, round(view.shape[1] * scale)), max(1, round(view.shape[0] * scale)))
    rgb = np.asarray(Image.fromarray(view).resize(size, Image.Resampling.LANCZOS))
    return Picture(rgb, place.size, place.content if place.padded else None)


def with_map(pic: Picture, cam: np.ndarray, view: str = "relu", alpha: float = 0.6) -> np.ndarray:
    """``cam`` (h, w, raw signed) upsampled onto the picture as the gallery does, blended: RGB uint8."""
    maps = torch.tensor(np.array(cam, dtype=np.float32))[None, None]  # a copy: table buffers are read-only
    up = upsample(maps, pic.input_size, pic.rgb.shape[:2], pic.region)[0, 0].numpy()
    return overlay(pic.rgb, up, view=view, cmap="bwr" if view == "signed" else "jet", alpha=alpha)  # type: ignore[arg-type]


def rows_with_maps(results: ResultsQuery, paths: Sequence[str], method: str, whose: str,
                   load: Callable[[str], Picture], alpha: float = 0.6) -> dict[str, np.ndarray]:
    """``paths`` → each image with its own stored map of ``whose`` class (``pred`` or ``label``), read in one query
    and one pass over the maps; ``load(path)`` gives the picture (it may raise for a file gone, unreadable or not
    this visitor's: that path is left out)."""
    rows = results.page("path", {"paths": list(paths)}, 0, len(paths), method, whose)
    maps = results.maps([int(r["rid"]) for r in rows], method)
    out = {}
    for r in rows:
        cams = maps.get(int(r["rid"]))
        try:
            if cams is not None:
                out[r["path"]] = with_map(load(r["path"]), cams[min(int(r["slot"]), len(cams) - 1)], "relu", alpha)
        except (CamError, OSError):
            continue
    return out
