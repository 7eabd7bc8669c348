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
- ``recommended``: see :func:`recommended_layer`.

A module's ``type`` is its class name, or the class it was exported from for the modules of an
unflattened ``torch.export`` program (their ``original_type``, see :mod:`cam_core.models.exported`).
"""

from __future__ import annotations

import math
import threading
import weakref
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import Tensor, nn

from ..errors import CamError
from ..modules import get_layer, model_lock

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
    "recommended": "the recommended layer: the last spatial map before pooling that is what the next stage sees.",
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
_MAX_PREFIX_TOKENS = 8
# pre_activation: share of |mass| that is negative, and depth of the negative side relative to the maximum.
_NEG_MASS = 0.05
_NEG_DEPTH = 0.25


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

    @property
    def channels(self) -> int | None:
        """The channels a CAM weights at this layer (C of a C×h×w map, D of D-wide tokens), when CAM-able."""
        if not self.camable or self.out_shape is None or self.grid is None:
            return None
        if len(self.out_shape) == 2:
            return int(self.out_shape[1])
        return int(self.out_shape[0] if tuple(self.out_shape[1:]) == self.grid else self.out_shape[-1])


@dataclass(frozen=True)
class _Layout:
    """How a captured output maps to N×C×h×w (or N×C×T'×h×w for the ``video`` kinds)."""

    kind: Literal["map", "channels_last", "tokens", "video", "video_channels_last", "video_tokens"]
    grid: tuple[int, int]
    prefix: int = 0
    frames: int | None = None

    @property
    def time_dim(self) -> int | None:
        """Where the time axis sits in the per-sample output shape."""
        return {"video": 1, "video_channels_last": 0}.get(self.kind)

    def describe(self) -> str:
        h, w = self.grid
        extra = {0: "", 1: " (+1 class token)"}.get(self.prefix, f" (+{self.prefix} class/register tokens)")
        if self.kind.startswith("video"):
            what = {"video": "video map", "video_channels_last": "channels-last video map"}.get(
                self.kind, "video tokens"
            )
            return f"{what} {self.frames}×{h}×{w} (time × height × width){extra}"
        if self.kind == "map":
            return f"map {h}×{w}"
        if self.kind == "channels_last":
            return f"channels-last map {h}×{w}"
        return f"tokens {h}×{w}{extra}"

    def transform(self) -> Callable[[Tensor], Tensor]:
        if self.kind in ("map", "video"):
            return _identity
        if self.kind == "channels_last":
            return _channels_first
        if self.kind == "video_channels_last":
            return _channels_first_3d
        prefix, (h, w) = self.prefix, self.grid
        if self.kind == "video_tokens":
            frames = self.frames or 1

            def video_tokens_to_grid(t: Tensor) -> Tensor:
                n = (t.shape[1] - prefix) // frames
                rows, cols = (h, w) if n == h * w else _token_grid(n, (h, w))
                return t[:, prefix:].unflatten(1, (frames, rows, cols)).permute(0, 4, 1, 2, 3)

            return video_tokens_to_grid

        def tokens_to_grid(t: Tensor) -> Tensor:
            n = t.shape[1] - prefix
            # Another input size than the one analysed: keep the aspect ratio if the count allows.
            rows, cols = (h, w) if n == h * w else _token_grid(n, (h, w))
            return t[:, prefix:].unflatten(1, (rows, cols)).permute(0, 3, 1, 2)

        return tokens_to_grid


def _identity(t: Tensor) -> Tensor:
    return t


def _channels_first(t: Tensor) -> Tensor:
    return t.permute(0, 3, 1, 2)


def _channels_first_3d(t: Tensor) -> Tensor:
    return t.permute(0, 4, 1, 2, 3)


def _token_grid(n: int, like: tuple[int, int]) -> tuple[int, int]:
    rows = max(1, round(math.sqrt(n * like[0] / like[1])))
    for r in (rows, rows - 1, rows + 1):
        if r >= 2 and n % r == 0 and n // r >= 2:
            return r, n // r
    raise CamError(f"{n} tokens do not form a grid like {like[0]}×{like[1]}; pick a layer with a spatial map")


def _fits(h: int, w: int, size: tuple[int, int]) -> bool:
    """A grid h×w fits an H×W input: no larger, and the same stride along both axes (±1 row)."""
    H, W = size
    return 1 <= h <= H and 1 <= w <= W and abs(h * W - w * H) <= max(H, W)


def _video_layout(
    module: nn.Module, shape: tuple[int, ...], size: tuple[int, int], frames: int, time_hint: int | None
) -> _Layout | str:
    """The layout of a video model's per-sample output (see the module docstring), or why there is none."""
    dims = "×".join(map(str, shape)) or "a scalar"
    if len(shape) == 4:
        first = 1 <= shape[1] <= frames and shape[2] * shape[3] > 1 and _fits(shape[2], shape[3], size)
        last = 1 <= shape[0] <= frames and shape[1] * shape[2] > 1 and _fits(shape[1], shape[2], size)
        if first and last:  # as many channels as frames: only the module can tell
            last = (isinstance(module, nn.LayerNorm) and tuple(module.normalized_shape) == shape[3:]) or (
                list(getattr(module, "dims", ())) == [0, 2, 3, 4, 1]
            )
            first = not last
        if first:
            return _Layout("video", (shape[2], shape[3]), frames=shape[1])
        if last:
            return _Layout("video_channels_last", (shape[1], shape[2]), frames=shape[0])
        return f"{dims}: no time × height × width map that fits a {frames}-frame clip"
    if len(shape) == 2:
        tokens, fits = shape[0], []
        for prefix in range(min(_MAX_PREFIX_TOKENS, tokens - 4) + 1):
            for t in range(1, frames + 1):
                if (tokens - prefix) % t:
                    continue
                try:
                    rows, cols = _token_grid((tokens - prefix) // t, size)
                except CamError:
                    continue
                if rows * cols * t == tokens - prefix and _fits(rows, cols, size):
                    fits.append((t != time_hint, abs(rows * size[1] - cols * size[0]), prefix, -t, rows, cols))
        if fits:
            _, _, prefix, minus_t, rows, cols = min(fits)
            return _Layout("video_tokens", (rows, cols), prefix, frames=-minus_t)
        return f"{dims}: {tokens} tokens do not form a time × height × width grid"
    return f"{dims}: no time axis (a video model's map is time × height × width)"


def _layout(
    module: nn.Module,
    shape: tuple[int, ...],
    size: tuple[int, int],
    frames: int | None = None,
    time_hint: int | None = None,
) -> _Layout | str:
    """The layout of a per-sample output ``shape`` for an input of ``size`` (and ``frames``), or why there is none."""
    if frames is not None:
        return _video_layout(module, shape, size, frames, time_hint)
    dims = "×".join(map(str, shape)) or "a scalar"
    if len(shape) == 3:
        first = shape[1] * shape[2] > 1 and _fits(shape[1], shape[2], size)
        last = shape[0] * shape[1] > 1 and _fits(shape[0], shape[1], size)
        if first and last:  # as many channels as rows: only the module can tell
            last = (isinstance(module, nn.LayerNorm) and tuple(module.normalized_shape) == shape[2:]) or (
                list(getattr(module, "dims", ())) == [0, 2, 3, 1]
            )
            first = not last
        if last and not first:
            return _Layout("channels_last", (shape[0], shape[1]))
        if first:
            return _Layout("map", (shape[1], shape[2]))
        if shape[1] * shape[2] > 1:
            return f"{dims}: its last two dimensions do not fit the {size[0]}×{size[1]} input (not a spatial map)"
        return f"{dims}: a 1×1 map has no spatial extent (after global pooling)"
    if len(shape) == 2:
        tokens, fits = shape[0], []
        for prefix in range(min(_MAX_PREFIX_TOKENS, tokens - 4) + 1):
            try:
                rows, cols = _token_grid(tokens - prefix, size)
            except CamError:
                continue
            if _fits(rows, cols, size):
                fits.append((abs(rows * size[1] - cols * size[0]), prefix, rows, cols))
        if fits:  # the closest to the input's aspect ratio, then the fewest extra tokens
            _, prefix, rows, cols = min(fits)
            return _Layout("tokens", (rows, cols), prefix)
        return f"{dims}: {tokens} tokens do not form a grid (after up to {_MAX_PREFIX_TOKENS} class tokens)"
    return f"{dims}: no spatial dimensions"


def _first_tensor(value: object) -> Tensor | None:
    if isinstance(value, Tensor):
        return value
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, list | tuple):
        for item in value:
            found = _first_tensor(item)
            if found is not None:
                return found
    return None


def _sums(t: Tensor) -> tuple[float, float]:
    """Sum and sum of magnitudes, accumulated in float64 (so the order of summation hardly matters)."""
    acc = torch.float32 if t.device.type == "mps" else torch.float64  # MPS has no float64
    return float(t.sum(dtype=acc)), float(torch.linalg.vector_norm(t, 1, dtype=acc))


def _fingerprint(grid: Tensor, total: float, l1: float) -> tuple[float, ...]:
    """Cheap identity of a map (N×C×h×w, or N×C×T×h×w): its rank and shape, sum, sum of magnitudes, first
    channel's and first row's sums."""
    shape = tuple(map(float, grid.shape[1:]))
    return (float(len(shape)), *shape, total, l1, _sums(grid[:, 0])[0], _sums(grid[..., 0, :])[0])


def _same_fingerprint(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    # Equal maps hold the same float values, so only the summation order differs (~1e-16 relative in
    # float64). Tight on purpose: ConvNeXt at init (layer scale 1e-6) has stages that barely change the map.
    if not a or len(a) != len(b):
        return False
    dims = 1 + int(a[0])  # the rank, then the shape: equal exactly
    if a[:dims] != b[:dims]:
        return False
    tol = 1e-12 * a[dims + 1]  # the sum of magnitudes
    # NaN weights make NaN sums: two NaN fingerprints of the same shape can't be told apart, so they match.
    return all(
        abs(x - y) <= tol or (math.isnan(x) and math.isnan(y)) for x, y in zip(a[dims:], b[dims:], strict=True)
    )


@dataclass
class _Record:
    """What one module did in the traced forward (its first call, and how many calls)."""

    type_name: str = ""
    in_attention: bool = False  # a descendant of an attention module (queries, keys, values)
    calls: int = 0
    out_shape: tuple[int, ...] | None = None
    layout: _Layout | None = None
    why_not: str = "not called in the forward pass"
    signed: bool = False
    fingerprint: tuple[float, ...] = ()
    exit: int = -1
    takes_model_input: bool = False
    has_children: bool = False
    no_grad_tokens: bool = False


@dataclass
class _Seen:
    """A child call as its parent's residual check sees it: input and output snapshots."""

    name: str
    inp: Tensor | None
    out: Tensor | None


@dataclass
class _Frame:
    """One module call in progress."""

    checks: bool  # run the residual check on this call's children
    inp: Tensor | None
    children: list[_Seen] = field(default_factory=list)


def _snapshot(t: Tensor | None) -> Tensor | None:
    # A copy: later in-place ops (ReLU(inplace=True), `result += input`) must not change what we compare.
    return t.detach().clone() if t is not None and t.is_floating_point() else None


class _Value:
    """A snapshot with cheap keys (shape, sum, sum of magnitudes), so that most comparisons need no full pass."""

    def __init__(self, t: Tensor) -> None:
        self.t = t
        self.shape = tuple(t.shape)
        self.total, self.l1 = _sums(t)

    def equals(self, other: _Value) -> bool:
        return self.shape == other.shape and self.total == other.total and torch.equal(self.t, other.t)


def _is_sum(total: _Value, a: _Value, candidates: list[_Value]) -> bool:
    """Whether ``total == a + s`` for some nonzero ``s`` among ``candidates`` (to float rounding)."""
    if a.l1 == 0 or a.shape != total.shape:
        return False
    eps = torch.finfo(total.t.dtype).eps
    diff: Tensor | None = None
    for s in candidates:
        if s is a or s.l1 == 0 or s.shape != total.shape:
            continue
        # The sums must add up before any element is compared.
        if abs(total.total - a.total - s.total) > 8 * eps * (total.l1 + a.l1 + s.l1):
            continue
        if diff is None:
            diff = total.t - a.t
        tol = 8 * eps * (float(total.t.abs().max()) + float(a.t.abs().max()))
        if bool((diff - s.t).abs().max() <= tol):
            return True
    return False


def _residual_children(children: list[_Seen], inp: Tensor | None, out: Tensor | None) -> list[str]:
    """Names of the children that ran before a residual sum ``child output + s`` inside one call.

    The candidate sums are the tensors no child returned: a child's input or the
    call's output. ``s`` may be the call's input, another child's output or an
    earlier such tensor.
    """
    known: list[_Value] = [_Value(inp)] if inp is not None else []
    seen = list(known)
    outputs: list[_Value] = []
    branch = 0
    for i, tensor in enumerate([*(c.inp for c in children), out]):
        if tensor is not None:
            value = _Value(tensor)
            if not any(value.equals(k) for k in known):
                if any(_is_sum(value, a, seen) for a in outputs):
                    branch = i
                seen.append(value)
        if i < len(children) and children[i].out is not None:
            value = _Value(children[i].out)
            known.append(value)
            seen.append(value)
            outputs.append(value)
    return [c.name for c in children[:branch]]


@dataclass
class _Analysis:
    """Everything list_layers needs, without tensors or references to the model."""

    records: dict[str, _Record]
    residual: set[str]
    recommended: str | None


class _Tracer:
    """Hooks on every module recording shapes, layouts, order, containment and residual sums."""

    def __init__(self, module: nn.Module, x: Tensor) -> None:
        self.module = module
        self.x = x
        self.size = (x.shape[-2], x.shape[-1])
        self.frames = x.shape[2] if x.ndim == 5 else None
        self.time_hint: int | None = None  # time length of the last video map seen (for video tokens)
        self.records: dict[str, _Record] = {}
        self.residual: set[str] = set()
        self.stack: list[_Frame] = []
        self.exits = 0

    def hooks(self) -> Iterable[tuple[nn.Module, Callable[..., None], Callable[..., None]]]:
        attention: list[str] = []
        for name, mod in self.module.named_modules():
            kind = type_name(mod)
            inside = any(name.startswith(a + ".") for a in attention)
            if name and "Attention" in kind:
                attention.append(name)
            self.records[name] = _Record(kind, inside, has_children=next(mod.children(), None) is not None)
            yield mod, self._pre(name, mod), self._post(name, mod)

    def _pre(self, name: str, mod: nn.Module) -> Callable[..., None]:
        # A plain nn.Sequential only chains its children: nothing is added in it, so nothing to check.
        checks = self.records[name].has_children and type(mod).forward is not nn.Sequential.forward

        def pre(_mod: nn.Module, args: tuple[object, ...], kwargs: dict[str, object]) -> None:
            inp = _first_tensor(args)
            if inp is None:
                inp = _first_tensor(kwargs)
            if inp is self.x:
                self.records[name].takes_model_input = True
            keep = checks or (bool(self.stack) and self.stack[-1].checks)
            self.stack.append(_Frame(checks, _snapshot(inp) if keep else None))

        return pre

    def _post(self, name: str, mod: nn.Module) -> Callable[..., None]:
        def post(_mod: nn.Module, _args: tuple[object, ...], output: object) -> None:
            frame = self.stack.pop()
            rec = self.records[name]
            rec.calls += 1
            if rec.calls == 1:
                self._describe(rec, mod, output)
            keep = frame.checks or (bool(self.stack) and self.stack[-1].checks)
            out_snap = _snapshot(_first_tensor(output)) if keep else None
            if frame.checks:
                for child in _residual_children(frame.children, frame.inp, out_snap):
                    self.residual.add(child)
            if self.stack and self.stack[-1].checks:
                self.stack[-1].children.append(_Seen(name, frame.inp, out_snap))

        return post

    def _describe(self, rec: _Record, mod: nn.Module, output: object) -> None:
        self.exits += 1
        rec.exit = self.exits
        if not isinstance(output, Tensor):
            rec.why_not = f"returns {type(output).__name__}, not a tensor"
            return
        rec.out_shape = tuple(output.shape[1:])
        if output.ndim and output.shape[0] != self.x.shape[0]:
            rec.why_not = f"a batch of {output.shape[0]} for one image (windows or heads folded into the batch)"
            return
        if not output.is_floating_point():
            rec.why_not = f"{output.dtype} output, not activations"
            return
        if output.ndim == 0 or output.shape[0] != self.x.shape[0]:
            # e.g. MViT's attention pooling: (batch × heads, …), so no map belongs to one input
            rec.why_not = "its first dimension is not the batch (heads folded into it), so no map per input"
            return
        layout = _layout(mod, rec.out_shape, self.size, self.frames, self.time_hint)
        if isinstance(layout, str):
            rec.why_not = layout
            return
        rec.layout = layout
        if layout.kind in ("video", "video_channels_last"):
            self.time_hint = layout.frames
        with torch.no_grad():
            total, l1 = _sums(output)
            low, high = (float(v) for v in torch.aminmax(output.detach()))
            neg = (l1 - total) / 2  # the magnitude carried by negative values
            rec.signed = l1 > 0 and neg >= _NEG_MASS * l1 and -low >= _NEG_DEPTH * max(high, 0.0)
            rec.fingerprint = _fingerprint(layout.transform()(output.detach()), total, l1)


def type_name(module: nn.Module) -> str:
    """The class name shown for a module: the class it was exported from, for an unflattened program."""
    return str(module.__dict__.get("original_type") or type(module).__name__)


def _drop_attention_maps(records: dict[str, _Record]) -> None:
    """4-D outputs as long as the model's token sequences are attention internals, not maps (module docstring)."""
    tokens = {r.out_shape[0] for r in records.values() if r.layout is not None and r.layout.kind == "tokens"}
    for rec in records.values():
        grid_like = rec.layout is not None and rec.layout.kind != "tokens" and len(rec.out_shape or ()) == 3
        if grid_like and tokens & set(rec.out_shape[1:]):
            rec.layout = None
            rec.why_not = "attention scores or heads over the tokens, not a spatial map"


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


def _dummy_input(module: nn.Module, size: tuple[int, int], frames: int | None = None) -> Tensor:
    """Seeded randn of a normalised image (or clip of ``frames``): batch 1, the first conv's channels (else 3),
    the model's device/dtype."""
    channels = next((m.in_channels for m in module.modules() if isinstance(getattr(m, "in_channels", None), int)), 3)
    device, dtype = torch.device("cpu"), torch.float32
    for t in (*module.parameters(), *module.buffers()):
        device = t.device
        if t.is_floating_point():
            dtype = t.dtype
            break
    gen = torch.Generator().manual_seed(0)
    shape = (1, channels, *size) if frames is None else (1, channels, frames, *size)
    return torch.randn(shape, generator=gen).to(device=device, dtype=dtype)


class _ForwardFailed(Exception):
    """The model could not run on the dummy input (message is one line for the user)."""


def _run_traced(module: nn.Module, x: Tensor) -> _Tracer:
    tracer = _Tracer(module, x)
    handles = []
    try:
        for mod, pre, post in tracer.hooks():
            handles.append(mod.register_forward_pre_hook(pre, with_kwargs=True))
            handles.append(mod.register_forward_hook(post))
        with torch.no_grad():
            module(x)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise _ForwardFailed(
            f"the model's forward pass failed on a dummy input of shape {tuple(x.shape)} "
            f"({type(exc).__name__}: {first}); give the input size the model expects"
        ) from exc
    finally:
        for h in handles:
            h.remove()
    return tracer


def _probe_token_gradients(module: nn.Module, x: Tensor, tracer: _Tracer) -> None:
    """Mark token layers whose grid tokens get no gradient on the way to the head.

    The score back-propagated is a seeded random projection of the model's output
    plus one of the input of the last module to run (the head): torchvision's ViT
    starts with a zero head, which would otherwise hide every gradient.
    """
    names = [
        n
        for n, r in tracer.records.items()
        if r.calls == 1 and r.layout is not None and r.layout.kind in ("tokens", "video_tokens")
    ]
    if not names:
        return
    head = max((n for n, r in tracer.records.items() if n and r.exit > 0), key=lambda n: tracer.records[n].exit)
    outputs: dict[str, Tensor] = {}
    ends: list[Tensor] = []

    def keep(name: str) -> Callable[..., None]:
        def hook(_mod: nn.Module, _args: object, output: object) -> None:
            if isinstance(output, Tensor) and output.requires_grad:
                outputs[name] = output

        return hook

    def keep_input(_mod: nn.Module, args: tuple[object, ...]) -> None:
        found = _first_tensor(args)
        if found is not None and found.requires_grad and not ends:
            ends.append(found)

    modules = dict(module.named_modules())
    handles = [modules[n].register_forward_hook(keep(n)) for n in names]
    handles.append(modules[head].register_forward_pre_hook(keep_input))
    try:
        with torch.enable_grad():
            out = _first_tensor(module(x.detach().requires_grad_(True).clone()))
            if out is not None and out.requires_grad:
                ends.append(out)
            if not ends or not outputs:
                return
            gen = torch.Generator().manual_seed(1)
            score = sum((t.float() * torch.randn(t.shape, generator=gen).to(t.device)).sum() for t in ends)
            grads = torch.autograd.grad(score, list(outputs.values()), allow_unused=True)
    except RuntimeError:
        return  # no backward through this model: the hint is simply not given
    finally:
        for h in handles:
            h.remove()
    for name, g in zip(outputs, grads, strict=True):
        layout = tracer.records[name].layout
        if layout is not None and (g is None or not g[:, layout.prefix :].any()):
            tracer.records[name].no_grad_tokens = True


def _several_stages(name: str, records: dict[str, _Record]) -> bool:
    """Whether ``name``'s children output maps at more than one resolution (it holds several stages)."""
    prefix = name + "."
    grids = {
        r.layout.grid
        for n, r in records.items()
        if n.startswith(prefix) and "." not in n[len(prefix) :] and r.layout is not None
    }
    return len(grids) > 1


def _recommend(tracer: _Tracer) -> str | None:
    """The recommended layer (rule in :func:`recommended_layer`)."""
    records = {n: r for n, r in tracer.records.items() if n}
    usable = {
        n: r
        for n, r in records.items()
        if r.layout is not None and r.calls == 1 and not r.no_grad_tokens and not r.in_attention
    }
    if not usable:
        return None
    last = max(usable, key=lambda n: usable[n].exit)
    same = [n for n, r in usable.items() if _same_fingerprint(r.fingerprint, usable[last].fingerprint)] or [last]
    # A container fed the model's input, or holding maps of several resolutions, holds the whole trunk (or
    # several stages of it): name the stage inside it instead.
    stages = [
        n
        for n in same
        if not (records[n].has_children and (records[n].takes_model_input or _several_stages(n, records)))
    ] or same
    # An Identity (timm's norm_pre) outputs the same map as the stage before it: name the stage.
    return min(stages, key=lambda n: (records[n].type_name == "Identity", n.count("."), usable[n].exit))


def _analyse(module: nn.Module, size: tuple[int, int], frames: int | None = None) -> _Analysis:
    x = _dummy_input(module, size, frames)
    modes = [(m, m.training) for m in module.modules()]
    try:
        module.eval()  # BatchNorm must not update its running statistics, Dropout must not drop
        tracer = _run_traced(module, x)
        _drop_attention_maps(tracer.records)
        _probe_token_gradients(module, x, tracer)
    finally:
        for m, mode in modes:
            m.training = mode
    return _Analysis(tracer.records, tracer.residual, _recommend(tracer))


_cache: weakref.WeakKeyDictionary[nn.Module, dict[tuple[object, ...], _Analysis | str]] = weakref.WeakKeyDictionary()
_cache_guard = threading.Lock()


def _analysis(module: nn.Module, size: tuple[int, int], frames: int | None = None) -> _Analysis | str:
    """The (cached) analysis, or the one-line reason the model could not run on the dummy input (of ``frames``
    frames for a video model)."""
    if isinstance(module.__dict__.get("wrapped", module), torch.jit.ScriptModule):
        return (
            "TorchScript modules do not run Python hooks, so their layers cannot be traced; load the state dict "
            "with --arch, or a factory with --checkpoint"
        )
    key = (size, frames, tuple((n, id(m)) for n, m in module.named_modules()))
    with model_lock(module):
        with _cache_guard:
            found = _cache.get(module, {}).get(key)
        if found is not None:
            return found
        try:
            result: _Analysis | str = _analyse(module, size, frames)
        except _ForwardFailed as exc:
            result = str(exc)
        with _cache_guard:
            _cache.setdefault(module, {})[key] = result
        return result


def _analysis_or_raise(module: nn.Module, size: tuple[int, int], frames: int | None = None) -> _Analysis:
    result = _analysis(module, size, frames)
    if isinstance(result, str):
        raise CamError(result)
    return result


def _chosen(model: object, found: _Analysis) -> str | None:
    """The loader's own choice (a LoadedModel's ``recommended_layer``) when CAM-able, else the rule's."""
    named = getattr(model, "recommended_layer", None)
    if isinstance(named, str) and named in found.records:
        rec = found.records[named]
        if rec.layout is not None and rec.calls == 1:
            return named
    return found.recommended


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
    found = _analysis_or_raise(module, size, _clip_len(model))
    chosen = _chosen(model, found)
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
            )
        )
    return infos


