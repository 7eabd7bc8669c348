"""Confusions explained: for an image of true class A predicted as B, the map of "why B and not A".

The contrast is the map of the score logit_B − logit_A (:class:`~cam_core.engine.targets.Contrast`,
what the image page's debug section computes). Which way each method goes (:func:`contrast_route`):

- **From the two classes' maps** (``difference``): CAM, Grad-CAM, XGrad-CAM and HiResCAM are linear in
  the gradient of the explained score (CAM: in the head's weights of the class), and the gradient of
  logit_B − logit_A is the gradient of B's logit minus A's; so the contrast is exactly map_B − map_A.
  When a batch run stored both raw signed maps (``--classes pred,label`` explains both on a mistake)
  it costs nothing; otherwise both maps come from one call of the model. The tests hold the
  difference against the engine's own contrast target.
- **With the model** (``model``): every other class-specific method (Grad-CAM++, LayerCAM, Grad-CAM
  element-wise, EigenGrad-CAM, ShapleyCAM, LeGrad, SmoothGrad-CAM++, Score-CAM and the other
  perturbation methods) is not linear in the score's gradient (ReLUs, powers, a decomposition) or
  measures the score itself, so map_B − map_A is not the contrast: it is computed with the contrast
  target, on the images on screen only.
- **Grad-CAM instead**: the class-agnostic methods (Eigen-CAM, KPCA-CAM), Random-CAM and Finer-CAM
  (whose own score already sets a class against its look-alikes, and replaces any target) have no
  contrast of their own; Grad-CAM's stands in, and the page says so.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ..engine.explainer import explain
from ..engine.methods import METHODS
from ..engine.targets import Contrast

__all__ = ["DIFFERENCE_METHODS", "ConfusionMaps", "ContrastRoute", "confusion_maps", "contrast_route",
           "stored_contrast"]

DIFFERENCE_METHODS = ("cam", "gradcam", "xgradcam", "hirescam")  # the contrast is exactly map_B − map_A
_STAND_IN = "gradcam"


@dataclass(frozen=True)
class ContrastRoute:
    """How the contrast of ``asked`` is had: with ``method``, as a ``difference`` of two maps or with the ``model``'s
    contrast target; ``note`` says why in words."""

    asked: str
    method: str
    how: str
    note: str


def contrast_route(method: str) -> ContrastRoute:
    """Which way ``method``'s contrast goes (see the module docstring)."""
    spec = METHODS[method]
    if method in DIFFERENCE_METHODS:
        return ContrastRoute(method, method, "difference",
                             f"{spec.title} is linear in the score's gradient: the contrast is exactly "
                             "map(B) − map(A)")
    if spec.class_agnostic or spec.kind == "random" or spec.target is not None:
        why = ("sets each class against its look-alikes already" if spec.target is not None
               else "has no class of its own to set against another")
        return ContrastRoute(method, _STAND_IN, "difference", f"{spec.title} {why}: Grad-CAM's contrast is shown")
    return ContrastRoute(method, method, "model",
                         f"{spec.title} is not linear in the score's gradient: the contrast is computed with the "
                         "model (target logit(B) − logit(A))")


def stored_contrast(maps: np.ndarray, class_ids: Sequence[int], a: int, b: int) -> np.ndarray | None:
    """map_B − map_A from a row's stored raw signed maps (K, h, w), or ``None`` when either class was not explained."""
    ids = [int(c) for c in class_ids]
    if a not in ids or b not in ids:
        return None
    return maps[ids.index(b)] - maps[ids.index(a)]


@dataclass
class ConfusionMaps:
    """One image's maps at the layer's resolution, raw and signed: A's, B's, and the contrast B − A."""

    map_a: np.ndarray
    map_b: np.ndarray
    contrast: np.ndarray
    route: ContrastRoute


def confusion_maps(model: object, x: torch.Tensor, a: int, b: int, method: str, layer: str,
                   region: Sequence[int] | None = None) -> ConfusionMaps:
    """A's map, B's map and the contrast "why B and not A" for one preprocessed image ``x`` (1, 3, H, W).

    One explain call gives both classes' maps; a method whose contrast is not their difference takes a
    second call with the contrast target (:func:`contrast_route`).
    """
    route = contrast_route(method)
    names = list(dict.fromkeys([method, route.method]))
    both = explain(model, x, layer=layer, classes=[b, a], methods=names, region=region)
    own = both.maps[method][0].numpy()
    if route.how == "difference":
        diff = both.maps[route.method][0].numpy()
        contrast = diff[0] - diff[1]
    else:
        res = explain(model, x, layer=layer, classes=[b], methods=[method], target=Contrast(a), region=region)
        contrast = res.maps[method][0, 0].numpy()
    return ConfusionMaps(own[1], own[0], contrast, route)
