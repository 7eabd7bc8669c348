"""Sidebar inputs: which model, which images, how to draw. Widgets in, plain values out."""

from __future__ import annotations

import functools
import hashlib
import importlib.util
from collections.abc import Sequence
from dataclasses import replace

import streamlit as st
from PIL import Image, ImageOps

from cam_core.engine.methods import METHODS, Cost, estimate_cost
from cam_core.io.images import IMAGE_EXTENSIONS
from cam_core.io.samples import SAMPLE_NAMES, load_sample
from cam_core.limits import (
    MAX_SESSION_IMAGES,
    MAX_SESSION_UPLOAD_BYTES,
    mb,
)
from cam_core.models import DEFAULT_MODEL, list_torchvision_models
from cam_core.models.sources.hf_folder import INSTALL_HINT as HF_INSTALL
from cam_core.models.sources.timm_models import INSTALL_HINT as TIMM_INSTALL
from dashboard.access import Access, PinnedModel
from dashboard.feedback import show_error
from dashboard.model import ImageItem, ModelSpec, decode_image
from dashboard.state import K, UrlView
from dashboard.text import plain
from dashboard.uploads import save_folder, save_upload

__all__ = ["cost_line", "images_ui", "methods_ui", "model_ui", "request_model", "sample_item"]

SOURCES = {
    "default": "Offline default",
    "torchvision": "torchvision model",
    "timm": "timm model",
    "hf": "Hugging Face model",
    "checkpoint": "Upload a checkpoint",
    "factory": "Python factory",
}
SOURCE_CAPTIONS = {
    "default": "EfficientNet-Lite0, ImageNet weights shipped with the package: no download",
    "torchvision": "any torchvision classifier; pretrained weights need internet once",
    "timm": "any of timm's models: pretrained, random, or your own weights",
    "hf": "a saved transformers image classifier (config.json, weights, preprocessor)",
    "checkpoint": "safetensors or state dict (+ architecture), exported program (.pt2), TorchScript, pickle",
    "factory": "package.module:function returning an nn.Module",
}
WEIGHTS_ONLY_CAPTION = (
    "a state dict (.safetensors, .pt) for a known architecture (weights only: files that carry code are refused)"
)
CODE_SOURCES = ("factory",)  # the checkpoint source stays, restricted to weights
CHECKPOINT_TYPES = ["pt", "pth", "ckpt", "safetensors", "pt2"]
STATE_DICT_TYPES = ["safetensors", "pt", "pth", "ckpt"]
HF_FILES = ["json", "safetensors", "bin", "txt"]
# The model's widgets keep their values when a page sends the user to another (``st.switch_page`` drops the
# state of every widget that is not kept so; file uploads cannot be kept: see ``ModelSpec.has_uploads``).
KEEP = "session"
SLOW_HELP = (
    "Each method gets its own figure. What each costs beyond the forward and backward they share:\n\n"
    + "\n".join(f"- **{spec.title}**: {spec.cost}" for spec in METHODS.values())
    + "\n\n*(slow)*: one forward pass per channel of the layer: seconds to minutes on a CPU."
)
NO_ARCH = "(none: exported program, TorchScript or whole model)"
TRUST_HELP = (
    "A checkpoint that holds a whole pickled model (not just a state dict of tensors), or an exported program "
    "(.pt2: torch.export.load unpickles what it cannot read as weights), can only be read by unpickling it, and "
    "unpickling runs whatever code the file contains, with your permissions. Tick this only for files you made "
    "yourself or got from a source you trust. State dicts (.safetensors above all) never need it."
)
OUTPUT_HELP = (
    "Only for a model whose forward returns a tuple or a dict: the key or index of its logits. By default: "
    "an attribute or key 'logits', else the first (N, classes) tensor."
)


@functools.cache
def _installed(package: str) -> bool:
    return importlib.util.find_spec(package) is not None


@functools.cache
def _timm_names() -> list[str]:
    import timm

    return timm.list_models()


def _output_ui(key: str) -> str | None:
    return st.text_input("Output holding the logits (optional)", key=key, help=OUTPUT_HELP).strip() or None


def _labels_ui(key: str) -> str | None:
    up = st.file_uploader(
        "Class names (optional)",
        type=["txt", "json"],
        key=key,
        help="A text file with one class name per line, or a JSON list; its length must match the model's outputs.",
    )
    return save_upload(up.getvalue(), up.name) if up is not None else None