def recommended_layer(model: object, input_size: int | Sequence[int] | None = None) -> str:
    """The layer to explain by default.

    Rule: among the CAM-able layers that ran once, whose grid positions get a
    gradient (not ``no_patch_gradient``) and that are not inside an attention module
    (its queries, keys and values), take the one whose forward finished last (the
    last spatial map before global pooling or the class token read-out). Of the
    layers that output that same map, pick the outermost, skipping containers that
    hold the whole trunk (fed the model's input) or several stages (children at more
    than one resolution) and ``Identity`` modules; among siblings, the first.
    So: ``layer4`` for torchvision ResNets (not ``layer4.2`` or its ReLU),
    ``features.8`` for EfficientNet-B0 (the head conv-BN-SiLU block, not
    ``features``), ``_head_act`` for EfficientNet-Lite0, ``norm`` for Swin (not the
    ``permute`` after it), and the last encoder block's ``ln_1`` for ViT (the last
    place where patch tokens still get a gradient, through the attention); for timm
    ``stages.3`` (ConvNeXt), ``bn2`` (EfficientNet), ``s4`` (RegNet), ``blocks.11.norm1``
    (ViT), and ``vit.layers.11.layernorm_before`` for Hugging Face's ViT.
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
    chosen = _chosen(model, _analysis_or_raise(module, size, _clip_len(model)))
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
    found = _analysis(module, size, frames)
    if isinstance(found, str):
        return _layout_from_tensor(layer, name, size)
    rec = found.records[name]
    if rec.layout is not None and rec.calls == 1:
        return rec.layout.transform()
    why = f"it ran {rec.calls} times in one forward pass (a shared module)" if rec.calls > 1 else rec.why_not
    chosen = _chosen(model, found)
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
        analyses = [found for (_, f, k), found in _cache.get(module, {}).items() if k == key and f == frames]
    for found in analyses:
        rec = found.records.get(name) if not isinstance(found, str) else None
        if rec is not None and rec.calls == 1 and rec.layout is not None and not rec.layout.kind.endswith("tokens"):
            return rec.layout.transform()
    return None


def _layout_from_tensor(layer: nn.Module, name: str, size: tuple[int, int]) -> Callable[[Tensor], Tensor]:
    def to_grid(t: Tensor) -> Tensor:
        layout = _layout(layer, tuple(t.shape[1:]), size) if t.ndim == 3 else None
        if t.ndim in (4, 5) and t.shape[-1] * t.shape[-2] > 1:
            return t
        if isinstance(layout, _Layout) and layout.kind == "tokens":
            return layout.transform()(t)
        raise CamError(f"no CAM at layer {name!r}: its output {tuple(t.shape[1:])} is not a spatial map")

    return to_grid


def shape_text(shape: Sequence[int] | None, time_dim: int | None = None, missing: str = "—") -> str:
    """``(512, 2, 7, 7)`` → ``512×t2×7×7``: the time axis of a video map marked with ``t``; ``missing`` for none."""
    if not shape:
        return missing
    return "×".join(("t" if i == time_dim else "") + str(int(v)) for i, v in enumerate(shape))


def format_tree(layers: Sequence[LayerInfo]) -> str:
    """The layer list as indented text rows for the command line.

    Columns: name (indented by depth), type, output shape, parameters, ``✓`` when
    CAM-able, ``★`` for the recommended layer, and the hint codes.
    """
    rows = [("layer", "type", "output", "params", "CAM", "hints")]
    for info in layers:
        shape = shape_text(info.out_shape, info.time_dim)
        mark = ("✓" if info.camable else "·") + (" ★" if info.recommended else "")
        hints = ", ".join(h for h in info.hints if h != "recommended")
        rows.append(("  " * (info.depth - 1) + info.name, info.type, shape, f"{info.params:,}", mark, hints))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    lines = []
    for r in rows:
        cells = [r[0].ljust(widths[0]), r[1].ljust(widths[1]), r[2].ljust(widths[2]), r[3].rjust(widths[3])]
        lines.append(("  ".join([*cells, r[4].ljust(widths[4]), r[5]])).rstrip())
    return "\n".join(lines)
