"""explain(): one forward, one batched backward, every requested map.

Cost model (why it is fast): the trunk below the layer runs under
``torch.no_grad()`` (inference cost and memory); autograd records only from
the layer's output up (see :mod:`cam_core.engine.capture`). Gradients for all K
classes come from one vectorised backward over that short graph
(``torch.autograd.grad(..., is_grads_batched=True)``), taken with respect to the
layer's output only, never the parameters, and reduced to maps chunk by chunk
so memory stays bounded for K = 1000. Every gradient method reuses the same
captured tensors. Nothing with a graph outlives the call: maps come back
detached, float32, on the CPU.
"""

from __future__ import annotations

import difflib
import re
import warnings
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import CamError, choices_hint
from ..limits import MAX_FORWARD_BATCH
from . import perturb
from .capture import capture_layers, model_lock
from .methods import METHODS, check_methods, weighted_sum
from .targets import Target, resolve_target

__all__ = [
    "ClassSpec",
    "ExplainResult",
    "OutOfMemory",
    "check_batch_size",
    "check_finite",
    "eval_mode",
    "explain",
    "float_dtype",
    "match_classes",
    "memory_errors",
    "place_model",
    "region_mask",
    "resolve_classes",
    "resolve_device",
    "unwrap_model",
    "upsample",
]

# Upper bound on one chunk of batched gradients, in elements (float32: 256 MB).
_GRAD_CHUNK_ELEMENTS = 64 * 2**20

Progress = Callable[[float, str], None]


@dataclass
class ExplainResult:
    """Maps and scores for N images and K classes per image (all on the CPU).

    Attributes:
        logits, probs: (N, C) model outputs.
        class_ids: (N, K) explained classes; ``class_names`` the same as names.
        maps: method → (N, K, h, w) signed float32 maps at the layer's resolution.
        weights: method → (N, K, C) channel weights, for the methods that have them.
        stats: small per-image/per-class facts about the layer for diagnosis
            (``act_min``, ``act_max``, ``act_neg_frac`` (N,); ``grad_pos_frac`` (N, K)).
        activations: (N, C, h, w) when asked for with ``keep_activations``.
        cost: how many forward passes and backward batches the call ran.
        region: (top, left, height, width) of the image in the input when part of it is pad (a
            letterbox), else ``None``; maps are zero outside it, at both resolutions.
        valid: (1, 1, h, w) bool: the layer cells whose centre lies in ``region`` (``None`` without one).
    """

    logits: Tensor
    probs: Tensor
    class_ids: Tensor
    class_names: list[list[str]]
    layer: str
    methods: tuple[str, ...]
    maps: dict[str, Tensor]
    input_size: tuple[int, int]
    target: str = "logit"
    weights: dict[str, Tensor] = field(default_factory=dict)
    stats: dict[str, Tensor] = field(default_factory=dict)
    activations: Tensor | None = None
    cost: dict[str, int] = field(default_factory=dict)
    region: tuple[int, int, int, int] | None = None
    valid: Tensor | None = None

    def upsampled(self, method: str, size: tuple[int, int] | None = None) -> Tensor:
        """Bilinear upsampling of ``maps[method]`` to the input size (or ``size``): (N, K, H, W); zero in the pad."""
        if method not in self.maps:
            raise CamError(f"method {method!r} was not computed; have: {choices_hint(self.maps)}")
        return upsample(self.maps[method], self.input_size, size, self.region)


def upsample(
    maps: Tensor,
    input_size: tuple[int, int],
    size: tuple[int, int] | None = None,
    region: tuple[int, int, int, int] | None = None,
) -> Tensor:
    """Maps (N, K, h, w) over an input of ``input_size``, bilinearly to ``size`` (default the input's); zero
    outside ``region`` (the image's box in a letterboxed input). What :meth:`ExplainResult.upsampled` does,
    for maps read back from storage (a batch run's table)."""
    size = size or input_size
    up = F.interpolate(maps, size=size, mode="bilinear", align_corners=False)
    return up * region_mask(region, input_size, size) if region is not None else up


