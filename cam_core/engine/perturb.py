"""Batched forward passes for the perturbation methods (Score-CAM, SS-CAM, IS-CAM, Ablation-CAM).

They cost one forward per channel (C per image; 2048 for a ResNet-50 at
``layer4``), times the samples of SS-CAM and IS-CAM, so all run in batches of
``batch_size`` under ``torch.no_grad()`` and report how many forwards they ran.
Ablation-CAM edits the layer's output in place of the original: the single
input image runs through the trunk once per batch and the edited activations
broadcast through the rest of the network, so only the part above the layer is
paid for per channel. Where the network mixes pre-layer tensors in a way that
cannot broadcast (a concat), it falls back to feeding the image batch.

**Masks** (:func:`minmax_masks`): channel k upsampled bilinearly to the input
(``align_corners=False``, as the map itself is) and min-max scaled to [0, 1], the
Score-CAM authors' recipe. The peers differ in small ways: pytorch-grad-cam upsamples
with ``align_corners=True`` before scaling, torchcam scales at the layer's resolution
and then upsamples; with their recipe substituted, the weights agree to float precision
(tests/test_methods_peers.py).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..modules import model_lock
from .capture import replace_output
from .priority import background, yield_to_foreground
from .targets import Target

__all__ = ["ablated_scores", "eta_text", "mask_noise", "masked_input_scores", "minmax_masks"]

Progress = Callable[[float, str], None]


def minmax_masks(A_i: Tensor, size: tuple[int, int]) -> Tensor:
    """Channels (C, h, w) of one image upsampled to ``size`` and scaled to [0, 1]: (C, 1, H, W).

    A constant channel masks everything (all zeros).
    """
    up = F.interpolate(A_i.unsqueeze(1), size=size, mode="bilinear", align_corners=False)  # (C, 1, H, W)
    lo = up.amin(dim=(-2, -1), keepdim=True)
    span = up.amax(dim=(-2, -1), keepdim=True) - lo
    return torch.where(span > 0, (up - lo) / span.clamp_min(1e-12), torch.zeros_like(up))


def mask_noise(gen: torch.Generator, shape: Sequence[int], std: float) -> Tensor:
    """SS-CAM's mask noise N(0, std²), drawn on the CPU from a seeded generator (the same on every device)."""
    return torch.randn(tuple(shape), generator=gen) * std


ETA_AFTER = 2  # forwards timed before the progress text says how long is left


def eta_text(done: int, total: int, seconds: float) -> str:
    """``about N s left`` (``about N min left`` past 90 s) at the pace so far: ``done`` of ``total`` forwards in
    ``seconds``; empty before :data:`ETA_AFTER` forwards (the first ones say little: warm-up, a busy moment)."""
    if done < ETA_AFTER or done >= total or seconds <= 0:
        return ""
    left = seconds / done * (total - done)
    return f"about {math.ceil(left)} s left" if left < 90 else f"about {math.ceil(left / 60)} min left"


def _channel_scores(
    A: Tensor,
    ids: Tensor,
    target: Target,
    batch_size: int,
    run: Callable[[int, int, int], Tensor],
    label: str,
    progress: Progress | None,
    passes: int = 1,
    done: int = 0,
) -> tuple[Tensor, int]:
    """Scores (N, K, C) from ``run(image, first_channel, count) → logits``, one batched forward per call.

    ``passes`` and ``done`` let several calls (samples) report progress as one job.
    """
    n, c = A.shape[:2]
    out = torch.empty(n, ids.shape[1], c, device=A.device, dtype=torch.float32)
    forwards = 0
    total = passes * n * -(-c // batch_size)
    start = time.perf_counter()
    with background() as in_background:  # the batches compute at a lower CPU priority
        for i in range(n):
            for c0 in range(0, c, batch_size):
                b = min(batch_size, c - c0)
                yield_to_foreground()  # another visitor's short explain() runs first
                logits = in_background(lambda i=i, c0=c0, b=b: run(i, c0, b))
                out[i, :, c0 : c0 + b] = target(logits, ids[i].expand(b, -1)).T
                forwards += 1
                if progress:
                    left = eta_text(forwards, total - done, time.perf_counter() - start)
                    text = f"{label}: forward {done + forwards} of {total}"
                    progress((done + forwards) / total, f"{text}, {left}" if left else text)
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
    *,
    scales: Sequence[float] = (1.0,),
    noise_std: float = 0.0,
    samples: int = 1,
    seed: int = 0,
    label: str = "Score-CAM",
    nhwc: bool = False,
) -> tuple[Tensor, int]:
    """Score-CAM's channel scores: target on ``scale · x ⊙ (mask_k + noise)`` for every channel k.

    Score-CAM: one pass (scale 1, no noise). SS-CAM: ``samples`` passes with Gaussian noise of
    ``noise_std`` added to the masks. IS-CAM: one pass per scale. The scores are averaged over
    the passes. ``nhwc``: the batches in channels-last order (for a model copy with NHWC weights).

    Returns:
        (N, K, C) scores and the number of forward passes run.
    """
    size = tuple(x.shape[-2:])
    plan = [1.0] * samples if noise_std > 0 else [float(v) for v in scales]
    gen = torch.Generator().manual_seed(seed)
    total: Tensor | None = None
    forwards = 0
    for scale in plan:

        def run(i: int, c0: int, b: int, scale: float = scale) -> Tensor:
            masks = minmax_masks(A[i, c0 : c0 + b], size)
            if noise_std > 0:
                masks = masks + mask_noise(gen, masks.shape, noise_std).to(masks.device, masks.dtype)
            batch = scale * (x[i : i + 1] * masks.to(x.dtype))
            if nhwc:
                batch = batch.contiguous(memory_format=torch.channels_last)
            with model_lock(module):  # per batch: other callers of the model run between batches
                return module(batch)

        scores, n = _channel_scores(A, ids, target, batch_size, run, label, progress, len(plan), forwards)
        forwards += n
        total = scores if total is None else total + scores
    return total / len(plan), forwards  # type: ignore[operator]


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
    nhwc: bool = False,
) -> tuple[Tensor, int]:
    """Ablation-CAM's channel scores: target with channel k of the layer zeroed, for every k.

    ``nhwc``: the image in channels-last order (for a model copy with NHWC weights).

    Returns:
        (N, K, C) scores and the number of forward passes run.
    """

    def run(i: int, c0: int, b: int) -> Tensor:
        drop_grid = torch.zeros(b, *A.shape[1:], device=A.device)
        drop_grid[torch.arange(b), torch.arange(c0, c0 + b)] = 1.0
        x1 = x[i : i + 1].contiguous(memory_format=torch.channels_last) if nhwc else x[i : i + 1]
        return _forward_edited(module, layer, x1, to_grid, drop_grid)

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