def _trust_ui(key: str) -> bool:
    trust = st.checkbox("Trust this checkpoint (allow full unpickling)", key=key, help=TRUST_HELP, persist_state=KEEP)
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
    title = st.selectbox(
        "Model", titles, key=K.PINNED, help="The models this dashboard's operator made available.", persist_state=KEEP
    )
    return pinned[titles.index(title)].spec


def _sources_ui(trusted: bool) -> str:
    sources = [s for s in SOURCES if trusted or s not in CODE_SOURCES]
    captions = [SOURCE_CAPTIONS[s] if trusted or s != "checkpoint" else WEIGHTS_ONLY_CAPTION for s in sources]
    if st.session_state.get(K.SOURCE) not in sources:
        st.session_state.pop(K.SOURCE, None)
    labels = {**SOURCES, "checkpoint": SOURCES["checkpoint"] if trusted else "Upload weights"}
    return st.radio(
        "Model source", sources, format_func=labels.get, captions=captions, key=K.SOURCE, persist_state=KEEP
    )


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
        # A shared link: the offline default, a torchvision or a timm name (uploads cannot travel in a URL).
        if url.model.startswith("timm:"):
            st.session_state[K.SOURCE] = "timm"
            st.session_state[K.TIMM_NAME] = url.model.removeprefix("timm:")
            st.session_state[K.TIMM_PRETRAINED] = url.weights != "none"
        else:
            st.session_state[K.SOURCE] = "default" if url.model == DEFAULT_MODEL else "torchvision"
        if url.model in names:
            st.session_state[K.TV_NAME] = url.model
            st.session_state[K.TV_PRETRAINED] = url.weights != "none"
    source = _sources_ui(trusted)
    if source == "default":
        return ModelSpec()
    if source == "timm":
        return _timm_ui(trusted)
    if source == "hf":
        return _hf_ui(trusted)
    if source == "torchvision":
        st.session_state.setdefault(K.TV_NAME, "resnet50")
        st.session_state.setdefault(K.TV_PRETRAINED, True)
        if st.session_state.pop(K.TV_PRETRAINED_OFF, False):
            st.session_state[K.TV_PRETRAINED] = False
        name = st.selectbox("Architecture", names, key=K.TV_NAME, persist_state=KEEP)
        pretrained = st.toggle(
            "Pretrained ImageNet weights",
            key=K.TV_PRETRAINED,
            persist_state=KEEP,
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
    types = CHECKPOINT_TYPES if trusted else STATE_DICT_TYPES
    what = (
        "Checkpoint (.safetensors, .pt, .pth, .ckpt, .pt2)" if trusted
        else "Weights: a state dict (.safetensors, .pt, .pth, .ckpt)"
    )
    ckpt = st.file_uploader(what, type=types, key="ckpt_file")
    archs = [NO_ARCH, DEFAULT_MODEL, *names] if trusted else [DEFAULT_MODEL, *names]
    arch = st.selectbox(
        "Architecture of a state dict" if trusted else "Architecture",
        archs,
        key="ckpt_arch",
        persist_state=KEEP,
        help="A state dict (.safetensors, .pt) holds only weights: name the torchvision architecture they fit "
        "(for a timm model's weights, use the timm source)."
        + (" Not needed for exported programs or TorchScript." if trusted else ""),
    )
    trust = _trust_ui("ckpt_trust") if trusted else False
    labels = _labels_ui("ckpt_labels")
    output = _output_ui("ckpt_output")
    if ckpt is None:
        st.info("Upload a checkpoint to load it.", icon=":material/upload_file:")
        return None
    return ModelSpec(
        source="checkpoint",
        name=ckpt.name,
        weights=None,
        arch=None if arch == NO_ARCH else arch,
        checkpoint=_saved(ckpt, types),
        labels=labels,
        trust=trust,
        allow_code=trusted,
        output=output,
    )


def _factory_ui() -> ModelSpec | None:
    factory = st.text_input(
        "Factory",
        placeholder="package.module:function",
        key="factory_spec",
        persist_state=KEEP,
        help="A function that returns an nn.Module (called with no arguments).",
    ).strip()
    folder = st.text_input(
        "Folder to add to the import path", placeholder="/path/to/your/code", key="factory_path", persist_state=KEEP
    ).strip()
    ckpt = st.file_uploader("State dict for it (optional)", type=STATE_DICT_TYPES, key="factory_ckpt")
    trust = _trust_ui("factory_trust")
    labels = _labels_ui("factory_labels")
    output = _output_ui("factory_output")
    if not factory:
        st.info("Name a factory such as `seed_net:build` to load it.", icon=":material/code:")
        return None
    return ModelSpec(
        source="factory",
        name=factory,
        weights=None,
        checkpoint=_saved(ckpt, STATE_DICT_TYPES),
        labels=labels,
        trust=trust,
        import_path=folder or None,
        output=output,
    )


def _saved(upload, types: list[str]) -> str | None:  # upload: UploadedFile | None
    return save_upload(upload.getvalue(), upload.name, tuple(f".{t}" for t in types)) if upload is not None else None


def _timm_ui(trusted: bool) -> ModelSpec | None:
    """A timm model by name: pretrained (downloaded once), random, or with the user's own weights."""
    if not _installed("timm"):
        st.info(TIMM_INSTALL, icon=":material/download:")
        return None
    names = _timm_names()
    st.session_state.setdefault(K.TIMM_NAME, "convnext_tiny")
    st.session_state.setdefault(K.TIMM_PRETRAINED, True)
    if st.session_state.pop(K.TIMM_PRETRAINED_OFF, False):
        st.session_state[K.TIMM_PRETRAINED] = False
    if st.session_state[K.TIMM_NAME].split(".")[0] not in names:
        st.session_state[K.TIMM_NAME] = "convnext_tiny"
    name = st.selectbox(
        "timm architecture",
        names,
        key=K.TIMM_NAME,
        help="Type to search timm's models (timm.list_models()).",
        persist_state=KEEP,
    )
    ckpt = st.file_uploader(
        "Your weights for it (optional: .safetensors, .pt, .pth)",
        type=STATE_DICT_TYPES,
        key="timm_ckpt",
        help="A state dict of this architecture (a fine-tuned checkpoint); the head is sized from the file.",
    )
    pretrained = st.toggle(
        "Pretrained weights",
        key=K.TIMM_PRETRAINED,
        persist_state=KEEP,
        disabled=ckpt is not None,
        help="timm's pretrained weights, from the Hugging Face cache or downloaded once. Offline, the page says so "
        "and switches this off: random weights, flagged as untrained wherever results show.",
    )
    labels = _labels_ui("timm_labels")
    return ModelSpec(
        source="timm",
        name=name,
        weights="DEFAULT" if pretrained and ckpt is None else None,
        checkpoint=_saved(ckpt, STATE_DICT_TYPES),
        labels=labels,
        allow_code=trusted,
    )


def _hf_ui(trusted: bool) -> ModelSpec | None:
    """A Hugging Face image classifier: a folder on this machine (not for the visitors of a server that does
    not trust them: they may not name the server's folders), or its files uploaded together."""
    if not _installed("transformers"):
        st.info(HF_INSTALL, icon=":material/download:")
        return None
    folder = "" if not trusted else st.text_input(
        "Folder on this machine",
        key="hf_folder",
        persist_state=KEEP,
        placeholder="/path/to/model (what save_pretrained wrote)",
        help="A folder with config.json, model.safetensors (or pytorch_model.bin) and preprocessor_config.json; "
        "or a hub id already in the local Hugging Face cache. Nothing is downloaded and no code from it runs.",
    ).strip()
    files = st.file_uploader(
        "… or upload its files" if trusted else "The model's files",
        type=HF_FILES,
        accept_multiple_files=True,
        key="hf_files",
        help="config.json, model.safetensors and preprocessor_config.json, together.",
    )
    if files:
        names = {f.name for f in files}
        if "config.json" not in names:
            st.warning("The upload needs the folder's config.json too.", icon=":material/description:")
            return None
        folder = save_folder([(f.name, f.getvalue()) for f in files])
    if not folder:
        st.info("Give the folder of a saved transformers image classifier.", icon=":material/folder_open:")
        return None
    return ModelSpec(source="hf", name=folder, weights=None, allow_code=trusted)
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
    if spec.source == "timm" and spec.checkpoint is None and spec.labels is None:
        st.session_state[K.SOURCE] = "timm"
        st.session_state[K.TIMM_NAME] = spec.name
        st.session_state[K.TIMM_PRETRAINED] = spec.weights is not None
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
        wanted = [m for m in (url.methods or ()) if m in METHODS]
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
