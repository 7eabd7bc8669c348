"""What a map says, and why it may look empty: numbers and findings in plain words.

:func:`diagnose` is a pure function over an :class:`~cam_core.engine.ExplainResult`
(plus, optionally, the layer's :class:`~cam_core.models.layers.LayerInfo`, the name of
the recommended layer and a :class:`HeadProbe`). It measures one map (one image,
one class, one method) and says, with the fix, why the usual ReLU'd display of it
may mislead. The seed question (a correct prediction with a cosine logit of
0.9999 and a blank Grad-CAM at ``extractor.extractor.7.2.conv3``) has four
causes, each a finding here:

- ``pre_activation``: the layer's activations are signed (before BatchNorm, the
  residual add and the ReLU), so positive weights on negative activations give
  negative evidence and the weighted sum can be negative everywhere;
- ``residual_branch``: the layer is inside a residual branch, so its map shows
  only the branch's correction, not what the next block sees;
- ``centred_map``: a scale-invariant head (normalised embedding + cosine
  classifier) makes the gradient at the pooled features orthogonal to them
  (Euler: ⟨∇f y, f⟩ = 0), so the Grad-CAM map at the block output sums to about
  zero: it shows *relative* evidence and ReLU cuts about half of it;
- ``near_bound``: the logit sits at the bound of the output range ([-1, 1] for a
  cosine head), where the score saturates and its gradient vanishes.

They add up to ``empty_after_relu`` (or ``mostly_negative``), whose text names the
causes found and whose fix names the layer and methods to try.

Two findings are about the method, not the map: ``class_agnostic`` (Eigen-CAM, KPCA-CAM: the
layer's first principal component, the same for every class, signed so that bright means
strongly activated) and ``random_baseline`` (Random-CAM: random channel weights, the reference
a real map should beat).

**Output range rule** (:func:`output_range`): the softmax target lies in [0, 1].
Logits are taken as bounded in [-1, 1] (a cosine classifier) when every logit of
the image lies within ``1 + BOUND_TOL`` of zero *and* the largest reaches
``BOUNDED_MIN_SPAN`` (tiny logits, as untrained models give, say nothing about the
range). A score is near a bound when it is within ``NEAR_BOUND_MARGIN`` of it.
:func:`probe_head` measures scale invariance directly (one forward).

:func:`inspect_point` reads one position of a map: each class's value and, for
methods with channel weights (Grad-CAM, CAM, Score-CAM, Ablation-CAM), the
channels contributing most there.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Literal

import numpy as np
import torch
from torch import Tensor, nn

from ..engine.capture import replace_output
from ..engine.methods import METHODS
from ..errors import CamError
from ..modules import model_lock

if TYPE_CHECKING:
    from ..engine.explainer import ExplainResult
    from ..models.layers import LayerInfo

__all__ = [
    "BOUNDED_MIN_SPAN",
    "BOUND_TOL",
    "CENTRED_RATIO",
    "EMPTY_POS_SHARE",
    "MOSTLY_NEGATIVE_SHARE",
    "NEAR_BOUND_MARGIN",
    "NEGATIVE_MAJORITY_SHARE",
    "NEGATIVE_WEIGHTS_SHARE",
    "SCALE_INVARIANT_CHANGE",
    "SIGNED_DEPTH",
    "SIGNED_NEG_FRAC",
    "ChannelContribution",
    "Diagnosis",
    "Finding",
    "HeadProbe",
    "PointClass",
    "PointInspection",
    "blank_after_relu",
    "diagnose",
    "diagnose_result",
    "inspect_point",
    "layer_context",
    "output_range",
    "positive_area",
    "positive_share",
    "probe_head",
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

Severity = Literal["info", "warning"]


@dataclass(frozen=True)
class Finding:
    """One thing worth knowing about a map.

    Attributes:
        code: Stable short code (``empty_after_relu``, ``mostly_negative``, ``pre_activation``,
            ``residual_branch``, ``centred_map``, ``scale_invariant_head``, ``near_bound``, ``zero_map``,
            ``class_agnostic``, ``random_baseline``).
        severity: ``warning`` (the display misleads) or ``info`` (how to read it).
        text: What was found, in plain words, with the numbers.
        fix: What to do about it.
    """

    code: str
    severity: Severity
    text: str
    fix: str

    def to_dict(self) -> dict[str, str]:
        """Plain data for JSON."""
        return asdict(self)


@dataclass(frozen=True)
class HeadProbe:
    """How the model's output reacts to scaling one layer's output (see :func:`probe_head`).

    Attributes:
        layer: The layer whose output was scaled.
        factor: The scale factor.
        change: max |Δlogit| / max |logit| over the images.
    """

    layer: str
    factor: float
    change: float

    @property
    def scale_invariant(self) -> bool:
        """Whether the head ignores the scale of the layer's output (a normalised embedding)."""
        return self.change <= SCALE_INVARIANT_CHANGE


