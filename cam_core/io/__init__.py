"""Reading what users give: images (and, as the product grows, video). Nothing here knows torch models.

Decoding is defensive (uploads and command lines are untrusted): limits are checked before
pixels are decoded, and every failure is a :class:`~cam_core.errors.CamError` naming the input.
"""

from .folders import output_folder
from .images import IMAGE_EXTENSIONS, MAX_PIXELS, SUPPORTED_FORMATS, ImageError, load_image
from .samples import SAMPLE_CLASSES, SAMPLE_NAMES, load_sample, sample_variants, write_sample_folder

__all__ = [
    "IMAGE_EXTENSIONS",
    "MAX_PIXELS",
    "SAMPLE_CLASSES",
    "SAMPLE_NAMES",
    "SUPPORTED_FORMATS",
    "ImageError",
    "load_image",
    "load_sample",
    "output_folder",
    "sample_variants",
    "write_sample_folder",
]
