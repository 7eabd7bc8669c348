"""The numbers that decide a diagnosis's findings, and the measures of a map they are compared with.

At the bottom of :mod:`cam_core.analysis` so that :mod:`.diagnose`, :mod:`.findings`, the batch runner and the
dashboard quote the same values.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "BOUNDED_MIN_SPAN",
    "BOUND_TOL",
    "CENTRED_RATIO",
    "EMPTY_POS_SHARE",
    "MOSTLY_NEGATIVE_SHARE",
    "NEAR_BOUND_MARGIN",
    "NEGATIVE_MAJORITY_SHARE",
    "NEGATIVE_WEIGHTS_SHARE",
    "NOT_PREDICTED_PROB",
    "NOT_PREDICTED_RANK",
    "SCALE_INVARIANT_CHANGE",
    "SIGNED_DEPTH",
    "SIGNED_NEG_FRAC",
    "blank_after_relu",
    "positive_area",
    "positive_share",
]

# --- thresholds (named so that the dashboard and the docs can quote them) ---------------------------------
# A map whose positive values carry at most this share of its absolute mass shows (nearly) nothing after ReLU.
EMPTY_POS_SHARE = 0.01
# Below this positive share the ReLU'd view stretches a small remainder to full brightness.
MOSTLY_NEGATIVE_SHARE = 0.25
# Below this positive share more of the map argues against the class than for it: the ReLU'd view hides most of it.
NEGATIVE_MAJORITY_SHARE = 0.5
# A map is centred on zero when |spatial mean| ≤ CENTRED_RATIO · spatial std (relative evidence).
CENTRED_RATIO = 0.1
# Activations are signed when at least this share of them is negative ...
SIGNED_NEG_FRAC = 0.05
# ... and the most negative reaches this fraction of the largest positive (SiLU/GELU dips do not count);
# the same rule as the layer tree's ``pre_activation`` hint.
SIGNED_DEPTH = 0.25
# Fewer positive Grad-CAM channel weights than this share is named as a cause of a negative map.
NEGATIVE_WEIGHTS_SHARE = 0.4
# Logits within 1 + BOUND_TOL of zero are consistent with a cosine head's [-1, 1] ...
BOUND_TOL = 1e-3
# ... if the largest |logit| reaches this much of the range.
BOUNDED_MIN_SPAN = 0.5
# A score within this margin of a bound of its range is saturated.
NEAR_BOUND_MARGIN = 0.05
# Doubling the layer's output changes the logits by at most this (relative) for a scale-invariant head.
SCALE_INVARIANT_CHANGE = 0.01
# A class ranked below NOT_PREDICTED_RANK with a probability under NOT_PREDICTED_PROB is not what the model
# predicts: its map explains a class the model does not see here (p = 0.045 % at rank 105 "looked sound").
NOT_PREDICTED_RANK = 5
NOT_PREDICTED_PROB = 0.01


def positive_share(cam: Tensor | np.ndarray) -> float:
    """The share of a map's absolute mass that is positive: what its ReLU'd view can show (0 for a zero map)."""
    m = torch.as_tensor(cam, dtype=torch.float64)
    total = float(m.abs().sum())
    return float(m.clamp_min(0).sum()) / total if total > 0 else 0.0


def positive_area(cam: Tensor | np.ndarray) -> float:
    """The share of a map's cells that are positive: where its ReLU'd view can show anything."""
    m = torch.as_tensor(cam)
    return float((m > 0).double().mean()) if m.numel() else 0.0


def blank_after_relu(cam: Tensor | np.ndarray) -> bool:
    """Whether the usual ReLU'd view of ``cam`` shows (nearly) nothing: see :data:`EMPTY_POS_SHARE`."""
    return positive_share(cam) <= EMPTY_POS_SHARE
