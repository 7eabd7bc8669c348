"""Sidebar inputs: which model, which images, how to draw. Widgets in, plain values out."""

from __future__ import annotations

import hashlib
from dataclasses import replace

import streamlit as st
from PIL import Image, ImageOps

from cam_core.engine.methods import METHODS
from cam_core.io.images import IMAGE_EXTENSIONS, load_image
from cam_core.io.samples import SAMPLE_NAMES, load_sample
from cam_core.models import DEFAULT_MODEL, list_torchvision_models
from dashboard.compute import ImageItem, ModelSpec, save_upload
from dashboard.feedback import show_error
from dashboard.state import K, UrlView

__all__ = ["images_ui", "methods_ui", "model_ui", "request_model"]

SOURCES = {
    "default": "Offline default",
    "torchvision": "torchvision model",
    "checkpoint": "Upload a checkpoint",
    "factory": "Python factory",
}
SOURCE_CAPTIONS = [
    "EfficientNet-Lite0, ImageNet weights shipped with the package: no download",
    "any torchvision classifier; pretrained weights need internet once",
    "TorchScript, state dict (+ architecture) or a pickled model",
    "package.module:function returning an nn.Module",
]
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


def model_ui(url: UrlView) -> ModelSpec | None:
    """The model the user asks for, or ``None`` while a custom model is incomplete."""
    names = list_torchvision_models()
    if K.SOURCE not in st.session_state and url.model:
        # A shared link: the offline default or a torchvision name (uploads cannot travel in a URL).
        st.session_state[K.SOURCE] = "default" if url.model == DEFAULT_MODEL else "torchvision"
        if url.model in names:
            st.session_state[K.TV_NAME] = url.model
            st.session_state[K.TV_PRETRAINED] = url.weights != "none"
    source = st.radio("Model source", list(SOURCES), format_func=SOURCES.get, captions=SOURCE_CAPTIONS, key=K.SOURCE)
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
        ckpt = st.file_uploader("Checkpoint (.pt, .pth, .ckpt)", type=CHECKPOINT_TYPES, key="ckpt_file")
        arch = st.selectbox(
            "Architecture of a state dict",
            [NO_ARCH, DEFAULT_MODEL, *names],
            key="ckpt_arch",
            help="A state dict holds only weights: name the architecture they fit. Not needed for TorchScript.",
        )
        trust = _trust_ui("ckpt_trust")
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
        )
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


@st.cache_resource(max_entries=64, show_spinner=False)
def _decode(digest: str, _data: bytes, name: str) -> Image.Image:
    """Decode once per distinct content (``_data`` is not hashed: ``digest`` stands for it)."""
    return load_image(_data, name=name)


@st.cache_resource(show_spinner=False)
def _sample(name: str) -> Image.Image:
    return load_sample(name)


@st.cache_resource(show_spinner=False)
def _thumb(name: str) -> Image.Image:
    return ImageOps.fit(_sample(name), (88, 88))  # square crops: a tidy row


def _unique(label: str, taken: set[str]) -> str:
    out, n = label, 1
    while out in taken:
        n += 1
        out = f"{label} ({n})"
    taken.add(out)
    return out


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
    for up in uploads or []:
        data = up.getvalue()
        digest = hashlib.sha1(data).hexdigest()
        try:
            image = _decode(digest, data, up.name)
        except Exception as exc:  # CamError: a message; anything else: a message and details
            show_error(exc, f"reading {up.name}")
            continue
        items.append(ImageItem(_unique(up.name, taken), image, digest))
    for name in samples or []:
        items.append(ImageItem(_unique(name, taken), _sample(name), f"sample:{name}", sample=name))
    for item in st.session_state.get(K.OPENED, []):  # from a dataset's gallery
        items.append(replace(item, label=_unique(item.label, taken)))
    if camera is not None:
        data = camera.getvalue()
        digest = hashlib.sha1(data).hexdigest()
        try:
            items.append(ImageItem(_unique("camera snapshot", taken), _decode(digest, data, "snapshot"), digest))
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
