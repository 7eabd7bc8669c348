"""Can a map be trusted? Deletion/insertion curves, ROAD, and the model-randomisation check.

**Deletion and insertion** (Petsiuk et al. 2018, RISE): pixels are ranked by the
map, most important first (ties in a seeded random order). Deletion replaces the
top fraction f of them by a baseline and records the class's softmax probability
as f goes from 0 to 1: a map that found the evidence makes it fall fast (low
AUC). Insertion starts from the baseline and puts the top pixels back: the
probability should rise fast (high AUC). The reference to beat is a random
map as coarse as a CAM (uniform noise on a 7×7 grid, upsampled bilinearly,
``with_random=True``): a pixel-wise random order would be no fair reference, as
scattered deleted pixels destroy any image fast. Baselines: ``blur`` (a Gaussian blur of
the image, σ = min(H, W)/:data:`BLUR_DIVISOR`), ``mean`` (the image's mean colour)
or ``zero`` (zero in normalised space: the dataset's mean colour). All
``2 (steps + 1)`` perturbed images run in batches.

**ROAD** (Rong et al. 2022, "A consistent and efficient evaluation strategy for attribution
methods"): deleted pixels leak the map's shape to the model (a blurred or grey blob where the
map was bright), so ROAD fills them by *noisy linear imputation* instead: each removed pixel is
the weighted mean of its eight neighbours (1/6 for the four sides, 1/12 for the corners), all
removed pixels solved for at once (a sparse linear system), plus Gaussian noise (σ =
:data:`ROAD_NOISE`, seeded). For each fraction f in :data:`ROAD_FRACTIONS` the fraction f of
pixels ranked most relevant by the map (MoRF) or least relevant (LeRF) is removed, and the class
probability recorded: a good map makes MoRF fall and keeps LeRF up. Removal follows
pytorch-grad-cam's ``ROADMostRelevantFirst`` / ``ROADLeastRelevantFirst`` exactly (a pixel stays
when its value is below the ``100·(1 − f)`` percentile of the map, or of ``1 − map``), and
:attr:`RoadResult.combined` is its ``ROADCombined``: the mean over f of (LeRF − MoRF) / 2. The
reference is Random-CAM at the same layer (``with_random``).

**Model randomisation** (Adebayo et al. 2018, "Sanity checks for saliency
maps"): on a deep COPY of the model (the caller's model is never touched), the
weights are re-initialised from the top down, one unit at a time and
cumulatively, and the map (same layer, class and method) is recomputed after each
step. Units (:func:`randomisation_units`) are the model's blocks: the elements of
every ``Sequential``/``ModuleList`` and the children of other modules, stopping at
modules that are neither a sequence nor a one-child wrapper, taken in reverse
module order (head first). Each unit is re-initialised with its modules' own
``reset_parameters`` (parameters of modules without one get Gaussian noise of
the same mean and spread), seeded. The Spearman rank correlation of each map with
the original is reported, of the signed maps and of their absolute values (a sign
flip is a change too, but absolute values show when only the sign changed). A
method whose signed rank correlation has a median over the steps above
:data:`SANITY_MAX_CORR` barely depends on the randomised weights and is flagged.
The median, not the last step: a fully random network's maps can still follow the
image's layout (a rocket against the sky), and one step can flip a sign by
chance. On the five sample photos (EfficientNet-Lite0, all 21 units) the medians
are -0.36..0.38 for Grad-CAM (never flagged) and 0.00..0.78 for the class-agnostic
Eigen-CAM (flagged on three of them).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..devices import place_model
from ..engine.explainer import explain
from ..engine.targets import Target, resolve_target
from ..errors import CamError, choices_hint
from ..models.layers import grid_transform, recommended_layer
from ..modules import model_lock, unwrap_model
from .sweep import _one_image, check_sweep_methods, maps_at_layers

__all__ = [
    "AUC_MARGIN",
    "AUC_MARGIN_SHARE",
    "BASELINES",
    "BLUR_DIVISOR",
    "ROAD_FRACTIONS",
    "ROAD_NOISE",
    "SANITY_MAX_CORR",
    "Curve",
    "PerturbationCurves",
    "RoadResult",
    "SanityResult",
    "Verdict",
    "compare_auc",
    "deletion_insertion",
    "noisy_linear_imputation",
    "randomisation_check",
    "randomisation_units",
    "road",
    "spearman",
]

Progress = Callable[[float, str], None]
Baseline = Literal["blur", "mean", "zero"]
BASELINES: tuple[str, ...] = ("blur", "mean", "zero")
BLUR_DIVISOR = 32  # blur σ = min(H, W) / 32: 7 px at 224, enough to remove texture, not the layout
# A map whose median rank correlation with the original over the randomisation steps exceeds this is flagged.
SANITY_MAX_CORR = 0.5
# Below this spread of the class probability over every perturbed image (map and random curves together) the
# score does not depend on the image (an untrained or saturated model): the curves cannot rank any map.
FLAT_SPAN = 0.02
# A map's AUC counts as better (or worse) than the random map's only beyond this margin: the larger of
# AUC_MARGIN and AUC_MARGIN_SHARE of the random AUC. One random map is one draw, so 0.070 against 0.068
# says nothing either way.
AUC_MARGIN = 0.02
AUC_MARGIN_SHARE = 0.10
Verdict = Literal["better", "same", "worse"]
_SEQUENCES = (nn.Sequential, nn.ModuleList, nn.ModuleDict)
ROAD_FRACTIONS: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)  # pytorch-grad-cam's percentiles
ROAD_NOISE = 0.01  # σ of the noise added to imputed pixels (normalised units), as the authors' code
# Neighbour offsets and weights of the linear imputation (the authors' and pytorch-grad-cam's).
_NEIGHBOURS = (
    ((1, 1), 1 / 12), ((0, 1), 1 / 6), ((-1, 1), 1 / 12), ((1, -1), 1 / 12),
    ((0, -1), 1 / 6), ((-1, -1), 1 / 12), ((1, 0), 1 / 6), ((-1, 0), 1 / 6),
)


def spearman(a: np.ndarray | Tensor, b: np.ndarray | Tensor) -> float:
    """Spearman rank correlation of two maps (ties get their average rank); NaN if either is constant."""
    ra, rb = _ranks(np.asarray(a, dtype=np.float64).ravel()), _ranks(np.asarray(b, dtype=np.float64).ravel())
    ra, rb = ra - ra.mean(), rb - rb.mean()
    den = math.sqrt(float((ra * ra).sum() * (rb * rb).sum()))
    return float((ra * rb).sum() / den) if den > 0 else math.nan


def _ranks(v: np.ndarray) -> np.ndarray:
    _, inverse, counts = np.unique(v, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    return ((ends - counts + ends - 1) / 2.0)[inverse]


# ------------------------------------------------------------------------------------ deletion/insertion


@dataclass
class Curve:
    """Class probability against the fraction of pixels deleted (or inserted).

    Attributes:
        kind: ``deletion`` or ``insertion``.
        fractions: (S + 1,) from 0 to 1.
        scores: (S + 1,) softmax probability of the class.
        auc: Area under the curve (trapezoids over ``fractions``).
    """

    kind: str
    fractions: np.ndarray
    scores: np.ndarray
    auc: float

    def to_dict(self) -> dict[str, object]:
        """Plain data for JSON."""
        return {
            "kind": self.kind,
            "auc": self.auc,
            "fractions": self.fractions.tolist(),
            "scores": self.scores.tolist(),
        }


def compare_auc(value: float, reference: float, *, lower_is_better: bool) -> Verdict:
    """Whether ``value`` beats ``reference`` (a random map's AUC) by more than the margin (see AUC_MARGIN)."""
    margin = max(AUC_MARGIN, AUC_MARGIN_SHARE * abs(reference))
    gain = reference - value if lower_is_better else value - reference
    return "better" if gain > margin else "worse" if gain < -margin else "same"


@dataclass
class PerturbationCurves:
    """Deletion and insertion curves of one map (and of a random map, when asked for).

    Attributes:
        class_id: The class whose probability is tracked.
        baseline: What deleted pixels become.
        deletion, insertion: The map's curves (deletion: lower AUC is better; insertion: higher).
        random_deletion, random_insertion: The same for a random map, or None.
        forwards: Forward passes run (batches).
    """

    class_id: int
    baseline: str
    deletion: Curve
    insertion: Curve
    random_deletion: Curve | None = None
    random_insertion: Curve | None = None
    forwards: int = 0

    @property
    def score_range(self) -> tuple[float, float]:
        """Lowest and highest class probability over every curve."""
        curves = [c for c in (self.deletion, self.insertion, self.random_deletion, self.random_insertion) if c]
        scores = np.concatenate([c.scores for c in curves])
        return float(scores.min()), float(scores.max())

    @property
    def flat(self) -> bool:
        """Whether the probability hardly moves whatever is deleted or inserted (see :data:`FLAT_SPAN`)."""
        low, high = self.score_range
        return high - low < FLAT_SPAN

    @property
    def verdicts(self) -> dict[str, Verdict] | None:
        """Deletion and insertion against the random map, each better / same / worse (``None`` without one)."""
        if self.random_deletion is None or self.random_insertion is None:
            return None
        return {
            "deletion": compare_auc(self.deletion.auc, self.random_deletion.auc, lower_is_better=True),
            "insertion": compare_auc(self.insertion.auc, self.random_insertion.auc, lower_is_better=False),
        }

    def to_dict(self) -> dict[str, object]:
        """Plain data for JSON."""
        out: dict[str, object] = {
            "class_id": self.class_id,
            "baseline": self.baseline,
            "forwards": self.forwards,
            "flat": self.flat,
            "verdicts": self.verdicts,
        }
        for name in ("deletion", "insertion", "random_deletion", "random_insertion"):
            curve = getattr(self, name)
            out[name] = curve.to_dict() if curve is not None else None
        return out

    def arrays(self) -> dict[str, np.ndarray]:
        """Curves for an NPZ: ``fractions`` and one score array per curve."""
        out = {"fractions": self.deletion.fractions}
        for name in ("deletion", "insertion", "random_deletion", "random_insertion"):
            curve = getattr(self, name)
            if curve is not None:
                out[name] = curve.scores
        return out


def _auc(fractions: np.ndarray, scores: np.ndarray) -> float:
    return float(((scores[1:] + scores[:-1]) / 2 * np.diff(fractions)).sum())


def _gaussian_blur(x: Tensor, sigma: float) -> Tensor:
    radius = max(1, round(3 * sigma))
    t = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    k = torch.exp(-(t**2) / (2 * sigma**2))
    k = k / k.sum()
    c = x.shape[1]
    pad = min(radius, x.shape[-1] - 1, x.shape[-2] - 1)
    if pad < radius:  # reflect padding needs the image to be larger than the kernel
        k = k[radius - pad : radius + pad + 1] / k[radius - pad : radius + pad + 1].sum()
    y = F.conv2d(F.pad(x, (pad, pad, 0, 0), mode="reflect"), k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(F.pad(y, (0, 0, pad, pad), mode="reflect"), k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def _baseline(x: Tensor, kind: str) -> Tensor:
    if kind == "blur":
        return _gaussian_blur(x, min(x.shape[-2:]) / BLUR_DIVISOR)
    if kind == "mean":
        return x.mean(dim=(-2, -1), keepdim=True).expand_as(x)
    if kind == "zero":
        return torch.zeros_like(x)
    raise CamError(f"unknown baseline {kind!r}; choose from: {choices_hint(BASELINES)}")


def _ranks_of(saliency: Tensor, gen: torch.Generator) -> Tensor:
    """Each pixel's place in the order most → least important (ties in a seeded random order): (H·W,)."""
    flat = saliency.flatten().double()
    perm = torch.randperm(flat.numel(), generator=gen)
    order = perm[flat[perm].argsort(descending=True, stable=True)]
    ranks = torch.empty_like(order)
    ranks[order] = torch.arange(order.numel())
    return ranks


def deletion_insertion(
    model: object,
    x: Tensor,
    saliency: Tensor | np.ndarray,
    class_id: int,
    *,
    steps: int = 24,
    baseline: Baseline = "blur",
    batch_size: int = 16,
    with_random: bool = False,
    random_grid: tuple[int, int] = (7, 7),
    seed: int = 0,
    device: str | torch.device = "auto",
    progress: Progress | None = None,
) -> PerturbationCurves:
    """Deletion and insertion curves, with AUCs, of one map for one class.

    Args:
        model: A LoadedModel or ``nn.Module`` (its mode is left as it is).
        x: One preprocessed image, (3, H, W) or (1, 3, H, W).
        saliency: The map, (H, W) or at the layer's resolution (upsampled bilinearly). Signed
            maps rank as they are: most positive first.
        class_id: The class whose softmax probability is tracked.
        steps: Number of steps from 0 to all pixels (``steps + 1`` points per curve).
        baseline: ``blur``, ``mean`` or ``zero`` (see the module docstring).
        batch_size: Perturbed images per forward.
        with_random: Also run a random map (the reference a map should beat).
        random_grid: The random map's resolution before bilinear upsampling: as coarse as a CAM's,
            since a pixel-wise random order destroys any image fast (it adds high-frequency noise).
        seed: For tie-breaking and the random map.
        device: As for :func:`~cam_core.engine.explain`.
        progress: Callback(fraction, message).

    Returns:
        :class:`PerturbationCurves`.

    Raises:
        CamError: a bad baseline, step count, class or map shape.
    """
    if steps < 1:
        raise CamError(f"steps must be at least 1, got {steps}")
    module, _ = unwrap_model(model)
    x = _one_image(x)
    H, W = x.shape[-2:]
    sal = _input_map(saliency, (H, W))
    gen = torch.Generator().manual_seed(seed)
    rankings = {"": _ranks_of(sal, gen)}
    if with_random:
        noise = torch.rand(random_grid, generator=gen)
        rankings["random_"] = _ranks_of(
            F.interpolate(noise[None, None], size=(H, W), mode="bilinear", align_corners=False)[0, 0], gen
        )
    fractions = np.linspace(0.0, 1.0, steps + 1)
    counts = torch.tensor(np.rint(fractions * H * W).astype(np.int64))
    with model_lock(module):
        dev = place_model(module, device)
        x = x.to(dev)
        base = _baseline(x, baseline)
        jobs = [(prefix, kind) for prefix in rankings for kind in ("deletion", "insertion")]
        total = len(jobs) * (steps + 1)
        scores: dict[str, list[float]] = {f"{p}{k}": [] for p, k in jobs}
        forwards, done = 0, 0
        # Every (ranking, kind, step) image in one flat list, run batch_size at a time.
        plan = [(p, k, j) for p, k in jobs for j in range(steps + 1)]
        with torch.no_grad():
            for b0 in range(0, total, batch_size):
                chunk = plan[b0 : b0 + batch_size]
                # The top counts[j] pixels of the ranking: inserted into the baseline, or deleted from x.
                top = [rankings[p] < counts[j] for p, _, j in chunk]
                keep = torch.stack([t if k == "insertion" else ~t for t, (_, k, _) in zip(top, chunk, strict=True)])
                keep = keep.view(-1, 1, H, W).to(dev, x.dtype)
                batch = x * keep + base * (1 - keep)
                probs = module(batch).float().softmax(1)
                _check_class(class_id, probs.shape[1])
                for (p, k, _), value in zip(chunk, probs[:, class_id].tolist(), strict=True):
                    scores[f"{p}{k}"].append(value)
                forwards += 1
                done += len(chunk)
                if progress:
                    progress(done / total, f"deletion/insertion: {done}/{total} images")

    def curve(name: str) -> Curve | None:
        if name not in scores:
            return None
        s = np.asarray(scores[name])
        return Curve(name.removeprefix("random_"), fractions, s, _auc(fractions, s))

    return PerturbationCurves(
        class_id=class_id,
        baseline=baseline,
        deletion=curve("deletion"),
        insertion=curve("insertion"),
        random_deletion=curve("random_deletion"),
        random_insertion=curve("random_insertion"),
        forwards=forwards,
    )


# ------------------------------------------------------------------------------------------------- ROAD


def noisy_linear_imputation(image: Tensor, keep: Tensor, noise: float = ROAD_NOISE, seed: int = 0) -> Tensor:
    """``image`` (C, H, W) with the pixels where ``keep`` (H, W) is False imputed from their neighbours.

    Each removed pixel v_p satisfies Σ_q w_q (v_p − v_q) = 0 over its in-image neighbours q (the
    weights of the module docstring), known neighbours on the right-hand side; one sparse solve for
    every channel at once, then N(0, ``noise``²) added to the imputed pixels (seeded).
    """
    from scipy.sparse import csc_matrix
    from scipy.sparse.linalg import spsolve

    c, h, w = image.shape
    known = keep.detach().cpu().numpy().astype(bool).ravel()
    missing = np.flatnonzero(~known)
    if missing.size == 0:
        return image.clone()
    flat = image.detach().cpu().double().numpy().reshape(c, -1)
    var = np.full(h * w, -1)
    var[missing] = np.arange(missing.size)
    rows, cols = np.divmod(missing, w)
    diag = np.zeros(missing.size)
    rhs = np.zeros((missing.size, c))
    entries: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    for (dr, dc), weight in _NEIGHBOURS:
        r, q = rows + dr, cols + dc
        inside = (r >= 0) & (r < h) & (q >= 0) & (q < w)
        p, q = np.flatnonzero(inside), r[inside] * w + q[inside]
        diag[p] += weight
        have = known[q]
        rhs[p[have]] += weight * flat[:, q[have]].T
        entries.append((p[~have], var[q[~have]], np.full(int((~have).sum()), -weight)))
    r_idx = np.concatenate([np.arange(missing.size), *(e[0] for e in entries)])
    c_idx = np.concatenate([np.arange(missing.size), *(e[1] for e in entries)])
    values = np.concatenate([diag, *(e[2] for e in entries)])
    system = csc_matrix((values, (r_idx, c_idx)), shape=(missing.size, missing.size))
    solved = np.asarray(spsolve(system, rhs)).reshape(missing.size, c)
    out = image.detach().cpu().clone().reshape(c, -1)
    fill = torch.as_tensor(solved.T, dtype=out.dtype)
    if noise:
        fill = fill + noise * torch.randn(fill.shape, generator=torch.Generator().manual_seed(seed), dtype=out.dtype)
    out[:, missing] = fill
    return out.reshape(c, h, w).to(image.device)


def _road_keep(saliency: np.ndarray, fraction: float, most_relevant: bool) -> Tensor:
    """Pixels kept when the ``fraction`` most (or least) relevant are removed, as pytorch-grad-cam ranks them."""
    values = saliency if most_relevant else 1 - saliency
    return torch.from_numpy(values < np.percentile(values, 100 * (1 - fraction)))


@dataclass
class RoadResult:
    """ROAD curves of one map for one class (see the module docstring).

    Attributes:
        class_id: The class whose probability is tracked.
        fractions: (F,) fractions of pixels removed.
        base: The class probability on the unmodified image.
        morf, lerf: (F,) probability with the most / least relevant fraction removed.
        random_morf, random_lerf: The same for Random-CAM at the layer (``None`` without it).
        noise: σ of the imputation noise.
        forwards: Forward batches run.
    """

    class_id: int
    fractions: np.ndarray
    base: float
    morf: np.ndarray
    lerf: np.ndarray
    random_morf: np.ndarray | None = None
    random_lerf: np.ndarray | None = None
    noise: float = ROAD_NOISE
    forwards: int = 0

    @property
    def combined(self) -> float:
        """pytorch-grad-cam's ``ROADCombined``: mean over fractions of (LeRF − MoRF) / 2; higher is better."""
        return float(np.mean(self.lerf - self.morf) / 2)

    @property
    def random_combined(self) -> float | None:
        """The same score for Random-CAM."""
        if self.random_morf is None or self.random_lerf is None:
            return None
        return float(np.mean(self.random_lerf - self.random_morf) / 2)

    def to_dict(self) -> dict[str, object]:
        """Plain data for JSON."""
        return {
            "class_id": self.class_id,
            "fractions": self.fractions.tolist(),
            "base": self.base,
            "morf": self.morf.tolist(),
            "lerf": self.lerf.tolist(),
            "combined": self.combined,
            "random_morf": None if self.random_morf is None else self.random_morf.tolist(),
            "random_lerf": None if self.random_lerf is None else self.random_lerf.tolist(),
            "random_combined": self.random_combined,
            "noise": self.noise,
            "forwards": self.forwards,
        }

    def arrays(self) -> dict[str, np.ndarray]:
        """For an NPZ: ``road_fractions``, ``road_morf``, ``road_lerf`` (and the random ones)."""
        out = {"road_fractions": self.fractions, "road_morf": self.morf, "road_lerf": self.lerf}
        if self.random_morf is not None and self.random_lerf is not None:
            out |= {"road_random_morf": self.random_morf, "road_random_lerf": self.random_lerf}
        return out


def _input_map(saliency: Tensor | np.ndarray, size: tuple[int, int]) -> Tensor:
    sal = torch.as_tensor(np.asarray(saliency) if not isinstance(saliency, Tensor) else saliency).float().cpu()
    if sal.ndim != 2:
        raise CamError(f"expected one map of shape (h, w), got {tuple(sal.shape)}")
    if sal.shape != size:
        sal = F.interpolate(sal[None, None], size=size, mode="bilinear", align_corners=False)[0, 0]
    return sal


def road(
    model: object,
    x: Tensor,
    saliency: Tensor | np.ndarray,
    class_id: int,
    *,
    fractions: Sequence[float] = ROAD_FRACTIONS,
    noise: float = ROAD_NOISE,
    with_random: bool = False,
    layer: str | None = None,
    batch_size: int = 16,
    seed: int = 0,
    device: str | torch.device = "auto",
    progress: Progress | None = None,
) -> RoadResult:
    """ROAD (remove and debias) MoRF and LeRF curves of one map for one class (module docstring).

    Args:
        model: A LoadedModel or ``nn.Module`` (its mode is left as it is).
        x: One preprocessed image, (3, H, W) or (1, 3, H, W).
        saliency: The map, (H, W) or at the layer's resolution (upsampled bilinearly); signed maps
            rank as they are, most positive first.
        class_id: The class whose softmax probability is tracked.
        fractions: Fractions of pixels removed, each in (0, 1).
        noise: σ of the imputation noise (0 for none).
        with_random: Also score Random-CAM at ``layer`` (the reference a map should beat).
        layer: The layer of the Random-CAM reference (default the recommended one).
        batch_size: Imputed images per forward.
        seed: Seeds the imputation noise.
        device: As for :func:`~cam_core.engine.explain`.
        progress: Callback(fraction, message).

    Returns:
        :class:`RoadResult`. Cost: one sparse solve and one image per fraction and order, in batches.
    """
    fr = [float(f) for f in fractions]
    if not fr or not all(0 < f < 1 for f in fr):
        raise CamError(f"ROAD fractions must lie strictly between 0 and 1, got {list(fractions)}")
    module, _ = unwrap_model(model)
    x = _one_image(x)
    size = (x.shape[-2], x.shape[-1])
    maps = {"": _input_map(saliency, size)}
    if with_random:
        ref = explain(model, x, layer=layer, classes=[class_id], methods=["randomcam"], device=device)
        maps["random_"] = ref.upsampled("randomcam")[0, 0]
    jobs = [(p, order, f) for p in maps for order in ("morf", "lerf") for f in fr]
    images: list[Tensor] = []
    for j, (p, order, f) in enumerate(jobs):
        keep = _road_keep(maps[p].numpy(), f, order == "morf")
        images.append(noisy_linear_imputation(x[0].cpu(), keep, noise, seed + j))
        if progress:
            progress(0.8 * (j + 1) / len(jobs), f"ROAD: imputing {j + 1}/{len(jobs)}")
    scores: list[float] = []
    forwards = 0
    with model_lock(module):
        dev = place_model(module, device)
        with torch.no_grad():
            base = module(x.to(dev)).float().softmax(1)
            _check_class(class_id, base.shape[1])
            for b0 in range(0, len(images), batch_size):
                batch = torch.stack(images[b0 : b0 + batch_size]).to(dev, x.dtype)
                scores += module(batch).float().softmax(1)[:, class_id].tolist()
                forwards += 1
                if progress:
                    progress(0.8 + 0.2 * min(1.0, (b0 + batch_size) / len(images)), "ROAD: scoring")
    curves = np.asarray(scores).reshape(-1, len(fr))  # one row per (map, order), in the order of ``jobs``
    by_job = {(p, order): curves[i] for i, (p, order) in enumerate((p, o) for p in maps for o in ("morf", "lerf"))}
    return RoadResult(
        class_id=class_id,
        fractions=np.asarray(fr),
        base=float(base[0, class_id]),
        morf=by_job[("", "morf")],
        lerf=by_job[("", "lerf")],
        random_morf=by_job.get(("random_", "morf")),
        random_lerf=by_job.get(("random_", "lerf")),
        noise=noise,
        forwards=forwards + 1,
    )


def _check_class(class_id: int, count: int) -> None:
    if not 0 <= class_id < count:
        raise CamError(f"class index {class_id} is out of range: the model has classes 0..{count - 1}")


# -------------------------------------------------------------------------------- model randomisation


def randomisation_units(module: nn.Module) -> list[str]:
    """The blocks randomised one by one, top (head) first; rule in the module docstring."""
    units: list[str] = []

    def visit(name: str, mod: nn.Module) -> None:
        kids = [(n, c) for n, c in mod.named_children() if any(True for _ in c.parameters())]
        wrapper = len(kids) == 1 and not any(True for _ in mod.parameters(recurse=False))
        if name and not isinstance(mod, _SEQUENCES) and not wrapper:
            units.append(name)
            return
        for n, c in kids:
            visit(f"{name}.{n}" if name else n, c)

    visit("", module)
    if not units and any(True for _ in module.parameters()):
        units.append("")
    return units[::-1]


def _reinit(unit: nn.Module) -> None:
    for mod in unit.modules():
        reset = getattr(mod, "reset_parameters", None)
        if callable(reset):
            reset()
            continue
        for p in mod.parameters(recurse=False):
            with torch.no_grad():
                spread = float(p.std()) if p.numel() > 1 else 1.0
                p.normal_(float(p.mean()), spread if spread > 0 else 1.0)


@dataclass
class SanityResult:
    """Maps as the model is randomised from the top down (see the module docstring).

    Attributes:
        layer, class_id: What was explained.
        methods: The methods checked.
        units: The unit randomised at each step (cumulatively), head first.
        rank_corr: Method → (S,) Spearman correlation of the signed map after step s with the original.
        rank_corr_abs: The same for absolute values.
        maps: Method → (S + 1, h, w): the original map, then one per step.
        threshold: :data:`SANITY_MAX_CORR`.
        flagged: Method → whether its map barely changed (median signed correlation above the threshold).
    """

    layer: str
    class_id: int
    methods: tuple[str, ...]
    units: list[str]
    rank_corr: dict[str, np.ndarray]
    rank_corr_abs: dict[str, np.ndarray]
    maps: dict[str, np.ndarray]
    threshold: float
    flagged: dict[str, bool] = field(default_factory=dict)

    def to_dict(self) -> dict[str, object]:
        """Plain data for JSON (NaN becomes None)."""

        def clean(a: np.ndarray) -> list[float | None]:
            return [float(v) if math.isfinite(v) else None for v in a]

        return {
            "layer": self.layer,
            "class_id": self.class_id,
            "methods": list(self.methods),
            "units": self.units,
            "threshold": self.threshold,
            "rank_corr": {m: clean(v) for m, v in self.rank_corr.items()},
            "rank_corr_abs": {m: clean(v) for m, v in self.rank_corr_abs.items()},
            "flagged": self.flagged,
        }

    def arrays(self) -> dict[str, np.ndarray]:
        """For an NPZ: ``units``, ``rank_corr_<m>``, ``rank_corr_abs_<m>``, ``sanity_maps_<m>`` (S + 1, h, w)."""
        out: dict[str, np.ndarray] = {"units": np.array(self.units)}
        for m in self.methods:
            out[f"rank_corr_{m}"] = self.rank_corr[m]
            out[f"rank_corr_abs_{m}"] = self.rank_corr_abs[m]
            out[f"sanity_maps_{m}"] = self.maps[m]
        return out


def randomisation_check(
    model: object,
    x: Tensor,
    layer: str | None = None,
    class_id: int | str | None = None,
    methods: str | Sequence[str] = ("gradcam",),
    *,
    max_units: int | None = None,
    target: str | Target = "logit",
    threshold: float = SANITY_MAX_CORR,
    seed: int = 0,
    device: str | torch.device = "auto",
    progress: Progress | None = None,
) -> SanityResult:
    """The model-randomisation sanity check on a deep copy of the model.

    Args:
        model: A LoadedModel or ``nn.Module``; never modified (a deep copy is randomised).
        x: One preprocessed image, (3, H, W) or (1, 3, H, W).
        layer: Default the recommended layer.
        class_id: Class index or name; default the top class (of the unmodified model, kept throughout).
        methods: Gradient methods or ``eigencam``.
        max_units: Randomise only the top this many units (default all).
        target: The explained score.
        threshold: Rank correlation above which a method is flagged.
        seed: Seeds the re-initialisation (the global RNG is left as it was).
        device: As for :func:`~cam_core.engine.explain`.
        progress: Callback(fraction, message).

    Returns:
        A :class:`SanityResult`; cost: one forward and one backward per step, plus one.
    """
    methods = check_sweep_methods(methods)
    target_fn = resolve_target(target)
    module, class_names = unwrap_model(model)
    x = _one_image(x)
    layer = layer or recommended_layer(model)
    to_grids = {layer: grid_transform(model, layer)}  # the copy has the same layout: no second analysis
    with model_lock(module):
        dev = place_model(module, device)
        clone = copy.deepcopy(module)  # under the lock: no other call's hooks are copied along
    units = randomisation_units(clone)[:max_units]
    if not units:
        raise CamError("the model has no parameters to randomise")
    x = x.to(dev)
    steps = len(units)
    maps: dict[str, list[np.ndarray]] = {m: [] for m in methods}
    classes: str | list[int | str] = "top1" if class_id is None else [class_id]
    named = dict(clone.named_modules())
    devices = [dev] if dev.type == "cuda" else []
    for s in range(steps + 1):
        if s:
            with torch.random.fork_rng(devices=devices):
                torch.manual_seed(seed + s)
                _reinit(named[units[s - 1]])
        with model_lock(clone):
            _, ids, (res,) = maps_at_layers(clone, x, [layer], to_grids, classes, methods, target_fn, class_names)
        classes = [int(ids[0, 0])]  # the class of the unmodified model, kept as the weights change
        for m in methods:
            maps[m].append(res.maps[m][0, 0].numpy())
        if progress:
            progress(
                (s + 1) / (steps + 1), f"randomised {s}/{steps} units" + (f" (down to {units[s - 1]})" if s else "")
            )
    stacked = {m: np.stack(v) for m, v in maps.items()}
    corr = {m: np.array([spearman(v[0], v[s]) for s in range(1, steps + 1)]) for m, v in stacked.items()}
    corr_abs = {
        m: np.array([spearman(np.abs(v[0]), np.abs(v[s])) for s in range(1, steps + 1)]) for m, v in stacked.items()
    }
    return SanityResult(
        layer=layer,
        class_id=int(classes[0]),
        methods=methods,
        units=units,
        rank_corr=corr,
        rank_corr_abs=corr_abs,
        maps=stacked,
        threshold=threshold,
        flagged={m: bool(np.isfinite(c).any() and np.nanmedian(c) > threshold) for m, c in corr.items()},
    )
