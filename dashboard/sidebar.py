"""Sidebar inputs: which model, which images, how to draw. Widgets in, plain values out."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import replace

import streamlit as st
from PIL import Image, ImageOps

from cam_core.engine.methods import METHODS
from cam_core.io.images import IMAGE_EXTENSIONS
from cam_core.io.samples import SAMPLE_NAMES, load_sample
from cam_core.limits import (
    MAX_SESSION_IMAGES,
    MAX_SESSION_UPLOAD_BYTES,
    mb,
)
from cam_core.models import DEFAULT_MODEL, list_torchvision_models
from dashboard.access import Access, PinnedModel
from dashboard.compute import ImageItem, ModelSpec, decode_image
from dashboard.feedback import show_error
from dashboard.state import K, UrlView
from dashboard.uploads import save_upload

__all__ = ["images_ui", "methods_ui", "model_ui", "request_model", "sample_item"]

SOURCES = {
    "default": "Offline default",
    "torchvision": "torchvision model",
    "checkpoint": "Upload a checkpoint",
    "factory": "Python factory",
}
SOURCE_CAPTIONS = {
    "default": "EfficientNet-Lite0, ImageNet weights shipped with the package: no download",
    "torchvision": "any torchvision classifier; pretrained weights need internet once",
    "checkpoint": "TorchScript, state dict (+ architecture) or a pickled model",
    "factory": "package.module:function returning an nn.Module",
}
WEIGHTS_ONLY_CAPTION = "a state dict for a known architecture (weights only: files that carry code are refused)"
CODE_SOURCES = ("factory",)  # the checkpoint source stays, restricted to weights
CHECKPOINT_TYPES = ["pt", "pth", "ckpt"]
SLOW_HELP = (
    "Each method gets its own figure. Score-CAM and Ablation-CAM run one forward pass per channel of the layer: "
    "seconds to minutes on a CPU."
)
NO_ARCH = "(none: TorchScript or whole model)"
TRUST_HELP = (
    "A checkpoint that holds a whole pickled model (not just a state dict of tensors) can only be read by "
    "unpickling it, and unpickling runs whatever code the file contains, with your permissions. Tick this "
    "only for files you made yourself or got from a source you trust. State dicts and TorchScript never "
    "need it."
)


def _labels_ui(key: str) -> str | None:
    up = st.file_uploader(
        "Class names (optional)",
        type=["txt", "json"],
        key=key,
        help="A text file with one class name per line, or a JSON list; its length must match the model's outputs.",
    )
    return save_upload(up.getvalue(), up.name) if up is not None else None


def _trust_ui(key: str) -> bool:
    trust = st.checkbox("Trust this checkpoint (allow full unpickling)", key=key, help=TRUST_HELP)
    st.caption(
        ":material/warning: Only needed for a whole pickled model. Unpickling runs code from the file with "
        "your permissions: tick it only for files you trust."
    )
    return trust


def _pinned_ui(url: UrlView, pinned: Sequence[PinnedModel]) -> ModelSpec:
    """The operator's models (a demo): visitors choose among them only."""
    titles = [m.title for m in pinned]
    if K.PINNED not in st.session_state and url.model and url.model.removeprefix("pinned:") in titles:
        st.session_state[K.PINNED] = url.model.removeprefix("pinned:")
    title = st.selectbox("Model", titles, key=K.PINNED, help="The models this dashboard's operator made available.")
    return pinned[titles.index(title)].spec


def _sources_ui(trusted: bool) -> str:
    sources = [s for s in SOURCES if trusted or s not in CODE_SOURCES]
    captions = [SOURCE_CAPTIONS[s] if trusted or s != "checkpoint" else WEIGHTS_ONLY_CAPTION for s in sources]
    if st.session_state.get(K.SOURCE) not in sources:
        st.session_state.pop(K.SOURCE, None)
    labels = {**SOURCES, "checkpoint": SOURCES["checkpoint"] if trusted else "Upload weights"}
    return st.radio("Model source", sources, format_func=labels.get, captions=captions, key=K.SOURCE)


def model_ui(url: UrlView, access: Access) -> ModelSpec | None:
    """The model the user asks for, or ``None`` while a custom model is incomplete.

    What a visitor may ask for follows the server's :class:`~dashboard.access.Access`: the operator's
    list only, when there is one; no code-bearing source (factory, pickle, TorchScript) unless the
    operator trusts visitors.
    """
    if access.pinned:
        return _pinned_ui(url, access.pinned)
    trusted = access.trust_visitors
    names = list_torchvision_models()
    if K.SOURCE not in st.session_state and url.model:
        # A shared link: the offline default or a torchvision name (uploads cannot travel in a URL).
        st.session_state[K.SOURCE] = "default" if url.model == DEFAULT_MODEL else "torchvision"
        if url.model in names:
            st.session_state[K.TV_NAME] = url.model
            st.session_state[K.TV_PRETRAINED] = url.weights != "none"
    source = _sources_ui(trusted)
    if source == "default":
        return ModelSpec()
    if source == "torchvision":
        st.session_state.setdefault(K.TV_NAME, "resnet50")
        st.session_state.setdefault(K.TV_PRETRAINED, True)
        if st.session_state.pop(K.TV_PRETRAINED_OFF, False):
            st.session_state[K.TV_PRETRAINED] = False
        name = st.selectbox("Architecture", names, key=K.TV_NAME)
        pretrained = st.toggle(
            "Pretrained ImageNet weights",
            key=K.TV_PRETRAINED,
            help="Downloaded from download.pytorch.org the first time. Offline, the page says so and switches "
            "this off: random weights, flagged as untrained wherever results show.",
        )
        return ModelSpec(
            source="torchvision", name=name, weights="DEFAULT" if pretrained else None, labels=_labels_ui("tv_labels")
        )
    if source == "checkpoint":
        return _checkpoint_ui(names, trusted)
    return _factory_ui()


