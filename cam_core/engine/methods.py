"""CAM methods as small pure functions over captured tensors.

Shapes: activations ``A`` are (N, C, h, w); gradients ``G`` of the K explained
scores with respect to ``A`` are (N, K, C, h, w). Every method returns signed
maps (N, K, h, w): no ReLU, no normalisation (those are the viewer's choice,
see :func:`relu` and :func:`normalize`). A map that is negative everywhere is
information, not something to hide.

Methods come in kinds, by what the engine must capture or run for them:

- ``gradient``: ``G`` from the one shared backward (Grad-CAM, HiResCAM, LayerCAM, XGrad-CAM,
  Grad-CAM++, Grad-CAM element-wise, EigenGrad-CAM), or from one more backward of the method's
  own score (Finer-CAM, whose :attr:`Method.target` replaces the explained score);
- ``second_order``: ``G`` and the Hessian-vector product ``H·A`` (ShapleyCAM);
- ``fc``: the weights of a GAP + linear head (CAM);
- ``activation``: nothing else (Eigen-CAM, KPCA-CAM: class-agnostic);
- ``random``: nothing at all (Random-CAM, the baseline a map should beat);
- ``perturbation``: class scores of extra forward passes, which the engine runs in batches
  and hands over as (N, K, C) channel scores (Score-CAM, SS-CAM, IS-CAM, Ablation-CAM);
- ``smoothgrad``: gradient moments over noisy copies of the input (SmoothGrad-CAM++);
- ``attention``: gradients at a ViT's attention probabilities (LeGrad).

Two options apply to any method (:func:`cam_core.explain`): ``eigen_smooth`` replaces the sum
over channels by the first principal component of the per-channel contributions (see
:func:`principal_component`, whose sign rule every principal component here follows), and
``aug_smooth`` averages the map with the map of the horizontally flipped image, flipped back.

Each method's :attr:`Method.cost` says what it costs beyond the shared forward and backward;
:func:`estimate_cost` turns that into numbers for a layer's channel count.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from ..errors import CamError, choices_hint

__all__ = [
    "ISCAM_SAMPLES",
    "KPCA_MAX_CELLS",
    "METHODS",
    "RANDOM_SEED",
    "SMOOTHGRAD_SAMPLES",
    "SMOOTHGRAD_STD",
    "SSCAM_SAMPLES",
    "SSCAM_STD",
    "Cost",
    "Method",
    "ablationcam_weights",
    "cam",
    "check_methods",
    "contributions",
    "eigen_project",
    "eigencam",
    "eigengradcam",
    "estimate_cost",
    "finercam",
    "gradcam",
    "gradcam_elementwise",
    "gradcam_weights",
    "gradcampp",
    "gradcampp_weights",
    "hirescam",
    "iscam_coefficients",
    "kpcacam",
    "layercam",
    "legrad",
    "normalize",
    "principal_component",
    "randomcam_weights",
    "relu",
    "scorecam_weights",
    "shapleycam",
    "smoothgradcampp",
    "weighted_sum",
    "xgradcam",
    "xgradcam_weights",
]

_EPS = 1e-7
SMOOTHGRAD_SAMPLES = 4  # torchcam's SmoothGradCAMpp defaults: 4 noisy copies, σ = 0.3 in normalised input units
SMOOTHGRAD_STD = 0.3
SSCAM_SAMPLES = 8  # the SS-CAM paper and torchcam use 35 noisy masks per channel; 8 keeps a CPU run in reach
SSCAM_STD = 2.0  # σ of the mask noise (torchcam's default, the paper's)
ISCAM_SAMPLES = 10  # torchcam's ISCAM default
RANDOM_SEED = 0
KPCA_MAX_CELLS = 4096  # KPCA-CAM builds a cells × cells kernel matrix: 64×64 at most


def weighted_sum(weights: Tensor, A: Tensor) -> Tensor:
    """Σ_k w_k A_k for per-class channel weights (N, K, C) → maps (N, K, h, w)."""
    return torch.einsum("nkc,nchw->nkhw", weights, A)


def gradcam_weights(A: Tensor, G: Tensor) -> Tensor:
    """Grad-CAM's channel weights: the pooled gradients mean_ij g_kij (N, K, C)."""
    return G.mean(dim=(-2, -1))


