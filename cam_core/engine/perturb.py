"""Batched forward passes for the perturbation methods (Score-CAM, Ablation-CAM).

They cost one forward per channel (C per image; 2048 for a ResNet-50 at
``layer4``), so both run in batches of ``batch_size`` under ``torch.no_grad()``
and report how many forwards they ran. Ablation-CAM edits the layer's output
in place of the original: the single input image runs through the trunk once
per batch and the edited activations broadcast through the rest of the
network, so only the part above the layer is paid for per channel. Where the
network mixes pre-layer tensors in a way that cannot broadcast (a concat), it
falls back to feeding the image batch.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .capture import model_lock, replace_output
from .targets import Target

__all__ = ["ablated_scores", "masked_input_scores"]

Progress = Callable[[float, str], None]


def _minmax_masks(A_i: Tensor, size: tuple[int, int]) -> Tensor:
    """Each channel upsampled to the input and scaled to [0, 1] (a constant channel masks everything)."""
    up = F.interpolate(A_i.unsqueeze(1), size=size, mode="bilinear", align_corners=False)  # (C, 1, H, W)
    lo = up.amin(dim=(-2, -1), keepdim=True)
    span = up.amax(dim=(-2, -1), keepdim=True) - lo
    return torch.where(span > 0, (up - lo) / span.clamp_min(1e-12), torch.zeros_like(up))


def _channel_scores(
    A: Tensor,
    ids: Tensor,
    target: Target,
    batch_size: int,
    run: Callable[[int, int, int], Tensor],
    label: str,
    progress: Progress | None,
) -> tuple[Tensor, int]:
    """Scores (N, K, C) from ``run(image, first_channel, count) → logits``, one batched forward per call."""
    n, c = A.shape[:2]
    out = torch.empty(n, ids.shape[1], c, device=A.device, dtype=torch.float32)
    forwards = 0
    for i in range(n):
        for c0 in range(0, c, batch_size):
            b = min(batch_size, c - c0)
            out[i, :, c0 : c0 + b] = target(run(i, c0, b), ids[i].expand(b, -1)).T
            forwards += 1
            if progress:
                progress((i * c + c0 + b) / (n * c), f"{label}: forward {forwards} of {n * -(-c // batch_size)}")
    return out, forwards


@torch.no_grad()
def masked_input_scores(
    module: nn.Module,
    x: Tensor,
    A: Tensor,
    ids: Tensor,
    target: Target,
    batch_size: int,
    progress: Progress | None = None,
) -> tuple[Tensor, int]:
    """Score-CAM's channel scores: target on ``x ⊙ mask_k`` for every channel k.

    Returns:
        (N, K, C) scores and the number of forward passes run.
    """
    masks: dict[int, Tensor] = {}

    def run(i: int, c0: int, b: int) -> Tensor:
        if i not in masks:
            masks.clear()  # one image's masks at a time
            masks[i] = _minmax_masks(A[i], x.shape[-2:]).to(x.dtype)
        with model_lock(module):  # per batch: other callers of the model run between batches
            return module(x[i : i + 1] * masks[i][c0 : c0 + b])

    return _channel_scores(A, ids, target, batch_size, run, "Score-CAM", progress)


def _raw_drop_masks(to_grid: Callable[[Tensor], Tensor], raw_shape: torch.Size, drop_grid: Tensor) -> Tensor:
    """Map channel masks in grid layout back to the layer's own layout (the adjoint of ``to_grid``)."""
    probe = torch.zeros((drop_grid.shape[0], *raw_shape), device=drop_grid.device, requires_grad=True)
    with torch.enable_grad():
        (raw,) = torch.autograd.grad(to_grid(probe), probe, drop_grid)
    return raw


@torch.no_grad()
def ablated_scores(
    module: nn.Module,
    layer: str,
    x: Tensor,
    A: Tensor,
    to_grid: Callable[[Tensor], Tensor],
    ids: Tensor,
    target: Target,
    batch_size: int,
    progress: Progress | None = None,
) -> tuple[Tensor, int]:
    """Ablation-CAM's channel scores: target with channel k of the layer zeroed, for every k.

    Returns:
        (N, K, C) scores and the number of forward passes run.
    """

    def run(i: int, c0: int, b: int) -> Tensor:
        drop_grid = torch.zeros(b, *A.shape[1:], device=A.device)
        drop_grid[torch.arange(b), torch.arange(c0, c0 + b)] = 1.0
        return _forward_edited(module, layer, x[i : i + 1], to_grid, drop_grid)

    return _channel_scores(A, ids, target, batch_size, run, "Ablation-CAM", progress)


def _forward_edited(
    module: nn.Module, layer: str, x1: Tensor, to_grid: Callable[[Tensor], Tensor], drop_grid: Tensor
) -> Tensor:
    """One forward of image ``x1`` with ``len(drop_grid)`` edited copies of the layer's output."""
    b = drop_grid.shape[0]

    def edit(output: Tensor) -> Tensor:
        keep = 1.0 - _raw_drop_masks(to_grid, output.shape[1:], drop_grid)
        return (output[:1] * keep).to(output.dtype)  # output[:1]: the fallback below feeds b identical images

    with replace_output(module, layer, edit):  # takes the model's lock for this batch only
        try:
            logits = module(x1)
            if logits.shape[0] == b:
                return logits
        except RuntimeError:
            pass
        return module(x1.expand(b, *x1.shape[1:]))
