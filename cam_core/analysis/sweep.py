"""Look at one explanation from several sides: across layers, methods and classes.

- :func:`sweep`: maps at every stage output (plus any layers you add) from ONE
  forward and ONE backward: hooks on all the layers at once
  (:func:`~cam_core.engine.capture.capture_layers`: the shallowest capture is a leaf,
  deeper ones stay in the graph) and one ``torch.autograd.grad`` over all of them.
- :func:`compare_methods`: every method for one class and layer (one
  :func:`~cam_core.engine.explain` call, so gradient methods share one capture).
- :func:`contrast`: "why A rather than B": the map of logit_A − logit_B.

**Stage rule** (:func:`stage_layers`): start from the recommended layer's
siblings; a sibling that did not run as a whole, or a plain sequence
(``Sequential``/``ModuleList``/``ModuleDict``) whose children output maps at more
than one resolution, is replaced by its children (recursively); of each run of
consecutive CAM-able candidates at the same resolution, the last one is a stage
output. If that gives fewer than :data:`MIN_STAGES`, the rule climbs one level (the
parent's siblings) and tries again, up to the top, keeping the level with the most
stages; a model of constant resolution (ViT) gets up to :data:`MAX_EVEN` evenly
spaced members of its longest sequence of blocks. The
recommended layer is always included. ResNet-50: ``relu``, ``layer1`` …
``layer4``; EfficientNet-Lite0: the last block of each resolution and ``_head_act``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor, nn

from ..devices import place_model
from ..engine.capture import capture_layers
from ..engine.classes import resolve_classes
from ..engine.explainer import explain
from ..engine.methods import METHODS, check_methods
from ..engine.result import ExplainResult
from ..engine.targets import Contrast, Target, resolve_target
from ..errors import CamError, choices_hint
from ..models.layers import LayerInfo, grid_transform, list_layers
from ..modules import model_lock, unwrap_model
from .diagnose import Diagnosis, diagnose

__all__ = [
    "MAX_EVEN",
    "MIN_STAGES",
    "SWEEP_METHODS",
    "SweepLayer",
    "SweepResult",
    "check_sweep_methods",
    "compare_methods",
    "contrast",
    "maps_at_layers",
    "stage_layers",
    "sweep",
]

MIN_STAGES = 3  # fewer distinct resolutions than this at one level: climb a level
# Methods that some models or layers cannot take (compare_methods leaves them out, saying why).
_MAY_NOT_APPLY = ("cam", "legrad", "shapleycam", "kpcacam", "finercam")
MAX_EVEN = 6  # constant-resolution models: this many evenly spaced blocks
_SEQUENCES = ("Sequential", "ModuleList", "ModuleDict")
# Methods one backward of the explained score serves (and Eigen-CAM, which needs no gradient); not Finer-CAM
# (a score of its own) nor KPCA-CAM (a kernel matrix per layer, too large at the shallow stages).
SWEEP_METHODS = tuple(
    m for m, spec in METHODS.items() if spec.kind in ("gradient", "activation") and spec.target is None
    and m != "kpcacam"
)


def _expand(info: LayerInfo, children: dict[str, list[LayerInfo]]) -> list[LayerInfo]:
    kids = children.get(info.name, [])
    grids = {c.grid for c in kids if c.camable}
    if kids and (not info.camable or (info.type in _SEQUENCES and len(grids) > 1)):
        return [x for c in kids for x in _expand(c, children)]
    return [info]


def _last_per_run(cands: list[LayerInfo]) -> list[str]:
    out: list[str] = []
    for j, c in enumerate(cands):
        if j + 1 == len(cands) or cands[j + 1].grid != c.grid:
            out.append(c.name)
    return out


def stage_layers(layers: Sequence[LayerInfo]) -> list[str]:
    """The default layers of a sweep: stage outputs and the recommended layer (rule in the module docstring).

    Args:
        layers: The model's layer list from :func:`cam_core.models.layers.list_layers`.

    Returns:
        Layer names, in module order; empty when no layer is CAM-able.
    """
    rec = next((li for li in layers if li.recommended), None)
    if rec is None:
        return []
    by_name = {li.name: li for li in layers}
    children: dict[str, list[LayerInfo]] = {}
    for li in layers:
        children.setdefault(li.parent, []).append(li)
    level, best, widest = rec.parent, [], []
    while True:
        cands = [x for c in children.get(level, []) for x in _expand(c, children) if x.camable]
        stages = _last_per_run(cands)
        best = stages if len(stages) > len(best) else best
        widest = cands if len(cands) > len(widest) else widest
        if len(best) >= MIN_STAGES or not level:
            break
        level = by_name[level].parent
    stages = best
    if len(stages) < 2 and widest:
        # Constant resolution: evenly spaced members of the longest sequence seen (always its last).
        idx = np.unique(np.linspace(len(widest) - 1, 0, MAX_EVEN).round().astype(int))
        stages = [widest[j].name for j in idx]
    if rec.name not in stages:
        stages.append(rec.name)
    order = {li.name: j for j, li in enumerate(layers)}
    return sorted(stages, key=order.__getitem__)


def _one_image(x: Tensor) -> Tensor:
    if x.ndim == 3:
        x = x.unsqueeze(0)
    if x.ndim != 4 or x.shape[0] != 1:
        raise CamError(f"expected one image as a (3, H, W) or (1, 3, H, W) tensor, got shape {tuple(x.shape)}")
    return x


@dataclass
class _Pass:
    """What one forward and one backward gave: logits, the class, and per-layer results in forward order."""

    logits: Tensor
    ids: Tensor
    results: list[ExplainResult]


def maps_at_layers(
    module: nn.Module,
    x: Tensor,
    layers: Sequence[str],
    to_grids: dict[str, Callable[[Tensor], Tensor]],
    classes: str | int | Sequence[int | str],
    methods: Sequence[str],
    target: Target,
    class_names: Sequence[str] | None = None,
    keep_activations: bool = False,
) -> tuple[Tensor, Tensor, list[ExplainResult]]:
    """Maps of one class at several layers from one forward and one backward.

    The caller holds the model's lock and has put the model and ``x`` on one device.

    Args:
        module: The model.
        x: (N, 3, H, W) images.
        layers: Dotted layer names.
        to_grids: Layer → the function from its raw output to N×C×h×w.
        classes: One class (an index, a name, ``"top1"``): K must be 1.
        methods: Gradient methods, and ``eigencam``.
        target: The explained score.
        class_names: For names and class lookup.
        keep_activations: Keep each layer's activations in its result.

    Returns:
        ``(logits (N, C), ids (N, 1), one ExplainResult per layer in the order the forward finished them)``.
    """
    with capture_layers(module, list(layers)) as cap, torch.no_grad():
        out = module(x)
    cap.check()
    if not isinstance(out, Tensor) or out.ndim != 2:
        raise CamError("the model's output is not (N, classes) logits; wrap it to return a tensor of scores")
    names = list(class_names or [f"class {i}" for i in range(out.shape[1])])
    ids = resolve_classes(classes, out.detach(), names).to(out.device)
    if ids.shape[1] != 1:
        raise CamError(f"give one class here, not {ids.shape[1]}")
    order = list(cap.leaves)  # filled as the forward finished each layer: shallow → deep
    grads: Sequence[Tensor | None] = [None] * len(order)
    if any(METHODS[m].kind == "gradient" for m in methods):
        with torch.enable_grad():
            score = target(out, ids).sum()
        if not score.requires_grad:
            raise CamError("the class score does not depend on these layers; pick layers before the head")
        grads = torch.autograd.grad(score, [cap[n] for n in order], allow_unused=True)
    logits = out.detach().float()
    probs = logits.softmax(1)
    results = []
    for name, g in zip(order, grads, strict=True):
        A = to_grids[name](cap[name].detach())
        G = (to_grids[name](g) if g is not None else torch.zeros_like(A)).unsqueeze(1)  # (N, 1, C, h, w)
        maps = {m: (METHODS[m].fn(A, G) if METHODS[m].kind == "gradient" else METHODS[m].fn(A)) for m in methods}
        flat = A.flatten(1)
        stats = {
            "act_min": flat.amin(1),
            "act_max": flat.amax(1),
            "act_neg_frac": (flat < 0).float().mean(1),
            "grad_pos_frac": (G > 0).float().mean(dim=(2, 3, 4)),
        }
        results.append(
            ExplainResult(
                logits=logits.cpu(),
                probs=probs.cpu(),
                class_ids=ids.cpu(),
                class_names=[[names[i] for i in row] for row in ids.tolist()],
                layer=name,
                methods=tuple(methods),
                maps={m: v.detach().float().cpu() for m, v in maps.items()},
                input_size=(x.shape[-2], x.shape[-1]),
                target=str(getattr(target, "__name__", target)),
                weights={"gradcam": G.mean(dim=(-2, -1)).float().cpu()},
                stats={k: v.float().cpu() for k, v in stats.items()},
                activations=A.float().cpu() if keep_activations else None,
            )
        )
    return logits.cpu(), ids.cpu(), results


def check_sweep_methods(methods: str | Sequence[str]) -> tuple[str, ...]:
    """Methods that one backward serves; others are refused with the valid choices."""
    methods = check_methods(methods if isinstance(methods, str) else tuple(methods))
    bad = [m for m in methods if m not in SWEEP_METHODS]
    if bad:
        raise CamError(
            f"method {bad[0]!r} needs its own forward passes or head and is not swept across layers; "
            f"choose from: {choices_hint(SWEEP_METHODS)}"
        )
    return methods


@dataclass
class SweepLayer:
    """One layer of a sweep.

    Attributes:
        name, type, out_shape, grid, hints: From the layer tree.
        added: Whether the user added it (not a default stage output).
        result: Its maps as an :class:`ExplainResult` (one image, one class).
        diagnosis: Method → :class:`~cam_core.analysis.diagnose.Diagnosis` of its map.
    """

    name: str
    type: str
    out_shape: tuple[int, ...] | None
    grid: tuple[int, int]
    hints: tuple[str, ...]
    added: bool
    result: ExplainResult
    diagnosis: dict[str, Diagnosis]


@dataclass
class SweepResult:
    """Maps of one image and class at many layers, shallow → deep (the order the forward finished them).

    Attributes:
        class_id, class_name: The explained class.
        logits, probs: (C,) the model's outputs.
        target: The explained score.
        recommended: The recommended layer's name.
        layers: One :class:`SweepLayer` per layer.
        cost: Forwards and backwards run (1 and 1).
    """

    class_id: int
    class_name: str
    logits: Tensor
    probs: Tensor
    target: str
    recommended: str | None
    layers: list[SweepLayer]
    cost: dict[str, int] = field(default_factory=dict)

    @property
    def names(self) -> list[str]:
        """The layers' names, shallow → deep."""
        return [la.name for la in self.layers]

    def to_dict(self) -> dict[str, object]:
        """Plain data for JSON: everything but the maps."""
        return {
            "class_id": self.class_id,
            "class_name": self.class_name,
            "logit": float(self.logits[self.class_id]),
            "prob": float(self.probs[self.class_id]),
            "target": self.target,
            "recommended": self.recommended,
            "cost": self.cost,
            "layers": [
                {
                    "name": la.name,
                    "type": la.type,
                    "out_shape": list(la.out_shape) if la.out_shape else None,
                    "grid": list(la.grid),
                    "hints": list(la.hints),
                    "added": la.added,
                    "diagnosis": {m: d.to_dict() for m, d in la.diagnosis.items()},
                }
                for la in self.layers
            ],
        }

    def arrays(self) -> dict[str, np.ndarray]:
        """Maps for an NPZ: ``layers`` (L,), ``maps_<method>_<j>`` (h, w) per layer j, ``up_<method>`` (L, H, W)."""
        out: dict[str, np.ndarray] = {"layers": np.array(self.names), "logits": self.logits.numpy()}
        for m in self.layers[0].result.maps if self.layers else ():
            for j, la in enumerate(self.layers):
                out[f"maps_{m}_{j}"] = la.result.maps[m][0, 0].numpy()
            out[f"up_{m}"] = np.stack([la.result.upsampled(m)[0, 0].numpy() for la in self.layers])
        return out


