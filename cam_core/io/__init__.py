"""Reading what users give: images (and, as the product grows, video). Nothing here knows torch models.

Decoding is defensive (uploads and command lines are untrusted): limits are checked before
pixels are decoded, and every failure is a :class:`~cam_core.errors.CamError` naming the input.
"""

from .images import IMAGE_EXTENSIONS, MAX_PIXELS, SUPPORTED_FORMATS, ImageError, load_image
from .samples import SAMPLE_NAMES, load_sample

__all__ = [
    "IMAGE_EXTENSIONS",
    "MAX_PIXELS",
    "SAMPLE_NAMES",
    "SUPPORTED_FORMATS",
    "ImageError",
    "load_image",
    "load_sample",
]