def gradcam(A: Tensor, G: Tensor) -> Tensor:
    """Grad-CAM (Selvaraju et al. 2017): w_k = mean_ij g_kij; map = Σ_k w_k A_k."""
    return weighted_sum(gradcam_weights(A, G), A)


def hirescam(A: Tensor, G: Tensor) -> Tensor:
    """HiResCAM (Draelos & Carin 2020): map = Σ_k g_k ⊙ A_k (no spatial averaging)."""
    return torch.einsum("nkchw,nchw->nkhw", G, A)


def layercam(A: Tensor, G: Tensor) -> Tensor:
    """LayerCAM (Jiang et al. 2021): map = Σ_k relu(g_k) ⊙ A_k."""
    return torch.einsum("nkchw,nchw->nkhw", G.clamp_min(0), A)


def gradcam_elementwise(A: Tensor, G: Tensor) -> Tensor:
    """Grad-CAM element-wise (pytorch-grad-cam's ``GradCAMElementWise``): map = Σ_k relu(g_k ⊙ A_k).

    HiResCAM with the ReLU inside the sum: each position keeps only the channels whose
    activation pushes the score up there, so the map is never negative.
    """
    return (G * A.unsqueeze(1)).clamp_min(0).sum(dim=2)


def xgradcam_weights(A: Tensor, G: Tensor) -> Tensor:
    """XGrad-CAM's channel weights Σ_ij g_kij A_kij / Σ_ij A_kij (N, K, C)."""
    num = torch.einsum("nkchw,nchw->nkc", G, A)
    return num / (A.sum(dim=(-2, -1)).unsqueeze(1) + _EPS)


def xgradcam(A: Tensor, G: Tensor) -> Tensor:
    """XGrad-CAM (Fu et al. 2020): w_k = Σ_ij g_kij A_kij / Σ_ij A_kij; map = Σ_k w_k A_k."""
    return weighted_sum(xgradcam_weights(A, G), A)


def gradcampp_weights(A: Tensor, G1: Tensor, G2: Tensor, G3: Tensor) -> Tensor:
    """Grad-CAM++'s channel weights from first, second and third gradient powers (N, K, C, h, w) each.

    α_kij = G2 / (2 G2 + Σ_ab A_kab · G3) where G2 ≠ 0 (else 0); w_k = Σ_ij α_kij relu(G1_kij).
    Grad-CAM++ passes G1 = g, G2 = g², G3 = g³; SmoothGrad-CAM++ their means over noisy inputs.
    """
    sum_a = A.sum(dim=(-2, -1))[:, None, :, None, None]
    alpha = G2 / (2 * G2 + sum_a * G3 + 1e-6)
    alpha = torch.where(G2 != 0, alpha, torch.zeros_like(alpha))
    return (alpha * G1.clamp_min(0)).sum(dim=(-2, -1))


def gradcampp(A: Tensor, G: Tensor) -> Tensor:
    """Grad-CAM++ (Chattopadhyay et al. 2018) with the exponential-score simplification.

    α_kij = g² / (2 g² + Σ_ab A_kab · g³); w_k = Σ_ij α_kij relu(g_kij); map = Σ_k w_k A_k
    (the weights: :func:`gradcampp_weights` with G1, G2, G3 = g, g², g³).
    """
    return weighted_sum(_gradcampp_weights(A, G), A)


def _gradcampp_weights(A: Tensor, G: Tensor) -> Tensor:
    g2 = G.pow(2)
    return gradcampp_weights(A, G, g2, g2 * G)


def smoothgradcampp(A: Tensor, D1: Tensor, D2: Tensor, D3: Tensor) -> Tensor:
    """SmoothGrad-CAM++ (Omeiza et al. 2019): Grad-CAM++ with gradient moments averaged over noisy inputs.

    D_p = mean_s (∂y_c/∂A at x + ε_s)^p for ε_s ~ N(0, σ²), s = 1..S (σ = :data:`SMOOTHGRAD_STD`,
    S = :data:`SMOOTHGRAD_SAMPLES`); α_kij = D2 / (2 D2 + Σ_ab A_kab · D3); w_k = Σ_ij α_kij relu(D1);
    map = Σ_k w_k A_k with the clean image's A. Without noise it is Grad-CAM++. torchcam's
    ``SmoothGradCAMpp`` differs: its denominator is 2 D2 + Σ_ab (A·D3)_ab (as in its Grad-CAM++) and
    it takes relu of the last noisy sample's gradient instead of D1.
    """
    return weighted_sum(gradcampp_weights(A, D1, D2, D3), A)