@dataclass
class Diagnosis:
    """Numbers and findings for one map (image ``image``, class ``class_id``, method ``method``).

    Attributes:
        layer, method, image, class_id, class_name: What was diagnosed.
        target: The explained score (``logit``, ``softmax`` or a contrast).
        logit, prob: The class's logit and softmax probability; ``rank`` 1 is the top class.
        map_min, map_max, map_mean, map_std: The signed map at the layer's resolution.
        pos_mass_share: Share of the map's absolute mass that is positive: what ReLU keeps.
        neg_mass_share: Share that is negative: what ReLU throws away.
        pos_area: Share of the map's cells that are positive.
        centred_ratio: |mean| / std of the map (small: centred on zero); None for a constant map.
        act_min, act_max, act_neg_frac: The layer's activations on this image (None if unknown).
        grad_pos_frac: Share of the gradient's entries that are positive (gradient methods).
        weight_pos_frac: Share of Grad-CAM's channel weights (pooled gradients) that are positive.
        output_range: The score's range when bounded ((-1, 1) for a cosine head), else None.
        range_rule: How ``output_range`` was decided, in words.
        near_bound: Whether the score is within ``NEAR_BOUND_MARGIN`` of a bound of its range.
        scale_change: From a :class:`HeadProbe`, when given.
        hints: The layer tree's hints for this layer.
        recommended: The recommended layer's name, when given.
        findings: What the numbers mean, with fixes.
    """

    layer: str
    method: str
    image: int
    class_id: int
    class_name: str
    target: str
    logit: float
    prob: float
    rank: int
    map_min: float
    map_max: float
    map_mean: float
    map_std: float
    pos_mass_share: float
    neg_mass_share: float
    pos_area: float
    centred_ratio: float | None
    act_min: float | None
    act_max: float | None
    act_neg_frac: float | None
    grad_pos_frac: float | None
    weight_pos_frac: float | None
    output_range: tuple[float, float] | None
    range_rule: str
    near_bound: bool
    scale_change: float | None
    hints: tuple[str, ...]
    recommended: str | None
    findings: list[Finding] = field(default_factory=list)

    @property
    def codes(self) -> list[str]:
        """The findings' codes, in order."""
        return [f.code for f in self.findings]

    @property
    def empty_after_relu(self) -> bool:
        """Whether the ReLU'd display of this map is (nearly) blank."""
        return "empty_after_relu" in self.codes or "zero_map" in self.codes

    @property
    def summary(self) -> str:
        """One line for a caption: the first finding's code in words, or that none were found."""
        if not self.findings:
            return f"{self.pos_mass_share:.0%} of the map is positive; no problems found"
        words = [f.code.replace("_", " ") for f in self.findings]
        return f"{self.pos_mass_share:.0%} positive; " + "; ".join(words)

    def to_dict(self) -> dict[str, object]:
        """Plain data for JSON (NaN becomes None)."""
        out = asdict(self)
        out["findings"] = [f.to_dict() for f in self.findings]
        out["output_range"] = list(self.output_range) if self.output_range else None
        out["hints"] = list(self.hints)
        out["summary"] = self.summary
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in out.items()}


def output_range(logits: Tensor, target: str = "logit") -> tuple[tuple[float, float] | None, str]:
    """The range of the explained score, when it is bounded (rule in the module docstring).

    Args:
        logits: One image's logits (C,).
        target: The explained score's name (``logit``, ``softmax``, or anything else).

    Returns:
        ``(range or None, the rule's verdict in words)``.
    """
    if target in ("softmax", "sigmoid"):
        return (0.0, 1.0), f"{target} probabilities lie in [0, 1]"
    if target != "logit":
        return None, f"the score {target!r} is not a single logit; its range is not inferred"
    top = float(logits.abs().max()) if logits.numel() else 0.0
    if logits.numel() >= 2 and top <= 1 + BOUND_TOL:
        if top >= BOUNDED_MIN_SPAN:
            return (-1.0, 1.0), "every logit lies in [-1, 1], as a cosine classifier's do"
        return None, f"all logits are small (|logit| ≤ {top:.3g}): the range cannot be told"
    return None, f"logits reach {top:.3g}: unbounded (a linear head)"


