"""The image page's engine calls: maps, scores and model inputs, cached for every session.

Cost rules (what makes moving a slider free): maps are cached per (model, image, layer, method, class)
in one process-wide, size-bounded cache. A request computes only the missing (method, class) pairs,
in ONE ``explain()`` call; a layer, model or image change is a new key, so only those recompute.
Colormap, opacity and view changes never reach this module.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import streamlit as st
import torch

from cam_core import ExplainResult, explain
from cam_core.cache import BoundedCache
from cam_core.engine import OutOfMemory
from cam_core.engine.methods import METHODS
from cam_core.engine.targets import probabilities
from cam_core.errors import CamError
from cam_core.limits import MAP_CACHE_BYTES, MAX_CLASSES_PER_REQUEST
from cam_core.models import Placement
from cam_core.render import model_view
from dashboard.model import Bundle, ImageItem

__all__ = [
    "MapCache",
    "MapEntry",
    "ModelInput",
    "ViewResult",
    "cached_scores",
    "compute_view",
    "is_slow",
    "map_cache",
    "pending",
    "ranking",
]

Progress = Callable[[float, str], None]


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


def _map_bytes(entry: MapEntry) -> int:
    return entry.raw.nbytes + entry.up.nbytes


class MapCache:
    """Process-wide maps, scores, model inputs and the engine's refusals, each a bounded LRU; thread-safe."""

    def __init__(self, max_bytes: int = MAP_CACHE_BYTES) -> None:
        self.max_bytes = max_bytes
        self._maps: BoundedCache[MapEntry] = BoundedCache(max_bytes=max_bytes, sizeof=_map_bytes)
        self._scores: BoundedCache[tuple[np.ndarray, np.ndarray]] = BoundedCache(max_entries=512)
        self._inputs: BoundedCache[ModelInput] = BoundedCache(max_entries=64)
        self._errors: BoundedCache[str] = BoundedCache(max_entries=4096)

    def get_maps(self, keys: Sequence[tuple[str, str, str, str, int]]) -> dict[tuple[str, int], MapEntry]:
        """The cached entries among ``keys``, as (method, class) → entry."""
        found = {}
        for key in keys:
            entry = self._maps.get(key)
            if entry is not None:
                found[(key[3], key[4])] = entry
        return found

    def put_maps(self, items: dict[tuple[str, str, str, str, int], MapEntry]) -> None:
        """Store entries, evicting the least recently used beyond ``max_bytes``."""
        for key, entry in items.items():
            self._maps.put(key, entry)

    @property
    def nbytes(self) -> int:
        """Bytes of the maps kept."""
        return self._maps.nbytes

    def scores(self, key: tuple[str, str]) -> tuple[np.ndarray, np.ndarray] | None:
        """(logits, probs) for (model, image), if known."""
        return self._scores.get(key)

    def put_scores(self, key: tuple[str, str], logits: np.ndarray, probs: np.ndarray) -> None:
        """Remember (logits, probs) for (model, image) (a few hundred entries at most)."""
        self._scores.put(key, (logits, probs))

    def errors(self, prefix: tuple[str, str, str], methods: Sequence[str]) -> dict[str, str]:
        """Methods the engine rejected for (model, image, layer), with its message."""
        found = {m: self._errors.get((*prefix, m)) for m in methods}
        return {m: message for m, message in found.items() if message is not None}

    def put_error(self, prefix: tuple[str, str, str], method: str, message: str) -> None:
        """Remember that ``method`` fails there, so it is not retried on every rerun."""
        self._errors.put((*prefix, method), message)

    def model_input(self, bundle: Bundle, item: ImageItem) -> ModelInput:
        """The preprocessed tensor, the image as the model saw it and where it lies (a letterbox pads it)."""

        def build() -> ModelInput:
            x, place = bundle.model.prepare(item.image, item.fit)
            return ModelInput(x.unsqueeze(0), model_view(x, bundle.model.mean, bundle.model.std), place)

        return self._inputs.get_or_build((bundle.spec.key, item.key), build)


@st.cache_resource(show_spinner=False)
def map_cache() -> MapCache:
    """The process-wide map cache (one for every session)."""
    return MapCache()


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
    k = max(1, min(int(k), MAX_CLASSES_PER_REQUEST))  # the last gate: whatever asked (a link, a callback) for more
    if classes is not None:
        classes = list(classes)[:MAX_CLASSES_PER_REQUEST]
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