def finercam(A: Tensor, G: Tensor) -> Tensor:
    """Finer-CAM (Zhang et al. 2025): Grad-CAM of the score that sets class c against its look-alikes.

    The score (its :attr:`Method.target`, :func:`cam_core.engine.targets.finer`) is pytorch-grad-cam's
    ``FinerWeightedTarget`` with α = 1: with d_1..d_3 the classes whose logits are nearest y_c and p
    the softmax, s = Σ_t p_dt (y_c − α y_dt) / Σ_t p_dt. So the map shows what makes the image c
    *rather than* the classes the model confuses it with. torchcam's ``FinerCAM`` subtracts instead
    γ·mean_t y_dt (γ = 0.6, unweighted), so its maps differ.
    """
    return gradcam(A, G)


def shapleycam(A: Tensor, G: Tensor, HA: Tensor) -> Tensor:
    """ShapleyCAM (Cai et al. 2025): w_k = mean_ij (g − ½ H·A)_kij; map = Σ_k w_k A_k.

    ``HA`` (N, K, C, h, w) is the Hessian of the score with respect to A times A (a second-order
    Taylor term of the channel's Shapley value). Where the score is piecewise linear in A (ReLU
    layers up to a linear head, the logit target) H·A = 0 and ShapleyCAM equals Grad-CAM.
    """
    return weighted_sum((G - 0.5 * HA).mean(dim=(-2, -1)), A)


def legrad(relevance: Tensor) -> Tensor:
    """LeGrad (Bousselham et al. 2024), for ViTs: gradients of each block's own read-out at its attention.

    For each block l from the chosen layer's to the last: s^l = head(norm(mean_t z^l_t))_c, the model's
    final norm and head applied to the block's mean token; P^l its attention probabilities (N, heads,
    queries, keys); R^l = mean over heads and queries of relu(∂s^l/∂P^l), patch keys only, as the grid;
    map = mean_l R^l. ``relevance`` (L, N, K, h, w) holds the R^l (from
    :func:`cam_core.engine.attention.legrad_relevance`). torchcam's ``LeGrad`` is the same (it
    normalises the result).
    """
    return relevance.mean(dim=0)


def cam(A: Tensor, fc_weight: Tensor) -> Tensor:
    """CAM (Zhou et al. 2016): w_k = fc weight of class c on channel k.

    Args:
        A: activations (N, C, h, w) at the layer feeding global average pooling.
        fc_weight: (N, K, C) rows of the linear head for the explained classes.
    """
    return weighted_sum(fc_weight, A)


def principal_component(X: Tensor, reference: Tensor) -> Tensor:
    """Projection of each row set on its first principal component, signed to agree with ``reference``.

    Args:
        X: (..., P, C): P positions (the map's cells) of C features, centred over P here.
        reference: (..., P): what "bright" should mean (the channel mean, or the plain map).

    Returns:
        (..., P). The SVD leaves the sign arbitrary (pytorch-grad-cam keeps whatever it gives, so
        its maps can come out inverted); here the sign is the one whose projection correlates
        positively with ``reference``, so bright means "strongly activated" as in the other methods.
    """
    X = X - X.mean(dim=-2, keepdim=True)
    _, _, Vh = torch.linalg.svd(X, full_matrices=False)
    proj = torch.einsum("...pc,...c->...p", X, Vh[..., 0, :])
    return _oriented(proj, reference)


def _oriented(proj: Tensor, reference: Tensor) -> Tensor:
    corr = ((proj - proj.mean(-1, keepdim=True)) * (reference - reference.mean(-1, keepdim=True))).sum(-1)
    return proj * torch.where(corr < 0, -1.0, 1.0).to(proj.dtype).unsqueeze(-1)


