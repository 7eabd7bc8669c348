"""Maps drawn over photos for a report: small (a report holds many), on the photo's own grid (the fit undone,
as the overlay PNGs are), with the scale the colour bar shows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import CamError
from ..io.images import load_image
from ..models.preprocess import Placement, Preprocess
from ..render import View, maps_on_image, overlay, place_on_grid
from .html import colour_scale, esc, picture

__all__ = ["map_on_file", "map_over_photo", "shrink"]


def shrink(photo: Image.Image, side: int) -> Image.Image:
    """``photo`` in RGB with its longer side at most ``side`` pixels."""
    photo = photo.convert("RGB")
    scale = side / max(photo.size)
    if scale >= 1:
        return photo
    size = (max(1, round(photo.width * scale)), max(1, round(photo.height * scale)))
    return photo.resize(size, Image.Resampling.LANCZOS)


def map_over_photo(
    photo: Image.Image,
    cam: np.ndarray,
    place: Placement,
    *,
    side: int,
    view: View = "relu",
    cmap: str | None = None,
    alpha: float = 0.6,
) -> tuple[np.ndarray, float]:
    """A raw signed map (h, w; the layer's grid or the input's) over ``photo`` shrunk to ``side``: the overlay
    (RGB uint8) and its colour scale's top (the largest positive value, or the largest magnitude signed; 0 for a
    blank map), in the map's own units.

    ``place`` says how the full-size photo met the model; its box in the photo is scaled with the photo, so the
    map lands where :func:`~cam_core.render.maps_on_image` puts it on the full-size one.
    """
    small = shrink(photo, side)
    place = place_on_grid(place, photo.size, small.size)
    on = maps_on_image(np.array(cam, dtype=np.float32)[None], place, small.size)[0]  # a copy: may be read-only
    top = float(np.abs(on).max() if view == "signed" else np.maximum(on, 0).max()) if on.size else 0.0
    rgb = overlay(np.asarray(small), on, view=view, cmap=cmap, alpha=alpha, top=top if top > 0 else None)
    return rgb, top


def map_on_file(
    path: str, cam: np.ndarray | None, preprocess: Preprocess, *, side: int, alt: str, view: View = "relu"
) -> str:
    """``cam`` over the photo in ``path`` as a batch run's model saw it (``preprocess``, its fit), as an ``<img>``
    with its colour scale; a line saying why where there is none: no map of the class, or a photo that cannot be
    read here (a report made on another machine than the run)."""
    if cam is None:
        return '<p class="muted">no map of this class</p>'
    try:
        photo = load_image(path)
        place = preprocess.place(photo.width, photo.height, preprocess.fit)
    except (CamError, OSError):  # its message names the path: a report may leave the server, the path may not
        return f'<p class="muted">the photo {esc(Path(path).name)} cannot be read here</p>'
    rgb, top = map_over_photo(photo, cam, place, side=side, view=view)
    return picture(rgb, side=side, alt=alt) + colour_scale(top, view)
