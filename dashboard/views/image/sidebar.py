"""The image page's sidebar inputs: which images, which methods. Widgets in, plain values out.

(The model's inputs, shared by every page, are in :mod:`dashboard.model_ui`.)
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import replace

import streamlit as st
from PIL import Image, ImageOps

from cam_core.engine.methods import METHODS, Cost, estimate_cost
from cam_core.io.images import IMAGE_EXTENSIONS
from cam_core.io.samples import SAMPLE_NAMES, load_sample
from cam_core.limits import MAX_IMAGE_UPLOAD_BYTES, MAX_SESSION_IMAGES, MAX_SESSION_UPLOAD_BYTES, mb
from dashboard.feedback import show_error
from dashboard.model import ImageItem, decode_image
from dashboard.state import K, UrlView
from dashboard.text import plain

__all__ = ["cost_line", "images_ui", "methods_ui", "sample_item"]

SLOW_HELP = (
    "Each method gets its own figure. What each costs beyond the forward and backward they share:\n\n"
    + "\n".join(f"- **{spec.title}**: {spec.cost}" for spec in METHODS.values())
    + "\n\n*(slow)*: one forward pass per channel of the layer: seconds to minutes on a CPU."
)



@st.cache_resource(show_spinner=False)
def _sample(name: str) -> Image.Image:
    return load_sample(name)



@st.cache_resource(show_spinner=False)
def _thumb(name: str) -> Image.Image:
    return ImageOps.fit(_sample(name), (88, 88))  # square crops: a tidy row



def sample_item(name: str, label: str | None = None) -> ImageItem:
    """A sample photo as the page shows it (decoded once per process)."""
    return ImageItem(label or name, _sample(name), f"sample:{name}", sample=name)



def _unique(label: str, taken: set[str]) -> str:
    out, n = label, 1
    while out in taken:
        n += 1
        out = f"{label} ({n})"
    taken.add(out)
    return out



def _within_session_limits(uploads: list, others: int) -> list:
    """The uploads this session may work with: at most :data:`~cam_core.limits.MAX_SESSION_IMAGES` images and
    :data:`~cam_core.limits.MAX_SESSION_UPLOAD_BYTES` in all; beyond that, one line says which limit."""
    kept, total = [], 0
    for up in uploads:
        if len(kept) + others >= MAX_SESSION_IMAGES:
            st.warning(
                f"{len(uploads) - len(kept)} more images were not opened: one session works with at most "
                f"{MAX_SESSION_IMAGES} at once; remove some uploads to add others.",
                icon=":material/block:",
            )
            break
        if total + up.size > MAX_SESSION_UPLOAD_BYTES:
            st.warning(
                f"{plain(up.name)} and the uploads after it were not opened: they would take this session over "
                f"{mb(MAX_SESSION_UPLOAD_BYTES)} of uploads.",
                icon=":material/block:",
            )
            break
        kept.append(up)
        total += up.size
    return kept



def images_ui(url: UrlView) -> list[ImageItem]:
    """Uploaded files, chosen samples, a camera snapshot and images other pages opened here (a dataset's image, a
    video's frame), decoded; bad files are
    reported and skipped."""
    uploads = st.file_uploader(
        "Upload images",
        type=list(IMAGE_EXTENSIONS),
        accept_multiple_files=True,
        key="uploads",
        max_upload_size=MAX_IMAGE_UPLOAD_BYTES // 2**20,  # the limit the uploader shows is the one that applies
        help=f"PNG, JPEG, WebP, BMP, TIFF or GIF (first frame). Several at once, up to {mb(MAX_IMAGE_UPLOAD_BYTES)} "
        "each.",
    )
    st.image([_thumb(n) for n in SAMPLE_NAMES], width=44)
    if K.SAMPLES not in st.session_state:
        st.session_state[K.SAMPLES] = [url.image] if url.image in SAMPLE_NAMES else ["chelsea"]
    samples = st.pills("Sample photos", SAMPLE_NAMES, selection_mode="multi", key=K.SAMPLES)
    camera = None
    if st.toggle("Camera snapshot", key="use_camera", help="Take a photo with your webcam, for live demos."):
        camera = st.camera_input("Snapshot", key="camera", label_visibility="collapsed")

    items: list[ImageItem] = []
    taken: set[str] = set()
    uploads = _within_session_limits(list(uploads or []), len(samples or []) + (camera is not None))
    for up in uploads:
        data = up.getvalue()
        digest = hashlib.sha1(data).hexdigest()
        try:
            image = decode_image(digest, data, up.name)
        except Exception as exc:  # CamError: a message; anything else: a message and details
            show_error(exc, f"reading {up.name}")
            continue
        items.append(ImageItem(_unique(up.name, taken), image, digest))
    for name in samples or []:
        items.append(sample_item(name, _unique(name, taken)))
    for item in st.session_state.get(K.OPENED, []):  # from another page: a dataset's gallery, a video frame
        items.append(replace(item, label=_unique(item.label, taken)))
    if camera is not None:
        data = camera.getvalue()
        digest = hashlib.sha1(data).hexdigest()
        try:
            items.append(ImageItem(_unique("camera snapshot", taken), decode_image(digest, data, "snapshot"), digest))
        except Exception as exc:
            show_error(exc, "reading the snapshot")
    return items



def _costly(method: str) -> bool:
    """Whether the method costs more than the forward and backward the gradient methods share."""
    return estimate_cost(method, 1) != Cost()



def cost_line(methods: Sequence[str], layer: str | None, channels: int | None) -> str | None:
    """One caption saying what the chosen methods cost beyond the shared forward and backward (``None``: nothing)."""
    costly = [m for m in methods if _costly(m)]
    if not costly:
        return None
    where = f" at `{layer}` ({channels} channels; forwards in batches of 64, backwards per class)" if channels else ""
    parts = [
        f"{METHODS[m].title}: {estimate_cost(m, channels).words() if channels else METHODS[m].cost}" for m in costly
    ]
    return f":material/timer: Beyond the shared forward and backward{where}: " + "; ".join(parts) + "."



def methods_ui(url: UrlView, layer: str | None = None, channels: int | None = None) -> list[str]:
    """CAM methods to compare (each gets its own figure); what the ones beyond the shared pass cost at ``layer``."""
    if K.METHODS not in st.session_state:
        wanted = list(dict.fromkeys(m for m in (url.methods or ()) if m in METHODS))  # a link may repeat one
        st.session_state[K.METHODS] = wanted or ["gradcam"]
    picked = st.multiselect(
        "Compare methods",
        list(METHODS),
        format_func=lambda m: f"{METHODS[m].title} (slow)" if METHODS[m].slow else METHODS[m].title,
        key=K.METHODS,
        help=SLOW_HELP,
        wrap=True,
    )
    line = cost_line(picked, layer, channels)
    if line:
        st.caption(line)
    return list(picked)


