"""ROAD (remove and debias) curves of one map, and their verdict against Random-CAM.

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

(The module is ``road_metric``, not ``road``, so that ``cam_core.analysis.trust.road`` is the function.)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from ...devices import place_model
from ...engine.explainer import explain
from ...errors import CamError
from ...modules import model_lock, unwrap_model
from ..sweep import _one_image
from .inputs import Progress, check_class, input_map
from .verdict import FLAT_SPAN, TrustVerdict, score_range

__all__ = [
    "ROAD_FRACTIONS",
    "ROAD_MARGIN",
    "ROAD_NOISE",
    "RoadResult",
    "noisy_linear_imputation",
    "road",
    "road_verdict",
]

ROAD_FRACTIONS: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)  # pytorch-grad-cam's percentiles
ROAD_NOISE = 0.01  # σ of the noise added to imputed pixels (normalised units), as the authors' code
# A map beats Random-CAM on ROAD when its score is higher by at least this (a difference of probabilities):
# one Random-CAM is one draw, so a hair's breadth says nothing.
ROAD_MARGIN = 0.01
# Neighbour offsets and weights of the linear imputation (the authors' and pytorch-grad-cam's).
_NEIGHBOURS = (
    ((1, 1), 1 / 12), ((0, 1), 1 / 6), ((-1, 1), 1 / 12), ((1, -1), 1 / 12),
    ((0, -1), 1 / 6), ((-1, -1), 1 / 12), ((1, 0), 1 / 6), ((-1, 0), 1 / 6),
)


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

    @property
    def score_range(self) -> tuple[float, float]:
        """Lowest and highest class probability over every curve (the map's and Random-CAM's)."""
        return score_range([self.morf, self.lerf, self.random_morf, self.random_lerf])

    @property
    def flat(self) -> bool:
        """Whether the probability hardly moves whatever is removed (see :data:`FLAT_SPAN`)."""
        low, high = self.score_range
        return high - low < FLAT_SPAN

    @property
    def verdict(self) -> TrustVerdict:
        """The check's conclusion: :func:`road_verdict`."""
        return road_verdict(self)

    def to_dict(self) -> dict[str, object]:
        """Plain data for JSON."""
        return {
            "verdict": self.verdict.to_dict(),
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


def road_verdict(res: RoadResult, margin: float = ROAD_MARGIN) -> TrustVerdict:
    """Trusted when the map's ROAD beats Random-CAM's by at least ``margin``; flat when the probability does not
    move whatever is removed (ROAD cannot judge any map then); numbers only without Random-CAM."""
    head = f"ROAD {res.combined:.3f}"
    if res.flat:
        low, high = res.score_range
        return TrustVerdict(
            "ROAD",
            "flat",
            f"{head}: the probability hardly moves ({low:.3f} … {high:.3f}) whatever is removed, so ROAD cannot "
            "judge this map (the model ignores these pixels, or is untrained or saturated).",
        )
    reference = res.random_combined
    if reference is None:
        return TrustVerdict("ROAD", "unreferenced", f"{head}.")
    if res.combined - reference >= margin:
        return TrustVerdict(
            "ROAD",
            "trusted",
            f"{head} vs Random-CAM {reference:.3f}: the map ranks the evidence better than a random map of the same "
            "layer.",
        )
    return TrustVerdict(
        "ROAD",
        "doubtful",
        f"{head} vs Random-CAM {reference:.3f}: not clearly better (by {margin:g} or more) than random channel "
        "weights at this layer; do not read much into this map.",
    )


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
    maps = {"": input_map(saliency, size)}
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
            check_class(class_id, base.shape[1])
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
