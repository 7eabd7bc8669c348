"""The engine: hooks scoped to one call, CAM methods as pure functions, targets, and :func:`explain`.

:mod:`.capture` takes activations at a layer; :mod:`.methods` turns activations and
gradients into signed maps; :mod:`.targets` says which score is explained; :mod:`.perturb`
runs the batched forwards of Score-CAM (and SS-CAM, IS-CAM) and Ablation-CAM; :mod:`.smooth` the noisy
copies of SmoothGrad-CAM++; :mod:`.attention` reads a ViT's attention for LeGrad; :mod:`.explainer` wires
them into one forward and one batched backward (:mod:`.result` is what it returns, :mod:`.classes` which classes
it explains, :mod:`.checks` what it refuses); :mod:`.clip` runs it over every frame of a video. (The
module is ``explainer``, not ``explain``, so that ``cam_core.engine.explain`` is the function and never
shadows a module of the same name.)
"""

from ..devices import OutOfMemory, memory_errors, place_model, resolve_device
from ..modules import LayerNotFound, get_layer, model_lock, unwrap_model
from .capture import capture_layers, replace_output
from .classes import match_classes, resolve_classes
from .clip import Cancelled, ClipResult, explain_clip, parse_clip_classes, video_fit
from .explainer import explain
from .methods import METHODS, Method, check_methods
from .result import ExplainResult, region_mask, upsample
from .targets import Contrast, Target, resolve_target

__all__ = [
    "METHODS",
    "Cancelled",
    "ClipResult",
    "Contrast",
    "ExplainResult",
    "LayerNotFound",
    "Method",
    "OutOfMemory",
    "Target",
    "capture_layers",
    "check_methods",
    "explain",
    "explain_clip",
    "get_layer",
    "match_classes",
    "memory_errors",
    "model_lock",
    "parse_clip_classes",
    "place_model",
    "region_mask",
    "replace_output",
    "resolve_classes",
    "resolve_device",
    "resolve_target",
    "unwrap_model",
    "upsample",
    "video_fit",
]
