"""Model sources, class names, preprocessing, and the layer tree.

:mod:`.load` turns a spec (offline default, torchvision name, checkpoint, factory, ``timm:``, ``hf:``,
``.safetensors``, ``.pt2``) into a :class:`LoadedModel`: :mod:`.registry` finds the source (one module
each in :mod:`.sources`), which builds on :mod:`.built`, :mod:`.checkpoints` and :mod:`.architectures`,
and :mod:`.finish` adds labels and preprocessing; :mod:`.outputs` holds the rule that picks the logits of
a tuple or dict output; :mod:`.layers` describes its modules (shape, CAM-able, recommended);
:mod:`.efficientnet_lite` is the offline default's architecture.
"""

from .layers import HINT_TEXT, LayerInfo, format_tree, grid_transform, list_layers, recommended_layer
from .load import (
    DEFAULT_MODEL,
    IMAGENET_MEAN,
    IMAGENET_STD,
    CheckpointError,
    LoadedModel,
    Preprocess,
    UnknownModel,
    UntrustedCheckpoint,
    WeightsUnavailable,
    list_torchvision_models,
    list_video_models,
    load_model,
)
from .outputs import Classifier, as_classifier, pick_logits
from .preprocess import FIT_TITLES, FITS, MAX_ASPECT, Fit, Placement, check_fit

__all__ = [
    "DEFAULT_MODEL",
    "FITS",
    "FIT_TITLES",
    "HINT_TEXT",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "MAX_ASPECT",
    "CheckpointError",
    "Classifier",
    "Fit",
    "LayerInfo",
    "LoadedModel",
    "Placement",
    "Preprocess",
    "UnknownModel",
    "UntrustedCheckpoint",
    "WeightsUnavailable",
    "as_classifier",
    "check_fit",
    "format_tree",
    "grid_transform",
    "list_layers",
    "list_torchvision_models",
    "list_video_models",
    "load_model",
    "pick_logits",
    "recommended_layer",
]