def eigencam(A: Tensor) -> Tensor:
    """Eigen-CAM (Muhammad & Yeasin 2020): projection of A on its first principal component.

    Class-agnostic, so the result is (N, 1, h, w). Sign rule: :func:`principal_component` with the
    channel-mean activation as the reference.
    """
    n, c, h, w = A.shape
    X = A.reshape(n, c, h * w).transpose(1, 2)  # (N, hw, C)
    return principal_component(X, A.mean(dim=1).reshape(n, h * w)).reshape(n, 1, h, w)


def eigengradcam(A: Tensor, G: Tensor) -> Tensor:
    """EigenGrad-CAM (pytorch-grad-cam's ``EigenGradCAM``): first principal component of g ⊙ A.

    The positions × channels matrix of g_k ⊙ A_k (HiResCAM's per-channel terms) projected on its
    first principal component; sign rule: :func:`principal_component` with the HiResCAM map as
    the reference. Class-specific, unlike Eigen-CAM.
    """
    return eigen_project(G * A.unsqueeze(1))


def eigen_project(contrib: Tensor) -> Tensor:
    """``eigen_smooth``: per-class terms (N, K, C, h, w) → their first principal component (N, K, h, w),
    signed to agree with their sum over channels (the plain map)."""
    n, k, c, h, w = contrib.shape
    X = contrib.reshape(n, k, c, h * w).transpose(-1, -2)  # (N, K, hw, C)
    return principal_component(X, contrib.sum(dim=2).reshape(n, k, h * w)).reshape(n, k, h, w)


def kpcacam(A: Tensor, gamma: float | None = None, coef0: float = 1.0) -> Tensor:
    """KPCA-CAM (Karmani et al. 2024): Eigen-CAM with kernel PCA, as pytorch-grad-cam's ``KPCA_CAM``.

    X = A as positions × channels, centred over positions; K_pq = tanh(γ ⟨x_p, x_q⟩ + coef0) (the
    sigmoid kernel, γ = 1/C by default, as scikit-learn's ``KernelPCA``); K centred; the map is the
    first kernel principal component √λ₁ v₁. Sign rule: :func:`principal_component`'s, with the
    channel-mean activation. Class-agnostic (N, 1, h, w). Costs a (h·w)² kernel matrix, so at most
    :data:`KPCA_MAX_CELLS` cells.
    """
    n, c, h, w = A.shape
    if h * w > KPCA_MAX_CELLS:
        raise CamError(
            f"KPCA-CAM at a {h}×{w} map builds a {h * w}² kernel matrix; pick a deeper layer "
            f"(at most {KPCA_MAX_CELLS} cells)"
        )
    work = A.detach().cpu() if A.device.type == "mps" else A  # float64 (MPS has none)
    X = work.double().reshape(n, c, h * w).transpose(1, 2)
    X = X - X.mean(dim=1, keepdim=True)
    K = torch.tanh((1.0 / c if gamma is None else gamma) * X @ X.transpose(1, 2) + coef0)
    K = K - K.mean(1, keepdim=True) - K.mean(2, keepdim=True) + K.mean((1, 2), keepdim=True)
    values, vectors = torch.linalg.eigh(K)
    proj = vectors[..., -1] * values[..., -1:].clamp_min(0).sqrt()
    reference = work.double().mean(dim=1).reshape(n, h * w)
    return _oriented(proj, reference).float().reshape(n, 1, h, w).to(A.device)


def randomcam_weights(class_ids: Tensor, channels: int, seed: int = RANDOM_SEED) -> Tensor:
    """Random-CAM (pytorch-grad-cam's ``RandomCAM``): w_k ~ U(−1, 1); map = Σ_k w_k A_k.

    A baseline: a map with the layer's own spatial structure but no knowledge of the class. The
    weights of class c come from a generator seeded with ``seed + c``, so a class always gets the
    same random map (on every image, in every call). Returns (N, K, C).
    """
    rows = []
    for cid in class_ids.flatten().tolist():
        gen = torch.Generator().manual_seed(seed + int(cid))
        rows.append(torch.rand(channels, generator=gen, dtype=torch.float64) * 2 - 1)
    return torch.stack(rows).float().reshape(*class_ids.shape, channels)


