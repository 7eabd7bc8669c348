"""A faster copy of a model for runs over many inputs: batch norms folded into their convolutions.

Why: on a CPU an inference forward of a mobile CNN spends as long in its batch norms and
activations as in its convolutions (EfficientNet-Lite0, 16 frames at 224×398: BN 22%, ReLU6 15%
of the time); both are passes over memory that an eval-mode model does not need. In eval mode
``bn(conv(x))`` is one convolution with scaled weights and a bias, and an activation whose input
nobody else reads may overwrite it. With both, and NHWC weights on a CPU, that forward takes
0.37 s instead of 0.78 s.

How it stays right:

- The caller's model is never changed: the copy is a deep copy, kept (one per model) while the
  model's parameters stay the same (their storage and version counters); any change rebuilds it.
- Which pairs fold, and which activations go in place, is read off one recorded forward of the
  real input's first item (every torch call and which tensors it read): a conv folds into a batch
  norm only when that norm is its output's one reader and each runs once; an activation goes in
  place only when its input is a module's output that nothing else reads, and it runs before the
  explained layer (no autograd there). The explained layer itself is never folded away.
- The copy is then checked against the model on that item (the layer's activations and the
  outputs agree to 1e-4 of their largest value, else the model runs as it is): a module whose
  forward does something unusual with its weights is caught there.

Used by :func:`~cam_core.engine.explain` with ``throughput=True`` (the clip and folder engines).
"""

from __future__ import annotations

import copy
import threading
import weakref
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn.utils.fusion import fuse_conv_bn_weights
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten

from .capture import capture_layers

__all__ = ["Fusion", "fused_copy"]

_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)  # exactly these: subclasses (BN + act) do more
_ACTS = (nn.ReLU, nn.ReLU6, nn.Hardtanh, nn.SiLU, nn.Hardswish, nn.LeakyReLU, nn.ELU, nn.Mish, nn.CELU, nn.SELU)
_AGREE = 1e-4  # the copy's outputs and activations, relative to their largest magnitude


@dataclass(frozen=True)
class Fusion:
    """What :func:`fused_copy` did: the pairs folded and the activations put in place (dotted names)."""

    folded: tuple[tuple[str, str], ...] = ()
    in_place: tuple[str, ...] = ()


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
    once = [c for c in calls if count[c.name] == 1 and len(c.inputs) == 1]
    folded, in_place = [], []
    for c in once:
        src = by_output.get(c.inputs[0])
        if src is None or reads.get(c.inputs[0], 0) != 1:
            continue  # the input is not one module's output, or something else reads it too
        m, s = modules[c.name], modules[src.name]
        if type(m) in _NORMS and isinstance(s, _CONVS) and src.name != layer and _foldable(s, m):
            folded.append((src.name, c.name))
        elif isinstance(m, _ACTS) and hasattr(m, "inplace") and not m.inplace and c.order < layer_done:
            in_place.append(c.name)
    return Fusion(tuple(folded), tuple(in_place))


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
        parent, _, attr = norm_name.rpartition(".")
        setattr(mods[parent] if parent else fast, attr, nn.Identity())
    for name in plan.in_place:
        mods[name].inplace = True
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


def _signature(module: nn.Module) -> tuple:
    return tuple((t.data_ptr(), t._version, t.dtype, t.device) for t in (*module.parameters(), *module.buffers()))


# model → (key, its copy or None when it runs as it is, what was done); never a reference back to the model
_cache: weakref.WeakKeyDictionary[nn.Module, tuple[tuple, nn.Module | None, Fusion]] = weakref.WeakKeyDictionary()
_guard = threading.Lock()


def fused_copy(module: nn.Module, layer: str, x: Tensor, nhwc: bool = False) -> tuple[nn.Module, Fusion]:
    """The model to run for ``layer`` (a checked fused copy, or ``module`` itself when nothing folds).

    Call in eval mode and under the model's lock. ``x``: the call's inputs (its first item is recorded).
    ``nhwc``: the copy's 4-D weights in channels-last order (on a CPU, with an NHWC input).
    """
    key = (layer, nhwc, _signature(module))
    with _guard:
        hit = _cache.get(module)
    if hit is not None and hit[0] == key:
        return (module if hit[1] is None else hit[1]), hit[2]
    item = x[:1]
    try:
        plan = _plan(module, layer, item)
    except Exception:  # a forward that cannot be recorded runs as it is
        plan = Fusion()
    fast = None
    if plan.folded or plan.in_place:
        fast = _apply(module, plan, nhwc)
        try:
            ok = _checked(module, fast, layer, item)
        except Exception:  # a copy that cannot run is not used
            ok = False
        if not ok:
            fast, plan = None, Fusion()
    with _guard:
        _cache[module] = (key, fast, plan)
    return (module if fast is None else fast), plan