def sweep(
    model: object,
    x: Tensor,
    class_id: int | str | None = None,
    *,
    extra: Sequence[str] = (),
    layers: Sequence[str] | None = None,
    methods: str | Sequence[str] = ("gradcam", "hirescam"),
    target: str | Target = "logit",
    device: str | torch.device = "auto",
    keep_activations: bool = False,
) -> SweepResult:
    """Maps of one image and class at every stage output (plus ``extra``), from one forward and one backward.

    Args:
        model: A LoadedModel or ``nn.Module``.
        x: One preprocessed image, (3, H, W) or (1, 3, H, W).
        class_id: Class index or name; default the top class.
        extra: Layers added to the default stage outputs.
        layers: Replace the default stage outputs (``extra`` is still added).
        methods: Gradient methods (and ``eigencam``); see :data:`SWEEP_METHODS`.
        target: ``logit``, ``softmax`` or a callable (e.g. :class:`~cam_core.engine.targets.Contrast`).
        device: ``auto`` or an explicit device; the model is moved there, as :func:`explain` does.
        keep_activations: Keep each layer's activations (for :func:`~cam_core.analysis.diagnose.inspect_point`).

    Returns:
        A :class:`SweepResult`, layers shallow → deep, each with maps and a diagnosis per method.

    Raises:
        CamError: unknown or non-spatial layer, unknown class, a method one backward cannot serve.
    """
    methods = check_sweep_methods(methods)
    target_fn = resolve_target(target)
    module, class_names = unwrap_model(model)
    x = _one_image(x)
    infos = {li.name: li for li in list_layers(model)}
    rec = next((n for n, li in infos.items() if li.recommended), None)
    chosen = list(dict.fromkeys(layers if layers is not None else stage_layers(list(infos.values()))))
    added = [e for e in dict.fromkeys(extra) if e not in chosen]
    chosen += added
    if not chosen:
        raise CamError("no layers to sweep: the model has no CAM-able layer; add layers with extra")
    to_grids = {name: grid_transform(model, name) for name in chosen}
    with model_lock(module):
        dev = place_model(module, device)
        logits, ids, results = maps_at_layers(
            module,
            x.to(dev),
            chosen,
            to_grids,
            "top1" if class_id is None else [class_id],
            methods,
            target_fn,
            class_names,
            keep_activations,
        )
    sweep_layers = []
    for res in results:
        info = infos.get(res.layer)
        sweep_layers.append(
            SweepLayer(
                name=res.layer,
                type=info.type if info else "",
                out_shape=info.out_shape if info else None,
                grid=tuple(res.maps[methods[0]].shape[-2:]),
                hints=info.hints if info else (),
                added=res.layer in added,
                result=res,
                diagnosis={m: diagnose(res, 0, 0, m, info, rec) for m in methods},
            )
        )
    cid = int(ids[0, 0])
    return SweepResult(
        class_id=cid,
        class_name=results[0].class_names[0][0],
        logits=logits[0],
        probs=logits[0].softmax(0),
        target=results[0].target,
        recommended=rec,
        layers=sweep_layers,
        cost={"forwards": 1, "backwards": int(any(METHODS[m].kind == "gradient" for m in methods))},
    )


