"""The one traced forward pass behind the layer tree: what every module output, in which order, which
children sit on a residual branch, and which token layers get no gradient.

:mod:`cam_core.models.layers` turns the records into :class:`~cam_core.models.layers.LayerInfo` rows;
the rules for the hints are in its docstring.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from .layer_grids import Layout, layout_of

__all__ = [
    "Analysis",
    "ForwardFailed",
    "Record",
    "Tracer",
    "attention_modules",
    "drop_attention_maps",
    "dummy_input",
    "first_tensor",
    "input_channels",
    "probe_token_gradients",
    "run_traced",
    "same_fingerprint",
    "type_name",
]

# An attention module: its own name (``attn``, ``self_attention``) or its type (Attention, ClassAttn, MHSA,
# MultiheadAttention, …) says so. By type, only the innermost counts: a block named after the attention it
# holds (timm's LayerScaleBlockClassAttn, PartitionAttentionCl) outputs the block's tokens, not attention.
_ATTENTION_TYPE = re.compile(r"attention|attn|mhsa", re.IGNORECASE)
_ATTENTION_NAME = re.compile(r"^(self_|cross_)?(attn|attention|mhsa)$", re.IGNORECASE)


def attention_modules(module: nn.Module) -> list[str]:
    """Names of the attention modules of ``module`` (see ``_ATTENTION_TYPE``): nothing in them is a map."""
    named, typed = [], []
    for n, m in module.named_modules():
        if n and _ATTENTION_NAME.search(n.rpartition(".")[2]):
            named.append(n)
        elif n and _ATTENTION_TYPE.search(type_name(m)):
            typed.append(n)
    found = named + typed
    return named + [n for n in typed if not any(o.startswith(n + ".") for o in found)]


# pre_activation: share of |mass| that is negative, and depth of the negative side relative to the maximum.
_NEG_MASS = 0.05
_NEG_DEPTH = 0.25


def first_tensor(value: object) -> Tensor | None:
    """The first tensor in a module's output or arguments (nested tuples, lists, dicts)."""
    if isinstance(value, Tensor):
        return value
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, list | tuple):
        for item in value:
            found = first_tensor(item)
            if found is not None:
                return found
    return None


def sums(t: Tensor) -> tuple[float, float]:
    """Sum and sum of magnitudes, accumulated in float64 (so the order of summation hardly matters)."""
    acc = torch.float32 if t.device.type == "mps" else torch.float64  # MPS has no float64
    return float(t.sum(dtype=acc)), float(torch.linalg.vector_norm(t, 1, dtype=acc))


def fingerprint(grid: Tensor, total: float, l1: float) -> tuple[float, ...]:
    """Cheap identity of a map (N×C×h×w, or N×C×T×h×w): its rank and shape, sum, sum of magnitudes, first
    channel's and first row's sums."""
    shape = tuple(map(float, grid.shape[1:]))
    return (float(len(shape)), *shape, total, l1, sums(grid[:, 0])[0], sums(grid[..., 0, :])[0])


