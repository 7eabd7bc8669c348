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
    "MAX_BOXES",
    "MAX_BOXES_FILE_BYTES",
    "MAX_CLASSES",
    "MAX_CLASSES_PER_REQUEST",
    "MAX_CONFIG_BYTES",
    "MAX_DATA_ROOT_UPLOAD_BYTES",
    "MAX_DECODE_ASPECT",
    "MAX_FORWARD_BATCH",
    "MAX_IMAGE_UPLOAD_BYTES",
    "MAX_INPUT_SIDE",
    "MAX_MODEL_BYTES",
    "MAX_MODEL_PARAMS",
    "MAX_PIXELS",
    "MAX_SESSION_IMAGES",
    "MAX_SESSION_UPLOAD_BYTES",
    "MAX_VIDEO_BYTES",
    "MAX_VIDEO_FRAMES",
    "MAX_VIDEO_FRAME_PIXELS",
    "MAX_VIDEO_SECONDS",
    "MAX_ZIP_BYTES",
    "MAX_ZIP_DEPTH",
    "MAX_ZIP_DIRECTORY_BYTES",
    "MAX_ZIP_FILES",
    "MAX_ZIP_NAME_CHARS",
    "MAX_ZIP_PATH_CHARS",
    "MIN_INPUT_SIDE",
    "MODEL_CACHE_BYTES",
    "QUERY_FOLDERS",
    "QUERY_LARGE_MEMORY_BYTES",
    "QUERY_MEMORY_BYTES",
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
MAX_BOXES_FILE_BYTES = 512 * 2**20
"""Largest boxes file (``batch --boxes``: COCO JSON, CSV), checked before it is read: COCO's train2017
instances file is 448 MB; a JSON file takes several times its size in memory while parsed."""
MAX_BOXES = 5_000_000
"""Most boxes read from one source (COCO train2017 has 860 k)."""
MAX_FORWARD_BATCH = 1024
"""Largest forward batch of the perturbation methods and trust curves (a typo of 100000 would exhaust memory)."""
MIN_INPUT_SIDE = 8
MAX_INPUT_SIDE = 4096
"""Bounds of a model's input side (``--input-size``, and the sizes a ``preprocessor_config.json`` asks for):
4096 is 18× a 224-px model's side; one 4096² float32 input is 200 MB before the first layer's activations."""

# ---- one model (checked from what the files declare, before a weight is allocated) ------------------------
MAX_MODEL_PARAMS = 700_000_000
"""Most parameters of a model: the largest classifiers people inspect are ViT-H/14 (632 M), EVA02-L and
ViT-L (304 M), ConvNeXt-XL (350 M); ViT-g/14 (1 B) and larger are left out (4 GB of float32 each)."""
MAX_MODEL_BYTES = 3 * 2**30
"""Most bytes of a model's parameters and buffers as declared by their shapes (= ``MODEL_CACHE_BYTES``: a model
larger than the whole model cache would evict every other and could not be kept)."""
MAX_CLASSES = 100_000
"""Most classes of a model's head: ImageNet-21k has 21 843, iNaturalist 10 000; a head sized from a file with a
million rows is a shape bomb (a 36 KB file declaring a 2 GB ``fc.weight``). Per-class tables (names, scores) and
the page's class lists follow this count."""
MAX_CONFIG_BYTES = 16 * 2**20
"""Largest ``config.json`` / ``preprocessor_config.json`` read (a 21k-class ``id2label`` is under 1 MB)."""
MAX_CLASSES_PER_REQUEST = 20
"""Most classes explained in one request (a link's ``?classes=``, the CLI's list): the page's top-k cap. Each class
is one more row of the batched backward and one more map in memory and on the page."""

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
MAX_ZIP_DIRECTORY_BYTES = 8 * 2**20
"""Largest central directory of such a zip, read from its end record before it is parsed: 20 000 entries with
names of 300 characters fit (a directory of 1.5 M tiny entries cost 1.2 GB and 42 s to parse)."""
MAX_ZIP_NAME_CHARS = 255
"""Longest file or folder name in such a zip (the file system's own limit, ``NAME_MAX``, in bytes)."""
MAX_ZIP_PATH_CHARS = 1024
"""Longest path of an entry in such a zip."""
MAX_ZIP_DEPTH = 32
"""Most folders deep an entry of such a zip may lie."""
MAX_DATA_ROOT_UPLOAD_BYTES = 8 * 2**30
"""Most bytes all unpacked zip uploads of a data root may hold together (``uploads/``), every session's;
the operator may set another (``CAMDASH_UPLOAD_QUOTA`` / ``camdash --upload-quota``)."""
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
QUERY_MEMORY_BYTES = 2 * 2**30
"""DuckDB's memory for one opened results folder (its light columns: ~150 MB a million rows); beyond it, spills."""
QUERY_LARGE_MEMORY_BYTES = 512 * 2**20
"""DuckDB's memory for a results folder of more than a million rows, whose rows it keeps in a temporary database
file (paged in and out) rather than in memory."""
QUERY_FOLDERS = 4
"""Results folders kept open on the Dataset page (each a DuckDB database of its light columns)."""


def mb(n: int) -> str:
    """A byte count for a message: ``64 MB``."""
    return f"{n / 2**20:.0f} MB"


