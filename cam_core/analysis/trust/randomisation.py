"""The model-randomisation sanity check, and its verdict per method.

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
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor, nn

from ...devices import place_model
from ...engine.methods import METHODS
from ...engine.targets import Target, resolve_target
from ...errors import CamError
from ...models.layers import grid_transform, recommended_layer
from ...modules import model_lock, unwrap_model
from ..sweep import _one_image, check_sweep_methods, maps_at_layers
from .inputs import Progress
from .verdict import TrustVerdict

__all__ = [
    "SANITY_MAX_CORR",
    "SanityResult",
    "barely_changes",
    "randomisation_check",
    "randomisation_units",
    "sanity_verdicts",
    "spearman",
]

# A map whose median rank correlation with the original over the randomisation steps exceeds this is flagged.
SANITY_MAX_CORR = 0.5
_SEQUENCES = (nn.Sequential, nn.ModuleList, nn.ModuleDict)


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


def barely_changes(corr: np.ndarray, threshold: float = SANITY_MAX_CORR) -> bool:
    """Whether a map's median rank correlation with the original (over the steps, NaN steps left out) exceeds
    ``threshold``: the median, as a fully random network's maps may still follow the image's layout and one
    step can flip a sign by chance. Maps that are constant at every step (all NaN) are not flagged."""
    return bool(np.isfinite(corr).any() and np.nanmedian(corr) > threshold)


def sanity_verdicts(res: SanityResult) -> dict[str, TrustVerdict]:
    """Each method's verdict: doubtful when flagged (its map barely changes as the weights are randomised)."""
    out: dict[str, TrustVerdict] = {}
    for m in res.methods:
        corr = res.rank_corr[m]
        title = METHODS[m].title if m in METHODS else m
        finite = corr[np.isfinite(corr)]
        numbers = (
            f"rank correlation {corr[0]:.2f} after the first of {len(corr)} steps, median "
            f"{np.median(finite):.2f}; flagged above {res.threshold:g}"
            if finite.size
            else "no rank correlation: the maps are constant"
        )
        if res.flagged.get(m):
            out[m] = TrustVerdict(
                "randomisation",
                "doubtful",
                f"{title} is flagged: its map stays similar to the original as the weights are randomised, so it "
                f"shows the image's structure more than what the model learnt ({numbers}).",
            )
        else:
            text = f"{title} passes: its map changes as the weights are randomised ({numbers})."
            out[m] = TrustVerdict("randomisation", "trusted", text)
    return out


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
            "verdicts": {m: v.to_dict() for m, v in sanity_verdicts(self).items()},
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
        flagged={m: barely_changes(c, threshold) for m, c in corr.items()},
    )
