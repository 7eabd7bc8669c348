"""Deletion and insertion curves of one map, and their verdict against a random map.

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
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ...devices import place_model
from ...errors import CamError, choices_hint
from ...modules import model_lock, unwrap_model
from ..sweep import _one_image
from .inputs import Progress, check_class, input_map
from .verdict import FLAT_SPAN, TrustVerdict, score_range

__all__ = [
    "AUC_MARGIN",
    "AUC_MARGIN_SHARE",
    "BASELINES",
    "BLUR_DIVISOR",
    "Curve",
    "PerturbationCurves",
    "Verdict",
    "compare_auc",
    "curves_verdict",
    "deletion_insertion",
]

Baseline = Literal["blur", "mean", "zero"]
BASELINES: tuple[str, ...] = ("blur", "mean", "zero")
BLUR_DIVISOR = 32  # blur σ = min(H, W) / 32: 7 px at 224, enough to remove texture, not the layout
# A map's AUC counts as better (or worse) than the random map's only beyond this margin: the larger of
# AUC_MARGIN and AUC_MARGIN_SHARE of the random AUC. One random map is one draw, so 0.070 against 0.068
# says nothing either way.
AUC_MARGIN = 0.02
AUC_MARGIN_SHARE = 0.10
Verdict = Literal["better", "same", "worse"]


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
        curves = (self.deletion, self.insertion, self.random_deletion, self.random_insertion)
        return score_range([c.scores if c is not None else None for c in curves])

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

    @property
    def verdict(self) -> TrustVerdict:
        """The check's conclusion: :func:`curves_verdict`."""
        return curves_verdict(self)

    def to_dict(self) -> dict[str, object]:
        """Plain data for JSON."""
        out: dict[str, object] = {
            "class_id": self.class_id,
            "baseline": self.baseline,
            "forwards": self.forwards,
            "flat": self.flat,
            "verdicts": self.verdicts,
            "verdict": self.verdict.to_dict(),
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


_WORDS = {"better": "better", "same": "about the same", "worse": "worse"}


def curves_verdict(curves: PerturbationCurves) -> TrustVerdict:
    """Trusted only when the map beats the random map on both curves (each by the margin of :func:`compare_auc`);
    flat when the probability does not move whatever is deleted (no map can be judged then)."""
    if curves.flat:
        low, high = curves.score_range
        return TrustVerdict(
            "deletion/insertion",
            "flat",
            f"The class probability hardly moves ({low:.3f} … {high:.3f}) whatever is deleted or inserted: the "
            "model's score does not depend on this image's pixels (untrained or saturated), so these curves cannot "
            "judge any map.",
        )
    v = curves.verdicts
    if v is None or curves.random_deletion is None or curves.random_insertion is None:
        return TrustVerdict(
            "deletion/insertion",
            "unreferenced",
            f"Deletion AUC {curves.deletion.auc:.3f}, insertion AUC {curves.insertion.auc:.3f} (no random map to "
            "compare with).",
        )
    numbers = (
        f"Deletion AUC {curves.deletion.auc:.3f} vs random {curves.random_deletion.auc:.3f} "
        f"({_WORDS[v['deletion']]}); insertion AUC {curves.insertion.auc:.3f} vs random "
        f"{curves.random_insertion.auc:.3f} ({_WORDS[v['insertion']]}). Differences under "
        f"{AUC_MARGIN:g} or {AUC_MARGIN_SHARE:.0%} of the random AUC count as the same "
        "(one random map is one draw)."
    )
    if v["deletion"] == v["insertion"] == "better":
        verdict = f"{numbers} The map ranks the evidence better than chance."
        return TrustVerdict("deletion/insertion", "trusted", verdict)
    return TrustVerdict(
        "deletion/insertion",
        "doubtful",
        f"{numbers} The map does not clearly beat a random one on both curves: do not read much into it.",
    )


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
    sal = input_map(saliency, (H, W))
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
                check_class(class_id, probs.shape[1])
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
