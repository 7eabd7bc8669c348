"""Helpers on ``nn.Module`` that every layer of the package needs: a layer by name, the per-model lock, the dtype
a model computes in, eval mode for one call, channels-last weights, a LoadedModel's module and names.

The bottom of the package (above :mod:`cam_core.errors` alone), so that :mod:`cam_core.models` and
:mod:`cam_core.engine` both use them without importing each other.
"""

from __future__ import annotations

import threading
import warnings
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from itertools import chain

import torch
from torch import nn

from .errors import CamError, choices_hint

__all__ = [
    "LayerNotFound",
    "channels_last_weights",
    "eval_mode",
    "float_dtype",
    "get_layer",
    "model_lock",
    "unwrap_model",
]

_locks: weakref.WeakKeyDictionary[nn.Module, threading.RLock] = weakref.WeakKeyDictionary()



_locks_guard = threading.Lock()



def model_lock(module: nn.Module) -> threading.RLock:
    """The lock that serialises hooked calls on ``module`` (one per model, re-entrant)."""
    with _locks_guard:
        lock = _locks.get(module)
        if lock is None:
            lock = _locks[module] = threading.RLock()
        return lock



class LayerNotFound(CamError, KeyError):
    """A layer name that the model does not have."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])



def get_layer(module: nn.Module, name: str) -> nn.Module:
    """Return the submodule with dotted ``name``; a bad name lists close valid ones."""
    if name:
        try:
            return module.get_submodule(name)  # the path alone, not a walk over the whole model
        except AttributeError:
            pass
    modules = dict(module.named_modules())
    names = [n for n in modules if n]
    near = [n for n in names if name and (n.startswith(name) or name.startswith(n))][-12:]
    raise LayerNotFound(
        f"unknown layer {name!r}; valid layers include: {choices_hint(near or names[-12:])} "
        f"(run `python -m cam_core layers` for all {len(names)})"
    )



def float_dtype(module: nn.Module) -> torch.dtype:
    """The dtype the model computes in (half and bfloat16 models get their inputs in their dtype)."""
    return next((t.dtype for t in chain(module.parameters(), module.buffers()) if t.is_floating_point()), torch.float32)



_WARNED_TRAINING: weakref.WeakSet[nn.Module] = weakref.WeakSet()



@contextmanager
def eval_mode(module: nn.Module) -> Iterator[None]:
    """Run the block in eval mode and put every submodule's mode back afterwards.

    A model in training mode would update its BatchNorm statistics on every call and drop
    units at random: maps would be noisy and the caller's model would change under them.
    """
    modes = [(m, m.training) for m in module.modules()]
    if not any(mode for _, mode in modes):  # eval already (the usual case): nothing to set or put back
        yield
        return
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



@contextmanager
def channels_last_weights(module: nn.Module, enabled: bool = True) -> Iterator[None]:
    """Run the block with the module's 4-D parameters in channels-last (NHWC) order; put them back afterwards.

    On a CPU, oneDNN's convolutions (depthwise ones above all) run much faster on NHWC tensors
    (``benchmarks/bench_video.py`` measures it). The caller's model is
    left as it was: the same tensors, in their own order.
    """
    if not enabled:
        yield
        return
    kept = [(p, p.data) for p in module.parameters() if p.ndim == 4]
    try:
        for p, data in kept:
            p.data = data.contiguous(memory_format=torch.channels_last)
        yield
    finally:
        for p, data in kept:
            p.data = data



def unwrap_model(model: object) -> tuple[nn.Module, list[str] | None]:
    """The ``nn.Module`` and class names of a LoadedModel (or a bare module, with no names)."""
    module = getattr(model, "module", model)
    if not isinstance(module, nn.Module):
        raise CamError(f"expected a LoadedModel or torch.nn.Module, got {type(model).__name__}")
    names = getattr(model, "class_names", None)
    return module, list(names) if names else None