def region_mask(region: tuple[int, int, int, int], input_size: tuple[int, int], size: tuple[int, int]) -> Tensor:
    """(1, 1, *size) bool: the cells of a ``size`` grid over the input whose centre lies inside ``region``.

    ``region`` is (top, left, height, width) in input pixels; ``size`` may be the input's own
    (H, W) or a layer's coarser grid.
    """
    (top, left, h, w), (H, W) = region, input_size
    rows = (torch.arange(size[0], dtype=torch.float64) + 0.5) * H / size[0]
    cols = (torch.arange(size[1], dtype=torch.float64) + 0.5) * W / size[1]
    inside_r = (rows >= top) & (rows < top + h)
    inside_c = (cols >= left) & (cols < left + w)
    return (inside_r[:, None] & inside_c[None, :])[None, None]


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``auto`` picks cuda, then mps, then cpu; an explicit device must exist."""
    if str(device) == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as exc:
        raise CamError(f"unknown device {device!r}; choose from: auto, cpu, cuda, mps") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise CamError("device 'cuda' asked for but no CUDA GPU is available; use --device auto or cpu")
    return dev


_OOM_MARKERS = ("out of memory", "can't allocate memory", "cannot allocate memory")


class OutOfMemory(CamError):
    """The device ran out of memory: a passing condition (fewer classes, another time), not a property of the input."""


@contextmanager
def memory_errors(dev: torch.device, what: str = "computing the maps") -> Iterator[None]:
    """Turn running out of (GPU or CPU) memory into a CamError that says what to reduce."""
    try:
        yield
    except (torch.OutOfMemoryError, MemoryError, RuntimeError) as exc:
        if not isinstance(exc, torch.OutOfMemoryError | MemoryError) and not any(
            m in str(exc).lower() for m in _OOM_MARKERS
        ):
            raise
        if dev.type == "cuda":
            torch.cuda.empty_cache()
        raise OutOfMemory(
            f"out of memory on {dev.type} while {what}: explain fewer classes or images, lower the batch size of "
            "Score-/Ablation-CAM, pick a deeper (smaller) layer, or use another device"
        ) from exc


_TOPK = re.compile(r"^top(\d+)$")


ClassSpec = str | int | Sequence[int | str] | Tensor | Callable[[Tensor], Tensor]


def resolve_classes(spec: ClassSpec, logits: Tensor, class_names: Sequence[str]) -> Tensor:
    """Turn a class spec into ids (N, K).

    ``"top3"`` takes each image's own top classes; ints, names or a comma-separated
    string (``"281,285"``, ``"tabby,Egyptian cat"``) give every image the same K. Per-image
    classes (a dataset's labels, each image's prediction and its label) come as an (N, K)
    integer tensor, or as a function of the logits (N, C) giving one, so they cost no extra forward.
    """
    n, c = logits.shape
    if callable(spec) and not isinstance(spec, Tensor | np.ndarray):
        return _check_class_tensor(torch.as_tensor(spec(logits)), n, c)
    if isinstance(spec, Tensor | np.ndarray):
        if spec.ndim == 2 and spec.shape[0] == n > 1:  # a row of classes per image (a dataset's labels)
            return _check_class_tensor(torch.as_tensor(spec), n, c)
        spec = spec.reshape(-1).tolist()  # np.argsort(...)[:3], logits.topk(3).indices: the same for every image
    if isinstance(spec, str):
        match = _TOPK.match(spec.strip().lower())
        if match:
            k = int(match.group(1))
            if not 1 <= k <= c:
                raise CamError(f"{spec!r}: k must be between 1 and {c}")
            return logits.topk(k, dim=1).indices
        spec = [s.strip() for s in spec.split(",") if s.strip()]
    elif not isinstance(spec, Sequence):
        spec = [spec]
    if not spec:
        raise CamError("no class given; use e.g. top3, 281,285 or a class name")
    lower = {name.lower(): i for i, name in reversed(list(enumerate(class_names)))}
    ids: list[int] = []
    for item in spec:
        item = _class_item(item)
        if isinstance(item, int):
            if not 0 <= item < c:
                raise CamError(f"class index {item} is out of range: the model has classes 0..{c - 1}")
            ids.append(item)
        elif item.lower() in lower:
            ids.append(lower[item.lower()])
        else:
            near = [class_names[i] for i in match_classes(item, class_names, limit=6)]
            hint = f"; did you mean: {choices_hint(near)}" if near else "; give a class index or an exact name"
            raise CamError(f"unknown class {item!r}{hint}")
    return torch.tensor(ids, dtype=torch.long).expand(n, -1).clone()


def _check_class_tensor(ids: Tensor, n: int, c: int) -> Tensor:
    """Per-image class ids as (N, K) long on the logits' device, each in 0..C-1."""
    if ids.ndim != 2 or ids.shape[0] != n or ids.shape[1] < 1 or ids.dtype.is_floating_point or ids.is_complex():
        raise CamError(f"per-image classes must be an (N={n}, K) integer tensor, got {tuple(ids.shape)} {ids.dtype}")
    if bool((ids < 0).any()) or bool((ids >= c).any()):
        raise CamError(f"a class index is out of range: the model has classes 0..{c - 1}")
    return ids.long()


