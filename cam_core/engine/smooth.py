"""Gradient moments over noisy copies of the input, for SmoothGrad-CAM++.

Each image gets ``samples`` copies x + ε_s, ε_s ~ N(0, std²) in normalised input units, drawn
on the CPU from a seeded generator (the same noise on every device, every call). The copies
run in batches of ``batch_size``, hooked at the layer: one forward and one batched backward
(all K classes at once) per batch, as for the clean image. The means of g, g² and g³ over the
copies feed :func:`cam_core.engine.methods.smoothgradcampp`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from .capture import batched_grads, capture_layers
from .targets import Target

__all__ = ["input_noise", "noisy_gradient_moments"]


def input_noise(gen: torch.Generator, shape: tuple[int, ...], std: float) -> Tensor:
    """The input noise N(0, std²) for a batch of copies (CPU, seeded)."""
    return torch.randn(shape, generator=gen) * std


def noisy_gradient_moments(
    module: nn.Module,
    layer: str,
    x: Tensor,
    to_grid: Callable[[Tensor], Tensor],
    ids: Tensor,
    target: Target,
    *,
    samples: int,
    std: float,
    batch_size: int,
    class_chunk: int,
    seed: int = 0,
) -> tuple[tuple[Tensor, Tensor, Tensor], int, int]:
    """Means over noisy copies of the gradient's first three powers at ``layer``: each (N, K, C, h, w).

    The caller holds the model's lock, with the model and ``x`` on one device.

    Returns:
        ``((D1, D2, D3), forwards, backward batches)``.
    """
    gen = torch.Generator().manual_seed(seed)
    n, k = ids.shape
    moments: list[list[Tensor]] = [[], [], []]
    forwards = backwards = 0
    for i in range(n):
        sums: list[Tensor | None] = [None, None, None]
        for s0 in range(0, samples, batch_size):
            b = min(batch_size, samples - s0)
            noisy = x[i : i + 1] + input_noise(gen, (b, *x.shape[1:]), std).to(x.device, x.dtype)
            with capture_layers(module, [layer]) as cap, torch.no_grad():
                out = module(noisy)
            cap.check()
            forwards += 1
            with torch.enable_grad():
                scores = target(out, ids[i].expand(b, -1))
            grads = batched_grads(scores, cap[layer], to_grid)
            for k0 in range(0, k, class_chunk):
                G = grads(k0, min(k, k0 + class_chunk))  # (b, k, C, h, w)
                backwards += 1
                for p in range(3):
                    part = G.pow(p + 1).sum(dim=0)
                    if sums[p] is None:
                        sums[p] = torch.zeros((k, *part.shape[1:]), device=part.device, dtype=part.dtype)
                    sums[p][k0 : k0 + part.shape[0]] += part  # type: ignore[index]
            del out, scores, cap
        for p in range(3):
            moments[p].append(sums[p] / samples)  # type: ignore[operator]
    D1, D2, D3 = (torch.stack(m) for m in moments)
    return (D1, D2, D3), forwards, backwards
