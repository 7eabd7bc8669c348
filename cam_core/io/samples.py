"""Sample photos (and a clip made of them) for trying the dashboard without an upload.

They come with scikit-image (files inside the package, no download) and are
photographs of ImageNet classes, so the default model has something to find:
a tabby cat, an espresso, an astronaut, a rocket launch and a motorcycle.
"""

from __future__ import annotations

import importlib.util
from functools import cache
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import CamError, choices_hint

__all__ = [
    "SAMPLE_CLASSES",
    "SAMPLE_CLIP",
    "SAMPLE_NAMES",
    "load_sample",
    "sample_variants",
    "write_sample_clip",
    "write_sample_folder",
]


# The photos are files inside scikit-image's package, read with Pillow: the same pixels as
# ``skimage.data.chelsea()`` and its kin (a test compares them), without importing ``skimage.io``
# (0.3 s, on the first visitor's page open).
_FILES: dict[str, str] = {
    "chelsea": "chelsea.png",
    "coffee": "coffee.png",
    "astronaut": "astronaut.png",
    "rocket": "rocket.jpg",
    "motorcycle": "motorcycle_left.png",  # the left view of the stereo pair
}
SAMPLE_NAMES: tuple[str, ...] = tuple(_FILES)


def _data_folder() -> Path:
    spec = importlib.util.find_spec("skimage")
    if spec is None or not spec.submodule_search_locations:
        raise CamError("the sample photos come with scikit-image, which is not installed (pip install scikit-image)")
    return Path(spec.submodule_search_locations[0]) / "data"


@cache
def _load(name: str) -> Image.Image:
    with Image.open(_data_folder() / _FILES[name]) as img:
        return img.convert("RGB")


def load_sample(name: str) -> Image.Image:
    """Return the sample photo ``name`` as an RGB image (decoded once, a fresh copy each call).

    Args:
        name: One of :data:`SAMPLE_NAMES`.

    Returns:
        An RGB ``PIL.Image.Image`` the caller may modify.

    Raises:
        CamError: ``name`` is not a sample.
    """
    if name not in _FILES:
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


# The ImageNet class each sample shows (the astronaut has none), for folders laid out as ImageFolder.
SAMPLE_CLASSES: dict[str, str] = {"chelsea": "tabby", "coffee": "espresso", "rocket": "missile", "motorcycle": "moped"}
# Crops keep one of a few aspect ratios, as photo collections do: images of one ratio share an input size
# under the "whole" fit, so a batch engine can stack them.
_ASPECTS = ((4, 3), (3, 2), (1, 1), (3, 4))


def sample_variants(name: str, count: int, seed: int = 0) -> list[Image.Image]:
    """``count`` versions of the sample ``name``: the photo itself, then crops, flips and colour jitter.

    Deterministic for a ``seed``; for test folders and benchmarks that need many distinct images offline.
    """
    from PIL import ImageEnhance, ImageOps

    base = load_sample(name)
    rng = np.random.default_rng([seed, SAMPLE_NAMES.index(name)])
    out = [base]
    while len(out) < count:
        aw, ah = _ASPECTS[int(rng.integers(len(_ASPECTS)))]
        unit = int(min(base.width / aw, base.height / ah) * rng.uniform(0.6, 0.95))
        w, h = aw * unit, ah * unit
        left, top = int(rng.integers(base.width - w + 1)), int(rng.integers(base.height - h + 1))
        im = base.crop((left, top, left + w, top + h))
        if rng.random() < 0.5:
            im = ImageOps.mirror(im)
        for enhance in (ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color):
            im = enhance(im).enhance(float(rng.uniform(0.75, 1.25)))
        out.append(im)
    return out


def write_sample_folder(folder: str | Path, per_photo: int = 6, seed: int = 0) -> list[Path]:
    """Write variants of the labelled samples as JPEGs in an ImageFolder layout: ``folder/<class>/<photo>_<i>.jpg``.

    Returns:
        The files written (existing ones with the same name are replaced).
    """
    written = []
    for name, cls in SAMPLE_CLASSES.items():
        sub = Path(folder) / cls
        sub.mkdir(parents=True, exist_ok=True)
        for i, im in enumerate(sample_variants(name, per_photo, seed)):
            path = sub / f"{name}_{i:03d}.jpg"
            im.save(path, quality=90)
            written.append(path)
    return written