def _class_item(item: object) -> int | str:
    """One class of a spec as an index or a name: NumPy and integral floats become ints; bools and the rest fail."""
    if isinstance(item, bool | np.bool_):
        raise CamError(f"a class is an index, a name or topK, not {item!r}")
    if isinstance(item, int | np.integer):
        return int(item)
    if isinstance(item, float | np.floating):
        if float(item).is_integer():
            return int(item)
        raise CamError(f"class {item!r} is not an index: give a whole number, a name or topK")
    if isinstance(item, str):
        return int(item) if item.lstrip("-").isdigit() else item
    raise CamError(f"a class is an index, a name or topK, not a {type(item).__name__}")


def match_classes(
    query: str, class_names: Sequence[str], scores: Sequence[float] | None = None, limit: int = 12
) -> list[int]:
    """Class ids whose name matches ``query``, best first: by name, words, then spelling.

    Ranks an exact name (any case) first, then names with ``query`` as a whole word ("cat" →
    "Egyptian cat", "tiger cat"), then names with a word starting with it ("cat" → "catamaran"),
    then names containing it ("polecat"); close spellings (difflib) only when none of these match.
    Within a rank, by ``scores`` (e.g. the image's probabilities) when given, else by index.
    """
    q = " ".join(query.lower().split())
    if not q:
        return []
    ranked: dict[int, int] = {}
    for i, name in enumerate(class_names):
        low = name.lower()
        words = re.findall(r"[a-z0-9]+", low)
        if low == q:
            ranked[i] = 0
        elif re.search(rf"(?<![a-z0-9]){re.escape(q)}(?![a-z0-9])", low):
            ranked[i] = 1
        elif any(w.startswith(q) for w in words):
            ranked[i] = 2
        elif q in low:
            ranked[i] = 3
    if not ranked:  # spelling only when nothing matches by name: "cat" must not suggest "cab"
        lower = [n.lower() for n in class_names]
        for name in difflib.get_close_matches(q, lower, n=limit, cutoff=0.6):
            ranked.setdefault(lower.index(name), 4)

    def order(i: int) -> tuple[int, float, int]:
        return ranked[i], -float(scores[i]) if scores is not None else 0.0, i

    return sorted(ranked, key=order)[:limit]


def unwrap_model(model: object) -> tuple[nn.Module, list[str] | None]:
    """The ``nn.Module`` and class names of a LoadedModel (or a bare module, with no names)."""
    module = getattr(model, "module", model)
    if not isinstance(module, nn.Module):
        raise CamError(f"expected a LoadedModel or torch.nn.Module, got {type(model).__name__}")
    names = getattr(model, "class_names", None)
    return module, list(names) if names else None


def place_model(module: nn.Module, device: str | torch.device) -> torch.device:
    """Resolve ``device`` and move the model there if it is elsewhere; call under the model's lock."""
    dev = resolve_device(device)
    current = next((t.device for t in (*module.parameters(), *module.buffers())), None)
    if current not in (None, dev):
        module.to(dev)
    return dev


def _batched_grads(scores: Tensor, leaf: Tensor, to_grid: Callable[[Tensor], Tensor]) -> Callable[[int, int], Tensor]:
    """A function giving gradients of classes [k0, k1) as (N, k, C, h, w) in grid layout.

    One vectorised backward per chunk; a model whose backward ops have no vmap rule
    falls back to one backward per class over the same (retained) graph.
    """
    n, k_all = scores.shape

    def grads(k0: int, k1: int) -> Tensor:
        eye = torch.zeros(k1 - k0, n, k_all, device=scores.device, dtype=scores.dtype)
        eye[torch.arange(k1 - k0), :, torch.arange(k0, k1)] = 1.0
        try:
            (g,) = torch.autograd.grad(scores, leaf, eye, retain_graph=True, is_grads_batched=True)
        except RuntimeError as exc:
            if "vmap" not in str(exc).lower() and "batched" not in str(exc).lower():
                raise
            g = torch.stack([torch.autograd.grad(scores, leaf, e, retain_graph=True)[0] for e in eye])
        # (k, N, *raw) → grid layout (k·N, C, h, w) → (N, k, C, h, w)
        grid = to_grid(g.flatten(0, 1))
        return grid.unflatten(0, (k1 - k0, n)).transpose(0, 1).float()

    return grads


