"""Model sources, class names, preprocessing, and the layer tree.

:mod:`.load` turns a spec (offline default, torchvision name, checkpoint, factory) into a
:class:`LoadedModel`; :mod:`.layers` describes its modules (shape, CAM-able, recommended);
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
    "Fit",
    "LayerInfo",
    "LoadedModel",
    "Placement",
    "Preprocess",
    "UnknownModel",
    "UntrustedCheckpoint",
    "WeightsUnavailable",
    "check_fit",
    "format_tree",
    "grid_transform",
    "list_layers",
    "list_torchvision_models",
    "list_video_models",
    "load_model",
    "recommended_layer",
]
