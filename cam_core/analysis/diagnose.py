"""What a map says, and why it may look empty: numbers and findings in plain words.

:func:`diagnose` is a pure function over an :class:`~cam_core.engine.ExplainResult`
(plus, optionally, the layer's :class:`~cam_core.models.layers.LayerInfo`, the name of
the recommended layer and a :class:`HeadProbe`). It measures one map (one image,
one class, one method) and says, with the fix, why the usual ReLU'd display of it
may mislead. The seed question (a correct prediction with a cosine logit of
0.9999 and a blank Grad-CAM at ``extractor.extractor.7.2.conv3``) has four
causes, each a finding here:

- ``pre_activation``: the layer's activations are signed (before BatchNorm, the
  residual add and the ReLU), so positive weights on negative activations give
  negative evidence and the weighted sum can be negative everywhere;
- ``residual_branch``: the layer is inside a residual branch, so its map shows
  only the branch's correction, not what the next block sees;
- ``centred_map``: a scale-invariant head (normalised embedding + cosine
  classifier) makes the gradient at the pooled features orthogonal to them
  (Euler: ⟨∇f y, f⟩ = 0), so the Grad-CAM map at the block output sums to about
  zero: it shows *relative* evidence and ReLU cuts about half of it;
- ``near_bound``: the logit sits at the bound of the output range ([-1, 1] for a
  cosine head), where the score saturates and its gradient vanishes.

They add up to ``empty_after_relu`` (or ``mostly_negative``), whose text names the
causes found and whose fix names the layer and methods to try.

Two findings are about the method, not the map: ``class_agnostic`` (Eigen-CAM, KPCA-CAM: the
layer's first principal component, the same for every class, signed so that bright means
strongly activated) and ``random_baseline`` (Random-CAM: random channel weights, the reference
a real map should beat).

**Output range rule** (:func:`output_range`): the softmax target lies in [0, 1].
Logits are taken as bounded in [-1, 1] (a cosine classifier) when every logit of
the image lies within ``1 + BOUND_TOL`` of zero *and* the largest reaches
``BOUNDED_MIN_SPAN`` (tiny logits, as untrained models give, say nothing about the
range). A score is near a bound when it is within ``NEAR_BOUND_MARGIN`` of it.
:func:`probe_head` measures scale invariance directly (one forward).

:func:`inspect_point` reads one position of a map: each class's value and, for
methods with channel weights (Grad-CAM, CAM, Score-CAM, Ablation-CAM), the
channels contributing most there.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Literal

import torch
from torch import Tensor, nn

from ..engine.capture import replace_output
from ..engine.methods import METHODS
from ..errors import CamError
from ..modules import model_lock
from .diagnosis import Diagnosis, Finding, HeadProbe, Severity
from .findings import findings
from .thresholds import (
    BOUND_TOL,
    BOUNDED_MIN_SPAN,
    CENTRED_RATIO,
    EMPTY_POS_SHARE,
    MOSTLY_NEGATIVE_SHARE,
    NEAR_BOUND_MARGIN,
    NEGATIVE_MAJORITY_SHARE,
    NEGATIVE_WEIGHTS_SHARE,
    SCALE_INVARIANT_CHANGE,
    SIGNED_DEPTH,
    SIGNED_NEG_FRAC,
    blank_after_relu,
    positive_area,
    positive_share,
)

if TYPE_CHECKING:
    from ..engine.result import ExplainResult
    from ..models.layers import LayerInfo

__all__ = [
    "BOUNDED_MIN_SPAN",
    "BOUND_TOL",
    "CENTRED_RATIO",
    "EMPTY_POS_SHARE",
    "MOSTLY_NEGATIVE_SHARE",
    "NEAR_BOUND_MARGIN",
    "NEGATIVE_MAJORITY_SHARE",
    "NEGATIVE_WEIGHTS_SHARE",
    "SCALE_INVARIANT_CHANGE",
    "SIGNED_DEPTH",
    "SIGNED_NEG_FRAC",
    "ChannelContribution",
    "Diagnosis",
    "Finding",
    "HeadProbe",
    "PointClass",
    "PointInspection",
    "Severity",
    "blank_after_relu",
    "diagnose",
    "diagnose_result",
    "inspect_point",
    "layer_context",
    "output_range",
    "positive_area",
    "positive_share",
    "probe_head",
]

def output_range(logits: Tensor, target: str = "logit") -> tuple[tuple[float, float] | None, str]:
    """The range of the explained score, when it is bounded (rule in the module docstring).

    Args:
        logits: One image's logits (C,).
        target: The explained score's name (``logit``, ``softmax``, or anything else).

    Returns:
        ``(range or None, the rule's verdict in words)``.
    """
    if target in ("softmax", "sigmoid"):
        return (0.0, 1.0), f"{target} probabilities lie in [0, 1]"
    if target != "logit":
        return None, f"the score {target!r} is not a single logit; its range is not inferred"
    top = float(logits.abs().max()) if logits.numel() else 0.0
    if logits.numel() >= 2 and top <= 1 + BOUND_TOL:
        if top >= BOUNDED_MIN_SPAN:
            return (-1.0, 1.0), "every logit lies in [-1, 1], as a cosine classifier's do"
        return None, f"all logits are small (|logit| ≤ {top:.3g}): the range cannot be told"
    return None, f"logits reach {top:.3g}: unbounded (a linear head)"


def _near_bound(value: float, bounds: tuple[float, float] | None) -> str | None:
    if bounds is None:
        return None
    lo, hi = bounds
    margin = NEAR_BOUND_MARGIN * (hi - lo) / 2
    if value >= hi - margin:
        return "upper"
    if value <= lo + margin:
        return "lower"
    return None


def diagnose(
    res: ExplainResult,
    i: int = 0,
    k: int = 0,
    method: str = "gradcam",
    layer_info: LayerInfo | None = None,
    recommended: str | None = None,
    head: HeadProbe | None = None,
) -> Diagnosis:
    """Measure one map and explain, with fixes, why its usual display may mislead.

    Args:
        res: The result holding the map.
        i: Image index.
        k: Class slot (index into ``res.class_ids[i]``).
        method: A method in ``res.maps``.
        layer_info: The layer's entry from :func:`cam_core.models.layers.list_layers` (for its hints).
        recommended: The recommended layer's name (suggested as the fix).
        head: A :func:`probe_head` result for this model and image, if measured.

    Returns:
        A :class:`Diagnosis` with numbers and findings.

    Raises:
        CamError: ``method`` was not computed, or ``i``/``k`` out of range.
    """
    if method not in res.maps:
        raise CamError(f"method {method!r} was not computed; have: {', '.join(res.maps)}")
    n, kk = res.class_ids.shape
    if not (0 <= i < n and 0 <= k < kk):
        raise CamError(f"image {i}, class slot {k} out of range: the result has {n} images and {kk} classes each")
    cam = res.maps[method][i, k].double()
    if res.valid is not None:  # a letterbox: the pad is no part of the map
        cam = cam[res.valid[0, 0]]
    cid = int(res.class_ids[i, k])
    logits = res.logits[i]
    total = float(cam.abs().sum())
    pos = float(cam.clamp_min(0).sum())
    mean, std = float(cam.mean()), float(cam.std(unbiased=False))
    stats = res.stats
    act_min = float(stats["act_min"][i]) if "act_min" in stats else None
    act_max = float(stats["act_max"][i]) if "act_max" in stats else None
    act_neg = float(stats["act_neg_frac"][i]) if "act_neg_frac" in stats else None
    grad_pos = float(stats["grad_pos_frac"][i, k]) if "grad_pos_frac" in stats else None
    w = res.weights.get("gradcam")
    weight_pos = float((w[i, k] > 0).double().mean()) if w is not None else None
    bounds, rule = output_range(logits, res.target)
    if res.target == "sigmoid":
        score = float(torch.sigmoid(logits[cid]))
    else:
        score = float(res.probs[i, cid]) if res.target == "softmax" else float(logits[cid])
    side = _near_bound(score, bounds)
    hints = tuple(layer_info.hints) if layer_info is not None else ()
    d = Diagnosis(
        layer=res.layer,
        method=method,
        image=i,
        class_id=cid,
        class_name=res.class_names[i][k],
        target=res.target,
        logit=float(logits[cid]),
        prob=float(res.probs[i, cid]),
        rank=int((logits > logits[cid]).sum()) + 1,
        map_min=float(cam.min()),
        map_max=float(cam.max()),
        map_mean=mean,
        map_std=std,
        pos_mass_share=pos / total if total > 0 else 0.0,
        neg_mass_share=(total - pos) / total if total > 0 else 0.0,
        pos_area=positive_area(cam),
        centred_ratio=abs(mean) / std if std > 0 else None,
        act_min=act_min,
        act_max=act_max,
        act_neg_frac=act_neg,
        grad_pos_frac=grad_pos,
        weight_pos_frac=weight_pos,
        output_range=bounds,
        range_rule=rule,
        near_bound=side is not None,
        scale_change=head.change if head is not None else None,
        hints=hints,
        recommended=recommended,
    )
    d.findings = findings(d, res, k, side, head)
    return d


def diagnose_result(
    res: ExplainResult,
    layer_info: LayerInfo | None = None,
    recommended: str | None = None,
    head: HeadProbe | None = None,
) -> list[list[dict[str, Diagnosis]]]:
    """:func:`diagnose` for every image, class slot and method: ``out[i][k][method]``."""
    n, kk = res.class_ids.shape
    return [
        [{m: diagnose(res, i, k, m, layer_info, recommended, head) for m in res.maps} for k in range(kk)]
        for i in range(n)
    ]


def layer_context(
    model: object, layer: str, input_size: int | Sequence[int] | None = None
) -> tuple[LayerInfo | None, str | None]:
    """The layer's :class:`~cam_core.models.layers.LayerInfo` and the recommended layer's name, for :func:`diagnose`.

    Uses the layer tree's (cached) analysis; a model that cannot be analysed gives ``(None, None)``.
    """
    from ..models.layers import list_layers

    try:
        infos = list_layers(model, input_size)
    except CamError:
        return None, None
    info = next((li for li in infos if li.name == layer), None)
    rec = next((li.name for li in infos if li.recommended), None)
    return info, rec


def probe_head(model: object, x: Tensor, layer: str | None = None, factor: float = 2.0) -> HeadProbe:
    """Measure whether the head ignores the scale of ``layer``'s output (one forward).

    The layer's output is replaced by itself and by itself times ``factor`` in one
    batched forward; a normalised embedding / cosine classifier gives the same
    logits for both. Runs on the model's own device, under its lock, in its own mode.

    Args:
        model: A LoadedModel or ``nn.Module``.
        x: (N, 3, H, W) preprocessed images.
        layer: Default the recommended layer.
        factor: The scale applied.

    Returns:
        A :class:`HeadProbe`.
    """
    from ..models.layers import recommended_layer

    module = getattr(model, "module", model)
    if not isinstance(module, nn.Module):
        raise CamError(f"expected a LoadedModel or torch.nn.Module, got {type(model).__name__}")
    layer = layer or recommended_layer(model)
    device = next((t.device for t in (*module.parameters(), *module.buffers())), torch.device("cpu"))
    n = x.shape[0]
    x = x.to(device)
    with model_lock(module), torch.no_grad():
        try:
            with replace_output(module, layer, lambda o: torch.cat([o, o * factor])):
                out = module(x)
        except RuntimeError:
            out = None
        if out is None or out.shape[0] != 2 * n:  # the rest of the net mixes in earlier tensors: feed x twice
            with replace_output(module, layer, lambda o: torch.cat([o[:n], o[n:] * factor])):
                out = module(torch.cat([x, x]))
    base, scaled = out[:n].float(), out[n:].float()
    change = float((scaled - base).abs().max() / base.abs().max().clamp_min(1e-12))
    return HeadProbe(layer=layer, factor=factor, change=change)


# --------------------------------------------------------------------------------------------- points


@dataclass(frozen=True)
class ChannelContribution:
    """One channel's share of a map value at a point: ``contribution = weight · activation``."""

    channel: int
    contribution: float
    weight: float
    activation: float


@dataclass(frozen=True)
class PointClass:
    """One class's map value at the point, and the channels that make it.

    Attributes:
        class_id, class_name: The class.
        value: The map's value there.
        channels: The ``top`` channels by |contribution|, largest first (empty when the
            method has no channel weights or activations were not kept).
        rest: The sum of the other channels' contributions (value = Σ channels + rest).
    """

    class_id: int
    class_name: str
    value: float
    channels: list[ChannelContribution]
    rest: float


@dataclass(frozen=True)
class PointInspection:
    """What a map says at one position (see :func:`inspect_point`).

    Attributes:
        image, method, layer: What was read.
        space: ``input`` (the upsampled map) or ``layer`` (the layer's own grid).
        row, col: The position in that space.
        cell: The nearest cell of the layer's grid.
        classes: One entry per class slot.
        note: Why channels are missing, if they are.
    """

    image: int
    method: str
    layer: str
    space: str
    row: int
    col: int
    cell: tuple[int, int]
    classes: list[PointClass]
    note: str = ""

    def to_dict(self) -> dict[str, object]:
        """Plain data for JSON."""
        return asdict(self)


def _bilinear_taps(pos: int, size_in: int, size_out: int) -> list[tuple[int, float]]:
    """Source cells and weights of ``F.interpolate(mode='bilinear', align_corners=False)`` at one output index."""
    src = max((pos + 0.5) * size_in / size_out - 0.5, 0.0)
    i0 = min(math.floor(src), size_in - 1)
    i1 = min(i0 + 1, size_in - 1)
    lam = src - i0
    return [(i0, 1.0 - lam), (i1, lam)] if i1 != i0 else [(i0, 1.0)]


def inspect_point(
    res: ExplainResult,
    i: int,
    row: int,
    col: int,
    method: str = "gradcam",
    *,
    space: Literal["input", "layer"] = "input",
    top: int = 5,
) -> PointInspection:
    """Each class's map value at one position, and the channels contributing most there.

    In ``input`` space the value is the bilinearly upsampled map's (as
    :meth:`ExplainResult.upsampled` gives); channel contributions are taken with
    the same interpolation, so they add up to it exactly. Channels need the
    method's channel weights (Grad-CAM's pooled gradients, CAM, Score-CAM,
    Ablation-CAM) and ``explain(..., keep_activations=True)``.

    Args:
        res: An explain result.
        i: Image index.
        row, col: Position, in input pixels (``space="input"``) or layer cells.
        method: A method in ``res.maps``.
        space: ``input`` or ``layer``.
        top: How many channels to list per class.

    Returns:
        A :class:`PointInspection` (plain data).

    Raises:
        CamError: unknown method or space, or a position outside the map.
    """
    if method not in res.maps:
        raise CamError(f"method {method!r} was not computed; have: {', '.join(res.maps)}")
    maps = res.maps[method][i]  # (K, h, w)
    h, w = maps.shape[-2:]
    if space == "input":
        H, W = res.input_size
    elif space == "layer":
        H, W = h, w
    else:
        raise CamError(f"unknown space {space!r}; choose from: input, layer")
    if not (0 <= row < H and 0 <= col < W):
        raise CamError(f"point ({row}, {col}) is outside the {space} grid of {H}×{W}")
    if space == "input":
        taps = [(r, c, wr * wc) for r, wr in _bilinear_taps(row, h, H) for c, wc in _bilinear_taps(col, w, W)]
        cell = (min(h - 1, row * h // H), min(w - 1, col * w // W))
    else:
        taps, cell = [(row, col, 1.0)], (row, col)
    values = sum(maps[:, r, c].double() * t for r, c, t in taps)
    weights = res.weights.get(method)
    note = ""
    if weights is None:
        note = f"{METHODS[method].title if method in METHODS else method} has no channel weights to break down"
    elif res.activations is None:
        note = "channel contributions need explain(..., keep_activations=True)"
    act = None
    if not note:
        A = res.activations[i].double()  # (C, h, w)
        act = sum(A[:, r, c] * t for r, c, t in taps)  # (C,)
    classes = []
    for k, cid in enumerate(res.class_ids[i].tolist()):
        channels: list[ChannelContribution] = []
        rest = float(values[k])
        if act is not None:
            wk = weights[i, k].double()
            contrib = wk * act
            order = contrib.abs().argsort(descending=True)[:top].tolist()
            channels = [ChannelContribution(c, float(contrib[c]), float(wk[c]), float(act[c])) for c in order]
            rest = float(contrib.sum()) - sum(ch.contribution for ch in channels)
        classes.append(PointClass(cid, res.class_names[i][k], float(values[k]), channels, rest))
    return PointInspection(i, method, res.layer, space, row, col, cell, classes, note)
