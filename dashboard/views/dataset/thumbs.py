"""Gallery thumbnails, built only for the rows on screen and kept in a process-wide cache.

A thumbnail is two small pictures: the image as the model saw it (the run's own preprocessing
and fit, JPEG) and the map's colour layer with the evidence as alpha (WebP), drawn over it in the
browser. The browser's opacity then blends them exactly as ``cam_core.render.overlay`` would, so
the opacity control redraws nothing. The base picture is shared by every method and view.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from cam_core.cache import BoundedCache
from cam_core.engine import upsample
from cam_core.errors import CamError
from cam_core.io.images import load_image
from cam_core.models.preprocess import Placement, Preprocess
from cam_core.render import heat_rgba, image_uri, model_view
from dashboard.figures import format_prob

__all__ = ["THUMB_SIDE", "Base", "Thumb", "ThumbCache", "build_base", "build_heat", "caption_lines", "file_stamp",
           "heat_uri"]

THUMB_SIDE = 224  # the longer side, in pixels (shown at about 180 px; sharp on HiDPI screens)


@dataclass(frozen=True)
class Base:
    """The image as the model saw it, small: a JPEG data URI, its size, and the image's box in the input."""

    uri: str
    size: tuple[int, int]  # (height, width) of the thumbnail
    input_size: tuple[int, int]
    region: tuple[int, int, int, int] | None
    place: Placement | None = None  # where the image lies in the input (boxes are drawn through it)


@dataclass(frozen=True)
class Thumb:
    """What the gallery draws for one row: ``base`` and ``heat`` data URIs, or ``problem`` when there is none."""

    base: str = ""
    heat: str = ""
    problem: str = ""
    place: Placement | None = None


def _fit(size: tuple[int, int], side: int) -> tuple[int, int]:
    h, w = size
    scale = side / max(h, w)
    return max(1, round(h * scale)), max(1, round(w * scale))


def build_base(path: str, preprocess: Preprocess, fit: str, side: int = THUMB_SIDE) -> Base:
    """Decode ``path`` and preprocess it as the run did; the model's view, shrunk to ``side``."""
    x, place = preprocess.prepare(load_image(path), fit)  # type: ignore[arg-type]
    view = model_view(x, preprocess.mean, preprocess.std)
    size = _fit(view.shape[:2], side)
    im = Image.fromarray(view).resize((size[1], size[0]), Image.Resampling.LANCZOS)
    return Base(image_uri(im, "JPEG", quality=85), size, place.size, place.content if place.padded else None, place)


def build_heat(cam: np.ndarray, base: Base, view: str, cmap: str) -> str:
    """The map's colour layer over ``base``: upsampled as ``ExplainResult.upsampled`` does, then coloured."""
    maps = torch.tensor(np.asarray(cam, dtype=np.float32))[None, None]  # a copy: table buffers are read-only
    up = upsample(maps, base.input_size, base.size, base.region)[0, 0].numpy()
    return heat_uri(heat_rgba(up, view=view, cmap=cmap))  # type: ignore[arg-type]


def heat_uri(rgba: np.ndarray) -> str:
    """A colour layer (RGBA) as a WebP data URI, encoded with WebP's fastest method (the default, method 4, took
    most of a gallery page's build for files a third smaller, on a page that sends a few dozen of them)."""
    return image_uri(Image.fromarray(rgba, "RGBA"), "WEBP", quality=85, method=0)


class ThumbCache:
    """Process-wide LRU of base pictures and heat layers (entries are a few kB each); two sessions asking for the
    same thumbnail at once build it once."""

    def __init__(self, max_entries: int = 4000) -> None:
        self.max_entries = max_entries
        self._items: BoundedCache[object] = BoundedCache(max_entries=max_entries)
        self.built = 0  # how many entries were computed (tests check that only what is shown is built)

    def get(self, key: Hashable, build: Callable[[], object]) -> object:
        """The entry for ``key``, built (once) when missing."""

        def counted() -> object:
            value = build()
            self.built += 1  # once per key built: waiters on the same key do not get here
            return value

        return self._items.get_or_build(key, counted)

    def thumb(
        self, path: str, stamp: tuple[int, int], preprocess: Preprocess, fit: str, map_key: Hashable,
        cam: Callable[[], np.ndarray | None], view: str, cmap: str,
    ) -> Thumb:
        """The thumbnail of one row; ``stamp`` (size, mtime) of the file names the base, ``map_key`` the map."""
        try:
            base = self.get(("base", path, stamp, preprocess, fit), lambda: build_base(path, preprocess, fit))
        except CamError as exc:
            return Thumb(problem=f"cannot be shown: {exc}")
        except OSError as exc:
            return Thumb(problem=f"cannot be read: {exc.strerror or exc}")

        def heat() -> str:  # "" for a row without a map
            values = cam()
            return "" if values is None else build_heat(values, base, view, cmap)  # type: ignore[arg-type]

        return Thumb(base=base.uri, heat=str(self.get(("heat", map_key, view, cmap), heat)),  # type: ignore[union-attr]
                     place=base.place)  # type: ignore[union-attr]


def file_stamp(path: str) -> tuple[int, int] | None:
    """(size, mtime_ns) of a file, or ``None`` when it is gone."""
    try:
        st = Path(path).stat()
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns


def caption_lines(row: dict) -> tuple[list[str], str]:
    """Caption lines and the badge (right/wrong) of a gallery row."""
    pred = f"pred {row['pred_name']} {format_prob(float(row['prob_pred']))}"
    if row["label"] is None:
        return [pred, f"entropy {row['entropy']:.2f}"], ""
    right = bool(row["correct"])
    true = f"true {row['label_name']}" + ("" if right else f" ({format_prob(float(row['prob_label'] or 0.0))})")
    return [true, pred], "right" if right else "wrong"
