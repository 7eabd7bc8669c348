"""Reading what users give: images and video (and writing video back). Nothing here knows torch models.

Decoding is defensive (uploads and command lines are untrusted): limits are checked before
pixels are decoded, and every failure is a :class:`~cam_core.errors.CamError` naming the input.
"""

from .folders import output_folder
from .images import IMAGE_EXTENSIONS, MAX_PIXELS, SUPPORTED_FORMATS, ImageError, load_image
from .samples import (
    SAMPLE_CLASSES,
    SAMPLE_CLIP,
    SAMPLE_NAMES,
    load_sample,
    sample_variants,
    write_sample_clip,
    write_sample_folder,
)
from .video import VIDEO_EXTENSIONS, Frame, Sampling, VideoError, VideoInfo, VideoWriter, probe_video, read_frames
from .zips import ZipDirectory, ZipError, check_zip, extract_zip

__all__ = [
    "IMAGE_EXTENSIONS",
    "MAX_PIXELS",
    "SAMPLE_CLASSES",
    "SAMPLE_CLIP",
    "SAMPLE_NAMES",
    "SUPPORTED_FORMATS",
    "VIDEO_EXTENSIONS",
    "Frame",
    "ImageError",
    "Sampling",
    "VideoError",
    "VideoInfo",
    "VideoWriter",
    "ZipDirectory",
    "ZipError",
    "check_zip",
    "extract_zip",
    "load_image",
    "load_sample",
    "output_folder",
    "probe_video",
    "read_frames",
    "sample_variants",
    "write_sample_clip",
    "write_sample_folder",
]
