"""The checks explain() makes on what it is given (images, region, batch size) and on what the model returns.

Each fails with one :class:`~cam_core.errors.CamError` line naming the problem, before any costly work.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from ..errors import CamError
from ..limits import MAX_FORWARD_BATCH

__all__ = ["all_finite", "check_batch_size", "check_finite", "check_images", "check_region"]


def check_region(region: Sequence[int] | None, size: tuple[int, int]) -> tuple[int, int, int, int] | None:
    """``region`` as (top, left, height, width) inside an input of ``size``; ``None`` when it covers it all."""
    if region is None:
        return None
    try:
        top, left, h, w = (int(v) for v in region)
    except (TypeError, ValueError) as exc:
        raise CamError(f"region must be four integers (top, left, height, width), got {region!r}") from exc
    if top < 0 or left < 0 or h < 1 or w < 1 or top + h > size[0] or left + w > size[1]:
        raise CamError(f"region {region!r} does not lie inside the {size[0]}×{size[1]} input")
    return None if (top, left, h, w) == (0, 0, *size) else (top, left, h, w)


def check_images(x: object) -> None:
    """Preprocessed float images (N, 3, H, W) or clips (N, 3, T, H, W), all finite: anything else fails here, in
    one line, not deep in a model."""
    if not isinstance(x, Tensor):
        raise CamError(f"expected images as an (N, 3, H, W) tensor, got a {type(x).__name__}")
    if x.ndim not in (4, 5):
        raise CamError(f"expected images (N, 3, H, W) or clips (N, 3, T, H, W), got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise CamError(f"expected preprocessed float images, got {x.dtype}: use LoadedModel.preprocess")
    if not all_finite(x):
        raise CamError("the images contain NaN or infinite values")


def all_finite(t: Tensor) -> bool:
    """No NaN or infinity in ``t``: its sum is finite (one pass, no mask), else the element-wise check (a sum of
    finite values may still overflow)."""
    return bool(torch.isfinite(t.sum())) or bool(torch.isfinite(t).all())


def check_batch_size(batch_size: object) -> int:
    """A forward batch size: a whole number from 1 to :data:`~cam_core.limits.MAX_FORWARD_BATCH`."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int | np.integer):
        raise CamError(f"batch size must be a whole number, got {batch_size!r}")
    if not 1 <= int(batch_size) <= MAX_FORWARD_BATCH:
        raise CamError(f"batch size must be between 1 and {MAX_FORWARD_BATCH}, got {batch_size}")
    return int(batch_size)


def check_finite(out: Tensor) -> None:
    """The model's outputs must be numbers: NaN/inf logits make every map and probability meaningless."""
    if not all_finite(out):
        bad = "NaN" if bool(out.isnan().any()) else "infinite"
        raise CamError(
            f"the model's outputs are {bad} for this input, so no map or probability would mean anything: its "
            "weights (or the input) hold NaN or infinite values, or a layer overflows"
        )
