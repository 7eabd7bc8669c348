"""Sample photos for trying the dashboard without an upload.

They come with scikit-image (files inside the package, no download) and are
photographs of ImageNet classes, so the default model has something to find:
a tabby cat, an espresso, an astronaut, a rocket launch and a motorcycle.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache

import numpy as np
from PIL import Image

from ..errors import CamError, choices_hint

__all__ = ["SAMPLE_NAMES", "load_sample"]


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
