"""Sample photos (and a clip made of them) for trying the dashboard without an upload.

They come with scikit-image (files inside the package, no download) and are
photographs of ImageNet classes, so the default model has something to find:
a tabby cat, an espresso, an astronaut, a rocket launch and a motorcycle.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import CamError, choices_hint

__all__ = ["SAMPLE_CLIP", "SAMPLE_NAMES", "load_sample", "write_sample_clip"]


def _motorcycle() -> np.ndarray:
    from skimage import data

    return data.stereo_motorcycle()[0]  # left view of the stereo pair


def _skimage(name: str) -> Callable[[], np.ndarray]:
    def fetch() -> np.ndarray:
        from skimage import data

        return getattr(data, name)()

    return fetch


_SOURCES: dict[str, Callable[[], np.ndarray]] = {
    "chelsea": _skimage("chelsea"),
    "coffee": _skimage("coffee"),
    "astronaut": _skimage("astronaut"),
    "rocket": _skimage("rocket"),
    "motorcycle": _motorcycle,
}
SAMPLE_NAMES: tuple[str, ...] = tuple(_SOURCES)


@cache
def _load(name: str) -> Image.Image:
    return Image.fromarray(np.ascontiguousarray(_SOURCES[name]()[..., :3])).convert("RGB")


def load_sample(name: str) -> Image.Image:
    """Return the sample photo ``name`` as an RGB image (decoded once, a fresh copy each call).

    Args:
        name: One of :data:`SAMPLE_NAMES`.

    Returns:
        An RGB ``PIL.Image.Image`` the caller may modify.

    Raises:
        CamError: ``name`` is not a sample.
    """
    if name not in _SOURCES:
        raise CamError(f"unknown sample image {name!r}; choose one of: {choices_hint(SAMPLE_NAMES)}")
    return _load(name).copy()


SAMPLE_CLIP = "cat_to_espresso"


def write_sample_clip(path: str | Path, *, size: tuple[int, int] = (384, 216), frames: int = 36, fps: int = 12) -> Path:
    """Write a short clip made from the sample photos, for trying video without an upload.

    A camera pans along the cat (chelsea) and the espresso (coffee) standing side by side, so the
    model's top class changes half-way, as in a real clip where the scene changes.

    Args:
        path: The MP4 file to write.
        size: (width, height) of the clip.
        frames: How many frames (the pan's steps).
        fps: Its frame rate.

    Returns:
        ``path``.
    """
    from .video import VideoWriter

    height = 300
    cat = _load("chelsea")
    cup = _load("coffee")
    strip = Image.new("RGB", (cat.width + round(cup.width * height / cup.height), height))
    strip.paste(cat.resize((cat.width, height)), (0, 0))
    strip.paste(cup.resize((strip.width - cat.width, height)), (cat.width, 0))
    view_w = round(height * size[0] / size[1])
    path = Path(path)
    with VideoWriter(path, fps, size) as writer:
        for i in range(frames):
            left = round((strip.width - view_w) * i / max(1, frames - 1))
            view = strip.crop((left, 0, left + view_w, height)).resize(size, Image.Resampling.BILINEAR)
            writer.write(np.asarray(view))
    return path
