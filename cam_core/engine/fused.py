"""A faster copy of a model for runs over many inputs: batch norms folded into their convolutions.

Why: on a CPU an inference forward of a mobile CNN spends as long in its batch norms and
activations as in its convolutions (EfficientNet-Lite0, 16 frames at 224×398: BN 22%, ReLU6 15%
of the time); both are passes over memory that an eval-mode model does not need. In eval mode
``bn(conv(x))`` is one convolution with scaled weights and a bias; an activation whose input
nobody else reads may overwrite it, or (on a CPU, below the layer) run inside the convolution
as one oneDNN primitive. Together with NHWC weights that more than halves a CPU forward
(``benchmarks/bench_engine.py``).

How it stays right:

- The caller's model is never changed: the copy is a deep copy, kept (one per model) while the
  model's parameters stay the same (their storage and version counters); any change rebuilds it.
- Which pairs fold, and which activations go in place, is read off one recorded forward of the
  real input's first item (every torch call and which tensors it read): a conv folds into a batch
  norm only when that norm is its output's one reader and each runs once; an activation goes in
  place only when its input is a module's output that nothing else reads, and it runs before the
  explained layer (no autograd there), and joins its convolution when that made the input. The
  explained layer itself is never folded away.
- The copy is then checked against the model on that item, in the layout the calls use (the
  layer's activations and the outputs agree to 1e-4 of their largest value): a module whose
  forward does something unusual with its weights is caught there, and the copy is made again
  with less (no joined activations, then nothing in place, then the model as it is).

Used by :func:`~cam_core.engine.explain` with ``throughput=True`` (the clip and folder engines).
"""

from __future__ import annotations

import copy
import threading
import weakref
from dataclasses import dataclass, replace

import torch
from torch import Tensor, nn
from torch.nn.utils.fusion import fuse_conv_bn_weights
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten

from ..cache import BoundedCache
from .capture import capture_layers

__all__ = ["Fusion", "fused_copy", "signature"]

_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)  # exactly these: subclasses (BN + act) do more
_ACTS = (nn.ReLU, nn.ReLU6, nn.Hardtanh, nn.SiLU, nn.Hardswish, nn.LeakyReLU, nn.ELU, nn.Mish, nn.CELU, nn.SELU)
_AGREE = 1e-4  # the copy's outputs and activations, relative to their largest magnitude
# oneDNN's convolution with a fused activation (what torch.compile emits on a CPU); absent in some builds
_CONV_POINTWISE = getattr(torch.ops.mkldnn, "_convolution_pointwise", None) if torch.backends.mkldnn.is_available() \
    else None


@dataclass(frozen=True)
class Fusion:
    """What :func:`fused_copy` did: the pairs folded, the activations put in place and those joined to their
    convolution (dotted names)."""

    folded: tuple[tuple[str, str], ...] = ()
    in_place: tuple[str, ...] = ()
    joined: tuple[tuple[str, str], ...] = ()


def _pointwise(act: nn.Module) -> tuple[str, list[float]] | None:
    """oneDNN's name and scalars for an activation it can run inside a convolution."""
    if type(act) is nn.ReLU:
        return "relu", []
    if type(act) in (nn.ReLU6, nn.Hardtanh):
        return "hardtanh", [float(act.min_val), float(act.max_val)]
    if type(act) is nn.SiLU:
        return "swish", []
    if type(act) is nn.Hardswish:
        return "hardswish", []
    if type(act) is nn.LeakyReLU:
        return "leaky_relu", [float(act.negative_slope)]
    return None


def _pairs(v: object) -> list[int]:
    return list(v) if isinstance(v, tuple | list) else [int(v), int(v)]


class _WithActivation(TorchFunctionMode):
    """Runs the ``conv2d`` inside a convolution module's forward as one primitive with the activation."""

    def __init__(self, attr: str, scalars: list[float]) -> None:
        super().__init__()
        self.attr, self.scalars = attr, scalars

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func in (torch.conv2d, torch.nn.functional.conv2d):
            x, w, b, stride, padding, dilation, groups = _conv_args(*args, **(kwargs or {}))
            return _CONV_POINTWISE(
                x, w, b, _pairs(padding), _pairs(stride), _pairs(dilation), groups, self.attr, self.scalars, ""
            )
        return func(*args, **(kwargs or {}))


