"""The engine: hooks scoped to one call, CAM methods as pure functions, targets, and :func:`explain`.

:mod:`.capture` takes activations at a layer; :mod:`.methods` turns activations and
gradients into signed maps; :mod:`.targets` says which score is explained; :mod:`.perturb`
runs the batched forwards of Score-CAM and Ablation-CAM; :mod:`.explainer` wires them into
one forward and one batched backward. (The module is ``explainer``, not ``explain``, so that
``cam_core.engine.explain`` is the function and never shadows a module of the same name.)
"""

from .capture import LayerNotFound, capture_layers, get_layer, model_lock, replace_output
from .explainer import (
    ExplainResult,
    OutOfMemory,
    explain,
    match_classes,
    memory_errors,
    place_model,
    region_mask,
    resolve_classes,
    resolve_device,
    unwrap_model,
    upsample,
)
from .methods import METHODS, Method, check_methods
from .targets import Contrast, Target, resolve_target

__all__ = [
    "METHODS",
    "Contrast",
    "ExplainResult",
    "LayerNotFound",
    "Method",
    "OutOfMemory",
    "Target",
    "capture_layers",
    "check_methods",
    "explain",
    "get_layer",
    "match_classes",
    "memory_errors",
    "model_lock",
    "place_model",
    "region_mask",
    "replace_output",
    "resolve_classes",
    "resolve_device",
    "resolve_target",
    "unwrap_model",
    "upsample",
]
