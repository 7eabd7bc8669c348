"""What the debug section works from: the layer's facts for the diagnosis, and the tabs' context.

:func:`prepare` measures the layer once per (model, image, layer, classes) (one ``explain`` with
every gradient method, activations kept, and the head probe), cached in the session and shared
by all sessions; :class:`Ctx` bundles it with the view for the tabs.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch

from cam_core import ExplainResult, explain
from cam_core.analysis.diagnose import Diagnosis, HeadProbe, diagnose, layer_context, probe_head
from cam_core.analysis.sweep import SWEEP_METHODS
from cam_core.errors import CamError
from cam_core.models.layers import LayerInfo
from dashboard.display import Display
from dashboard.model import Bundle, ImageItem
from dashboard.views.image.compute import ViewResult, map_cache, ranking
from dashboard.views.image.debug.session import Timed, keep, keep_shared, recall, recall_shared

__all__ = ["Ctx", "LayerFacts", "prepare", "shown_methods", "view_diagnoses"]


@dataclass(frozen=True)
class LayerFacts:
    """The layer's statistics for one (model, image, layer, classes).

    Attributes:
        result: Every gradient method and Eigen-CAM for the classes, with the layer's
            statistics, Grad-CAM's channel weights and the activations (for point inspection).
        info: The layer's entry in the layer tree (for its hints).
        recommended: The recommended layer.
        head: Whether the head ignores the scale of the recommended layer (None if it could not be probed).
    """

    result: ExplainResult
    info: LayerInfo | None
    recommended: str | None
    head: HeadProbe | None


def _layer_facts(bundle: Bundle, item: ImageItem, layer: str, ids: tuple[int, ...]) -> Timed:
    """One explain (all gradient methods share one backward) and the head probe; cached per inputs."""
    key = (bundle.spec.key, item.key, layer, ids)
    found = recall("facts", key) or recall_shared("facts", key)
    if found is not None:
        return found
    inp = map_cache().model_input(bundle, item)
    x = inp.x
    start = time.perf_counter()
    res = explain(
        bundle.model, x, layer=layer, classes=list(ids), methods=SWEEP_METHODS, keep_activations=True,
        region=inp.region,
    )
    info, rec = layer_context(bundle.model, layer)
    facts = LayerFacts(result=res, info=info, recommended=rec, head=_head_probe(bundle, item, x))
    return keep_shared("facts", key, Timed(facts, time.perf_counter() - start), limit=8)


def _head_probe(bundle: Bundle, item: ImageItem, x: torch.Tensor) -> HeadProbe | None:
    """Whether the head ignores the recommended layer's scale: per (model, image), whatever the layer or classes."""
    key = (bundle.spec.key, item.key)
    found = recall("head", key) or recall_shared("head", key)
    if found is None:
        try:
            head = probe_head(bundle.model, x)
        except (CamError, RuntimeError):  # optional: a head that cannot be probed just gets no scale finding
            head = None
        found = keep_shared("head", key, Timed(head, 0.0), limit=8)
    return found.value


def _with_view_maps(res: ExplainResult, view: ViewResult, ids: Sequence[int], methods: Sequence[str]) -> ExplainResult:
    """``res`` plus the view's maps of the methods it lacks (CAM, Score-CAM, Ablation-CAM), as one result."""
    maps = dict(res.maps)
    for m in methods:
        if m not in maps:
            maps[m] = torch.from_numpy(np.stack([view.maps[(m, c)].raw for c in ids]))[None]
    return replace(res, maps=maps, methods=tuple(maps))


def shown_methods(view: ViewResult, ids: Sequence[int], methods: Sequence[str]) -> tuple[str, ...]:
    """The methods with a map for every class (a method the engine rejected at this layer has none)."""
    return tuple(m for m in methods if m not in view.errors and all((m, c) in view.maps for c in ids))


def prepare(
    bundle: Bundle, item: ImageItem, layer: str, view: ViewResult, ids: tuple[int, ...], shown: tuple[str, ...]
) -> tuple[LayerFacts, ExplainResult, dict[tuple[str, int], Diagnosis]]:
    """The layer's facts, one result holding every shown map, and a diagnosis per (method, class); cached."""
    facts = _layer_facts(bundle, item, layer, ids).value
    result = _with_view_maps(facts.result, view, ids, shown)
    key = (bundle.spec.key, item.key, layer, ids, shown)
    found = recall("diagnoses", key)
    if found is None:
        diags = {
            (m, c): diagnose(result, 0, k, m, facts.info, facts.recommended, facts.head)
            for m in shown
            for k, c in enumerate(ids)
        }
        found = keep("diagnoses", key, Timed(diags, 0.0), limit=8)
    return facts, result, found.value


def view_diagnoses(
    bundle: Bundle, item: ImageItem, layer: str, view: ViewResult, ids: Sequence[int], methods: Sequence[str]
) -> dict[tuple[str, int], Diagnosis]:
    """A :class:`~cam_core.analysis.diagnose.Diagnosis` per overlay of the view, keyed ``(method, class id)``.

    For a caller that places :func:`diagnosis_card` under each overlay. Costs one
    ``explain`` and one head probe per (model, image, layer, classes), cached in the session.

    Raises:
        CamError: the engine cannot take the layer's statistics (the overlays would fail too).
    """
    ids = tuple(int(c) for c in ids)
    return prepare(bundle, item, layer, view, ids, shown_methods(view, ids, methods))[2]



@dataclass(frozen=True)
class Ctx:
    """Everything the tabs need, as plain values."""

    bundle: Bundle
    item: ImageItem
    layer: str
    view: ViewResult
    ids: tuple[int, ...]
    shown: tuple[str, ...]
    display: Display
    facts: LayerFacts
    result: ExplainResult
    diags: dict[tuple[str, int], Diagnosis]
    x: torch.Tensor
    focus_class: int
    focus_method: str

    @property
    def mk(self) -> str:
        return self.bundle.spec.key

    @property
    def names(self) -> list[str]:
        return self.bundle.model.class_names

    def label(self, c: int) -> str:
        return f"{self.names[c]} ({c})"

    def runner_up(self, c: int) -> tuple[int, str] | None:
        """The most probable other class, as (id, label)."""
        order = ranking(self.mk, self.item.key) or []
        other = next((o for o in order if o != c), None)
        return None if other is None else (other, self.label(other))