def same_fingerprint(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
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
class Record:
    """What one module did in the traced forward (its first call, and how many calls)."""

    type_name: str = ""
    in_attention: bool = False  # an attention module or inside one (queries, keys, values)
    channels: int | None = None  # C of the map (D of tokens), when it is one
    class_scores: bool = False  # its spatial mean or max is the model's output (class-score maps)
    calls: int = 0
    out_shape: tuple[int, ...] | None = None
    layout: Layout | None = None
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
        self.total, self.l1 = sums(t)

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
class Analysis:
    """Everything list_layers needs, without tensors or references to the model."""

    records: dict[str, Record]
    residual: set[str]
    recommended: str | None
    why: str = ""  # the recommended layer's one-line why


class Tracer:
    """Hooks on every module recording shapes, layouts, order, containment and residual sums."""

    def __init__(self, module: nn.Module, x: Tensor) -> None:
        self.module = module
        self.x = x
        self.size = (x.shape[-2], x.shape[-1])
        self.frames = x.shape[2] if x.ndim == 5 else None
        self.time_hint: int | None = None  # time length of the last video map seen (for video tokens)
        self.records: dict[str, Record] = {}
        self.residual: set[str] = set()
        self.stack: list[_Frame] = []
        self.exits = 0
        self.outputs: int | None = None  # number of logits, once the root module returned
        self._pooled: dict[str, tuple[Tensor, Tensor]] = {}  # spatial mean and max of maps, until then

    def hooks(self) -> Iterable[tuple[nn.Module, Callable[..., None], Callable[..., None]]]:
        attention = attention_modules(self.module)
        for name, mod in self.module.named_modules():
            kind = type_name(mod)
            inside = any(name == a or name.startswith(a + ".") for a in attention)
            self.records[name] = Record(kind, inside, has_children=next(mod.children(), None) is not None)
            yield mod, self._pre(name, mod), self._post(name, mod)

    def _pre(self, name: str, mod: nn.Module) -> Callable[..., None]:
        # A plain nn.Sequential only chains its children: nothing is added in it, so nothing to check.
        checks = self.records[name].has_children and type(mod).forward is not nn.Sequential.forward

        def pre(_mod: nn.Module, args: tuple[object, ...], kwargs: dict[str, object]) -> None:
            inp = first_tensor(args)
            if inp is None:
                inp = first_tensor(kwargs)
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
                self._describe(name, rec, mod, output)
                if not name:
                    self._class_scores(output)
            keep = frame.checks or (bool(self.stack) and self.stack[-1].checks)
            out_snap = _snapshot(first_tensor(output)) if keep else None
            if frame.checks:
                for child in _residual_children(frame.children, frame.inp, out_snap):
                    self.residual.add(child)
            if self.stack and self.stack[-1].checks:
                self.stack[-1].children.append(_Seen(name, frame.inp, out_snap))

        return post

    def _describe(self, name: str, rec: Record, mod: nn.Module, output: object) -> None:
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
        layout = layout_of(mod, rec.out_shape, self.size, self.frames, self.time_hint)
        if isinstance(layout, str):
            rec.why_not = layout
            return
        rec.layout = layout
        if layout.kind in ("video", "video_channels_last"):
            self.time_hint = layout.frames
        with torch.no_grad():
            total, l1 = sums(output)
            low, high = (float(v) for v in torch.aminmax(output.detach()))
            neg = (l1 - total) / 2  # the magnitude carried by negative values
            rec.signed = l1 > 0 and neg >= _NEG_MASS * l1 and -low >= _NEG_DEPTH * max(high, 0.0)
            grid = layout.transform()(output.detach())
            rec.fingerprint = fingerprint(grid, total, l1)
            rec.channels = int(grid.shape[1])
            if self.frames is None:
                flat = grid[0].flatten(1).double()
                self._pooled[name] = (flat.mean(1), flat.amax(1))

    def _class_scores(self, output: object) -> None:
        """Mark the maps whose spatial mean or max is the model's N×C output: maps of class scores."""
        out = output if isinstance(output, Tensor) else None
        if out is not None and out.ndim == 2 and out.shape[0] == 1 and out.is_floating_point():
            self.outputs = int(out.shape[1])
            logits = out[0].detach().double()
            tol = 1e-4 * (1.0 + float(logits.abs().max()))
            for name, pooled in self._pooled.items():
                if any(p.shape == logits.shape and bool((p - logits).abs().max() <= tol) for p in pooled):
                    self.records[name].class_scores = True
        self._pooled.clear()


def type_name(module: nn.Module) -> str:
    """The class name shown for a module: the class it was exported from, for an unflattened program."""
    return str(module.__dict__.get("original_type") or type(module).__name__)


def drop_attention_maps(records: dict[str, Record]) -> None:
    """4-D outputs as long as the model's token sequences are attention internals, not maps (module docstring)."""
    tokens = {r.out_shape[0] for r in records.values() if r.layout is not None and r.layout.kind == "tokens"}
    for rec in records.values():
        grid_like = rec.layout is not None and rec.layout.kind != "tokens" and len(rec.out_shape or ()) == 3
        if grid_like and tokens & set(rec.out_shape[1:]):
            rec.layout = None
            rec.why_not = "attention scores or heads over the tokens, not a spatial map"


def input_channels(module: nn.Module) -> int:
    """The channels the model's input has: as the model declares them (timm's ``pretrained_cfg["input_size"]``),
    else the first convolution's, else 3.

    Declared first because the first module with ``in_channels`` need not see the image: TResNet's
    space-to-depth stem hands its first convolution 48 channels made from the image's 3.
    """
    for cfg in (getattr(module, "pretrained_cfg", None), getattr(module, "default_cfg", None)):
        size = cfg.get("input_size") if isinstance(cfg, dict) else None
        if isinstance(size, list | tuple) and len(size) in (3, 4) and isinstance(size[0], int) and size[0] > 0:
            return int(size[0])
    conv = next((m for m in module.modules() if isinstance(m, nn.modules.conv._ConvNd)), None)
    return int(conv.in_channels) if conv is not None else 3


def dummy_input(
    module: nn.Module, size: tuple[int, int], frames: int | None = None, channels: int | None = None
) -> Tensor:
    """Seeded randn of a normalised image (or clip of ``frames``): batch 1, ``channels`` (default
    :func:`input_channels`), the model's device/dtype."""
    channels = channels or input_channels(module)
    device, dtype = torch.device("cpu"), torch.float32
    for t in (*module.parameters(), *module.buffers()):
        device = t.device
        if t.is_floating_point():
            dtype = t.dtype
            break
    gen = torch.Generator().manual_seed(0)
    shape = (1, channels, *size) if frames is None else (1, channels, frames, *size)
    return torch.randn(shape, generator=gen).to(device=device, dtype=dtype)


class ForwardFailed(Exception):
    """The model could not run on the dummy input (message is one line for the user)."""


def run_traced(module: nn.Module, x: Tensor) -> Tracer:
    """One forward of ``x`` with every module hooked; the hooks are gone on every exit path."""
    tracer = Tracer(module, x)
    handles = []
    try:
        for mod, pre, post in tracer.hooks():
            handles.append(mod.register_forward_pre_hook(pre, with_kwargs=True))
            handles.append(mod.register_forward_hook(post))
        with torch.no_grad():
            module(x)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise ForwardFailed(
            f"the model's forward pass failed on a dummy input of shape {tuple(x.shape)} "
            f"({type(exc).__name__}: {first}); give the input size the model expects"
        ) from exc
    finally:
        for h in handles:
            h.remove()
    return tracer


def probe_token_gradients(module: nn.Module, x: Tensor, tracer: Tracer) -> None:
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
        found = first_tensor(args)
        if found is not None and found.requires_grad and not ends:
            ends.append(found)

    modules = dict(module.named_modules())
    handles = [modules[n].register_forward_hook(keep(n)) for n in names]
    handles.append(modules[head].register_forward_pre_hook(keep_input))
    try:
        with torch.enable_grad():
            out = first_tensor(module(x.detach().requires_grad_(True).clone()))
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
