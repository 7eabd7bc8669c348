"""The module tree of a model: every layer's output shape, whether a CAM can be taken there, and hints.

Everything comes from ONE forward pass on a dummy input (seeded ``randn``, batch
1, the model's device and dtype, ``torch.no_grad()``, every module temporarily in
eval mode and restored afterwards, hooks removed on every exit path, under
:func:`cam_core.engine.capture.model_lock`). Models with token layers get one more
forward and backward to see which tokens receive a gradient (``no_patch_gradient``).
The result is cached per (model, input size, module structure), weakly keyed on
the model, so the dashboard can ask again for free.

**Layouts** (the rule :func:`grid_transform` applies after capture):

- ``N×C×H×W`` (conv maps): used as is when ``H·W > 1``.
- ``N×H×W×C`` (channels last, torchvision's Swin): a 4-D output is read both
  ways and the reading whose spatial size fits the input's downsampling (``h ≤ H``,
  ``w ≤ W`` and the same stride along both axes, ±1 row) wins. When both fit (a
  map with as many channels as rows) it is channels-first, unless the module is a
  ``LayerNorm`` over the last dimension or a ``Permute`` to ``(0, 2, 3, 1)``. When
  neither fits, it is no map (queries or keys of an attention, ``heads×tokens×dim``).
- Attention internals are no maps either: a 4-D output with as many rows or columns as a
  token layer of the model has tokens (``heads×tokens×tokens`` attention scores), and an
  output whose batch is not the input's (windows or heads folded into the batch).
- ``N×T×D`` (ViT tokens): ``p ≤ 8`` leading class/register tokens are dropped and
  the other ``T - p`` tokens form an ``h×w`` grid (``h, w ≥ 2``) that fits the input;
  of the possible ``p``, the one whose grid has the input's aspect ratio most
  exactly, then the smallest. (``N×D×T`` is not recognised.)

**Video models** (a ``clip_len`` on the model: inputs are ``N×3×T×H×W``) have a time axis,
and their maps are ``N×C×T'×h×w`` (:func:`grid_transform` gives that 5-D layout):

- ``N×C×T'×H×W`` (3-D conv maps, torchvision's R3D, S3D) and ``N×T'×H×W×C`` (channels
  last, Video Swin), told apart as for 2-D maps; ``T' ≤ T`` and the grid fits the frame.
- ``N×(p + T'·h·w)×D`` (MViT tokens): as for ViT, with the time length ``T'`` of the last
  3-D map seen before the layer (MViT's patch embedding) preferred when it fits.
- Outputs with three dimensions (no time axis, or attention internals) are not CAM-able.

**Hints** (stable codes; :data:`HINT_TEXT` words them for people):

- ``residual_branch``: found by tracing, not by type. For every module ``P`` whose
  forward is not a plain ``nn.Sequential``, the inputs of its children and its own
  output are compared with what its children returned: a tensor that no child
  returned and that equals ``child output + s`` (``s`` being ``P``'s input or another
  tensor seen in ``P``) is a residual sum. Every child that ran before that sum
  (and all of its submodules) is marked: its output is added to a skip path before
  the next block sees it. This finds torchvision's Bottleneck/BasicBlock, MBConv,
  ConvNeXt's CNBlock, ViT's EncoderBlock and EfficientNet-Lite's blocks, with or
  without a ``downsample`` module on the skip path.
- ``pre_activation``: measured on the dummy input, for CAM-able layers: the output
  is signed when negative values carry at least 5% of its absolute mass and reach
  at least a quarter of its largest value. A bounded dip below zero (SiLU ≥ -0.28,
  GELU ≥ -0.17) does not count; BatchNorm, convolution and LayerNorm outputs do.
  It measures the weights the model has: in a randomly initialised network the
  activations can be so small that SiLU is nearly linear and counts as signed.
- ``no_patch_gradient``: for token layers, a seeded random combination of the
  model's output and of its head's input is back-propagated; a layer whose grid
  tokens get an all-zero gradient (ViT's last block after its attention: only the
  class token reaches the head) is marked and never recommended.
- ``shared_module``: the module ran more than once in one forward (not CAM-able).
- ``recommended``: see :func:`recommended_layer`; the layer's :attr:`LayerInfo.why` says why in one line
  (``format_tree`` prints it after the hints).

A module's ``type`` is its class name, or the class it was exported from for the modules of an
unflattened ``torch.export`` program (their ``original_type``, see :mod:`cam_core.models.sources.exported`).
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..errors import CamError
from ..modules import get_layer, model_lock
from .layer_choice import chosen_layer, chosen_why, recommend
from .layer_grids import layout_from_tensor
from .layer_trace import (
    Analysis,
    ForwardFailed,
    drop_attention_maps,
    dummy_input,
    probe_token_gradients,
    run_traced,
    type_name,
)

__all__ = [
    "HINT_TEXT",
    "LayerInfo",
    "format_tree",
    "grid_transform",
    "list_layers",
    "recommended_layer",
    "shape_text",
]

HINT_TEXT: dict[str, str] = {
    "recommended": (
        "the recommended layer: the last spatial map a person would call the backbone's output (before pooling "
        "and the head, not inside an attention block or the classifier)."
    ),
    "residual_branch": (
        "inside a residual branch: its output is added to a skip path later, so it is not what the next block sees."
    ),
    "pre_activation": (
        "signed output (before an activation): Grad-CAM assumes non-negative activations, so maps can "
        "cancel out or come out all negative."
    ),
    "no_patch_gradient": (
        "only the class token reaches the head from here: the patch tokens get no gradient, so gradient "
        "maps at this layer are empty."
    ),
    "shared_module": "runs more than once in one forward pass (a shared module), so no single map belongs to it.",
}

_DEFAULT_SIZE = (224, 224)


@dataclass(frozen=True)
class LayerInfo:
    """One named module of a model, as seen in one forward pass.

    Attributes:
        name: Dotted module name (``layer4.2.conv3``).
        type: Class name of the module.
        out_shape: Output shape without the batch dimension, in the module's own
            layout; None when it did not run or returned something other than a tensor.
        params: Parameters of the module and its children.
        camable: Whether a class activation map can be taken at its output.
        reason: Why not, or the layout used (``"map 7×7"``, ``"tokens 14×14 (+1 class token)"``).
        recommended: The one layer :func:`recommended_layer` picks.
        hints: Stable short codes, keys of :data:`HINT_TEXT`.
        depth: Number of components of ``name`` (top-level modules have depth 1).
        parent: Dotted name of the parent module, ``""`` at the top.
        grid: ``(h, w)`` of the map when CAM-able.
        frames: Time length ``T'`` of the map for video models (``None`` for images).
        time_dim: Index of the time axis in ``out_shape`` (``None`` without one, or for tokens).
        why: For the recommended layer, one line saying why it is the one (empty for the others).
    """

    name: str
    type: str
    out_shape: tuple[int, ...] | None
    params: int
    camable: bool
    reason: str
    recommended: bool
    hints: tuple[str, ...]
    depth: int
    parent: str
    grid: tuple[int, int] | None
    frames: int | None = None
    time_dim: int | None = None
    why: str = ""

    @property
    def channels(self) -> int | None:
        """The channels a CAM weights at this layer (C of a C×h×w map, D of D-wide tokens), when CAM-able."""
        if not self.camable or self.out_shape is None or self.grid is None:
            return None
        if len(self.out_shape) == 2:
            return int(self.out_shape[1])
        return int(self.out_shape[0] if tuple(self.out_shape[1:]) == self.grid else self.out_shape[-1])


def _unwrap(model: object, input_size: int | Sequence[int] | None) -> tuple[nn.Module, tuple[int, int]]:
    module = getattr(model, "module", model)
    if not isinstance(module, nn.Module):
        raise CamError(f"expected a LoadedModel or torch.nn.Module, got {type(model).__name__}")
    size = input_size if input_size is not None else getattr(model, "input_size", None)
    if size is None:
        return module, _DEFAULT_SIZE
    if isinstance(size, int):
        return module, (size, size)
    dims = tuple(int(s) for s in size)
    if len(dims) == 1:
        dims = dims * 2
    if len(dims) != 2 or min(dims) < 1:
        raise CamError(f"input size must be one or two positive integers (H, W), got {size!r}")
    return module, (dims[0], dims[1])


def _clip_len(model: object) -> int | None:
    """The frames a video model takes at once (``LoadedModel.clip_len``); ``None`` for image models."""
    frames = getattr(model, "clip_len", None)
    return int(frames) if isinstance(frames, int) and frames > 0 else None


def _channels(model: object) -> int | None:
    """The image channels a LoadedModel's preprocessing gives (one per normalisation mean); ``None`` for a bare
    module (then the module says, see :func:`~cam_core.models.layer_trace.input_channels`)."""
    mean = getattr(model, "mean", None) if not isinstance(model, nn.Module) else None
    return len(mean) if isinstance(mean, tuple | list) and mean else None


def _analyse(
    module: nn.Module, size: tuple[int, int], frames: int | None = None, channels: int | None = None
) -> Analysis:
    x = dummy_input(module, size, frames, channels)
    modes = [(m, m.training) for m in module.modules()]
    try:
        module.eval()  # BatchNorm must not update its running statistics, Dropout must not drop
        tracer = run_traced(module, x)
        drop_attention_maps(tracer.records)
        probe_token_gradients(module, x, tracer)
    finally:
        for m, mode in modes:
            m.training = mode
    chosen, why = recommend(tracer)
    return Analysis(tracer.records, tracer.residual, chosen, why)


_cache: weakref.WeakKeyDictionary[nn.Module, dict[tuple[object, ...], Analysis | str]] = weakref.WeakKeyDictionary()
_cache_guard = threading.Lock()


def _analysis(
    module: nn.Module, size: tuple[int, int], frames: int | None = None, channels: int | None = None
) -> Analysis | str:
    """The (cached) analysis, or the one-line reason the model could not run on the dummy input (of ``frames``
    frames for a video model, of ``channels`` channels when the caller knows them)."""
    if isinstance(module.__dict__.get("wrapped", module), torch.jit.ScriptModule):
        return (
            "TorchScript modules do not run Python hooks, so their layers cannot be traced; load the state dict "
            "with --arch, or a factory with --checkpoint"
        )
    key = (size, frames, tuple((n, id(m)) for n, m in module.named_modules()), channels)
    with model_lock(module):
        with _cache_guard:
            found = _cache.get(module, {}).get(key)
        if found is not None:
            return found
        try:
            result: Analysis | str = _analyse(module, size, frames, channels)
        except ForwardFailed as exc:
            result = str(exc)
        with _cache_guard:
            _cache.setdefault(module, {})[key] = result
        return result


def _analysis_or_raise(model: object, module: nn.Module, size: tuple[int, int]) -> Analysis:
    """The analysis of ``model`` (its ``module``) at ``size``, or its failure as one CamError line."""
    result = _analysis(module, size, _clip_len(model), _channels(model))
    if isinstance(result, str):
        raise CamError(result)
    return result


def list_layers(model: object, input_size: int | Sequence[int] | None = None) -> list[LayerInfo]:
    """Every named module of ``model`` (not the root), in module order, with shapes, CAM-ability and hints.

    Args:
        model: A ``torch.nn.Module``, or an object with ``.module`` and ``.input_size`` (a LoadedModel).
        input_size: ``H`` or ``(H, W)`` of the dummy input; default the model's ``input_size``, else 224.

    Returns:
        One :class:`LayerInfo` per module; exactly one is ``recommended`` when any layer is CAM-able.

    Raises:
        CamError: the model's forward pass fails on an input of that size.
    """
    module, size = _unwrap(model, input_size)
    found = _analysis_or_raise(model, module, size)
    chosen = chosen_layer(model, found)
    why = chosen_why(model, found)
    infos = []
    for name, mod in module.named_modules():
        if not name:
            continue
        rec = found.records[name]
        camable = rec.layout is not None and rec.calls == 1
        hints = []
        if name == chosen:
            hints.append("recommended")
        if name in found.residual or any(name.startswith(r + ".") for r in found.residual):
            hints.append("residual_branch")
        if camable and rec.signed:
            hints.append("pre_activation")
        if rec.no_grad_tokens:
            hints.append("no_patch_gradient")
        if rec.calls > 1:
            hints.append("shared_module")
        if rec.calls > 1:
            reason = f"ran {rec.calls} times in one forward pass (a shared module); a CAM needs a layer that runs once"
        else:
            reason = rec.layout.describe() if rec.layout is not None else rec.why_not
        infos.append(
            LayerInfo(
                name=name,
                type=type_name(mod),
                out_shape=rec.out_shape,
                params=sum(p.numel() for p in mod.parameters()),
                camable=camable,
                reason=reason,
                recommended=name == chosen,
                hints=tuple(hints),
                depth=name.count(".") + 1,
                parent=name.rpartition(".")[0],
                grid=rec.layout.grid if camable and rec.layout is not None else None,
                frames=rec.layout.frames if rec.layout is not None else None,
                time_dim=rec.layout.time_dim if rec.layout is not None else None,
                why=why if name == chosen else "",
            )
        )
    return infos


def recommended_layer(model: object, input_size: int | Sequence[int] | None = None) -> str:
    """The layer to explain by default.

    Rule: the last spatial map a person would call the backbone's output. Among the
    CAM-able layers that ran once and whose grid positions get a gradient (not
    ``no_patch_gradient``), leave out those a person would not choose
    (:func:`~cam_core.models.layer_choice.skip_reason`): anything in or under an attention module
    (named ``attn``/``attention``/``self_attention``, or the innermost module whose type says Attention,
    Attn or MHSA: timm's ``ClassAttn``, ConViT's ``MHSA``/``GPSA``), anything under a classifier head
    (a dotted-name part ``head``, ``heads``, ``head_dist``, ``aux_head``, ``classifier``, ``fc``,
    ``pre_logits``, …), pools that resample to a fixed size (``AdaptiveAvgPool2d``, ``AdaptiveMaxPool2d``:
    VGG's and AlexNet's ``avgpool``), and class-score maps (the last maps of the forward with one channel
    per class, when one of them pools to the logits: SqueezeNet's final conv and ReLU). Of the rest, take
    the one whose forward finished last (the last spatial map before global pooling or the class token
    read-out; for token models the last block's normalised tokens whose patches still reach the head).
    If only head or class-score maps are left (a model that is all head), they are used. Of the layers
    that output that same map, pick the outermost, skipping containers that
    hold the whole trunk (fed the model's input) or several stages (children at more
    than one resolution) and ``Identity`` modules; among siblings, the first.
    So: ``layer4`` for torchvision ResNets (not ``layer4.2`` or its ReLU),
    ``features.8`` for EfficientNet-B0 (the head conv-BN-SiLU block, not
    ``features``), ``_head_act`` for EfficientNet-Lite0, ``norm`` for Swin (not the
    ``permute`` after it), ``features.12`` for SqueezeNet, the last ``features`` max-pool for VGG and
    AlexNet, and the last encoder block's ``ln_1`` for ViT (the last
    place where patch tokens still get a gradient, through the attention); for timm
    ``stages.3`` (ConvNeXt), ``bn2`` (EfficientNet), ``s4`` (RegNet), ``blocks.11.norm1``
    (ViT, ConViT), ``blocks_token_only.1.norm1`` (CaiT), ``norm`` (VOLO, not its per-token ``aux_head``),
    and ``vit.layers.11.layernorm_before`` for Hugging Face's ViT. :attr:`LayerInfo.why` says it in one
    line for the chosen layer.
    A model object's own ``recommended_layer`` (set by a loader that knows the
    architecture) wins when it names a CAM-able layer.

    Args:
        model: A ``torch.nn.Module``, or an object with ``.module`` and ``.input_size``.
        input_size: As for :func:`list_layers`.

    Returns:
        The dotted layer name.

    Raises:
        CamError: no layer gives a spatial map, or the forward pass fails.
    """
    module, size = _unwrap(model, input_size)
    chosen = chosen_layer(model, _analysis_or_raise(model, module, size))
    if chosen is None:
        raise CamError(
            f"no layer of this model gives a spatial map for a {size[0]}×{size[1]} input "
            "(run `python -m cam_core layers` to see every layer's output)"
        )
    return chosen


def grid_transform(
    model: object, name: str, input_size: int | Sequence[int] | None = None
) -> Callable[[Tensor], Tensor]:
    """The function mapping layer ``name``'s captured output (batch N) to N×C×h×w (N×C×T'×h×w for video models).

    Identity for conv maps, a permute for channels-last maps, and for tokens: drop
    the class/register tokens and reshape the rest to the grid (see the module
    docstring for the layout rules). The engine applies it to activations and
    gradients alike. If the model cannot run on the dummy input (a head fixed to
    another size), the layout is read from the captured tensor alone: 4-D is
    N×C×H×W, 5-D is N×C×T×H×W, 3-D is tokens.

    Args:
        model: A ``torch.nn.Module``, or an object with ``.module`` and ``.input_size``.
        name: Dotted layer name.
        input_size: As for :func:`list_layers`; pass the size of the images explained.

    Returns:
        A function from the raw output to its map layout.

    Raises:
        CamError: unknown layer, or a layer whose output is not a spatial map (with the recommended one).
    """
    module, size = _unwrap(model, input_size)
    layer = get_layer(module, name)
    frames = _clip_len(model)
    known = _size_free_layout(module, name, frames)
    if known is not None:
        return known
    found = _analysis(module, size, frames, _channels(model))
    if isinstance(found, str):
        return layout_from_tensor(layer, name, size)
    rec = found.records[name]
    if rec.layout is not None and rec.calls == 1:
        return rec.layout.transform()
    why = f"it ran {rec.calls} times in one forward pass (a shared module)" if rec.calls > 1 else rec.why_not
    chosen = chosen_layer(model, found)
    hint = f"; use {chosen!r} (the recommended layer)" if chosen else ""
    raise CamError(f"no CAM at layer {name!r}: {why}{hint}")


def _size_free_layout(module: nn.Module, name: str, frames: int | None) -> Callable[[Tensor], Tensor] | None:
    """The transform of a layer already analysed at some input size, if it does not depend on the size.

    A spatial map (channels first or last) has the same layout at every input size; only a token
    grid's shape follows the size. So a new size (the whole-image fit gives one per aspect ratio)
    costs no new analysis (a traced forward: seconds) for a CNN layer.
    """
    key = tuple((n, id(m)) for n, m in module.named_modules())
    with _cache_guard:
        analyses = [found for (_, f, k, _), found in _cache.get(module, {}).items() if k == key and f == frames]
    for found in analyses:
        rec = found.records.get(name) if not isinstance(found, str) else None
        if rec is not None and rec.calls == 1 and rec.layout is not None and not rec.layout.kind.endswith("tokens"):
            return rec.layout.transform()
    return None


def shape_text(shape: Sequence[int] | None, time_dim: int | None = None, missing: str = "—") -> str:
    """``(512, 2, 7, 7)`` → ``512×t2×7×7``: the time axis of a video map marked with ``t``; ``missing`` for none."""
    if not shape:
        return missing
    return "×".join(("t" if i == time_dim else "") + str(int(v)) for i, v in enumerate(shape))


def format_tree(layers: Sequence[LayerInfo]) -> str:
    """The layer list as indented text rows for the command line.

    Columns: name (indented by depth), type, output shape, parameters, ``✓`` when
    CAM-able, ``★`` for the recommended layer, and the hint codes (on the recommended row, then its one-line
    why: ``why: the last spatial map …``).
    """
    rows = [("layer", "type", "output", "params", "CAM", "hints")]
    for info in layers:
        shape = shape_text(info.out_shape, info.time_dim)
        mark = ("✓" if info.camable else "·") + (" ★" if info.recommended else "")
        hints = ", ".join(h for h in info.hints if h != "recommended")
        if info.recommended and info.why:
            hints = "; ".join(filter(None, (hints, f"why: {info.why}")))
        rows.append(("  " * (info.depth - 1) + info.name, info.type, shape, f"{info.params:,}", mark, hints))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    lines = []
    for r in rows:
        cells = [r[0].ljust(widths[0]), r[1].ljust(widths[1]), r[2].ljust(widths[2]), r[3].rjust(widths[3])]
        lines.append(("  ".join([*cells, r[4].ljust(widths[4]), r[5]])).rstrip())
    return "\n".join(lines)