def _near_bound(value: float, bounds: tuple[float, float] | None) -> str | None:
    if bounds is None:
        return None
    lo, hi = bounds
    margin = NEAR_BOUND_MARGIN * (hi - lo) / 2
    if value >= hi - margin:
        return "upper"
    if value <= lo + margin:
        return "lower"
    return None


def _fix_for_negative(res: ExplainResult, i: int, k: int, method: str, hints: Sequence[str], rec: str | None) -> str:
    """'try the block output `X` (recommended) or HiResCAM/LayerCAM; view the signed map'."""
    parts = []
    if rec and rec != res.layer:
        where = "the block output" if "residual_branch" in hints else "the layer"
        parts.append(f"try {where} `{rec}` (recommended)")
    alts = []
    for m in ("hirescam", "layercam"):
        # An alternative already computed here and just as empty is no help.
        if m != method and not (m in res.maps and positive_share(res.maps[m][i, k]) <= EMPTY_POS_SHARE):
            alts.append(METHODS[m].title)
    if alts:
        parts.append(("or " if parts else "try ") + "/".join(alts))
    return " ".join(parts) + ("; " if parts else "") + "view the signed map"


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


def diagnose(
    res: ExplainResult,
    i: int = 0,
    k: int = 0,
    method: str = "gradcam",
    layer_info: LayerInfo | None = None,
    recommended: str | None = None,
    head: HeadProbe | None = None,
) -> Diagnosis:
    """Measure one map and explain, with fixes, why its usual display may mislead.

    Args:
        res: The result holding the map.
        i: Image index.
        k: Class slot (index into ``res.class_ids[i]``).
        method: A method in ``res.maps``.
        layer_info: The layer's entry from :func:`cam_core.models.layers.list_layers` (for its hints).
        recommended: The recommended layer's name (suggested as the fix).
        head: A :func:`probe_head` result for this model and image, if measured.

    Returns:
        A :class:`Diagnosis` with numbers and findings.

    Raises:
        CamError: ``method`` was not computed, or ``i``/``k`` out of range.
    """
    if method not in res.maps:
        raise CamError(f"method {method!r} was not computed; have: {', '.join(res.maps)}")
    n, kk = res.class_ids.shape
    if not (0 <= i < n and 0 <= k < kk):
        raise CamError(f"image {i}, class slot {k} out of range: the result has {n} images and {kk} classes each")
    cam = res.maps[method][i, k].double()
    if res.valid is not None:  # a letterbox: the pad is no part of the map
        cam = cam[res.valid[0, 0]]
    cid = int(res.class_ids[i, k])
    logits = res.logits[i]
    total = float(cam.abs().sum())
    pos = float(cam.clamp_min(0).sum())
    mean, std = float(cam.mean()), float(cam.std(unbiased=False))
    stats = res.stats
    act_min = float(stats["act_min"][i]) if "act_min" in stats else None
    act_max = float(stats["act_max"][i]) if "act_max" in stats else None
    act_neg = float(stats["act_neg_frac"][i]) if "act_neg_frac" in stats else None
    grad_pos = float(stats["grad_pos_frac"][i, k]) if "grad_pos_frac" in stats else None
    w = res.weights.get("gradcam")
    weight_pos = float((w[i, k] > 0).double().mean()) if w is not None else None
    bounds, rule = output_range(logits, res.target)
    if res.target == "sigmoid":
        score = float(torch.sigmoid(logits[cid]))
    else:
        score = float(res.probs[i, cid]) if res.target == "softmax" else float(logits[cid])
    side = _near_bound(score, bounds)
    hints = tuple(layer_info.hints) if layer_info is not None else ()
    d = Diagnosis(
        layer=res.layer,
        method=method,
        image=i,
        class_id=cid,
        class_name=res.class_names[i][k],
        target=res.target,
        logit=float(logits[cid]),
        prob=float(res.probs[i, cid]),
        rank=int((logits > logits[cid]).sum()) + 1,
        map_min=float(cam.min()),
        map_max=float(cam.max()),
        map_mean=mean,
        map_std=std,
        pos_mass_share=pos / total if total > 0 else 0.0,
        neg_mass_share=(total - pos) / total if total > 0 else 0.0,
        pos_area=positive_area(cam),
        centred_ratio=abs(mean) / std if std > 0 else None,
        act_min=act_min,
        act_max=act_max,
        act_neg_frac=act_neg,
        grad_pos_frac=grad_pos,
        weight_pos_frac=weight_pos,
        output_range=bounds,
        range_rule=rule,
        near_bound=side is not None,
        scale_change=head.change if head is not None else None,
        hints=hints,
        recommended=recommended,
    )
    d.findings = _findings(d, res, k, side, head)
    return d


