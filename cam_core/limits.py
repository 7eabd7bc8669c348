"""Every resource limit in one place: what one input, one visitor and the server's caches may take.

Inputs come from uploads and command lines, so each is checked before the work it bounds (the
pixel count from the file's header, before decoding; the aspect ratio before resizing); a
breach is one :class:`~cam_core.errors.CamError` line that names the limit. The dashboard's
limits (per upload, per session, cache sizes) live here too, so an operator reads them in one
file; the README lists them.
"""

from __future__ import annotations

__all__ = [
    "DECODED_IMAGE_SIDE",
    "FIGURE_CACHE_ENTRIES",
    "FILM_CACHE_BYTES",
    "IMAGE_CACHE_BYTES",
    "MAP_CACHE_BYTES",
    "MAX_ASPECT",
    "MAX_DECODE_ASPECT",
    "MAX_FORWARD_BATCH",
    "MAX_IMAGE_UPLOAD_BYTES",
    "MAX_PIXELS",
    "MAX_SESSION_IMAGES",
    "MAX_SESSION_UPLOAD_BYTES",
    "MAX_VIDEO_BYTES",
    "MAX_VIDEO_FRAMES",
    "MAX_VIDEO_FRAME_PIXELS",
    "MAX_VIDEO_SECONDS",
    "MAX_ZIP_BYTES",
    "MAX_ZIP_FILES",
    "MODEL_CACHE_BYTES",
    "VIDEO_RUN_CACHE_BYTES",
    "mb",
]

# ---- one input --------------------------------------------------------------------------------------------
MAX_PIXELS = 50_000_000
"""Largest width × height of an image, checked from the header before any pixel is decoded."""
MAX_DECODE_ASPECT = 32.0
"""Largest long side ÷ short side of an image at all: a 100000×5 strip is refused before decoding."""
MAX_ASPECT = 8.0
"""Largest long ÷ short side for the *whole image* fit, whose input grows with it (224 → 1792 px)."""
MAX_FORWARD_BATCH = 1024
"""Largest forward batch of the perturbation methods and trust curves (a typo of 100000 would exhaust memory)."""

# ---- one video (checked from the container's header before decoding, and again while decoding) ---------------
MAX_VIDEO_BYTES = 1 * 2**30
"""Largest video file (the dashboard's uploads are also bounded by Streamlit's ``server.maxUploadSize``)."""
MAX_VIDEO_SECONDS = 20 * 60.0
"""Longest clip."""
MAX_VIDEO_FRAME_PIXELS = 3840 * 2160
"""Largest frame (4K UHD); frames are decoded at most 480 px on the short side anyway (a 224-px model)."""
MAX_VIDEO_FRAMES = 3000
"""Most frames explained in one run, after sampling (100 s at 30 fps): ``--every``, ``--fps``, ``--max-frames``."""

# ---- one visitor of the dashboard ---------------------------------------------------------------------------
MAX_IMAGE_UPLOAD_BYTES = 64 * 2**20
"""Largest image file a visitor may upload (Streamlit's ``server.maxUploadSize`` bounds every file)."""
MAX_SESSION_UPLOAD_BYTES = 1024 * 2**20
"""Largest total of the files one browser session has uploaded at once (images, weights, labels)."""
MAX_SESSION_IMAGES = 40
"""Most images one browser session works with at once (uploads, samples and snapshots)."""
MAX_ZIP_FILES = 20_000
"""Most entries of a zip of images uploaded to the Dataset page (checked before anything is unpacked)."""
MAX_ZIP_BYTES = 2 * 2**30
"""Largest unpacked size of such a zip (its directory's sizes, and the bytes actually written)."""
DECODED_IMAGE_SIDE = 2048
"""Decoded uploads are kept at most this long a side: ample for a 224-px model, a ninth of a 49-MP photo."""

# ---- the server's caches (shared by every session; least recently used first out) ---------------------------
MODEL_CACHE_BYTES = 3 * 2**30
"""Parameters and buffers of the models kept loaded (at least the last one, whatever its size)."""
MAP_CACHE_BYTES = 768 * 2**20
"""Maps, scores and model inputs kept for the views people looked at."""
IMAGE_CACHE_BYTES = 512 * 2**20
"""Decoded images kept (RGB bytes)."""
FIGURE_CACHE_ENTRIES = 48
"""Overlay figures kept ready to send again (each well under a megabyte)."""
VIDEO_RUN_CACHE_BYTES = 512 * 2**20
"""Scores and raw maps of the clips explained on the video page (a 3000-frame run at 7×12: ~120 MB)."""
FILM_CACHE_BYTES = 256 * 2**20
"""The video page's overlay films (MP4) and the frames its scrubber shows (JPEG)."""


def mb(n: int) -> str:
    """A byte count for a message: ``64 MB``."""
    return f"{n / 2**20:.0f} MB"
