"""The model store every page shares: what model to load (``ModelSpec``), the loaded model and its layer tree
(``Bundle``), the images a visitor switches between (``ImageItem``), all loaded or decoded once per process.

A model is loaded once per process and shared by all sessions (the engine serialises calls on it, so
sharing is safe); it and the decoded uploads are kept in bounded caches (:mod:`cam_core.cache`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import torch
from PIL import Image

from cam_core import list_layers, load_model
from cam_core.cache import BoundedCache
from cam_core.engine import resolve_device
from cam_core.io.images import ImageError, load_image
from cam_core.limits import (
    DECODED_IMAGE_SIDE,
    IMAGE_CACHE_BYTES,
    MAX_IMAGE_UPLOAD_BYTES,
    MODEL_CACHE_BYTES,
    mb,
)
from cam_core.models import DEFAULT_MODEL, LoadedModel
from cam_core.models.layers import HINT_TEXT
from cam_core.models.outputs import parse_output
from dashboard.page_sources import asks_for, registered, shareable_spec
from dashboard.widgets.model_tree import tree_nodes

__all__ = [
    "Bundle",
    "ImageItem",
    "ModelSpec",
    "cached_bundles",
    "decode_image",
    "device_label",
    "image_cache_bytes",
    "load_bundle",
    "model_args",
    "model_cache_bytes",
]


@dataclass(frozen=True)
class ModelSpec:
    """What model to load, as plain values (hashable: it is the model's cache key).

    ``source`` is a sidebar choice (:mod:`dashboard.page_sources`: a registered source's key, or
    ``checkpoint`` for an upload of any checkpoint format) or ``pinned`` (one of the operator's models,
    see :mod:`dashboard.access`); ``name`` is the spec without its source's prefix; file fields are paths of
    saved uploads (named by their content hash, so equal files give equal specs) or the operator's
    files. ``allow_code`` is
    ``False`` for what a visitor asks for on a server that does not trust visitors: the engine then
    refuses factories, pickles, TorchScript and exported programs. ``title`` names a pinned model in
    the page (its paths are never shown). ``output`` names the logits of a model returning a tuple
    or dict.
    """

    source: str = "default"
    name: str = DEFAULT_MODEL
    weights: str | None = "DEFAULT"
    arch: str | None = None
    checkpoint: str | None = None
    labels: str | None = None
    trust: bool = False
    import_path: str | None = None
    allow_code: bool = True
    title: str | None = None
    output: str | None = None

    @property
    def spec_text(self) -> str:
        """The ``load_model`` spec this stands for: a checkpoint upload is its file; any other source's name
        carries the source's prefix (``timm:``, ``hf:``) where the registry declares one."""
        if self.source == "checkpoint":
            return self.checkpoint or ""
        source = registered(self.source)
        prefix = source.prefix if source is not None and source.prefix else ""
        return self.name if self.name.startswith(prefix) else prefix + self.name

    @property
    def key(self) -> str:
        """A short stable id for caches and widget state."""
        text = repr(
            (
                self.source,
                self.name,
                self.weights,
                self.arch,
                self.checkpoint,
                self.labels,
                self.trust,
                self.import_path,
                self.allow_code,
                self.output,
            )
        )
        return hashlib.sha1(text.encode()).hexdigest()[:16]

    @property
    def has_uploads(self) -> bool:
        """Whether the spec needs uploaded files (a checkpoint, class names): only a page link keeps those."""
        return bool(self.checkpoint or self.labels)

    @property
    def url_model(self) -> tuple[str, str | None] | None:
        """(model, weights) for a shareable URL; ``None`` for what a link cannot name (uploads, factories, folders:
        see :func:`~dashboard.page_sources.shareable_spec`)."""
        if self.source == "pinned":
            return (f"pinned:{self.title}", None) if self.title else None
        if not shareable_spec(registered(self.source)) or self.checkpoint is not None:
            return None
        asks_weights = asks_for(self.source, "weights") is not None
        return self.spec_text, None if not asks_weights or self.weights == "DEFAULT" else "none"


@dataclass(frozen=True)
class Bundle:
    """A loaded model with its layer tree, shared by every session."""

    spec: ModelSpec
    model: LoadedModel
    nodes: list[dict]
    camable: frozenset[str]
    recommended: str | None
    channels: dict[str, int] = field(default_factory=dict)  # CAM-able layer → the channels a CAM weights


@dataclass(frozen=True)
class ImageItem:
    """One image the user can switch to: ``digest`` identifies its pixels, ``fit`` how it meets the model.

    ``key`` (pixels and fit) names everything computed from it: the same photo under another
    fit is another input, with other scores and maps.
    """

    label: str
    image: Image.Image
    digest: str
    sample: str | None = None
    fit: str = "whole"

    @property
    def key(self) -> str:
        """Identifies the model's input: the pixels and the fit."""
        return f"{self.digest}|{self.fit}"


def _model_bytes(bundle: Bundle) -> int:
    module = bundle.model.module
    return sum(t.numel() * t.element_size() for t in (*module.parameters(), *module.buffers()))


_MODELS: BoundedCache[Bundle] = BoundedCache(max_bytes=MODEL_CACHE_BYTES, sizeof=_model_bytes)


def load_bundle(spec: ModelSpec) -> Bundle:
    """The model and its layer tree for ``spec``: loaded once per process, kept while there is room
    (:data:`~cam_core.limits.MODEL_CACHE_BYTES`), shared by every session.

    Raises:
        CamError: anything wrong with the spec, the files or the model.
    """
    return _MODELS.get_or_build(spec, lambda: _load_bundle(spec))


def model_args(spec: ModelSpec) -> dict[str, object]:
    """The :func:`cam_core.load_model` keyword arguments for ``spec``, as plain values (a batch job records them
    to reload the model in its workers)."""
    return {
        "spec": spec.spec_text,
        "weights": spec.weights,
        "arch": spec.arch,
        "checkpoint": spec.checkpoint if spec.source == "pinned" or asks_for(spec.source, "checkpoint") else None,
        "labels": spec.labels,
        "trust_checkpoint": spec.trust,
        "import_paths": [spec.import_path] if spec.import_path else [],
        "allow_code": spec.allow_code,
        "output": parse_output(spec.output),
    }


def _load_bundle(spec: ModelSpec) -> Bundle:
    model = load_model(**model_args(spec))
    if spec.title:  # an operator's model: the page shows its title, never its paths
        model.name = spec.title
    layers = list_layers(model)
    recommended = next((info.name for info in layers if info.recommended), None)
    return Bundle(
        spec=spec,
        model=model,
        nodes=tree_nodes(layers, HINT_TEXT),
        camable=frozenset(info.name for info in layers if info.camable),
        recommended=recommended,
        channels={info.name: info.channels for info in layers if info.channels is not None},
    )


def _image_bytes(image: Image.Image) -> int:
    return image.width * image.height * 3


# Decoded uploads, for every session (the same bytes decode to the same pixels), bounded by bytes.
_DECODED: BoundedCache[Image.Image] = BoundedCache(max_bytes=IMAGE_CACHE_BYTES, sizeof=_image_bytes)


def decode_image(digest: str, data: bytes, name: str) -> Image.Image:
    """Decode once per distinct content, kept at most :data:`~cam_core.limits.DECODED_IMAGE_SIDE` a side."""

    def decode() -> Image.Image:
        if len(data) > MAX_IMAGE_UPLOAD_BYTES:
            raise ImageError(f"{name} is {mb(len(data))}, more than the {mb(MAX_IMAGE_UPLOAD_BYTES)} allowed per image")
        image = load_image(data, name=name)
        if max(image.size) > DECODED_IMAGE_SIDE:
            image.thumbnail((DECODED_IMAGE_SIDE, DECODED_IMAGE_SIDE), Image.Resampling.LANCZOS)
        return image

    return _DECODED.get_or_build(digest, decode)


def image_cache_bytes() -> int:
    """Bytes of decoded images kept."""
    return _DECODED.nbytes


def cached_bundles() -> list[Bundle]:
    """The models loaded now."""
    return _MODELS.values()


def model_cache_bytes() -> int:
    """Bytes of the models' parameters and buffers kept loaded."""
    return _MODELS.nbytes


def device_label() -> str:
    """Where the maps are computed, e.g. ``GPU: NVIDIA H100`` or ``CPU (2 threads)``."""
    dev = resolve_device("auto")
    if dev.type == "cuda":
        return f"GPU: {torch.cuda.get_device_name(dev)}"
    if dev.type == "mps":
        return "GPU: Apple MPS"
    return f"CPU ({torch.get_num_threads()} threads)"