def explain(
    model: object,
    x: Tensor,
    layer: str | None = None,
    classes: ClassSpec = "top3",
    methods: str | Sequence[str] = ("gradcam",),
    device: str | torch.device = "auto",
    target: str | Target = "logit",
    batch_size: int = 64,
    keep_activations: bool = False,
    progress: Progress | None = None,
    region: Sequence[int] | None = None,
) -> ExplainResult:
    """Explain ``x`` with every requested method, for K classes per image.

    Args:
        model: a :class:`~cam_core.models.LoadedModel` or a plain ``nn.Module``
            (its train/eval mode is left as it is; a warning is given in training mode).
        x: (N, 3, H, W) preprocessed images.
        layer: dotted layer name; default the model's recommended layer.
        classes: ``"topK"``, class indices, class names, or a comma-separated string (the same K for
            every image); or per image, an (N, K) tensor of ids or a function logits (N, C) → ids (N, K).
        methods: names from :data:`cam_core.engine.methods.METHODS`.
        device: ``auto`` (cuda, mps, cpu), or an explicit device; the model is moved there.
        target: ``"logit"`` (default), ``"softmax"`` or a callable (logits, ids) → scores.
        batch_size: forward batch for the perturbation methods (Score-CAM, Ablation-CAM).
        keep_activations: also return the layer's activations (for point inspection).
        progress: optional callback(fraction, message) for long methods.
        region: (top, left, height, width) of the image inside the input when the rest is pad
            (a letterbox, see :class:`~cam_core.models.preprocess.Placement`): maps are zeroed
            outside it, and the layer's statistics leave the pad out.

    Returns:
        An :class:`ExplainResult` with maps (N, K, h, w) per method, on the CPU.

    Raises:
        CamError: unknown layer, class, method or device; a layer the score does
            not depend on; a layer whose output is not a spatial map.
    """
    from ..models.layers import grid_transform, recommended_layer

    methods = check_methods(methods if methods is not None else ("gradcam",))
    target_fn = resolve_target(target)
    module, class_names = unwrap_model(model)
    _check_images(x)
    batch_size = check_batch_size(batch_size)
    if layer is not None and not isinstance(layer, str):
        raise CamError(f"layer is a dotted name such as 'layer4', not a {type(layer).__name__}")
    dev = resolve_device(device)
    with model_lock(module), memory_errors(dev), eval_mode(module):
        place_model(module, dev)
        layer = layer or recommended_layer(model, input_size=tuple(x.shape[-2:]))
        to_grid = grid_transform(model, layer, input_size=tuple(x.shape[-2:]))
        x = x.to(device=dev, dtype=float_dtype(module))
        with capture_layers(module, [layer]) as cap, torch.no_grad():
            out = module(x)
        cap.check()
        if not isinstance(out, Tensor) or out.ndim != 2:
            raise CamError("the model's output is not (N, classes) logits; wrap it to return a tensor of scores")
        check_finite(out)
        names = class_names or [f"class {i}" for i in range(out.shape[1])]
        if len(names) != out.shape[1]:
            raise CamError(f"the model has {out.shape[1]} outputs but {len(names)} class names were given")
        ids = resolve_classes(classes, out.detach(), names).to(dev)
        leaf = cap[layer]
        A = to_grid(leaf.detach()).float()  # maps in float32, whatever the model computes in (half, bf16)
        box = _check_region(region, tuple(x.shape[-2:]))
        valid = region_mask(box, tuple(x.shape[-2:]), tuple(A.shape[-2:])).to(A.device) if box else None
        maps: dict[str, Tensor] = {}
        weights: dict[str, Tensor] = {}
        stats = _activation_stats(A, valid)
        cost = {"forwards": 1, "backward_batches": 0}
        needs_grad = [m for m in methods if METHODS[m].kind in ("gradient", "fc")]
        if needs_grad:
            with torch.enable_grad():
                scores = target_fn(out, ids)
            if not scores.requires_grad:
                raise CamError(f"the class scores do not depend on layer {layer!r}; pick a layer before the head")
            fc_rows = _fc_rows(module, A.shape[1], ids, target_fn) if "cam" in needs_grad else None
            cost["backward_batches"] = _gradient_maps(
                scores, leaf, to_grid, A, needs_grad, fc_rows, maps, weights, stats
            )
            del scores
        logits = out.detach()
        del out, leaf, cap  # drop the graph: nothing with autograd history outlives the call
        if "eigencam" in methods:
            maps["eigencam"] = METHODS["eigencam"].fn(A).expand(-1, ids.shape[1], -1, -1).contiguous()
    # The perturbation methods' many forwards take the model's lock batch by batch (see perturb), so
    # another caller of the same model (another browser session) gets its turn between batches.
    with memory_errors(dev), eval_mode(module):
        for name in (m for m in methods if METHODS[m].kind == "perturbation"):
            if name == "scorecam":
                channel_scores, forwards = perturb.masked_input_scores(
                    module, x, A, ids, target_fn, batch_size, progress
                )
                w = METHODS[name].fn(channel_scores)
            else:
                channel_scores, forwards = perturb.ablated_scores(
                    module, layer, x, A, to_grid, ids, target_fn, batch_size, progress
                )
                w = METHODS[name].fn(target_fn(logits, ids), channel_scores)
            cost["forwards"] += forwards
            weights[name] = w
            maps[name] = weighted_sum(w, A)
    return ExplainResult(
        logits=logits.float().cpu(),
        probs=logits.float().softmax(1).cpu(),
        class_ids=ids.cpu(),
        class_names=[[names[i] for i in row] for row in ids.tolist()],
        layer=layer,
        methods=methods,
        maps={m: _masked(maps[m], valid).detach().float().cpu() for m in methods},
        input_size=(x.shape[-2], x.shape[-1]),
        target=str(getattr(target_fn, "__name__", target_fn)),
        weights={k: v.detach().float().cpu() for k, v in weights.items()},
        stats={k: v.detach().float().cpu() for k, v in stats.items()},
        activations=A.float().cpu() if keep_activations else None,
        cost=cost,
        region=box,
        valid=valid.cpu() if valid is not None else None,
    )