def _checkpoint_ui(names: Sequence[str], trusted: bool) -> ModelSpec | None:
    """A checkpoint upload; on a server that does not trust visitors, weights only, for a known architecture."""
    what = "Checkpoint (.pt, .pth, .ckpt)" if trusted else "Weights: a state dict (.pt, .pth, .ckpt)"
    ckpt = st.file_uploader(what, type=CHECKPOINT_TYPES, key="ckpt_file")
    archs = [NO_ARCH, DEFAULT_MODEL, *names] if trusted else [DEFAULT_MODEL, *names]
    arch = st.selectbox(
        "Architecture of a state dict" if trusted else "Architecture",
        archs,
        key="ckpt_arch",
        help="A state dict holds only weights: name the architecture they fit."
        + (" Not needed for TorchScript." if trusted else ""),
    )
    trust = _trust_ui("ckpt_trust") if trusted else False
    labels = _labels_ui("ckpt_labels")
    if ckpt is None:
        st.info("Upload a checkpoint to load it.", icon=":material/upload_file:")
        return None
    return ModelSpec(
        source="checkpoint",
        name=ckpt.name,
        weights=None,
        arch=None if arch == NO_ARCH else arch,
        checkpoint=save_upload(ckpt.getvalue(), ckpt.name, (".pt", ".pth", ".ckpt")),
        labels=labels,
        trust=trust,
        allow_code=trusted,
    )


def _factory_ui() -> ModelSpec | None:
    factory = st.text_input(
        "Factory",
        placeholder="package.module:function",
        key="factory_spec",
        help="A function that returns an nn.Module (called with no arguments).",
    ).strip()
    folder = st.text_input(
        "Folder to add to the import path", placeholder="/path/to/your/code", key="factory_path"
    ).strip()
    ckpt = st.file_uploader("State dict for it (optional)", type=CHECKPOINT_TYPES, key="factory_ckpt")
    trust = _trust_ui("factory_trust")
    labels = _labels_ui("factory_labels")
    if not factory:
        st.info("Name a factory such as `seed_net:build` to load it.", icon=":material/code:")
        return None
    return ModelSpec(
        source="factory",
        name=factory,
        weights=None,
        checkpoint=save_upload(ckpt.getvalue(), ckpt.name, (".pt", ".pth", ".ckpt")) if ckpt is not None else None,
        labels=labels,
        trust=trust,
        import_path=folder or None,
    )


def request_model(spec: ModelSpec) -> bool:
    """Point the model widgets at ``spec`` (from a widget callback, before they are drawn); False if they cannot
    name it (an upload or a factory: the user picks those again)."""
    if spec.source == "default":
        st.session_state[K.SOURCE] = "default"
        return True
    if spec.source == "torchvision" and spec.labels is None:
        st.session_state[K.SOURCE] = "torchvision"
        st.session_state[K.TV_NAME] = spec.name
        st.session_state[K.TV_PRETRAINED] = spec.weights is not None
        return True
    return False


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
                f"{up.name} and the uploads after it were not opened: they would take this session over "
                f"{mb(MAX_SESSION_UPLOAD_BYTES)} of uploads.",
                icon=":material/block:",
            )
            break
        kept.append(up)
        total += up.size
    return kept


def images_ui(url: UrlView) -> list[ImageItem]:
    """Uploaded files, chosen samples, images opened from a dataset and a camera snapshot, decoded; bad files are
    reported and skipped."""
    uploads = st.file_uploader(
        "Upload images",
        type=list(IMAGE_EXTENSIONS),
        accept_multiple_files=True,
        key="uploads",
        help="PNG, JPEG, WebP, BMP, TIFF or GIF (first frame). Several at once.",
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
    for item in st.session_state.get(K.OPENED, []):  # from a dataset's gallery
        items.append(replace(item, label=_unique(item.label, taken)))
    if camera is not None:
        data = camera.getvalue()
        digest = hashlib.sha1(data).hexdigest()
        try:
            items.append(ImageItem(_unique("camera snapshot", taken), decode_image(digest, data, "snapshot"), digest))
        except Exception as exc:
            show_error(exc, "reading the snapshot")
    return items


def methods_ui(url: UrlView) -> list[str]:
    """CAM methods to compare (each gets its own figure)."""
    if K.METHODS not in st.session_state:
        wanted = [m for m in (url.methods or ()) if m in METHODS]
        st.session_state[K.METHODS] = wanted or ["gradcam"]
    picked = st.multiselect(
        "Compare methods",
        list(METHODS),
        format_func=lambda m: METHODS[m].title,
        key=K.METHODS,
        help=SLOW_HELP,
        wrap=True,
    )
    return list(picked)