def compare_methods(
    model: object,
    x: Tensor,
    layer: str | None = None,
    class_id: int | str | None = None,
    methods: Sequence[str] | None = None,
    *,
    batch_size: int = 64,
    device: str | torch.device = "auto",
    progress: Callable[[float, str], None] | None = None,
) -> tuple[ExplainResult, dict[str, str]]:
    """Every method for one class and layer, in one :func:`explain` call (gradient methods share one capture).

    Some methods apply only to some models or layers (CAM where the layer feeds global average
    pooling and a linear head, LeGrad on ViTs, ShapleyCAM where the ops have second derivatives,
    KPCA-CAM on grids small enough, Finer-CAM with several classes); where one does not, it is
    left out and the reason returned, and the rest still computed.

    Args:
        model: A LoadedModel or ``nn.Module``.
        x: (N, 3, H, W) preprocessed images.
        layer: Default the recommended layer.
        class_id: Class index or name; default each image's top class.
        methods: Default all of :data:`~cam_core.engine.methods.METHODS` (Score-/Ablation-CAM run C forwards).
        batch_size: Forward batch of the perturbation methods.
        device: As for :func:`explain`.
        progress: Callback(fraction, message) for the perturbation methods.

    Returns:
        ``(result, skipped)`` where ``skipped`` maps a left-out method to why.
    """
    methods = list(check_methods(tuple(methods) if methods else tuple(METHODS)))
    classes = "top1" if class_id is None else [class_id]
    kwargs = {"layer": layer, "classes": classes, "batch_size": batch_size, "device": device, "progress": progress}
    try:
        return explain(model, x, methods=methods, **kwargs), {}
    except CamError as exc:
        skipped: dict[str, str] = {}
        for m in (m for m in methods if m in _MAY_NOT_APPLY):
            try:
                explain(model, x, methods=[m], **kwargs)
            except CamError as why:
                skipped[m] = str(why)
        rest = [m for m in methods if m not in skipped]
        if not skipped or not rest:
            raise exc from None
        return explain(model, x, methods=rest, **kwargs), skipped


