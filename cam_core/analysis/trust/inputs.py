"""What every trust check does to its inputs: one map brought to the image's size, a class index checked."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ...errors import CamError

__all__ = ["Progress", "check_class", "input_map"]

Progress = Callable[[float, str], None]


def input_map(saliency: Tensor | np.ndarray, size: tuple[int, int]) -> Tensor:
    """One map (h, w) as a float CPU tensor at the image's ``size`` (bilinear when it is at a layer's)."""
    sal = torch.as_tensor(np.asarray(saliency) if not isinstance(saliency, Tensor) else saliency).float().cpu()
    if sal.ndim != 2:
        raise CamError(f"expected one map of shape (h, w), got {tuple(sal.shape)}")
    if sal.shape != size:
        sal = F.interpolate(sal[None, None], size=size, mode="bilinear", align_corners=False)[0, 0]
    return sal


def check_class(class_id: int, count: int) -> None:
    """A class index the model has, checked once its output is known."""
    if not 0 <= class_id < count:
        raise CamError(f"class index {class_id} is out of range: the model has classes 0..{count - 1}")
