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

from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from ..devices import memory_errors, place_model, resolve_device
from ..errors import CamError
from ..models.layers import grid_transform, recommended_layer
from ..modules import channels_last_weights, eval_mode, float_dtype, model_lock, unwrap_model
from . import perturb
from .attention import legrad_relevance
from .capture import batched_grads, capture_layers
from .checks import check_batch_size, check_finite, check_images, check_region
from .classes import ClassSpec, resolve_classes
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
from .result import ExplainResult, region_mask
from .smooth import noisy_gradient_moments
from .targets import Target, probabilities, resolve_target

__all__ = ["explain"]

# Upper bound on one chunk of batched gradients, in elements (float32: 256 MB).
_GRAD_CHUNK_ELEMENTS = 64 * 2**20

Progress = Callable[[float, str], None]


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
        model: a :class:`~cam_core.models.LoadedModel` or a plain ``nn.Module`` (its train/eval mode is left as it is).
        x: (N, 3, H, W) preprocessed images, or (N, 3, T, H, W) clips for a video model.
        layer: dotted layer name; default the model's recommended layer.
        classes: ``"topK"``, class indices, class names, or a comma-separated string (the same K for
            every image); or per image, an (N, K) tensor of ids or a function logits (N, C) → ids (N, K)
            (the classes a dataset's labels or a video clip need, at no extra forward).
        methods: names from :data:`cam_core.engine.methods.METHODS`.
        device: ``auto`` (cuda, mps, cpu), or an explicit device; the model is moved there.
        target: ``"logit"`` (default), ``"softmax"``, ``"sigmoid"`` (multi-label) or a callable (logits, ids) → scores.
        batch_size: forward batch of the methods that run many (Score-CAM and kin, Ablation-CAM, SmoothGrad-CAM++).
        keep_activations: also return the layer's activations (for point inspection).
        progress: optional callback(fraction, message) for long methods.
        region: (top, left, height, width) of the image inside the input when the rest is pad (a letterbox, see
            :class:`~cam_core.models.preprocess.Placement`): maps are zeroed outside it, statistics leave the pad out.
        aug_smooth: average every map with the map of the horizontally flipped image, flipped back (test-time
            augmentation; the flipped copy runs in the same batch: twice the cost); classes are the unflipped image's.
        eigen_smooth: replace each map's sum over channels by the first principal component of its
            per-channel terms (w_k A_k, g ⊙ A, …), signed to agree with the plain map; methods that
            are principal components already, and LeGrad, are unchanged.
        samples: noisy or scaled samples of SmoothGrad-CAM++, SS-CAM and IS-CAM (default: each one's).
        probs: ``softmax`` or ``sigmoid`` for ``ExplainResult.probs`` (default: sigmoid with the sigmoid target).
        throughput: run a faster copy of the model, made once and kept while its weights stay the same
            (:func:`~cam_core.engine.fused.fused_copy`: batch norms folded into their convolutions,
            activations below the layer joined to their convolution or in place, checked against the model),
            and on a CPU with several images, the images and 4-D weights in channels-last order;
            maps equal up to float rounding. Off by default, so that one image's maps are bit-for-bit what the
            model itself gives; the clip and folder engines turn it on. (Score-CAM and its kin always run
            their batches of masked copies on that copy.)

    Returns:
        An :class:`ExplainResult` with maps (N, K, h, w) per method (clips: (N, K, T', h, w)), on the CPU.

    Raises:
        CamError: unknown layer, class, method or device; a layer the score does not depend on; a layer whose
            output is not a spatial map; a perturbation method on clips.
    """
    call = _check_call(
        model, x, layer, methods, device, target, batch_size, probs, throughput, aug_smooth, eigen_smooth
    )
    call.progress, call.samples = progress, samples
    module, dev = call.module, call.device
    with foreground(), model_lock(module), memory_errors(dev), eval_mode(module), ExitStack() as stack:
        place_model(module, dev)
        layer = layer or recommended_layer(model, input_size=call.size)
        to_grid = grid_transform(model, layer, input_size=call.size)
        x = x.to(device=dev, dtype=float_dtype(module))
        fast = _inference_module(module, layer, x, call, stack)
        if call.nhwc:
            x = x.contiguous(memory_format=torch.channels_last)
        run = _forward(model, fast, layer, to_grid, x, classes, region, call)
        run.gradient_methods(call.methods)
        run.drop_graph()
        run.other_methods([m for m in call.methods if METHODS[m].kind != "perturbation"])
        _perturb_on_copy(run, module, x, call)
    # The perturbation methods' many forwards take the (copy's) lock batch by batch and step aside for other
    # callers' short explain() calls (see perturb and priority): another browser session is not held up.
    with memory_errors(dev), eval_mode(module):
        run.other_methods([m for m in call.methods if METHODS[m].kind == "perturbation"])
    return _result(run, call, x, keep_activations)


@dataclass
class _Call:
    """explain()'s arguments once checked; nothing here has touched the model yet."""

    methods: tuple[str, ...]
    target: Target
    probs_kind: str
    module: nn.Module
    class_names: Sequence[str] | None
    batch_size: int
    device: torch.device
    size: tuple[int, int]
    n: int
    nhwc: bool
    throughput: bool
    aug_smooth: bool
    eigen_smooth: bool
    progress: Progress | None = None
    samples: int | None = None


def _check_call(
    model: object,
    x: Tensor,
    layer: object,
    methods: str | Sequence[str] | None,
    device: str | torch.device,
    target: str | Target,
    batch_size: int,
    probs: str | None,
    throughput: bool,
    aug_smooth: bool,
    eigen_smooth: bool,
) -> _Call:
    """Every argument checked before any work, so that a mistake costs one line, not a forward pass."""
    methods = check_methods(methods if methods is not None else ("gradcam",))
    target_fn = resolve_target(target)
    kind = probs or ("sigmoid" if target_fn is resolve_target("sigmoid") else "softmax")
    probabilities(torch.zeros(1, 1), kind)  # an unknown kind fails before any work
    module, class_names = unwrap_model(model)
    check_images(x)
    if x.ndim == 5 and any(METHODS[m].kind == "perturbation" for m in methods):
        raise CamError(
            "Score-CAM and Ablation-CAM would run one forward pass of the whole clip per channel; for video "
            "models use a gradient method (gradcam, hirescam, …) or eigencam"
        )
    batch_size = check_batch_size(batch_size)
    if layer is not None and not isinstance(layer, str):
        raise CamError(f"layer is a dotted name such as 'layer4', not a {type(layer).__name__}")
    dev = resolve_device(device)
    return _Call(
        methods=methods,
        target=target_fn,
        probs_kind=kind,
        module=module,
        class_names=class_names,
        batch_size=batch_size,
        device=dev,
        size=(x.shape[-2], x.shape[-1]),
        n=x.shape[0],
        nhwc=throughput and x.ndim == 4 and dev.type == "cpu" and x.shape[0] > 1,  # one image: slower NHWC
        throughput=throughput,
        aug_smooth=aug_smooth,
        eigen_smooth=eigen_smooth,
    )


def _inference_module(module: nn.Module, layer: str, x: Tensor, call: _Call, stack: ExitStack) -> nn.Module:
    """The module the forward runs on: the model, or with ``throughput`` its fused copy (channels-last weights
    where the batch is)."""
    # LeGrad differentiates through the blocks above the layer: the copy's joined and in-place activations
    # are for inference only.
    fast = module
    if call.throughput and not any(METHODS[m].kind == "attention" for m in call.methods):
        fast = fused_copy(module, layer, x, call.nhwc)[0]
    stack.enter_context(channels_last_weights(fast, call.nhwc and fast is module))  # a copy has its own already
    return fast


def _forward(
    model: object,
    fast: nn.Module,
    layer: str,
    to_grid: Callable[[Tensor], Tensor],
    x: Tensor,
    classes: ClassSpec,
    region: Sequence[int] | None,
    call: _Call,
) -> _Run:
    """The one forward (with the flipped copy for ``aug_smooth``): logits, classes and the layer's activations."""
    n, size = call.n, call.size
    xs = torch.cat([x, x.flip(-1)]) if call.aug_smooth else x
    with capture_layers(fast, [layer]) as cap, torch.no_grad():
        out = fast(xs)
    cap.check()
    if not isinstance(out, Tensor) or out.ndim != 2:
        raise CamError(
            "the model's output is not (N, classes) logits; load it with cam_core.load_model (which picks "
            "the logits of a tuple or dict output) or wrap it with cam_core.models.as_classifier"
        )
    check_finite(out)
    names = list(call.class_names or [f"class {i}" for i in range(out.shape[1])])
    if len(names) != out.shape[1]:
        raise CamError(f"the model has {out.shape[1]} outputs but {len(names)} class names were given")
    ids = resolve_classes(classes, out[:n].detach(), names).to(call.device)
    box = check_region(region, size)
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
        ids=torch.cat([ids, ids]) if call.aug_smooth else ids,
        target=call.target,
        to_grid=to_grid,
        batch_size=call.batch_size,
        progress=call.progress,
        eigen_smooth=call.eigen_smooth,
        samples=call.samples,
        n=n,
        names=names,
        box=box,
        steps=steps,
    )
    run.valid = _valid_cells(box, size, tuple(A.shape[-2:]), steps, A.device)
    run.stats.update(_activation_stats(A[:n], run.valid))
    return run


def _perturb_on_copy(run: _Run, module: nn.Module, x: Tensor, call: _Call) -> None:
    """Score-CAM's and Ablation-CAM's batches of masked copies run on the fused copy, NHWC on a CPU (2-3× faster)."""
    if any(METHODS[m].kind == "perturbation" for m in call.methods):
        cpu = call.device.type == "cpu"
        run.module = fused_copy(module, run.layer, x[:1], nhwc=cpu)[0]
        run.nhwc = run.module is not module and cpu


def _result(run: _Run, call: _Call, x: Tensor, keep_activations: bool) -> ExplainResult:
    """The maps of the unflipped images (``aug_smooth`` averages in the flipped ones), detached, on the CPU."""
    n, steps, box, size = call.n, run.steps, run.box, call.size
    maps = {m: run.maps[m] for m in call.methods}
    weights, stats = run.weights, run.stats
    if call.aug_smooth:  # the flipped copy's maps flipped back; channel weights no longer sum to the map
        maps = {m: (v[:n] + v[n:].flip(-1)) / 2 for m, v in maps.items()}
        weights = {}
        stats = {k: v[:n] for k, v in stats.items()}
    if call.eigen_smooth:
        weights = {k: v for k, v in weights.items() if k == "gradcam" and "gradcam" not in call.methods}
    ids = run.ids[:n]
    return ExplainResult(
        logits=run.logits.float().cpu(),
        probs=probabilities(run.logits, call.probs_kind).cpu(),
        class_ids=ids.cpu(),
        class_names=[[run.names[i] for i in row] for row in ids.tolist()],
        layer=run.layer,
        methods=call.methods,
        maps={m: _masked(_unfold(v, steps), box, size).detach().float().cpu() for m, v in maps.items()},
        input_size=size,
        target=str(getattr(call.target, "__name__", call.target)),
        weights={k: v[:n].detach().float().cpu() for k, v in weights.items()},
        stats={k: v.detach().float().cpu() for k, v in stats.items()},
        activations=_unfold(run.A[:n], steps).float().cpu() if keep_activations else None,
        cost=run.cost,
        region=box,
        valid=run.valid.cpu() if run.valid is not None else None,
        frames=x.shape[2] if x.ndim == 5 else None,
        aug_smooth=call.aug_smooth,
        eigen_smooth=call.eigen_smooth,
        probs_kind=call.probs_kind,
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
    n: int = 0  # the caller's images (``x`` holds twice as many with aug_smooth's flipped copies)
    names: list[str] = field(default_factory=list)  # the model's class names
    box: tuple[int, int, int, int] | None = None  # the image's box in a letterboxed input
    valid: Tensor | None = None  # the layer cells inside ``box``
    steps: int | None = None  # a video layer's T', folded into the rows of ``A``
    logits: Tensor | None = None  # (n, C), kept when the graph is dropped
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

    def drop_graph(self) -> None:
        """Keep the logits and the explained scores, then drop the graph: nothing with autograd history outlives
        the call."""
        self.logits = self.out[: self.n].detach()
        self.base = self.target(self.out.detach(), self.ids)
        self.out = self.leaf = None

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


def _masked(maps: Tensor, box: tuple[int, int, int, int] | None, size: tuple[int, int]) -> Tensor:
    """Maps zeroed outside the image's box (at their own grid: LeGrad's may differ from the layer's)."""
    return maps if box is None else maps * region_mask(box, size, tuple(maps.shape[-2:])).to(maps.device)


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