def _signed(d: Diagnosis) -> bool:
    measured = (
        d.act_neg_frac is not None
        and d.act_min is not None
        and d.act_max is not None
        and d.act_neg_frac >= SIGNED_NEG_FRAC
        and -d.act_min >= SIGNED_DEPTH * max(d.act_max, 0.0)
    )
    return measured or "pre_activation" in d.hints


def _findings(d: Diagnosis, res: ExplainResult, k: int, side: str | None, head: HeadProbe | None) -> list[Finding]:
    title = METHODS[d.method].title if d.method in METHODS else d.method
    rec = d.recommended if d.recommended and d.recommended != d.layer else None
    what = f"the {title} map of '{d.class_name}' at `{d.layer}`"
    found: list[Finding] = []
    causes: list[str] = []  # short clauses for the empty-map finding's "because"

    spec = METHODS.get(d.method)
    if spec is not None and spec.class_agnostic:
        found.append(
            Finding(
                "class_agnostic",
                "info",
                f"Class-agnostic: {title} is the layer's first principal component, the same map for every class: "
                f"it shows the strongest pattern at `{d.layer}`, not the evidence for '{d.class_name}'. Its sign is "
                "set so that bright means strongly activated (the decomposition's own sign is arbitrary).",
                "for the class's own evidence, compare a class-specific method (Grad-CAM, HiResCAM)",
            )
        )
    elif d.method == "randomcam":
        found.append(
            Finding(
                "random_baseline",
                "info",
                f"Random baseline: {title} weights the layer's channels at random; it has the layer's structure but "
                "knows nothing of the class. A map worth reading beats it on the trust checks.",
                "use it as the reference in the Trust tab, not as an explanation",
            )
        )
    if d.map_max == d.map_min == 0.0:
        logits = res.logits[d.image]
        if bool((logits == logits[0]).all()):
            return [
                Finding(
                    "zero_head",
                    "warning",
                    f"Zero head: every class has the same logit ({float(logits[0]):.4g}), so the classifier head "
                    "outputs a constant: its weights are all zero (as torchvision initialises the heads of "
                    "untrained ViT and Swin models), and no class's score depends on this layer or any other.",
                    "load trained weights (a checkpoint, or pretrained weights); no layer or method can help",
                )
            ]
        return [
            *found,
            Finding(
                "zero_map",
                "warning",
                f"Zero map: {what} is zero everywhere: the score gets no gradient through this layer on this "
                "image, or the layer's output is zero.",
                f"pick a layer on the path to the head{f' (the recommended `{rec}`)' if rec else ''}",
            ),
        ]

    if _signed(d):
        if d.act_neg_frac is not None and d.act_min is not None and d.act_max is not None:
            nums = f" ({d.act_neg_frac:.0%} of them negative, from {d.act_min:.3g} to {d.act_max:.3g})"
        else:
            nums = ""
        causes.append("the layer's activations are signed")
        found.append(
            Finding(
                "pre_activation",
                "warning",
                f"Signed activations: the layer's output takes negative values{nums}, as outputs taken before "
                "an activation do (a convolution, BatchNorm, a residual sum without ReLU). CAM methods assume "
                "non-negative activations: a positive channel weight times a negative activation counts as "
                "negative evidence, so regions cancel or flip sign.",
                (
                    f"take the map after the activation, e.g. the recommended `{rec}`"
                    if rec
                    else "take the map after the activation (a block output)"
                )
                + "; or view the signed map",
            )
        )
    if "residual_branch" in d.hints:
        causes.append("it sits inside a residual branch, before the residual add (and the activation after it)")
        found.append(
            Finding(
                "residual_branch",
                "warning",
                "Residual branch: the layer's output is added to the skip path (and then goes through the "
                "block's activation) before the next block sees it, so its map shows only the branch's "
                "correction, not what the network passes on.",
                f"use the block output `{rec}` (recommended)" if rec else "use the block's output",
            )
        )
    if d.weight_pos_frac is not None and d.weight_pos_frac < NEGATIVE_WEIGHTS_SHARE and d.method == "gradcam":
        causes.append(f"most channel weights are negative ({d.weight_pos_frac:.0%} positive)")

    centred = d.centred_ratio is not None and d.centred_ratio <= CENTRED_RATIO
    if head is not None and head.scale_invariant:
        found.append(
            Finding(
                "scale_invariant_head",
                "info",
                f"Scale-invariant head: scaling `{head.layer}`'s output by {head.factor:g} changed the logits by "
                f"{head.change:.2%} (a normalised embedding / cosine classifier). The gradient at the pooled "
                "features is then orthogonal to them, so Grad-CAM maps at the block output sum to about zero.",
                "read maps as relative evidence (signed view); compare classes with a contrast map",
            )
        )
    if centred:
        causes.append("the map is centred on zero (relative evidence)")
        why = (
            ", as the scale-invariant head measured above gives (a normalised embedding and a cosine classifier)"
            if head is not None and head.scale_invariant
            else ""
        )
        found.append(
            Finding(
                "centred_map",
                "info",
                f"Centred on zero: the map's mean ({d.map_mean:.3g}) is small against its spread ({d.map_std:.3g}). "
                f"It shows relative evidence (where the score would rise versus fall){why}, so ReLU cuts about half "
                f"of it ({d.neg_mass_share:.0%} of its mass here).",
                "view the signed map; to see what separates two classes, use a contrast map (logit A − logit B)",
            )
        )
    if side is not None:
        found.append(_bound_finding(d, res, k, side))
        if side == "upper":
            causes.append("the score is saturated at its bound, so its gradient nearly vanishes")

    fix = _fix_for_negative(res, d.image, k, d.method, d.hints, d.recommended)
    because = (
        f" Because {'; '.join(causes)}."
        if causes
        else (" The class's evidence at this layer is negative: what raises the score here comes from elsewhere.")
    )
    if d.pos_mass_share <= EMPTY_POS_SHARE:
        found.insert(
            0,
            Finding(
                "empty_after_relu",
                "warning",
                f"Empty after ReLU: {what} is negative {'everywhere' if d.map_max <= 0 else 'almost everywhere'} "
                f"({d.neg_mass_share:.0%} of its mass; min {d.map_min:.3g}, max {d.map_max:.3g}), so the usual "
                f"ReLU'd display is blank; the signed map keeps it.{because}",
                fix,
            ),
        )
    elif d.pos_mass_share < MOSTLY_NEGATIVE_SHARE:
        found.insert(
            0,
            Finding(
                "mostly_negative",
                "warning",
                f"Mostly negative: only {d.pos_mass_share:.0%} of {what} is positive; the ReLU'd display "
                f"stretches that remainder to full brightness and hides the rest.{because}",
                fix,
            ),
        )
    elif d.pos_mass_share < NEGATIVE_MAJORITY_SHARE and not centred:
        found.insert(
            0,
            Finding(
                "negative_majority",
                "info",
                f"More against than for: {d.neg_mass_share:.0%} of {what}'s mass is negative (evidence against "
                "the class); the ReLU'd display shows only the positive part, so it hides most of the map.",
                "read the signed view next to it",
            ),
        )
    return found