def _class_index(model: object, spec: int | str) -> int:
    names = getattr(model, "class_names", None)
    if isinstance(spec, int) or (isinstance(spec, str) and spec.strip().lstrip("-").isdigit()):
        idx = int(spec)
        if names and not 0 <= idx < len(names):
            raise CamError(f"class index {idx} is out of range: the model has classes 0..{len(names) - 1}")
        return idx
    if not names:
        raise CamError(f"class {spec!r}: this model has no class names; give a class index")
    return int(resolve_classes([spec], torch.zeros(1, len(names)), names)[0, 0])


def contrast(
    model: object,
    x: Tensor,
    class_a: int | str,
    class_b: int | str,
    *,
    layer: str | None = None,
    methods: str | Sequence[str] = ("gradcam", "hirescam"),
    device: str | torch.device = "auto",
) -> ExplainResult:
    """Why A rather than B: maps of logit_A − logit_B (:class:`~cam_core.engine.targets.Contrast`).

    For methods linear in the gradient (Grad-CAM, HiResCAM, CAM) the map is exactly
    A's map minus B's.

    Args:
        model: A LoadedModel or ``nn.Module``.
        x: (N, 3, H, W) preprocessed images.
        class_a: The class explained (index or name).
        class_b: The class it is set against (index or name).
        layer: Default the recommended layer.
        methods: Gradient methods.
        device: As for :func:`explain`.

    Returns:
        An :class:`ExplainResult` with K = 1 (class A) and target ``logit − logit[B]``.
    """
    a, b = _class_index(model, class_a), _class_index(model, class_b)
    if a == b:
        raise CamError(f"a contrast needs two different classes; both are {a}")
    return explain(model, x, layer=layer, classes=[a], methods=methods, device=device, target=Contrast(b))