def _conv_args(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    return input, weight, bias, stride, padding, dilation, groups


class _ConvAct(nn.Module):
    """A 2-D convolution and the activation after it, as one oneDNN primitive (inference on a CPU only)."""

    def __init__(self, conv: nn.Module, attr: str, scalars: list[float]) -> None:
        super().__init__()
        self.conv, self.attr, self.scalars = conv, attr, scalars

    def forward(self, x: Tensor) -> Tensor:
        with _WithActivation(self.attr, self.scalars):
            return self.conv(x)


class _Uses(TorchFunctionMode):
    """Counts, per tensor, the torch calls that read it and return a tensor (shape queries do not count)."""

    def __init__(self) -> None:
        super().__init__()
        self.reads: dict[int, int] = {}
        self.alive: list[Tensor] = []  # so that no id is reused during the recording

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if any(isinstance(t, Tensor) for t in tree_flatten(out)[0]):
            for t in tree_flatten((args, kwargs or {}))[0]:
                if isinstance(t, Tensor):
                    self.reads[id(t)] = self.reads.get(id(t), 0) + 1
                    self.alive.append(t)
        return out


@dataclass
class _Call:
    name: str
    inputs: tuple[int, ...]
    output: int | None
    order: int


def _record(module: nn.Module, x: Tensor) -> tuple[list[_Call], dict[int, int]]:
    """Every module call of one forward (inputs and output by tensor id, in order of finishing) and the reads."""
    names = {}
    for name, m in module.named_modules(remove_duplicate=False):
        names.setdefault(m, []).append(name)
    calls: list[_Call] = []
    kept: list[object] = []

    def hook(m: nn.Module, inputs: tuple, output: object) -> None:
        kept.append((inputs, output))
        tensors = [t for t in inputs if isinstance(t, Tensor)]
        out = id(output) if isinstance(output, Tensor) else None
        for name in names[m]:
            calls.append(_Call(name, tuple(id(t) for t in tensors), out, len(calls)))

    handles = [m.register_forward_hook(hook) for m in names]
    uses = _Uses()
    try:
        with torch.no_grad(), uses:
            module(x)
    finally:
        for h in handles:
            h.remove()
    return calls, uses.reads


def _plan(module: nn.Module, layer: str, x: Tensor) -> Fusion:
    calls, reads = _record(module, x)
    modules = dict(module.named_modules(remove_duplicate=False))
    count: dict[str, int] = {}
    for c in calls:
        count[c.name] = count.get(c.name, 0) + 1
    by_output: dict[int, _Call] = {}
    for c in calls:  # the innermost module (the first to finish) made a tensor that its containers pass on
        if c.output is not None and count[c.name] == 1:
            by_output.setdefault(c.output, c)
    layer_done = next((c.order for c in calls if c.name == layer), len(calls))
    on_cpu = _CONV_POINTWISE is not None and all(
        t.device.type == "cpu" and t.dtype == torch.float32 for t in module.parameters()
    )
    once = [c for c in calls if count[c.name] == 1 and len(c.inputs) == 1]
    folded, in_place, joined = [], [], []
    conv_of: dict[str, str] = {}  # a module → the 2-D convolution whose output it is (itself, or folded into it)
    for c in once:
        src = by_output.get(c.inputs[0])
        if src is None or reads.get(c.inputs[0], 0) != 1:
            continue  # the input is not one module's output, or something else reads it too
        m, s = modules[c.name], modules[src.name]
        if type(m) in _NORMS and isinstance(s, _CONVS) and src.name != layer and _foldable(s, m):
            folded.append((src.name, c.name))
            conv_of[c.name] = src.name
        elif isinstance(m, _ACTS) and c.order < layer_done:
            conv = conv_of.get(src.name, src.name)
            if on_cpu and conv != layer and _joinable(modules[conv]) and _pointwise(m) is not None:
                joined.append((conv, c.name))
            elif hasattr(m, "inplace") and not m.inplace:
                in_place.append(c.name)
    return Fusion(tuple(folded), tuple(in_place), tuple(joined))


def _joinable(conv: nn.Module) -> bool:
    """A 2-D convolution whose forward is one ``conv2d`` with numeric padding."""
    return isinstance(conv, nn.Conv2d) and conv.padding_mode == "zeros" and not isinstance(conv.padding, str)


def _foldable(conv: nn.Module, norm: nn.Module) -> bool:
    """Eval statistics to fold, one per output channel."""
    return norm.running_mean is not None and norm.running_var is not None and conv.out_channels == norm.num_features


def _apply(module: nn.Module, plan: Fusion, nhwc: bool) -> nn.Module:
    fast = copy.deepcopy(module).eval()
    mods = dict(fast.named_modules())
    for conv_name, norm_name in plan.folded:
        conv, norm = mods[conv_name], mods[norm_name]
        w, b = fuse_conv_bn_weights(
            conv.weight, conv.bias, norm.running_mean, norm.running_var, norm.eps, norm.weight, norm.bias
        )
        conv.weight, conv.bias = nn.Parameter(w.detach(), False), nn.Parameter(b.detach(), False)
        parent, _, leaf = norm_name.rpartition(".")
        setattr(mods[parent] if parent else fast, leaf, nn.Identity())
    for name in plan.in_place:
        mods[name].inplace = True
    for conv_name, act_name in plan.joined:
        attr, scalars = _pointwise(mods[act_name])
        for name, new in ((conv_name, _ConvAct(mods[conv_name], attr, scalars)), (act_name, nn.Identity())):
            parent, _, leaf = name.rpartition(".")
            setattr(mods[parent] if parent else fast, leaf, new)
    if nhwc:
        for p in fast.parameters():
            if p.ndim == 4:
                p.data = p.data.contiguous(memory_format=torch.channels_last)
    return fast


def _agree(a: Tensor, b: Tensor) -> bool:
    a, b = a.detach().float(), b.detach().float()
    return a.shape == b.shape and bool((a - b).abs().max() <= _AGREE * a.abs().max().clamp_min(1e-12))


def _checked(module: nn.Module, fast: nn.Module, layer: str, x: Tensor) -> bool:
    runs = []
    for m in (module, fast):
        with capture_layers(m, [layer]) as cap, torch.no_grad():
            out = m(x)
        runs.append((out, cap[layer]))
    (out, act), (fast_out, fast_act) = runs
    return isinstance(out, Tensor) and isinstance(fast_out, Tensor) and _agree(out, fast_out) and _agree(act, fast_act)


def signature(module: nn.Module) -> tuple:
    """What the copy was made from: every parameter's and buffer's storage, version, dtype and device (one walk)."""
    return tuple(
        (t.data_ptr(), t._version, t.dtype, t.device)
        for m in module.modules()
        for t in (*m._parameters.values(), *m._buffers.values())
        if t is not None
    )


# model → {(layer, nhwc): (its weights' signature, its copy or None when it runs as it is, what was done)},
# the last _KEPT used (a folder's batches alternate NHWC and not); never a reference back to the model.
_Entry = tuple[tuple, "nn.Module | None", Fusion]
_cache: weakref.WeakKeyDictionary[nn.Module, BoundedCache[_Entry]] = weakref.WeakKeyDictionary()
_guard = threading.Lock()
_KEPT = 2


def fused_copy(module: nn.Module, layer: str, x: Tensor, nhwc: bool = False) -> tuple[nn.Module, Fusion]:
    """The model to run for ``layer`` (a checked fused copy, or ``module`` itself when nothing folds).

    Call in eval mode and under the model's lock. ``x``: the call's inputs (its first item is recorded).
    ``nhwc``: the copy's 4-D weights in channels-last order (on a CPU, with an NHWC input).
    """
    key, made_from = (layer, nhwc), signature(module)
    with _guard:
        kept = _cache.setdefault(module, BoundedCache(max_entries=_KEPT))
    hit = kept.get(key)
    if hit is not None and hit[0] == made_from:
        return (module if hit[1] is None else hit[1]), hit[2]
    item = x[:1]
    try:
        plan = _plan(module, layer, item)
    except Exception:  # a forward that cannot be recorded runs as it is
        plan = Fusion()
    if nhwc:
        item = item.contiguous(memory_format=torch.channels_last)
    fast = None
    # Less and less until the copy agrees with the model: all, no joined activations, nothing in place, no copy.
    in_place = plan.in_place + tuple(act for _, act in plan.joined)
    for step in (plan, replace(plan, joined=(), in_place=in_place), Fusion(plan.folded)):
        if not (step.folded or step.in_place or step.joined):
            continue
        candidate = _apply(module, step, nhwc)
        try:
            ok = _checked(module, candidate, layer, item)
        except Exception:  # a copy that cannot run is not used
            ok = False
        if ok:
            fast, plan = candidate, step
            break
    else:
        plan = Fusion()
    kept.put(key, (made_from, fast, plan))
    return (module if fast is None else fast), plan