def _bound_finding(d: Diagnosis, res: ExplainResult, k: int, side: str) -> Finding:
    logits = res.logits[d.image]
    others = [c for c in logits.argsort(descending=True).tolist() if c != d.class_id]
    runner = f"the runner-up, class {others[0]}" if others else "another class"
    if d.target in ("softmax", "sigmoid"):
        p = float(torch.sigmoid(torch.tensor(d.logit))) if d.target == "sigmoid" else d.prob
        return Finding(
            "near_bound",
            "warning" if side == "upper" else "info",
            f"Saturated {d.target}: the explained probability {p:.4f} is at the {side} bound of [0, 1], where its "
            f"gradient p(1 − p) = {p * (1 - p):.2g} nearly vanishes; the map shows what would change it slightly.",
            "explain the logit (target=logit) instead",
        )
    slope = math.sqrt(max(0.0, 1.0 - d.logit**2))
    return Finding(
        "near_bound",
        "warning" if side == "upper" else "info",
        f"Logit at the {side} bound: {d.logit:.4f}, and {d.range_rule}. Near the bound the score saturates: a "
        f"cosine's gradient shrinks like √(1 − cos²) = {slope:.3f}, so the map shows the small remaining "
        "misalignment, not the evidence for the class; a class far from its bound can light up more.",
        f"explain a contrast with {runner} (logit A − logit B), or use Score-CAM/Ablation-CAM "
        "(they measure the score, not its gradient)",
    )


