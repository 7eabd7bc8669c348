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

Video models (inputs ``N×3×T×H×W``) have layers with a time axis, ``N×C×T'×h×w``: the
time axis is folded into the rows (``N×C×(T'·h)×w``) while the methods run, so every
gradient method applies unchanged and Grad-CAM's weights average over time and space
(as for a 3-D conv net's global pooling); maps come back unfolded, ``N×K×T'×h×w``.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..devices import memory_errors, place_model, resolve_device
from ..errors import CamError, choices_hint
from ..limits import MAX_FORWARD_BATCH
from ..models.layers import grid_transform, recommended_layer
from ..modules import channels_last_weights, eval_mode, float_dtype, model_lock, unwrap_model
from . import perturb
from .attention import legrad_relevance
from .capture import batched_grads, capture_layers
from .fused import fused_copy
from .methods import (
    ISCAM_SAMPLES,
    METHODS,
    SMOOTHGRAD_SAMPLES,
    SMOOTHGRAD_STD,
    SSCAM_SAMPLES,
    SSCAM_STD,
    ablationcam_weights,
    check_methods,
    contributions,
    eigen_project,
    gradcampp_weights,
    iscam_coefficients,
    randomcam_weights,
    scorecam_weights,
    weighted_sum,
)
from .priority import foreground
from .smooth import noisy_gradient_moments
from .targets import Target, probabilities, resolve_target

__all__ = [
    "ClassSpec",
    "ExplainResult",
    "check_batch_size",
    "check_finite",
    "explain",
    "match_classes",
    "region_mask",
    "resolve_classes",
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
        frames: For clips (a video model's ``N×3×T×H×W`` input), ``T``; maps are then
            (N, K, T', h, w) and ``valid`` (1, 1, T'·h, w). ``None`` for images.
        aug_smooth, eigen_smooth: The options the maps were made with.
        probs_kind: ``softmax`` or ``sigmoid``: how ``probs`` were computed.
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
    frames: int | None = None
    aug_smooth: bool = False
    eigen_smooth: bool = False
    probs_kind: str = "softmax"

    def upsampled(self, method: str, size: tuple[int, int] | None = None) -> Tensor:
        """Bilinear upsampling of ``maps[method]`` to the input size (or ``size``): (N, K, H, W); zero in the pad.

        Clips: trilinear, to every input frame as well: (N, K, T, H, W).
        """
        if method not in self.maps:
            raise CamError(f"method {method!r} was not computed; have: {choices_hint(self.maps)}")
        return upsample(self.maps[method], self.input_size, size, self.region, self.frames)


def upsample(
    maps: Tensor,
    input_size: tuple[int, int],
    size: tuple[int, int] | None = None,
    region: tuple[int, int, int, int] | None = None,
    frames: int | None = None,
) -> Tensor:
    """Maps (N, K, h, w) over an input of ``input_size``, bilinearly to ``size`` (default the input's); zero
    outside ``region`` (the image's box in a letterboxed input). Clip maps (N, K, t, h, w) trilinearly to
    ``frames`` frames as well. What :meth:`ExplainResult.upsampled` does, for maps read back from storage
    (a batch run's table)."""
    size = size or input_size
    if maps.ndim == 5:
        up = F.interpolate(maps, size=(frames or maps.shape[2], *size), mode="trilinear", align_corners=False)
        return up if region is None else up * region_mask(region, input_size, size)[:, :, None]
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
        return _check_class_tensor(torch.as_tensor(spec(logits), device=logits.device), n, c)
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
    *,
    aug_smooth: bool = False,
    eigen_smooth: bool = False,
    samples: int | None = None,
    probs: str | None = None,
    throughput: bool = False,
) -> ExplainResult:
    """Explain ``x`` with every requested method, for K classes per image.

    Args:
        model: a :class:`~cam_core.models.LoadedModel` or a plain ``nn.Module``
            (its train/eval mode is left as it is; a warning is given in training mode).
        x: (N, 3, H, W) preprocessed images, or (N, 3, T, H, W) clips for a video model.
        layer: dotted layer name; default the model's recommended layer.
        classes: ``"topK"``, class indices, class names, or a comma-separated string (the same K for
            every image); or per image, an (N, K) tensor of ids or a function logits (N, C) → ids (N, K)
            (the classes a dataset's labels or a video clip need, at no extra forward).
        methods: names from :data:`cam_core.engine.methods.METHODS`.
        device: ``auto`` (cuda, mps, cpu), or an explicit device; the model is moved there.
        target: ``"logit"`` (default), ``"softmax"``, ``"sigmoid"`` (multi-label models) or a
            callable (logits, ids) → scores.
        batch_size: forward batch of the methods that run many (Score-CAM and its kin,
            Ablation-CAM, SmoothGrad-CAM++'s noisy copies).
        keep_activations: also return the layer's activations (for point inspection).
        progress: optional callback(fraction, message) for long methods.
        region: (top, left, height, width) of the image inside the input when the rest is pad
            (a letterbox, see :class:`~cam_core.models.preprocess.Placement`): maps are zeroed
            outside it, and the layer's statistics leave the pad out.
        aug_smooth: average every map with the map of the horizontally flipped image, flipped
            back (test-time augmentation; the flipped copy runs in the same batch, so it doubles
            the cost). The classes are the unflipped image's.
        eigen_smooth: replace each map's sum over channels by the first principal component of its
            per-channel terms (w_k A_k, g ⊙ A, …), signed to agree with the plain map; methods that
            are principal components already, and LeGrad, are unchanged.
        samples: noisy or scaled samples of SmoothGrad-CAM++, SS-CAM and IS-CAM (default: each one's).
        probs: ``softmax`` or ``sigmoid`` for ``ExplainResult.probs`` (default: sigmoid with the
            sigmoid target, else softmax).
        throughput: run a faster copy of the model, made once and kept while its weights stay the same
            (:func:`~cam_core.engine.fused.fused_copy`: batch norms folded into their convolutions,
            activations below the layer joined to their convolution or in place, checked against the model),
            and on a CPU with several images, the images and 4-D weights in channels-last order. 16 frames
            of EfficientNet-Lite0 at 224×398: 0.22 s a call instead of 0.94 s; maps equal up to float
            rounding (~1e-6 relative). Off by default, so that one image's maps are bit-for-bit what the
            model itself gives; the clip and folder engines turn it on. (Score-CAM and its kin always run
            their batches of masked copies on that copy.)

    Returns:
        An :class:`ExplainResult` with maps (N, K, h, w) per method (clips: (N, K, T', h, w)), on the CPU.

    Raises:
        CamError: unknown layer, class, method or device; a layer the score does
            not depend on; a layer whose output is not a spatial map; a perturbation method on clips.
    """
    methods = check_methods(methods if methods is not None else ("gradcam",))
    target_fn = resolve_target(target)
    kind = probs or ("sigmoid" if target_fn is resolve_target("sigmoid") else "softmax")
    probabilities(torch.zeros(1, 1), kind)  # an unknown kind fails before any work
    module, class_names = unwrap_model(model)
    _check_images(x)
    if x.ndim == 5 and any(METHODS[m].kind == "perturbation" for m in methods):
        raise CamError(
            "Score-CAM and Ablation-CAM would run one forward pass of the whole clip per channel; for video "
            "models use a gradient method (gradcam, hirescam, …) or eigencam"
        )
    batch_size = check_batch_size(batch_size)
    if layer is not None and not isinstance(layer, str):
        raise CamError(f"layer is a dotted name such as 'layer4', not a {type(layer).__name__}")
    dev = resolve_device(device)
    size = (x.shape[-2], x.shape[-1])
    n = x.shape[0]
    nhwc = throughput and x.ndim == 4 and dev.type == "cpu" and x.shape[0] > 1  # one image: slower NHWC
    perturbing = [m for m in methods if METHODS[m].kind == "perturbation"]
    with foreground(), model_lock(module), memory_errors(dev), eval_mode(module), ExitStack() as stack:
        place_model(module, dev)
        layer = layer or recommended_layer(model, input_size=size)
        to_grid = grid_transform(model, layer, input_size=size)
        x = x.to(device=dev, dtype=float_dtype(module))
        # LeGrad differentiates through the blocks above the layer: the copy's joined and in-place activations
        # are for inference only.
        fast = module
        if throughput and not any(METHODS[m].kind == "attention" for m in methods):
            fast = fused_copy(module, layer, x, nhwc)[0]
        stack.enter_context(channels_last_weights(fast, nhwc and fast is module))  # a copy has its own already
        if nhwc:
            x = x.contiguous(memory_format=torch.channels_last)
        xs = torch.cat([x, x.flip(-1)]) if aug_smooth else x
        with capture_layers(fast, [layer]) as cap, torch.no_grad():
            out = fast(xs)
        cap.check()
        if not isinstance(out, Tensor) or out.ndim != 2:
            raise CamError(
                "the model's output is not (N, classes) logits; load it with cam_core.load_model (which picks "
                "the logits of a tuple or dict output) or wrap it with cam_core.models.as_classifier"
            )
        check_finite(out)
        names = class_names or [f"class {i}" for i in range(out.shape[1])]
        if len(names) != out.shape[1]:
            raise CamError(f"the model has {out.shape[1]} outputs but {len(names)} class names were given")
        ids = resolve_classes(classes, out[:n].detach(), names).to(dev)
        box = _check_region(region, size)
        A = to_grid(cap[layer].detach()).float()  # maps in float32, whatever the model computes in (half, bf16)
        steps = A.shape[2] if A.ndim == 5 else None  # a video layer's T': folded into the rows below
        if steps is not None:
            to_grid, A = _time_folded(to_grid), A.flatten(2, 3)
        run = _Run(
            model=model,
            module=fast,
            layer=layer,
            x=xs,
            out=out,
            leaf=cap[layer],
            A=A,
            ids=torch.cat([ids, ids]) if aug_smooth else ids,
            target=target_fn,
            to_grid=to_grid,
            batch_size=batch_size,
            progress=progress,
            eigen_smooth=eigen_smooth,
            samples=samples,
        )
        del cap
        valid = _valid_cells(box, size, tuple(run.A.shape[-2:]), steps, run.A.device)
        run.stats.update(_activation_stats(run.A[:n], valid))
        run.gradient_methods(methods)
        logits = out[:n].detach()
        run.base = target_fn(out.detach(), run.ids)
        del out
        run.out = run.leaf = None  # drop the graph: nothing with autograd history outlives the call
        run.other_methods([m for m in methods if METHODS[m].kind != "perturbation"])
        if perturbing:  # their batches of masked copies run on the fused copy, NHWC on a CPU (2-3× faster)
            run.module = fused_copy(module, layer, x[:1], nhwc=dev.type == "cpu")[0]
            run.nhwc = run.module is not module and dev.type == "cpu"
    # The perturbation methods' many forwards take the (copy's) lock batch by batch and step aside for other
    # callers' short explain() calls (see perturb and priority): another browser session is not held up.
    with memory_errors(dev), eval_mode(module):
        run.other_methods(perturbing)
    A = run.A[:n]
    maps = {m: run.maps[m] for m in methods}
    weights = run.weights
    if aug_smooth:  # the flipped copy's maps flipped back; channel weights no longer sum to the map
        maps = {m: (v[:n] + v[n:].flip(-1)) / 2 for m, v in maps.items()}
        weights = {}
        run.stats = {k: v[:n] for k, v in run.stats.items()}
    if eigen_smooth:
        weights = {k: v for k, v in weights.items() if k == "gradcam" and "gradcam" not in methods}
    return ExplainResult(
        logits=logits.float().cpu(),
        probs=probabilities(logits, kind).cpu(),
        class_ids=ids.cpu(),
        class_names=[[names[i] for i in row] for row in ids.tolist()],
        layer=layer,
        methods=methods,
        maps={m: _masked(_unfold(v, steps), box, size).detach().float().cpu() for m, v in maps.items()},
        input_size=size,
        target=str(getattr(target_fn, "__name__", target_fn)),
        weights={k: v[:n].detach().float().cpu() for k, v in weights.items()},
        stats={k: v.detach().float().cpu() for k, v in run.stats.items()},
        activations=_unfold(A, steps).float().cpu() if keep_activations else None,
        cost=run.cost,
        region=box,
        valid=valid.cpu() if valid is not None else None,
        frames=x.shape[2] if x.ndim == 5 else None,
        aug_smooth=aug_smooth,
        eigen_smooth=eigen_smooth,
        probs_kind=kind,
    )


@dataclass
class _Run:
    """One explain() call's captured tensors, and the maps, weights and cost it fills in, method by method."""

    model: object
    module: nn.Module
    layer: str
    x: Tensor
    out: Tensor | None
    leaf: Tensor | None
    A: Tensor
    ids: Tensor
    target: Target
    to_grid: Callable[[Tensor], Tensor]
    batch_size: int
    progress: Progress | None
    eigen_smooth: bool
    samples: int | None
    base: Tensor | None = None  # the explained scores of the unmodified forward (N, K)
    nhwc: bool = False  # the perturbation batches in channels-last order (``module`` is a copy with NHWC weights)
    maps: dict[str, Tensor] = field(default_factory=dict)
    weights: dict[str, Tensor] = field(default_factory=dict)
    stats: dict[str, Tensor] = field(default_factory=dict)
    cost: dict[str, int] = field(default_factory=lambda: {"forwards": 1, "backward_batches": 0})

    def put(self, name: str, weights: Tensor) -> None:
        """Store method ``name``'s channel weights and its map Σ_k w_k A_k (or their principal component)."""
        self.weights[name] = weights
        if self.eigen_smooth:
            self.maps[name] = eigen_project(contributions(name, self.A, weights=weights))
        else:
            self.maps[name] = weighted_sum(weights, self.A)

    # ---- one shared backward (or one per extra score) -----------------------------------------------------

    def gradient_methods(self, methods: Sequence[str]) -> None:
        """Every gradient, CAM and second-order method: one batched backward per score explained."""
        wanted = [m for m in methods if METHODS[m].kind in ("gradient", "fc", "second_order")]
        if not wanted:
            return
        groups: dict[str | None, list[str]] = {}
        for m in wanted:
            groups.setdefault(METHODS[m].target, []).append(m)
        for target_name, names in groups.items():
            target_fn = self.target if target_name is None else resolve_target(target_name)
            with torch.enable_grad():
                scores = target_fn(self.out, self.ids)
            if not scores.requires_grad:
                raise CamError(
                    f"the class scores do not depend on layer {self.layer!r}; pick a layer before the head"
                )
            first = [m for m in names if METHODS[m].kind != "second_order"]
            if first:
                self._first_order(scores, first, primary=target_name is None)
            if "shapleycam" in names:
                self._second_order(scores)

    def _first_order(self, scores: Tensor, names: Sequence[str], primary: bool) -> None:
        k_all = scores.shape[1]
        chunk = max(1, min(k_all, _GRAD_CHUNK_ELEMENTS // max(1, self.leaf.numel())))
        grads = batched_grads(scores, self.leaf, self.to_grid)
        fc_rows = _fc_rows(self.module, self.A.shape[1], self.ids, self.target) if "cam" in names else None
        parts: dict[str, list[Tensor]] = {m: [] for m in names}
        wparts: dict[str, list[Tensor]] = {m: [] for m in (*names, "gradcam")}
        pos_frac = []
        for k0 in range(0, k_all, chunk):
            k1 = min(k_all, k0 + chunk)
            G = grads(k0, k1)
            self.cost["backward_batches"] += 1
            pos_frac.append((G > 0).float().mean(dim=(2, 3, 4)))
            wparts["gradcam"].append(G.mean(dim=(-2, -1)))
            for m in names:
                spec = METHODS[m]
                if m == "cam":
                    _check_gap_linear(G, fc_rows[:, k0:k1])
                    w = fc_rows[:, k0:k1]
                else:
                    w = spec.weights(self.A, G) if spec.weights is not None else None
                if w is not None:
                    wparts[m].append(w)
                contrib = contributions(m, self.A, G, w) if self.eigen_smooth else None
                if contrib is not None:
                    parts[m].append(eigen_project(contrib))
                else:
                    parts[m].append(weighted_sum(w, self.A) if w is not None else spec.fn(self.A, G))
            del G
        for m in names:
            self.maps[m] = torch.cat(parts[m], dim=1)
            if wparts[m]:
                self.weights[m] = torch.cat(wparts[m], dim=1)
        if primary:
            self.weights.setdefault("gradcam", torch.cat(wparts["gradcam"], dim=1))
            self.stats["grad_pos_frac"] = torch.cat(pos_frac, dim=1)

    def _second_order(self, scores: Tensor) -> None:
        """ShapleyCAM: per class, the gradient with its graph, then the Hessian-vector product H·A."""
        weights = []
        raw = self.leaf.detach()
        for k in range(scores.shape[1]):
            with torch.enable_grad():
                (g,) = torch.autograd.grad(scores[:, k].sum(), self.leaf, retain_graph=True, create_graph=True)
                hv = None
                if g.requires_grad:
                    try:
                        (hv,) = torch.autograd.grad(
                            g, self.leaf, grad_outputs=raw, retain_graph=True, allow_unused=True
                        )
                    except RuntimeError as exc:  # an op above the layer has no second derivative (fused attention)
                        if "not implemented" not in str(exc) and "derivative" not in str(exc):
                            raise
                        first = str(exc).strip().splitlines()[0]
                        raise CamError(
                            f"ShapleyCAM needs second derivatives above {self.layer!r}, which this model's ops do not "
                            f"have ({first}); use Grad-CAM or HiResCAM here"
                        ) from exc
            self.cost["backward_batches"] += 2
            G = self.to_grid(g.detach())
            HA = self.to_grid(hv.detach()) if hv is not None else torch.zeros_like(G)
            weights.append((G - 0.5 * HA).mean(dim=(-2, -1)))
        self.put("shapleycam", weights=torch.stack(weights, dim=1))

    # ---- the methods with a forward pass (or none) of their own ------------------------------------------

    def other_methods(self, methods: Sequence[str]) -> None:
        """Class-agnostic, random, perturbation, noisy-gradient and attention methods."""
        k = self.ids.shape[1]
        for m in methods:
            kind = METHODS[m].kind
            if kind == "activation":
                self.maps[m] = METHODS[m].fn(self.A).expand(-1, k, -1, -1).contiguous()
            elif kind == "random":
                self.put(m, weights=randomcam_weights(self.ids.cpu(), self.A.shape[1]).to(self.A))
            elif kind == "perturbation":
                self.put(m, weights=self._perturbation_weights(m))
            elif kind == "smoothgrad":
                self._smoothgrad()
            elif kind == "attention":
                self._legrad()

    def _perturbation_weights(self, name: str) -> Tensor:
        common = (self.module, self.x, self.A, self.ids, self.target, self.batch_size, self.progress)
        if name == "ablationcam":
            scores, forwards = perturb.ablated_scores(
                self.module, self.layer, self.x, self.A, self.to_grid, self.ids, self.target, self.batch_size,
                self.progress, nhwc=self.nhwc,
            )
            self.cost["forwards"] += forwards
            return ablationcam_weights(self.base, scores)
        if name == "sscam":
            options = {"noise_std": SSCAM_STD, "samples": self.samples or SSCAM_SAMPLES, "label": "SS-CAM"}
        elif name == "iscam":
            options = {"scales": iscam_coefficients(self.samples or ISCAM_SAMPLES), "label": "IS-CAM"}
        else:
            options = {}
        scores, forwards = perturb.masked_input_scores(*common, **options, nhwc=self.nhwc)
        self.cost["forwards"] += forwards
        return scorecam_weights(scores)

    def _smoothgrad(self) -> None:
        (D1, D2, D3), forwards, backwards = noisy_gradient_moments(
            self.module, self.layer, self.x, self.to_grid, self.ids, self.target,
            samples=self.samples or SMOOTHGRAD_SAMPLES, std=SMOOTHGRAD_STD, batch_size=self.batch_size,
            class_chunk=max(1, _GRAD_CHUNK_ELEMENTS // max(1, self.A[:1].numel() * (self.samples or 4))),
        )
        self.cost["forwards"] += forwards
        self.cost["backward_batches"] += backwards
        self.put("smoothgradcampp", weights=gradcampp_weights(self.A, D1, D2, D3))

    def _legrad(self) -> None:
        size = tuple(self.x.shape[-2:])
        relevance, forwards, backwards = legrad_relevance(
            self.module, self.x, self.ids, self.layer, lambda block: grid_transform(self.model, block, input_size=size)
        )
        self.cost["forwards"] += forwards
        self.cost["backward_batches"] += backwards
        self.maps["legrad"] = METHODS["legrad"].fn(relevance)


def _time_folded(to_grid: Callable[[Tensor], Tensor]) -> Callable[[Tensor], Tensor]:
    """``to_grid`` followed by folding the time axis into the rows: (N, C, T', h, w) → (N, C, T'·h, w)."""

    def folded(t: Tensor) -> Tensor:
        return to_grid(t).flatten(2, 3)

    return folded


def _unfold(maps: Tensor, steps: int | None) -> Tensor:
    """Undo :func:`_time_folded` on maps or activations: (N, K, T'·h, w) → (N, K, T', h, w)."""
    return maps if steps is None else maps.unflatten(2, (steps, maps.shape[2] // steps))


def _valid_cells(
    box: tuple[int, int, int, int] | None,
    input_size: tuple[int, int],
    grid: tuple[int, int],
    steps: int | None,
    device: torch.device,
) -> Tensor | None:
    """(1, 1, *grid) bool of the layer cells inside ``box`` (every time step alike when folded), or ``None``."""
    if box is None:
        return None
    if steps is None:
        return region_mask(box, input_size, grid).to(device)
    return region_mask(box, input_size, (grid[0] // steps, grid[1])).repeat(1, 1, steps, 1).to(device)


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


def _masked(maps: Tensor, box: tuple[int, int, int, int] | None, size: tuple[int, int]) -> Tensor:
    """Maps zeroed outside the image's box (at their own grid: LeGrad's may differ from the layer's)."""
    return maps if box is None else maps * region_mask(box, size, tuple(maps.shape[-2:])).to(maps.device)


def _check_images(x: object) -> None:
    if not isinstance(x, Tensor):
        raise CamError(f"expected images as an (N, 3, H, W) tensor, got a {type(x).__name__}")
    if x.ndim not in (4, 5):
        raise CamError(f"expected images (N, 3, H, W) or clips (N, 3, T, H, W), got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise CamError(f"expected preprocessed float images, got {x.dtype}: use LoadedModel.preprocess")
    if not all_finite(x):
        raise CamError("the images contain NaN or infinite values")


def all_finite(t: Tensor) -> bool:
    """No NaN or infinity in ``t``: its sum is finite (one pass, no mask), else the element-wise check (a sum of
    finite values may still overflow)."""
    return bool(torch.isfinite(t.sum())) or bool(torch.isfinite(t).all())


def check_batch_size(batch_size: object) -> int:
    """A forward batch size: a whole number from 1 to :data:`~cam_core.limits.MAX_FORWARD_BATCH`."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int | np.integer):
        raise CamError(f"batch size must be a whole number, got {batch_size!r}")
    if not 1 <= int(batch_size) <= MAX_FORWARD_BATCH:
        raise CamError(f"batch size must be between 1 and {MAX_FORWARD_BATCH}, got {batch_size}")
    return int(batch_size)


def check_finite(out: Tensor) -> None:
    """The model's outputs must be numbers: NaN/inf logits make every map and probability meaningless."""
    if not all_finite(out):
        bad = "NaN" if bool(out.isnan().any()) else "infinite"
        raise CamError(
            f"the model's outputs are {bad} for this input, so no map or probability would mean anything: its "
            "weights (or the input) hold NaN or infinite values, or a layer overflows"
        )


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