def scorecam_weights(masked_scores: Tensor) -> Tensor:
    """Score-CAM (Wang et al. 2020): w_k = softmax_k (y_c(x ⊙ M_k) − y_c(x_b)).

    M_k is channel k upsampled to the input and min-max scaled to [0, 1]
    (:func:`cam_core.engine.perturb.minmax_masks`); the increase of confidence over a baseline x_b
    is normalised over channels by a softmax, as the authors' code and both peers do. The softmax
    makes the baseline term cancel, so no forward is spent on it. ``masked_scores`` (N, K, C) are
    the explained scores of the masked inputs (the logit by default). SS-CAM and IS-CAM hand in
    the same scores averaged over their noisy or scaled masks.

    The raw masked logit as the weight (this engine's first version) is gone, not kept as an option:
    with no baseline and no normalisation, a class whose masked logits are negative got a map ≤ 0
    everywhere and strong classes rode a shared offset (the map tended to Σ_k A_k); it matched
    neither the paper nor a peer.
    """
    return masked_scores.softmax(dim=-1)


def iscam_coefficients(samples: int) -> list[float]:
    """IS-CAM's input scales c_s = Σ_{j=1..s} j/S for s = 1..S, as torchcam's ``ISCAM`` (the paper's sum
    starts at j = 0). IS-CAM (Naidu et al. 2020): w = softmax_k mean_s (y_c(c_s · x ⊙ M_k) − y_c(x_b))."""
    out, coeff = [], 0.0
    for s in range(samples):
        coeff += (s + 1) / samples
        out.append(coeff)
    return out


def ablationcam_weights(base: Tensor, ablated: Tensor) -> Tensor:
    """Ablation-CAM (Desai & Ramaswamy 2020): w_k = (y_c − y_c^k) / y_c.

    Args:
        base: (N, K) scores of the unmodified forward.
        ablated: (N, K, C) scores with channel k of the layer zeroed.
    """
    denom = base.unsqueeze(-1)
    denom = torch.where(denom.abs() < _EPS, torch.full_like(denom, _EPS), denom)
    return (denom - ablated) / denom


def contributions(name: str, A: Tensor, G: Tensor | None = None, weights: Tensor | None = None) -> Tensor | None:
    """Per-class, per-channel terms (N, K, C, h, w) whose sum over channels is method ``name``'s map.

    What ``eigen_smooth`` projects: w_k A_k for methods with channel weights, g ⊙ A (HiResCAM),
    relu(g) ⊙ A (LayerCAM), relu(g ⊙ A) (Grad-CAM element-wise). ``None`` for methods that have
    neither (Eigen-CAM, KPCA-CAM and EigenGrad-CAM are principal components already; LeGrad).
    """
    if weights is not None:
        return weights[..., None, None] * A.unsqueeze(1)
    if G is None:
        return None
    if name == "hirescam":
        return G * A.unsqueeze(1)
    if name == "layercam":
        return G.clamp_min(0) * A.unsqueeze(1)
    if name == "gradcam_elementwise":
        return (G * A.unsqueeze(1)).clamp_min(0)
    return None


Kind = Literal["gradient", "second_order", "fc", "activation", "random", "perturbation", "smoothgrad", "attention"]


@dataclass(frozen=True)
class Method:
    """A registered method: its kind tells the engine what to capture or run for it.

    Attributes:
        name, title: Registry key and display name.
        kind: See the module docstring.
        fn: The pure function (its docstring has the formula).
        cost: What it costs beyond the forward and backward every gradient method shares.
        target: For methods that explain their own score (Finer-CAM), that score's name in
            :mod:`cam_core.engine.targets`; it replaces the explained score.
        weights: For gradient methods that weight channels, (A, G) → (N, K, C) (their map is
            Σ_k w_k A_k, which ``eigen_smooth`` and the point inspection use).
        class_agnostic: The same map for every class.
        slow: Runs many forwards (the page shows a progress bar).
    """

    name: str
    kind: Kind
    fn: Callable[..., Tensor]
    title: str
    cost: str = "shares one forward and one backward"
    target: str | None = None
    class_agnostic: bool = False
    slow: bool = False
    weights: Callable[[Tensor, Tensor], Tensor] | None = None


METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        Method("cam", "fc", cam, "CAM", "shares the forward (reads the fc weights)"),
        Method("gradcam", "gradient", gradcam, "Grad-CAM", weights=gradcam_weights),
        Method("gradcampp", "gradient", gradcampp, "Grad-CAM++", weights=_gradcampp_weights),
        Method("xgradcam", "gradient", xgradcam, "XGrad-CAM", weights=xgradcam_weights),
        Method("hirescam", "gradient", hirescam, "HiResCAM"),
        Method("layercam", "gradient", layercam, "LayerCAM"),
        Method("gradcam_elementwise", "gradient", gradcam_elementwise, "Grad-CAM element-wise"),
        Method("eigengradcam", "gradient", eigengradcam, "EigenGrad-CAM"),
        Method(
            "finercam", "gradient", finercam, "Finer-CAM", "one more backward (its own score)", target="finer",
            weights=gradcam_weights,
        ),
        Method("shapleycam", "second_order", shapleycam, "ShapleyCAM", "two more backwards per class (second order)"),
        Method("eigencam", "activation", eigencam, "Eigen-CAM", "shares the forward", class_agnostic=True),
        Method("kpcacam", "activation", kpcacam, "KPCA-CAM", "shares the forward", class_agnostic=True),
        Method("randomcam", "random", randomcam_weights, "Random-CAM", "shares the forward (random weights)"),
        Method("legrad", "attention", legrad, "LeGrad", "one more forward, one backward per class and block"),
        Method(
            "smoothgradcampp", "smoothgrad", smoothgradcampp, "SmoothGrad-CAM++",
            f"a batch of {SMOOTHGRAD_SAMPLES} noisy copies: one more forward and backward",
        ),
        Method("scorecam", "perturbation", scorecam_weights, "Score-CAM", "one forward per channel", slow=True),
        Method(
            "sscam", "perturbation", scorecam_weights, "SS-CAM",
            f"one forward per channel × {SSCAM_SAMPLES} noisy masks", slow=True,
        ),
        Method(
            "iscam", "perturbation", scorecam_weights, "IS-CAM",
            f"one forward per channel × {ISCAM_SAMPLES} scales", slow=True,
        ),
        Method(
            "ablationcam", "perturbation", ablationcam_weights, "Ablation-CAM",
            "one forward per channel (above the layer)", slow=True,
        ),
    )
}


@dataclass(frozen=True)
class Cost:
    """What a method adds to the forward and backward every gradient method shares (per image).

    Attributes:
        images: Extra images forwarded (perturbed, noisy or scaled copies).
        forwards: The forward batches they take.
        backwards: Extra backward passes.
    """

    images: int = 0
    forwards: int = 0
    backwards: int = 0

    def words(self) -> str:
        """``96 images in 2 forward batches and 3 backwards``, or ``nothing``."""
        parts = []
        if self.forwards:
            batches = f"{self.forwards} forward batch{'es' if self.forwards > 1 else ''}"
            parts.append(f"{self.images} images in {batches}" if self.images > self.forwards else
                         f"{self.forwards} forward{'s' if self.forwards > 1 else ''}")
        if self.backwards:
            parts.append(f"{self.backwards} backward{'s' if self.backwards > 1 else ''}")
        return " and ".join(parts) or "nothing"


def estimate_cost(
    name: str, channels: int, classes: int = 1, batch_size: int = 64, samples: int | None = None
) -> Cost:
    """What method ``name`` adds to the shared forward and backward, for a layer of ``channels``.

    Args:
        name: A method.
        channels: The layer's channel count.
        classes: Classes explained per image.
        batch_size: The forward batch of the methods that run many images.
        samples: Noisy/scaled samples, if not the method's default.
    """
    m = METHODS[name]
    batch = max(1, batch_size)
    if m.kind == "perturbation":
        passes = (samples or SSCAM_SAMPLES) if name == "sscam" else (samples or ISCAM_SAMPLES) if name == "iscam" else 1
        return Cost(channels * passes, -(-channels // batch) * passes)
    if m.kind == "smoothgrad":
        n = samples or SMOOTHGRAD_SAMPLES
        return Cost(n, -(-n // batch), -(-n // batch))
    if m.kind == "second_order":
        return Cost(backwards=2 * classes)
    if m.kind == "attention":
        return Cost(1, 1, classes)
    if m.target is not None:
        return Cost(backwards=1)
    return Cost()


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