def diagnose_result(
    res: ExplainResult,
    layer_info: LayerInfo | None = None,
    recommended: str | None = None,
    head: HeadProbe | None = None,
) -> list[list[dict[str, Diagnosis]]]:
    """:func:`diagnose` for every image, class slot and method: ``out[i][k][method]``."""
    n, kk = res.class_ids.shape
    return [
        [{m: diagnose(res, i, k, m, layer_info, recommended, head) for m in res.maps} for k in range(kk)]
        for i in range(n)
    ]


def layer_context(
    model: object, layer: str, input_size: int | Sequence[int] | None = None
) -> tuple[LayerInfo | None, str | None]:
    """The layer's :class:`~cam_core.models.layers.LayerInfo` and the recommended layer's name, for :func:`diagnose`.

    Uses the layer tree's (cached) analysis; a model that cannot be analysed gives ``(None, None)``.
    """
    from ..models.layers import list_layers

    try:
        infos = list_layers(model, input_size)
    except CamError:
        return None, None
    info = next((li for li in infos if li.name == layer), None)
    rec = next((li.name for li in infos if li.recommended), None)
    return info, rec


def probe_head(model: object, x: Tensor, layer: str | None = None, factor: float = 2.0) -> HeadProbe:
    """Measure whether the head ignores the scale of ``layer``'s output (one forward).

    The layer's output is replaced by itself and by itself times ``factor`` in one
    batched forward; a normalised embedding / cosine classifier gives the same
    logits for both. Runs on the model's own device, under its lock, in its own mode.

    Args:
        model: A LoadedModel or ``nn.Module``.
        x: (N, 3, H, W) preprocessed images.
        layer: Default the recommended layer.
        factor: The scale applied.

    Returns:
        A :class:`HeadProbe`.
    """
    from ..models.layers import recommended_layer

    module = getattr(model, "module", model)
    if not isinstance(module, nn.Module):
        raise CamError(f"expected a LoadedModel or torch.nn.Module, got {type(model).__name__}")
    layer = layer or recommended_layer(model)
    device = next((t.device for t in (*module.parameters(), *module.buffers())), torch.device("cpu"))
    n = x.shape[0]
    x = x.to(device)
    with model_lock(module), torch.no_grad():
        try:
            with replace_output(module, layer, lambda o: torch.cat([o, o * factor])):
                out = module(x)
        except RuntimeError:
            out = None
        if out is None or out.shape[0] != 2 * n:  # the rest of the net mixes in earlier tensors: feed x twice
            with replace_output(module, layer, lambda o: torch.cat([o[:n], o[n:] * factor])):
                out = module(torch.cat([x, x]))
    base, scaled = out[:n].float(), out[n:].float()
    change = float((scaled - base).abs().max() / base.abs().max().clamp_min(1e-12))
    return HeadProbe(layer=layer, factor=factor, change=change)


# --------------------------------------------------------------------------------------------- points


@dataclass(frozen=True)
class ChannelContribution:
    """One channel's share of a map value at a point: ``contribution = weight · activation``."""

    channel: int
    contribution: float
    weight: float
    activation: float


@dataclass(frozen=True)
class PointClass:
    """One class's map value at the point, and the channels that make it.

    Attributes:
        class_id, class_name: The class.
        value: The map's value there.
        channels: The ``top`` channels by |contribution|, largest first (empty when the
            method has no channel weights or activations were not kept).
        rest: The sum of the other channels' contributions (value = Σ channels + rest).
    """

    class_id: int
    class_name: str
    value: float
    channels: list[ChannelContribution]
    rest: float


