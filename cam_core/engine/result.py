"""What :func:`~cam_core.engine.explain` returns, and the upsampling that turns layer maps into image maps.

Apart from the engine so that code that only reads maps (a batch run's table, the dashboard's thumbnails)
needs neither the capture nor the methods.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import CamError, choices_hint

__all__ = ["ExplainResult", "region_mask", "upsample"]


@dataclass
class ExplainResult:
    """Maps and scores for N images and K classes per image (all on the CPU).

    Attributes:
        logits, probs: (N, C) model outputs.
        class_ids: (N, K) explained classes; ``class_names`` the same as names.
        maps: method → (N, K, h, w) signed float32 maps at the layer's resolution.
        weights: method → (N, K, C) channel weights, for the methods that have them.
        stats: small per-image/per-class facts about the layer for diagnosis
            (``act_min``, ``act_max``, ``act_neg_frac`` (N,); ``grad_pos_frac`` (N, K)).
        activations: (N, C, h, w) when asked for with ``keep_activations``.
        cost: how many forward passes and backward batches the call ran.
        region: (top, left, height, width) of the image in the input when part of it is pad (a
            letterbox), else ``None``; maps are zero outside it, at both resolutions.
        valid: (1, 1, h, w) bool: the layer cells whose centre lies in ``region`` (``None`` without one).
        frames: For clips (a video model's ``N×3×T×H×W`` input), ``T``; maps are then
            (N, K, T', h, w) and ``valid`` (1, 1, T'·h, w). ``None`` for images.
        aug_smooth, eigen_smooth: The options the maps were made with.
        probs_kind: ``softmax`` or ``sigmoid``: how ``probs`` were computed.
    """

    logits: Tensor
    probs: Tensor
    class_ids: Tensor
    class_names: list[list[str]]
    layer: str
    methods: tuple[str, ...]
    maps: dict[str, Tensor]
    input_size: tuple[int, int]
    target: str = "logit"
    weights: dict[str, Tensor] = field(default_factory=dict)
    stats: dict[str, Tensor] = field(default_factory=dict)
    activations: Tensor | None = None
    cost: dict[str, int] = field(default_factory=dict)
    region: tuple[int, int, int, int] | None = None
    valid: Tensor | None = None
    frames: int | None = None
    aug_smooth: bool = False
    eigen_smooth: bool = False
    probs_kind: str = "softmax"

    def upsampled(self, method: str, size: tuple[int, int] | None = None) -> Tensor:
        """Bilinear upsampling of ``maps[method]`` to the input size (or ``size``): (N, K, H, W); zero in the pad.

        Clips: trilinear, to every input frame as well: (N, K, T, H, W).
        """
        if method not in self.maps:
            raise CamError(f"method {method!r} was not computed; have: {choices_hint(self.maps)}")
        return upsample(self.maps[method], self.input_size, size, self.region, self.frames)


def upsample(
    maps: Tensor,
    input_size: tuple[int, int],
    size: tuple[int, int] | None = None,
    region: tuple[int, int, int, int] | None = None,
    frames: int | None = None,
) -> Tensor:
    """Maps (N, K, h, w) over an input of ``input_size``, bilinearly to ``size`` (default the input's); zero
    outside ``region`` (the image's box in a letterboxed input). Clip maps (N, K, t, h, w) trilinearly to
    ``frames`` frames as well. What :meth:`ExplainResult.upsampled` does, for maps read back from storage
    (a batch run's table)."""
    size = size or input_size
    if maps.ndim == 5:
        up = F.interpolate(maps, size=(frames or maps.shape[2], *size), mode="trilinear", align_corners=False)
        return up if region is None else up * region_mask(region, input_size, size)[:, :, None]
    up = F.interpolate(maps, size=size, mode="bilinear", align_corners=False)
    return up * region_mask(region, input_size, size) if region is not None else up


def region_mask(region: tuple[int, int, int, int], input_size: tuple[int, int], size: tuple[int, int]) -> Tensor:
    """(1, 1, *size) bool: the cells of a ``size`` grid over the input whose centre lies inside ``region``.

    ``region`` is (top, left, height, width) in input pixels; ``size`` may be the input's own
    (H, W) or a layer's coarser grid.
    """
    (top, left, h, w), (H, W) = region, input_size
    rows = (torch.arange(size[0], dtype=torch.float64) + 0.5) * H / size[0]
    cols = (torch.arange(size[1], dtype=torch.float64) + 0.5) * W / size[1]
    inside_r = (rows >= top) & (rows < top + h)
    inside_c = (cols >= left) & (cols < left + w)
    return (inside_r[:, None] & inside_c[None, :])[None, None]
