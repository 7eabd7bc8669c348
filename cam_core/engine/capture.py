"""Activations at named layers, with hooks that live only inside one call.

Why not module backward hooks: in-place ReLUs after a layer break full backward
hooks (pytorch/pytorch#61519). Instead a forward hook *replaces* the layer's
output by a fresh leaf tensor that requires grad (and a clone of it, so a later
in-place op never touches the leaf). The caller runs the trunk under
``torch.no_grad()``; the hook switches grad on, so autograd records only what
happens after the layer: gradients come from ``torch.autograd.grad`` on the
leaf, never from the parameters, and the trunk costs what inference costs.

A model is shared by every dashboard session (threads of one process), so hooks
on it must never see another call's forward: calls on one model are serialised
by :func:`model_lock`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from ..errors import CamError
from ..modules import get_layer, model_lock

__all__ = [
    "Capture",
    "batched_grads",
    "capture_layers",
    "replace_output",
]


@dataclass
class Capture:
    """What the hooks saw during one forward: layer name → captured output (requires grad).

    The shallowest hooked layer's capture is a fresh leaf (nothing below it is
    recorded); deeper ones stay in the graph, so ``torch.autograd.grad`` over all
    of them is one backward.
    """

    leaves: dict[str, torch.Tensor] = field(default_factory=dict)
    calls: dict[str, int] = field(default_factory=dict)

    def __getitem__(self, name: str) -> torch.Tensor:
        return self.leaves[name]

    def check(self) -> None:
        """Fail loudly when a layer never ran or ran more than once in the forward."""
        for name, count in self.calls.items():
            if count == 0:
                raise CamError(f"layer {name!r} was not used in the model's forward pass; pick another layer")
            if count > 1:
                raise CamError(
                    f"layer {name!r} ran {count} times in one forward pass (a shared module); "
                    "a CAM needs a layer that runs once"
                )


def _as_tensor(name: str, output: object) -> torch.Tensor:
    if isinstance(output, torch.Tensor):
        return output
    raise CamError(f"layer {name!r} returns {type(output).__name__}, not a tensor; pick another layer")


@contextmanager
def capture_layers(
    module: nn.Module,
    names: Sequence[str],
) -> Iterator[Capture]:
    """Hook ``names`` for the forward passes run inside the ``with`` block.

    Each hooked output becomes a leaf that requires grad, and grad mode is
    switched on from the first hooked layer onwards, so run the model under
    ``torch.no_grad()``: nothing below the layers is recorded.

    Args:
        module: the model (its lock is held for the whole block).
        names: dotted layer names.

    Yields:
        A :class:`Capture` filled during the forward.
    """
    layers = {name: get_layer(module, name) for name in names}
    cap = Capture(calls=dict.fromkeys(names, 0))

    def make_hook(name: str) -> Callable[..., torch.Tensor]:
        def hook(_mod: nn.Module, _inp: object, output: object) -> torch.Tensor:
            out = _as_tensor(name, output)
            cap.calls[name] += 1
            if out.requires_grad:
                # A deeper layer of several: keep it in the graph so one backward reaches them all.
                captured = out
            else:
                captured = out.detach().requires_grad_(True)
                torch.set_grad_enabled(True)
            cap.leaves[name] = captured
            # A clone, so an in-place op after the layer (ReLU(inplace=True)) leaves the capture intact.
            return captured.clone()

        return hook

    with model_lock(module):
        grad_was = torch.is_grad_enabled()
        handles = [layer.register_forward_hook(make_hook(n)) for n, layer in layers.items()]
        try:
            yield cap
        finally:
            for h in handles:
                h.remove()
            torch.set_grad_enabled(grad_was)


@contextmanager
def replace_output(module: nn.Module, name: str, value: Callable[[torch.Tensor], torch.Tensor]) -> Iterator[None]:
    """Within the block, the layer's output ``o`` is replaced by ``value(o)``.

    Used by perturbation methods (Ablation-CAM) to run the rest of the network on
    edited activations. The returned tensor may have a larger batch than ``o``:
    everything before the layer then broadcasts from the single input.
    """
    layer = get_layer(module, name)

    def hook(_mod: nn.Module, _inp: object, output: object) -> torch.Tensor:
        return value(_as_tensor(name, output))

    with model_lock(module):
        handle = layer.register_forward_hook(hook)
        try:
            yield
        finally:
            handle.remove()


def batched_grads(scores: Tensor, leaf: Tensor, to_grid: Callable[[Tensor], Tensor]) -> Callable[[int, int], Tensor]:
    """A function giving gradients of the scores (N, K) of classes [k0, k1) at ``leaf``, as (N, k, C, h, w).

    ``to_grid`` maps the leaf's raw layout to N×C×h×w (:func:`cam_core.models.layers.grid_transform`).

    One vectorised backward per chunk; a model whose backward ops have no vmap rule
    falls back to one backward per class over the same (retained) graph.
    """
    n, k_all = scores.shape

    def grads(k0: int, k1: int) -> Tensor:
        eye = torch.zeros(k1 - k0, n, k_all, device=scores.device, dtype=scores.dtype)
        eye[torch.arange(k1 - k0), :, torch.arange(k0, k1)] = 1.0
        try:
            if k1 - k0 == 1:  # one class: a plain backward (vmap's set-up costs more than it saves here)
                g = torch.autograd.grad(scores, leaf, eye[0], retain_graph=True)[0][None]
            else:
                (g,) = torch.autograd.grad(scores, leaf, eye, retain_graph=True, is_grads_batched=True)
        except RuntimeError as exc:
            if "vmap" not in str(exc).lower() and "batched" not in str(exc).lower():
                raise
            g = torch.stack([torch.autograd.grad(scores, leaf, e, retain_graph=True)[0] for e in eye])
        # (k, N, *raw) → grid layout (k·N, C, h, w) → (N, k, C, h, w)
        grid = to_grid(g.flatten(0, 1))
        return grid.unflatten(0, (k1 - k0, n)).transpose(0, 1).float()

    return grads