@dataclass(frozen=True)
class PointInspection:
    """What a map says at one position (see :func:`inspect_point`).

    Attributes:
        image, method, layer: What was read.
        space: ``input`` (the upsampled map) or ``layer`` (the layer's own grid).
        row, col: The position in that space.
        cell: The nearest cell of the layer's grid.
        classes: One entry per class slot.
        note: Why channels are missing, if they are.
    """

    image: int
    method: str
    layer: str
    space: str
    row: int
    col: int
    cell: tuple[int, int]
    classes: list[PointClass]
    note: str = ""

    def to_dict(self) -> dict[str, object]:
        """Plain data for JSON."""
        return asdict(self)


def _bilinear_taps(pos: int, size_in: int, size_out: int) -> list[tuple[int, float]]:
    """Source cells and weights of ``F.interpolate(mode='bilinear', align_corners=False)`` at one output index."""
    src = max((pos + 0.5) * size_in / size_out - 0.5, 0.0)
    i0 = min(math.floor(src), size_in - 1)
    i1 = min(i0 + 1, size_in - 1)
    lam = src - i0
    return [(i0, 1.0 - lam), (i1, lam)] if i1 != i0 else [(i0, 1.0)]


def inspect_point(
    res: ExplainResult,
    i: int,
    row: int,
    col: int,
    method: str = "gradcam",
    *,
    space: Literal["input", "layer"] = "input",
    top: int = 5,
) -> PointInspection:
    """Each class's map value at one position, and the channels contributing most there.

    In ``input`` space the value is the bilinearly upsampled map's (as
    :meth:`ExplainResult.upsampled` gives); channel contributions are taken with
    the same interpolation, so they add up to it exactly. Channels need the
    method's channel weights (Grad-CAM's pooled gradients, CAM, Score-CAM,
    Ablation-CAM) and ``explain(..., keep_activations=True)``.

    Args:
        res: An explain result.
        i: Image index.
        row, col: Position, in input pixels (``space="input"``) or layer cells.
        method: A method in ``res.maps``.
        space: ``input`` or ``layer``.
        top: How many channels to list per class.

    Returns:
        A :class:`PointInspection` (plain data).

    Raises:
        CamError: unknown method or space, or a position outside the map.
    """
    if method not in res.maps:
        raise CamError(f"method {method!r} was not computed; have: {', '.join(res.maps)}")
    maps = res.maps[method][i]  # (K, h, w)
    h, w = maps.shape[-2:]
    if space == "input":
        H, W = res.input_size
    elif space == "layer":
        H, W = h, w
    else:
        raise CamError(f"unknown space {space!r}; choose from: input, layer")
    if not (0 <= row < H and 0 <= col < W):
        raise CamError(f"point ({row}, {col}) is outside the {space} grid of {H}×{W}")
    if space == "input":
        taps = [(r, c, wr * wc) for r, wr in _bilinear_taps(row, h, H) for c, wc in _bilinear_taps(col, w, W)]
        cell = (min(h - 1, row * h // H), min(w - 1, col * w // W))
    else:
        taps, cell = [(row, col, 1.0)], (row, col)
    values = sum(maps[:, r, c].double() * t for r, c, t in taps)
    weights = res.weights.get(method)
    note = ""
    if weights is None:
        note = f"{METHODS[method].title if method in METHODS else method} has no channel weights to break down"
    elif res.activations is None:
        note = "channel contributions need explain(..., keep_activations=True)"
    act = None
    if not note:
        A = res.activations[i].double()  # (C, h, w)
        act = sum(A[:, r, c] * t for r, c, t in taps)  # (C,)
    classes = []
    for k, cid in enumerate(res.class_ids[i].tolist()):
        channels: list[ChannelContribution] = []
        rest = float(values[k])
        if act is not None:
            wk = weights[i, k].double()
            contrib = wk * act
            order = contrib.abs().argsort(descending=True)[:top].tolist()
            channels = [ChannelContribution(c, float(contrib[c]), float(wk[c]), float(act[c])) for c in order]
            rest = float(contrib.sum()) - sum(ch.contribution for ch in channels)
        classes.append(PointClass(cid, res.class_names[i][k], float(values[k]), channels, rest))
    return PointInspection(i, method, res.layer, space, row, col, cell, classes, note)
