"""Decode any image a user can give into an upright RGB ``PIL.Image``.

Defensive on purpose (the input comes from uploads and command lines): only
common formats are decoded, the pixel count is checked from the header before
any pixel is decoded, the first frame of an animation is used, EXIF orientation
is applied, and every colour mode (palette, alpha, 16-bit, float, CMYK, 1-bit)
ends up as 8-bit RGB. Failures raise :class:`ImageError` naming the input.

Pillow's own decompression-bomb guard (``Image.MAX_IMAGE_PIXELS``, a warning
above ~89 MP and an error above twice that) is a process-wide setting; rather
than change it, or escalate its warning with ``warnings`` filters (also
process-wide, and not thread-safe under Streamlit), we check ``max_pixels``
ourselves on the lazily opened image, which is stricter by default.
"""

from __future__ import annotations

import io
import struct
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import CamError
from ..limits import MAX_DECODE_ASPECT, MAX_PIXELS

__all__ = ["IMAGE_EXTENSIONS", "MAX_PIXELS", "SUPPORTED_FORMATS", "ImageError", "load_image"]

# Display names; Pillow's identifiers are the upper-case forms.
SUPPORTED_FORMATS: tuple[str, ...] = ("PNG", "JPEG", "WebP", "BMP", "TIFF", "GIF")
_PIL_FORMATS = tuple(f.upper() for f in SUPPORTED_FORMATS)
# File name extensions of those formats, e.g. for an upload widget's ``type=``.
IMAGE_EXTENSIONS: tuple[str, ...] = ("png", "jpg", "jpeg", "webp", "bmp", "tif", "tiff", "gif")
_BACKGROUND = (255, 255, 255)


class ImageError(CamError):
    """An input that is not a readable image, or one too large to decode."""


def _label(source: str | Path | bytes | BinaryIO, name: str | None) -> str:
    if name:
        return name
    if isinstance(source, str | Path):
        return str(source)
    if isinstance(source, bytes | bytearray | memoryview):
        return "the uploaded data"
    return str(getattr(source, "name", "the image stream"))


def _formats_hint() -> str:
    return "supported formats: " + ", ".join(SUPPORTED_FORMATS)


def _to_uint8(gray: np.ndarray) -> np.ndarray:
    """Scale a single-channel integer or float array to 0..255 (16-bit by its range, others by min-max)."""
    if np.issubdtype(gray.dtype, np.integer):
        top = int(gray.max(initial=0))
        if gray.min(initial=0) >= 0 and top <= 255:
            return gray.astype(np.uint8)
        if gray.min(initial=0) >= 0 and top <= 65535:
            return (gray.astype(np.uint32) * 255 // 65535).astype(np.uint8)
    gray = gray.astype(np.float64)
    finite = np.isfinite(gray)
    if not finite.any():
        return np.zeros(gray.shape, np.uint8)
    lo, hi = float(gray[finite].min()), float(gray[finite].max())
    if lo >= 0.0 and hi <= 1.0:  # float images in [0, 1] keep their brightness
        lo, hi = 0.0, 1.0
    scaled = (np.nan_to_num(gray, nan=lo, posinf=hi, neginf=lo) - lo) / max(hi - lo, 1e-12)
    return np.clip(np.round(scaled * 255.0), 0, 255).astype(np.uint8)


def _to_rgb(im: Image.Image) -> Image.Image:
    """Any Pillow mode → 8-bit RGB; transparency is composited on white."""
    if im.mode == "RGB":
        return im.copy()
    if im.mode.startswith(("I", "F")):  # I, I;16, I;16B, F…: Pillow's convert() would clip to 255
        return Image.fromarray(_to_uint8(np.asarray(im)), "L").convert("RGB")
    has_alpha = im.mode in ("RGBA", "RGBa", "LA", "La", "PA") or (
        im.mode in ("P", "L", "RGB") and "transparency" in im.info
    )
    if has_alpha:
        rgba = im.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (*_BACKGROUND, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return im.convert("RGB")


def load_image(
    source: str | Path | bytes | BinaryIO,
    *,
    max_pixels: int = MAX_PIXELS,
    name: str | None = None,
) -> Image.Image:
    """Decode an image file, bytes or binary stream into an upright RGB image.

    Args:
        source: A path, the file's bytes, or a binary file-like object (e.g. a Streamlit upload).
        max_pixels: Largest width × height accepted, checked before decoding.
        name: How to call the input in error messages (default: the path or the stream's ``name``).

    Returns:
        A fully loaded ``PIL.Image.Image`` in mode ``RGB``, independent of the source.

    Raises:
        ImageError: Missing file, data that is not a supported image, truncated or corrupt data,
            or an image larger than ``max_pixels``.
    """
    label = _label(source, name)
    if isinstance(source, str | Path):
        path = Path(source)
        if not path.is_file():
            raise ImageError(f"no such image file: {label}")
        stream: BinaryIO = path.open("rb")
    elif isinstance(source, bytes | bytearray | memoryview):
        stream = io.BytesIO(bytes(source))
    else:
        stream = source
    try:
        return _decode(stream, label, max_pixels)
    finally:
        if isinstance(source, str | Path):
            stream.close()


def _decode(stream: BinaryIO, label: str, max_pixels: int) -> Image.Image:
    try:
        im = Image.open(stream, formats=_PIL_FORMATS)
    except UnidentifiedImageError as exc:
        raise ImageError(f"{label} is not an image that can be read ({_formats_hint()})") from exc
    except Image.DecompressionBombError as exc:
        raise ImageError(f"{label} is too large to decode safely ({exc})") from exc
    except (OSError, ValueError, SyntaxError, struct.error) as exc:
        raise ImageError(f"{label} could not be read as an image: {exc} ({_formats_hint()})") from exc
    with im:
        width, height = im.size
        if width * height > max_pixels:
            raise ImageError(
                f"{label} is {width}×{height} = {width * height / 1e6:.0f} MP, more than the "
                f"{max_pixels / 1e6:.0f} MP allowed; downscale it first"
            )
        if width == 0 or height == 0:
            raise ImageError(f"{label} has no pixels ({width}×{height})")
        aspect = max(width, height) / min(width, height)
        if aspect > MAX_DECODE_ASPECT:
            raise ImageError(
                f"{label} is {width}×{height} pixels, an aspect ratio of {aspect:.0f}:1, beyond the "
                f"{MAX_DECODE_ASPECT:g}:1 limit; crop it to the part to explain first"
            )
        try:
            im.seek(0)  # first frame of an animation or a multi-page TIFF
            im.load()
        except (OSError, ValueError, SyntaxError, struct.error, EOFError) as exc:
            raise ImageError(f"{label} is truncated or corrupt: {exc}") from exc
        upright = _exif_upright(im)
        try:
            return _to_rgb(upright)
        except ValueError as exc:
            raise ImageError(f"{label} has colour mode {im.mode!r}, which cannot be converted to RGB") from exc


def _exif_upright(im: Image.Image) -> Image.Image:
    """Apply the EXIF orientation tag; a malformed EXIF block is ignored rather than fatal."""
    try:
        return ImageOps.exif_transpose(im)
    except (OSError, ValueError, SyntaxError, struct.error, KeyError, TypeError):
        return im