def _check_region(region: Sequence[int] | None, size: tuple[int, int]) -> tuple[int, int, int, int] | None:
    """``region`` as (top, left, height, width) inside an input of ``size``; ``None`` when it covers it all."""
    if region is None:
        return None
    try:
        top, left, h, w = (int(v) for v in region)
    except (TypeError, ValueError) as exc:
        raise CamError(f"region must be four integers (top, left, height, width), got {region!r}") from exc
    if top < 0 or left < 0 or h < 1 or w < 1 or top + h > size[0] or left + w > size[1]:
        raise CamError(f"region {region!r} does not lie inside the {size[0]}×{size[1]} input")
    return None if (top, left, h, w) == (0, 0, *size) else (top, left, h, w)


def _masked(maps: Tensor, valid: Tensor | None) -> Tensor:
    return maps if valid is None else maps * valid


def _check_images(x: object) -> None:
    if not isinstance(x, Tensor):
        raise CamError(f"expected images as an (N, 3, H, W) tensor, got a {type(x).__name__}")
    if x.ndim != 4:
        raise CamError(f"expected images as an (N, 3, H, W) tensor, got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise CamError(f"expected preprocessed float images, got {x.dtype}: use LoadedModel.preprocess")
    if not bool(torch.isfinite(x).all()):
        raise CamError("the images contain NaN or infinite values")


def check_batch_size(batch_size: object) -> int:
    """A forward batch size: a whole number from 1 to :data:`~cam_core.limits.MAX_FORWARD_BATCH`."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int | np.integer):
        raise CamError(f"batch size must be a whole number, got {batch_size!r}")
    if not 1 <= int(batch_size) <= MAX_FORWARD_BATCH:
        raise CamError(f"batch size must be between 1 and {MAX_FORWARD_BATCH}, got {batch_size}")
    return int(batch_size)


def check_finite(out: Tensor) -> None:
    """The model's outputs must be numbers: NaN/inf logits make every map and probability meaningless."""
    if not bool(torch.isfinite(out).all()):
        bad = "NaN" if bool(out.isnan().any()) else "infinite"
        raise CamError(
            f"the model's outputs are {bad} for this input, so no map or probability would mean anything: its "
            "weights (or the input) hold NaN or infinite values, or a layer overflows"
        )


def float_dtype(module: nn.Module) -> torch.dtype:
    """The dtype the model computes in (half and bfloat16 models get their inputs in their dtype)."""
    return next((t.dtype for t in (*module.parameters(), *module.buffers()) if t.is_floating_point()), torch.float32)


_WARNED_TRAINING: weakref.WeakSet[nn.Module] = weakref.WeakSet()


@contextmanager
def eval_mode(module: nn.Module) -> Iterator[None]:
    """Run the block in eval mode and put every submodule's mode back afterwards.

    A model in training mode would update its BatchNorm statistics on every call and drop
    units at random: maps would be noisy and the caller's model would change under them.
    """
    modes = [(m, m.training) for m in module.modules()]
    if module.training and module not in _WARNED_TRAINING:
        _WARNED_TRAINING.add(module)
        warnings.warn(
            "model is in training mode: it is explained in eval mode (BatchNorm statistics fixed, dropout off) "
            "and left in training mode afterwards",
            stacklevel=3,
        )
    try:
        module.eval()
        yield
    finally:
        for m, mode in modes:
            m.training = mode


def _activation_stats(A: Tensor, valid: Tensor | None = None) -> dict[str, Tensor]:
    """Per-image facts about the layer's activations that explain empty maps (signed layers); pad cells left out."""
    flat = A.flatten(2)[:, :, valid.flatten().to(A.device)].flatten(1) if valid is not None else A.flatten(1)
    return {
        "act_min": flat.amin(1),
        "act_max": flat.amax(1),
        "act_neg_frac": (flat < 0).float().mean(1),
    }


def _fc_rows(module: nn.Module, channels: int, ids: Tensor, target_fn: Target) -> Tensor:
    """Rows of the linear head for CAM: the last ``nn.Linear`` taking ``channels`` inputs."""
    if target_fn is not resolve_target("logit"):
        raise CamError("CAM explains the class logit (it reads the fc weights); use target=logit or gradcam")
    heads = [m for m in module.modules() if isinstance(m, nn.Linear) and m.in_features == channels]
    if not heads:
        raise CamError(
            f"CAM needs a global-average-pool + linear head on this layer's {channels} channels and the model has "
            "none; use gradcam (which equals CAM where CAM applies)"
        )
    return heads[-1].weight.detach()[ids]  # (N, K, C)


def _gradient_maps(
    scores: Tensor,
    leaf: Tensor,
    to_grid: Callable[[Tensor], Tensor],
    A: Tensor,
    names: Sequence[str],
    fc_rows: Tensor | None,
    maps: dict[str, Tensor],
    weights: dict[str, Tensor],
    stats: dict[str, Tensor],
) -> int:
    """Fill ``maps`` for gradient methods (and CAM, whose head it verifies), chunk by chunk over classes."""
    k_all = scores.shape[1]
    chunk = max(1, min(k_all, _GRAD_CHUNK_ELEMENTS // max(1, leaf.numel())))
    grads = _batched_grads(scores, leaf, to_grid)
    parts: dict[str, list[Tensor]] = {m: [] for m in names}
    pooled, pos_frac = [], []
    batches = 0
    for k0 in range(0, k_all, chunk):
        k1 = min(k_all, k0 + chunk)
        G = grads(k0, k1)
        batches += 1
        pooled.append(G.mean(dim=(-2, -1)))
        pos_frac.append((G > 0).float().mean(dim=(2, 3, 4)))
        for m in names:
            if m == "cam":
                _check_gap_linear(G, fc_rows[:, k0:k1])
                parts[m].append(METHODS[m].fn(A, fc_rows[:, k0:k1]))
            else:
                parts[m].append(METHODS[m].fn(A, G))
        del G
    for m in names:
        maps[m] = torch.cat(parts[m], dim=1)
    weights["gradcam"] = torch.cat(pooled, dim=1)
    if fc_rows is not None:
        weights["cam"] = fc_rows
    stats["grad_pos_frac"] = torch.cat(pos_frac, dim=1)
    return batches


def _check_gap_linear(G: Tensor, fc_rows: Tensor) -> None:
    """CAM is only defined where gradients are the fc weights spread evenly over space."""
    hw = G.shape[-1] * G.shape[-2]
    spread = (G - G.mean(dim=(-2, -1), keepdim=True)).abs().amax()
    scale = fc_rows.abs().amax().clamp_min(1e-12) / hw
    if spread > 1e-3 * scale or not torch.allclose(G.mean(dim=(-2, -1)) * hw, fc_rows, rtol=1e-3, atol=1e-6):
        raise CamError(
            "CAM needs the layer to feed global average pooling and then the linear head directly; "
            "here it does not, so use gradcam at this layer (CAM applies at the last conv block of GAP+linear nets)"
        )
