"""CAM methods as small pure functions over captured tensors.

Shapes: activations ``A`` are (N, C, h, w); gradients ``G`` of the K explained
scores with respect to ``A`` are (N, K, C, h, w). Every method returns signed
maps (N, K, h, w): no ReLU, no normalisation (those are the viewer's choice,
see :func:`relu` and :func:`normalize`). A map that is negative everywhere is
information, not something to hide.

Methods come in four kinds, by what they need besides ``A``:

- ``gradient``: ``G`` (Grad-CAM, HiResCAM, LayerCAM, XGrad-CAM, Grad-CAM++);
- ``fc``: the weights of a GAP + linear head (CAM);
- ``activation``: nothing else (Eigen-CAM, class-agnostic);
- ``perturbation``: class scores of extra forward passes (Score-CAM, Ablation-CAM),
  which the engine runs in batches and hands over as (N, K, C) channel scores.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from ..errors import CamError, choices_hint

__all__ = [
    "METHODS",
    "Method",
    "ablationcam_weights",
    "cam",
    "check_methods",
    "eigencam",
    "gradcam",
    "gradcampp",
    "hirescam",
    "layercam",
    "normalize",
    "relu",
    "scorecam_weights",
    "weighted_sum",
    "xgradcam",
]

_EPS = 1e-7


def weighted_sum(weights: Tensor, A: Tensor) -> Tensor:
    """Σ_k w_k A_k for per-class channel weights (N, K, C) → maps (N, K, h, w)."""
    return torch.einsum("nkc,nchw->nkhw", weights, A)


def gradcam(A: Tensor, G: Tensor) -> Tensor:
    """Grad-CAM (Selvaraju et al. 2017): w_k = mean_ij g_kij; map = Σ_k w_k A_k."""
    return weighted_sum(G.mean(dim=(-2, -1)), A)


def hirescam(A: Tensor, G: Tensor) -> Tensor:
    """HiResCAM (Draelos & Carin 2020): map = Σ_k g_k ⊙ A_k (no spatial averaging)."""
    return torch.einsum("nkchw,nchw->nkhw", G, A)


def layercam(A: Tensor, G: Tensor) -> Tensor:
    """LayerCAM (Jiang et al. 2021): map = Σ_k relu(g_k) ⊙ A_k."""
    return torch.einsum("nkchw,nchw->nkhw", G.clamp_min(0), A)


def xgradcam(A: Tensor, G: Tensor) -> Tensor:
    """XGrad-CAM (Fu et al. 2020): w_k = Σ_ij g_kij A_kij / Σ_ij A_kij."""
    num = torch.einsum("nkchw,nchw->nkc", G, A)
    den = A.sum(dim=(-2, -1)).unsqueeze(1) + _EPS
    return weighted_sum(num / den, A)


def gradcampp(A: Tensor, G: Tensor) -> Tensor:
    """Grad-CAM++ (Chattopadhyay et al. 2018) with the exponential-score simplification.

    α_kij = g² / (2 g² + Σ_ab A_kab · g³); w_k = Σ_ij α_kij relu(g_kij); map = Σ_k w_k A_k.
    """
    g2 = G.pow(2)
    g3 = g2 * G
    sum_a = A.sum(dim=(-2, -1))[:, None, :, None, None]
    alpha = g2 / (2 * g2 + sum_a * g3 + 1e-6)
    alpha = torch.where(G != 0, alpha, torch.zeros_like(alpha))
    weights = (alpha * G.clamp_min(0)).sum(dim=(-2, -1))
    return weighted_sum(weights, A)


def cam(A: Tensor, fc_weight: Tensor) -> Tensor:
    """CAM (Zhou et al. 2016): w_k = fc weight of class c on channel k.

    Args:
        A: activations (N, C, h, w) at the layer feeding global average pooling.
        fc_weight: (N, K, C) rows of the linear head for the explained classes.
    """
    return weighted_sum(fc_weight, A)


def eigencam(A: Tensor) -> Tensor:
    """Eigen-CAM (Muhammad & Yeasin 2020): projection of A on its first principal component.

    Class-agnostic, so the result is (N, 1, h, w). The SVD's sign is arbitrary; we
    pick the one whose map correlates positively with the channel-mean activation,
    so that "bright" means "strongly activated" as in the other methods.
    """
    n, c, h, w = A.shape
    X = A.reshape(n, c, h * w).transpose(1, 2)  # (N, hw, C)
    X = X - X.mean(dim=1, keepdim=True)
    _, _, Vh = torch.linalg.svd(X, full_matrices=False)
    proj = torch.einsum("npc,nc->np", X, Vh[:, 0, :])  # (N, hw)
    mean_map = A.mean(dim=1).reshape(n, h * w)
    corr = ((proj - proj.mean(1, keepdim=True)) * (mean_map - mean_map.mean(1, keepdim=True))).sum(1)
    sign = torch.where(corr < 0, -1.0, 1.0).to(proj.dtype)
    return (proj * sign[:, None]).reshape(n, 1, h, w)


def scorecam_weights(masked_scores: Tensor) -> Tensor:
    """Score-CAM (Wang et al. 2020): w_k = score of class c on the input masked by A_k.

    ``masked_scores`` (N, K, C) are those scores (the engine's target, the logit by default).
    """
    return masked_scores


def ablationcam_weights(base: Tensor, ablated: Tensor) -> Tensor:
    """Ablation-CAM (Desai & Ramaswamy 2020): w_k = (y_c − y_c^k) / y_c.

    Args:
        base: (N, K) scores of the unmodified forward.
        ablated: (N, K, C) scores with channel k of the layer zeroed.
    """
    denom = base.unsqueeze(-1)
    denom = torch.where(denom.abs() < _EPS, torch.full_like(denom, _EPS), denom)
    return (denom - ablated) / denom


Kind = Literal["gradient", "fc", "activation", "perturbation"]


@dataclass(frozen=True)
class Method:
    """A registered method: its kind tells the engine what to capture or run for it."""

    name: str
    kind: Kind
    fn: Callable[..., Tensor]
    title: str


METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        Method("cam", "fc", cam, "CAM"),
        Method("gradcam", "gradient", gradcam, "Grad-CAM"),
        Method("gradcampp", "gradient", gradcampp, "Grad-CAM++"),
        Method("xgradcam", "gradient", xgradcam, "XGrad-CAM"),
        Method("hirescam", "gradient", hirescam, "HiResCAM"),
        Method("layercam", "gradient", layercam, "LayerCAM"),
        Method("eigencam", "activation", eigencam, "Eigen-CAM"),
        Method("scorecam", "perturbation", scorecam_weights, "Score-CAM"),
        Method("ablationcam", "perturbation", ablationcam_weights, "Ablation-CAM"),
    )
}


def check_methods(methods: str | list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """Validate method names (order kept, duplicates dropped); unknown names list the valid ones."""
    names = (methods,) if isinstance(methods, str) else tuple(methods)
    if not names:
        raise CamError(f"no method given; choose from: {choices_hint(METHODS)}")
    for name in names:
        if name not in METHODS:
            raise CamError(f"unknown method {name!r}; choose from: {choices_hint(METHODS)}")
    return tuple(dict.fromkeys(names))


def relu(maps: Tensor) -> Tensor:
    """The usual display choice: keep positive evidence only."""
    return maps.clamp_min(0)


def normalize(maps: Tensor, signed: bool = False) -> Tensor:
    """Scale each map for display over its last two dims.

    ``signed=False``: min-max to [0, 1]. ``signed=True``: divide by max |value| so
    0 stays 0 and the range is [-1, 1] (for a diverging colormap). A constant map
    becomes zeros rather than NaN.
    """
    flat = maps.flatten(-2)
    if signed:
        scale = flat.abs().amax(-1, keepdim=True)
        out = flat / torch.where(scale > 0, scale, torch.ones_like(scale))
    else:
        lo = flat.amin(-1, keepdim=True)
        span = flat.amax(-1, keepdim=True) - lo
        out = (flat - lo) / torch.where(span > 0, span, torch.ones_like(span))
    return out.reshape(maps.shape)
