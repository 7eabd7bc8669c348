"""The only place the page calls the engine: models, layers, images and maps, all cached.

Cost rules (what makes moving a slider free):

- A model is loaded once per process (``st.cache_resource``) and shared by all
  sessions; the engine serialises calls on it, so sharing is safe.
- Maps are cached per (model, image, layer, method, class) in one process-wide,
  size-bounded cache. A request computes only the missing (method, class) pairs,
  in ONE ``explain()`` call; a layer, model or image change is a new key, so only
  those recompute. Colormap, opacity and view changes never reach this module.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import TypeVar

import numpy as np
import streamlit as st
import torch
from PIL import Image

from cam_core import ExplainResult, explain, list_layers, load_model
from cam_core.engine import OutOfMemory, resolve_device
from cam_core.engine.methods import METHODS
from cam_core.engine.targets import probabilities
from cam_core.errors import CamError
from cam_core.io.images import ImageError, load_image
from cam_core.limits import (
    DECODED_IMAGE_SIDE,
    FIGURE_CACHE_ENTRIES,
    IMAGE_CACHE_BYTES,
    MAP_CACHE_BYTES,
    MAX_IMAGE_UPLOAD_BYTES,
    MODEL_CACHE_BYTES,
    mb,
)
from cam_core.models import DEFAULT_MODEL, LoadedModel, Placement
from cam_core.models.layers import HINT_TEXT
from cam_core.models.outputs import parse_output
from cam_core.render import model_view
from dashboard.caches import BoundedCache
from dashboard.widgets.model_tree import tree_nodes

__all__ = [
    "Bundle",
    "ImageItem",
    "MapCache",
    "MapEntry",
    "ModelInput",
    "ModelSpec",
    "ViewResult",
    "cached_bundles",
    "cached_scores",
    "compute_view",
    "decode_image",
    "device_label",
    "figure_cache",
    "image_cache_bytes",
    "is_slow",
    "load_bundle",
    "map_cache",
    "model_args",
    "model_cache_bytes",
    "pending",
    "ranking",
]

Progress = Callable[[float, str], None]
T = TypeVar("T")


@dataclass(frozen=True)
class ModelSpec:
    """What model to load, as plain values (hashable: it is the model's cache key).

    ``source`` is ``default``, ``torchvision``, ``timm``, ``hf``, ``checkpoint``, ``factory`` or
    ``pinned`` (one of the operator's models, see :mod:`dashboard.access`); file fields are paths of
    saved uploads (named by their content hash, so equal files give equal specs) or the operator's
    files; ``name`` is also the timm model name or the Hugging Face folder. ``allow_code`` is
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
        """The ``load_model`` spec this stands for."""
        if self.source in ("default", "torchvision", "factory", "pinned"):
            return self.name
        if self.source == "timm":
            return f"timm:{self.name}"
        if self.source == "hf":
            return f"hf:{self.name}"
        return self.checkpoint or ""

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
        """(model, weights) for a shareable URL; ``None`` for uploads and factories (not shareable)."""
        if self.source == "default":
            return DEFAULT_MODEL, None
        if self.source == "torchvision":
            return self.name, None if self.weights == "DEFAULT" else "none"
        if self.source == "timm" and self.checkpoint is None:
            return f"timm:{self.name}", None if self.weights == "DEFAULT" else "none"
        if self.source == "pinned" and self.title:
            return f"pinned:{self.title}", None
        return None


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


@dataclass(frozen=True)
class MapEntry:
    """One map: ``raw`` at the layer's resolution (h, w), ``up`` at the input's (H, W); float32, signed."""

    raw: np.ndarray
    up: np.ndarray


@dataclass(frozen=True)
class ModelInput:
    """What the model gets for one image: ``x`` (1, 3, H, W), ``background`` (H, W, 3) uint8 as the model
    saw it, and ``place``: the fit, and where the image lies when the rest is pad."""

    x: torch.Tensor
    background: np.ndarray
    place: Placement

    @property
    def region(self) -> tuple[int, int, int, int] | None:
        """The image's box in the input when part of it is pad, else ``None`` (for ``explain(region=)``)."""
        return self.place.content if self.place.padded else None


@dataclass
class ViewResult:
    """What the page shows for one (model, image, layer): scores and the requested maps."""

    logits: np.ndarray
    probs: np.ndarray
    background: np.ndarray
    place: Placement
    maps: dict[tuple[str, int], MapEntry]
    computed: list[tuple[str, int]] = field(default_factory=list)
    seconds: float = 0.0
    errors: dict[str, str] = field(default_factory=dict)
    probs_kind: str = "softmax"

    def with_probabilities(self, kind: str) -> ViewResult:
        """The same view with ``softmax`` or ``sigmoid`` (multi-label) probabilities."""
        if kind == self.probs_kind:
            return self
        probs = probabilities(torch.from_numpy(self.logits), kind).numpy()
        return replace(self, probs=probs, probs_kind=kind)


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
        "checkpoint": spec.checkpoint if spec.source in ("factory", "pinned", "timm") else None,
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


class MapCache:
    """Process-wide LRU of maps, scores and model inputs, bounded by bytes; thread-safe."""

    def __init__(self, max_bytes: int = MAP_CACHE_BYTES) -> None:
        self.max_bytes = max_bytes
        self._maps: OrderedDict[tuple[str, str, str, str, int], MapEntry] = OrderedDict()
        self._scores: OrderedDict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = OrderedDict()
        self._inputs: OrderedDict[tuple[str, str], ModelInput] = OrderedDict()
        self._errors: dict[tuple[str, str, str, str], str] = {}
        self._bytes = 0
        self._lock = threading.Lock()

    def get_maps(self, keys: Sequence[tuple[str, str, str, str, int]]) -> dict[tuple[str, int], MapEntry]:
        """The cached entries among ``keys``, as (method, class) → entry."""
        found = {}
        with self._lock:
            for key in keys:
                entry = self._maps.get(key)
                if entry is not None:
                    self._maps.move_to_end(key)
                    found[(key[3], key[4])] = entry
        return found

    def put_maps(self, items: dict[tuple[str, str, str, str, int], MapEntry]) -> None:
        """Store entries, evicting the least recently used beyond ``max_bytes``."""
        with self._lock:
            for key, entry in items.items():
                old = self._maps.pop(key, None)
                if old is not None:
                    self._bytes -= old.raw.nbytes + old.up.nbytes
                self._maps[key] = entry
                self._bytes += entry.raw.nbytes + entry.up.nbytes
            while self._bytes > self.max_bytes and len(self._maps) > 1:
                _, old = self._maps.popitem(last=False)
                self._bytes -= old.raw.nbytes + old.up.nbytes

    @property
    def nbytes(self) -> int:
        """Bytes of the maps kept."""
        return self._bytes

    def scores(self, key: tuple[str, str]) -> tuple[np.ndarray, np.ndarray] | None:
        """(logits, probs) for (model, image), if known."""
        with self._lock:
            return self._scores.get(key)

    def put_scores(self, key: tuple[str, str], logits: np.ndarray, probs: np.ndarray) -> None:
        """Remember (logits, probs) for (model, image) (a few hundred entries at most)."""
        with self._lock:
            self._scores[key] = (logits, probs)
            while len(self._scores) > 512:
                self._scores.popitem(last=False)

    def errors(self, prefix: tuple[str, str, str], methods: Sequence[str]) -> dict[str, str]:
        """Methods the engine rejected for (model, image, layer), with its message."""
        with self._lock:
            return {m: self._errors[(*prefix, m)] for m in methods if (*prefix, m) in self._errors}

    def put_error(self, prefix: tuple[str, str, str], method: str, message: str) -> None:
        """Remember that ``method`` fails there, so it is not retried on every rerun."""
        with self._lock:
            if len(self._errors) > 4096:
                self._errors.clear()
            self._errors[(*prefix, method)] = message

    def model_input(self, bundle: Bundle, item: ImageItem) -> ModelInput:
        """The preprocessed tensor, the image as the model saw it and where it lies (a letterbox pads it)."""
        key = (bundle.spec.key, item.key)
        with self._lock:
            found = self._inputs.get(key)
        if found is not None:
            return found
        x, place = bundle.model.prepare(item.image, item.fit)
        value = ModelInput(x.unsqueeze(0), model_view(x, bundle.model.mean, bundle.model.std), place)
        with self._lock:
            self._inputs[key] = value
            while len(self._inputs) > 64:
                self._inputs.popitem(last=False)
        return value


@st.cache_resource(show_spinner=False)
def map_cache() -> MapCache:
    """The process-wide map cache (one for every session)."""
    return MapCache()


_FIGURES: BoundedCache[object] = BoundedCache(max_entries=FIGURE_CACHE_ENTRIES)


def figure_cache() -> BoundedCache[object]:
    """The process-wide figure cache (one for every session): building a figure costs ~0.2 s of Plotly
    validation; sending it again costs nothing (the browser keeps large messages it has seen)."""
    return _FIGURES


def _store(cache: MapCache, prefix: tuple[str, str, str], res: ExplainResult) -> list[tuple[str, int]]:
    """Put every map of an ExplainResult (one image) into the cache; return the (method, class) pairs."""
    ids = res.class_ids[0].tolist()
    items = {}
    for m in res.methods:
        raw = res.maps[m][0].numpy().astype(np.float32, copy=False)
        up = res.upsampled(m)[0].numpy().astype(np.float32, copy=False)
        for k, cid in enumerate(ids):
            items[(*prefix, m, int(cid))] = MapEntry(raw=raw[k].copy(), up=up[k].copy())
    cache.put_maps(items)
    return [(key[3], key[4]) for key in items]


def _explain(
    bundle: Bundle,
    inp: ModelInput,
    prefix: tuple[str, str, str],
    classes: str | list[int],
    methods: Sequence[str],
    progress: Progress | None,
) -> tuple[list[ExplainResult], list[tuple[str, int]]]:
    """One ``explain()`` for all ``methods``; if the engine rejects one of several (CAM at a layer
    without a GAP + linear head, say), each runs on its own so that the others still show.

    Failures are remembered in the cache (they are properties of the model and layer), except running
    out of memory, which passes; returns the results and the (method, class) pairs stored.
    """
    cache = map_cache()
    layer = prefix[2]
    try:
        res = explain(
            bundle.model, inp.x, layer=layer, classes=classes, methods=list(methods), progress=progress,
            region=inp.region,
        )
        return [res], _store(cache, prefix, res)
    except OutOfMemory:
        raise
    except CamError as exc:
        if len(methods) == 1:
            cache.put_error(prefix, methods[0], str(exc))
            return [], []
    results, stored = [], []
    for m in methods:
        try:
            res = explain(
                bundle.model, inp.x, layer=layer, classes=classes, methods=[m], progress=progress, region=inp.region
            )
        except OutOfMemory:
            raise
        except CamError as exc:
            cache.put_error(prefix, m, str(exc))
            continue
        results.append(res)
        stored += _store(cache, prefix, res)
    return results, stored


def compute_view(
    bundle: Bundle,
    item: ImageItem,
    *,
    layer: str,
    methods: Sequence[str],
    classes: Sequence[int] | None,
    k: int,
    progress: Progress | None = None,
) -> tuple[ViewResult, list[int]]:
    """Scores and maps for one image at one layer, computing only what the cache lacks.

    A method the engine rejects at this layer is reported in ``ViewResult.errors``
    (and not retried); the other methods still show.

    Args:
        bundle: the loaded model.
        item: the image.
        layer: dotted layer name.
        methods: method names.
        classes: class ids to explain; ``None`` means the image's top ``k``.
        k: how many top classes to explain when ``classes`` is None.
        progress: callback for long (perturbation) methods.

    Returns:
        The view and the class ids it explains.

    Raises:
        CamError: when no method at all works there (bad layer, class or model).
    """
    cache = map_cache()
    mk = bundle.spec.key
    prefix = (mk, item.key, layer)
    inp = cache.model_input(bundle, item)
    computed: list[tuple[str, int]] = []
    start = time.perf_counter()
    scores = cache.scores((mk, item.key))
    if scores is None:
        # First look at this image: one call gives the scores and the top-k maps together.
        first = [m for m in methods if m not in cache.errors(prefix, methods)] or ["gradcam"]
        results, computed = _explain(bundle, inp, prefix, f"top{k}", first, progress)
        if not results:
            raise CamError(next(iter(cache.errors(prefix, first).values())))
        scores = (results[0].logits[0].numpy(), results[0].probs[0].numpy())
        cache.put_scores((mk, item.key), *scores)
    logits, probs = scores
    ids = list(classes) if classes is not None else np.argsort(-logits, kind="stable")[:k].tolist()
    errors = cache.errors(prefix, methods)
    keys = [(*prefix, m, c) for m in methods if m not in errors for c in ids]
    found = cache.get_maps(keys)
    missing = [key for key in keys if (key[3], key[4]) not in found]
    if missing:
        need_methods = list(dict.fromkeys(key[3] for key in missing))
        need_classes = list(dict.fromkeys(key[4] for key in missing))
        computed += _explain(bundle, inp, prefix, need_classes, need_methods, progress)[1]
        found = cache.get_maps(keys)
        errors = cache.errors(prefix, methods)
    view = ViewResult(
        logits=logits,
        probs=probs,
        background=inp.background,
        place=inp.place,
        maps=found,
        computed=computed,
        seconds=time.perf_counter() - start if computed else 0.0,
        errors=errors,
    )
    return view, ids


def pending(
    bundle: Bundle, item: ImageItem, *, layer: str, methods: Sequence[str], classes: Sequence[int] | None
) -> list[str]:
    """The methods :func:`compute_view` would have to run (all of them for an image not seen yet)."""
    cache = map_cache()
    mk = bundle.spec.key
    prefix = (mk, item.key, layer)
    todo = [m for m in methods if m not in cache.errors(prefix, methods)]
    if classes is None or cache.scores((mk, item.key)) is None:
        return todo or ["gradcam"]
    found = cache.get_maps([(*prefix, m, c) for m in todo for c in classes])
    return [m for m in todo if any((m, c) not in found for c in classes)]


def is_slow(methods: Sequence[str]) -> bool:
    """Whether any method runs many forward passes (worth a progress bar)."""
    return any(METHODS[m].slow for m in methods if m in METHODS)


def cached_scores(model_key: str, item_key: str) -> tuple[np.ndarray, np.ndarray] | None:
    """(logits, probs) of an input (``ImageItem.key``) the model has seen, else ``None``."""
    return map_cache().scores((model_key, item_key))


def ranking(model_key: str, item_key: str) -> list[int] | None:
    """Class ids of an input (``ImageItem.key``) by decreasing probability, if it was seen (else ``None``)."""
    scores = cached_scores(model_key, item_key)
    return None if scores is None else np.argsort(-scores[1], kind="stable").tolist()
