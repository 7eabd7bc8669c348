"""Synthetic clips made in the tests, and tiny models whose maps over them can be worked out on paper.

``RedNet``: ``features`` is a 1×1 conv with weights (1, -0.5, -0.5) and a ReLU, so its map is
``relu(r - (g + b) / 2)``: bright where the frame is red. Its head is global average pooling and a
linear layer with weights (+1, -1): class 0 ("red thing") has a positive Grad-CAM exactly on red
pixels, proportional to their redness; class 1 the same map, negated.

``ColourNet``: ``features`` passes the colour channels through (an identity 1×1 conv), the head is
GAP + linear with chosen rows, so a frame's logits are ``W @ mean colour``: the classes of a
clip of flat colours are set by hand (for the clip-level top-k and its recompute path).

``TimeNet``: a video model (``N×3×T×H×W``) whose 1×1×1 conv (stride 2 in time) gives
``A_k = c_k · x_red`` on every other frame, and whose head is linear over every position, so
the gradient of logit c is exactly ``V[c]`` and every map is known in closed form.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from cam_core.io.video import VideoWriter
from cam_core.models import FITS, LoadedModel, Preprocess

ZERO_MEAN = (0.0, 0.0, 0.0)
UNIT_STD = (1.0, 1.0, 1.0)


def write_clip(path: Path, frames: Sequence[np.ndarray], fps: float = 10.0) -> Path:
    """Encode RGB uint8 frames as H.264 MP4 (the project's writer)."""
    with VideoWriter(path, fps, (frames[0].shape[1], frames[0].shape[0])) as writer:
        for frame in frames:
            writer.write(frame)
    return path


def moving_square(n: int = 8, size: tuple[int, int] = (64, 48), side: int = 12, strength: Sequence[float] = ()):
    """Frames of a red square moving left to right over a grey background; its boxes (x0, y0, x1, y1).

    ``strength`` (per frame, 0..1) dims the red; default full red everywhere.
    """
    width, height = size
    frames, boxes = [], []
    for i in range(n):
        frame = np.full((height, width, 3), 90, np.uint8)
        x0 = round((width - side) * i / max(1, n - 1))
        y0 = (height - side) // 2
        s = strength[i] if strength else 1.0
        frame[y0 : y0 + side, x0 : x0 + side] = (round(90 + 165 * s), round(90 * (1 - s)), round(90 * (1 - s)))
        frames.append(frame)
        boxes.append((x0, y0, x0 + side, y0 + side))
    return frames, boxes


def flat_colours(colours: Sequence[tuple[int, int, int]], size: tuple[int, int] = (32, 32)) -> list[np.ndarray]:
    """One frame of a single colour per entry."""
    return [np.full((size[1], size[0], 3), c, np.uint8) for c in colours]


class RedNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 1, 1, bias=False)
        self.features = nn.Sequential(self.conv, nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(1, 2, bias=False)
        with torch.no_grad():
            self.conv.weight.copy_(torch.tensor([1.0, -0.5, -0.5]).view(1, 3, 1, 1))
            self.fc.weight.copy_(torch.tensor([[1.0], [-1.0]]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.features(x)).flatten(1))


class ColourNet(nn.Module):
    def __init__(self, rows: torch.Tensor) -> None:
        super().__init__()
        self.features = nn.Conv2d(3, 3, 1, bias=False)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(3, rows.shape[0], bias=False)
        with torch.no_grad():
            self.features.weight.copy_(torch.eye(3).view(3, 3, 1, 1))
            self.fc.weight.copy_(rows)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.features(x)).flatten(1))


class TimeHead(nn.Module):
    def __init__(self, V: torch.Tensor) -> None:
        super().__init__()
        self.weight = nn.Parameter(V.clone())

    def forward(self, a: torch.Tensor) -> torch.Tensor:
        return torch.einsum("nktij,cktij->nc", a, self.weight)


class TimeNet(nn.Module):
    """x (N, 3, T, H, W) → A = conv(x) (N, 2, T/2, H, W) → logits Σ V[c] ⊙ A."""

    def __init__(self, V: torch.Tensor, c: Sequence[float] = (1.0, -0.5)) -> None:
        super().__init__()
        self.conv = nn.Conv3d(3, 2, 1, stride=(2, 1, 1), bias=False)
        with torch.no_grad():
            weight = torch.zeros(2, 3, 1, 1, 1)
            weight[:, 0] = torch.tensor(c).view(2, 1, 1, 1)
            self.conv.weight.copy_(weight)
        self.head = TimeHead(V)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.conv(x))


def loaded(
    module: nn.Module, names: Sequence[str], size: int = 32, clip_len: int | None = None, fit: str = "whole"
) -> LoadedModel:
    """A LoadedModel around ``module``: pixels in [0, 1] unnormalised, shorter side ``size`` (any size)."""
    pre = Preprocess((size, size), size, ZERO_MEAN, UNIT_STD).with_fit(fit)
    fits = FITS if fit == "whole" else tuple(f for f in FITS if f != "whole")
    return LoadedModel(
        module=module.eval(), class_names=list(names), preprocess=pre, input_size=(size, size), mean=ZERO_MEAN,
        std=UNIT_STD, name=type(module).__name__, pretrained=True, fits=fits, clip_len=clip_len,
    )
