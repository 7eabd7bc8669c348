"""The findings of a diagnosis, one small rule each: a rule reads the map's numbers and returns a
:class:`Finding` or ``None``.

Rules are kept apart so that each can be read (and tested) on its own and a new one is one function in a
list. :func:`findings` runs them in the order a reader needs them: the headline (is the ReLU'd view empty,
mostly negative?) first, with the causes the other rules found in its "because", then what the method is,
then why the layer or the head gives such a map.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from ..engine.methods import METHODS
from .diagnosis import Diagnosis, Finding, HeadProbe
from .thresholds import (
    CENTRED_RATIO,
    EMPTY_POS_SHARE,
    MOSTLY_NEGATIVE_SHARE,
    NEGATIVE_MAJORITY_SHARE,
    NEGATIVE_WEIGHTS_SHARE,
    NOT_PREDICTED_PROB,
    NOT_PREDICTED_RANK,
    SIGNED_DEPTH,
    SIGNED_NEG_FRAC,
    positive_share,
)

if TYPE_CHECKING:
    from ..engine.result import ExplainResult

__all__ = [
    "CAUSES",
    "HEADLINES",
    "LAYER_RULES",
    "METHOD_RULES",
    "MapContext",
    "Rule",
    "findings",
]

@dataclass(frozen=True)
class MapContext:
    """What every rule reads: the diagnosis's numbers, the result they came from, and a few words they share.

    Attributes:
        d: The diagnosis (numbers only; its findings are being made).
        res: The result holding the map.
        k: The class slot.
        side: ``upper`` or ``lower`` when the score is at a bound of its range, else ``None``.
        head: A head probe, when one was measured.
    """

    d: Diagnosis
    res: ExplainResult
    k: int
    side: str | None
    head: HeadProbe | None

    @property
    def title(self) -> str:
        return METHODS[self.d.method].title if self.d.method in METHODS else self.d.method

    @property
    def rec(self) -> str | None:
        """The recommended layer, when it is another one (the fix to suggest)."""
        d = self.d
        return d.recommended if d.recommended and d.recommended != d.layer else None

    @property
    def what(self) -> str:
        return f"the {self.title} map of '{self.d.class_name}' at `{self.d.layer}`"

    @property
    def centred(self) -> bool:
        return self.d.centred_ratio is not None and self.d.centred_ratio <= CENTRED_RATIO

    @property
    def scale_invariant(self) -> bool:
        return self.head is not None and self.head.scale_invariant


Rule = Callable[[MapContext], "Finding | None"]


def findings(d: Diagnosis, res: ExplainResult, k: int, side: str | None, head: HeadProbe | None) -> list[Finding]:
    """Every finding about one map, in reading order (see the module docstring).

    A map that is zero everywhere gets only the finding that says why (a zero head, or a layer off the
    score's path): the other rules would read meaning into nothing.
    """
    m = MapContext(d, res, k, side, head)
    about_method = [f for rule in (not_predicted, *METHOD_RULES) if (f := rule(m)) is not None]
    if d.map_max == d.map_min == 0.0:
        blank = zero_head(m)
        return [blank] if blank is not None else [*about_method, zero_map(m)]
    about_layer = [f for rule in LAYER_RULES if (f := rule(m)) is not None]
    causes = [c for cause in CAUSES if (c := cause(m)) is not None]
    headline = next((f for rule in HEADLINES if (f := rule(m, causes)) is not None), None)
    unlikely = [f for f in about_method if f.code == "not_predicted"]  # what the class is comes first
    rest = [f for f in about_method if f.code != "not_predicted"]
    return [*unlikely, *([headline] if headline is not None else []), *rest, *about_layer]


# ---- what the class is -------------------------------------------------------------------------------------


def _ordinal(n: int) -> str:
    tail = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{tail}"


def not_predicted(m: MapContext) -> Finding | None:
    """A class far down the ranking: its map shows evidence for a class the model does not predict."""
    d = m.d
    if d.rank <= NOT_PREDICTED_RANK or d.prob >= NOT_PREDICTED_PROB:
        return None
    return Finding(
        "not_predicted",
        "warning",
        f"Not what the model predicts: '{d.class_name}' comes {_ordinal(d.rank)} in the ranking, p = {d.prob:.3%}. "
        "Its map shows where the image would count for a class the model does not see here; it does not explain "
        "the model's prediction.",
        "explain one of the top classes (click its bar in the scores), or contrast this class with the top one",
    )


# ---- what the method is ------------------------------------------------------------------------------------


def class_agnostic(m: MapContext) -> Finding | None:
    """Eigen-CAM and its kin show the layer's strongest pattern, the same for every class."""
    spec = METHODS.get(m.d.method)
    if spec is None or not spec.class_agnostic:
        return None
    return Finding(
        "class_agnostic",
        "info",
        f"Class-agnostic: {m.title} is the layer's first principal component, the same map for every class: "
        f"it shows the strongest pattern at `{m.d.layer}`, not the evidence for '{m.d.class_name}'. Its sign is "
        "set so that bright means strongly activated (the decomposition's own sign is arbitrary).",
        "for the class's own evidence, compare a class-specific method (Grad-CAM, HiResCAM)",
    )


def random_baseline(m: MapContext) -> Finding | None:
    """Random-CAM is the reference a real map should beat, not an explanation."""
    if m.d.method != "randomcam":
        return None
    return Finding(
        "random_baseline",
        "info",
        f"Random baseline: {m.title} weights the layer's channels at random; it has the layer's structure but "
        "knows nothing of the class. A map worth reading beats it on the trust checks.",
        "use it as the reference in the Trust tab, not as an explanation",
    )


# ---- a map that is zero everywhere ---------------------------------------------------------------------------


def zero_head(m: MapContext) -> Finding | None:
    """Every logit equal: the head is constant (untrained zero-initialised heads), no map can show anything."""
    logits = m.res.logits[m.d.image]
    if not bool((logits == logits[0]).all()):
        return None
    return Finding(
        "zero_head",
        "warning",
        f"Zero head: every class has the same logit ({float(logits[0]):.4g}), so the map is blank: the "
        "classifier's weights are all zero, as untrained (random-weight) ViT, MLP-Mixer and Sequencer "
        "models start, and no class's score depends on the image.",
        "load trained weights (a checkpoint, or pretrained weights); no layer or method can help",
    )


def zero_map(m: MapContext) -> Finding:
    """A zero map with a working head: the score does not reach this layer on this image."""
    rec = m.rec
    return Finding(
        "zero_map",
        "warning",
        f"Zero map: {m.what} is zero everywhere: the score gets no gradient through this layer on this "
        "image, or the layer's output is zero.",
        f"pick a layer on the path to the head{f' (the recommended `{rec}`)' if rec else ''}",
    )


# ---- why the layer or the head gives such a map --------------------------------------------------------------


def _signed(d: Diagnosis) -> bool:
    """Signed activations, measured on the image or known from the layer tree's hint."""
    measured = (
        d.act_neg_frac is not None
        and d.act_min is not None
        and d.act_max is not None
        and d.act_neg_frac >= SIGNED_NEG_FRAC
        and -d.act_min >= SIGNED_DEPTH * max(d.act_max, 0.0)
    )
    return measured or "pre_activation" in d.hints


def pre_activation(m: MapContext) -> Finding | None:
    """Signed activations turn positive weights into negative evidence: regions cancel or flip sign."""
    d, rec = m.d, m.rec
    if not _signed(d):
        return None
    if d.act_neg_frac is not None and d.act_min is not None and d.act_max is not None:
        nums = f" ({d.act_neg_frac:.0%} of them negative, from {d.act_min:.3g} to {d.act_max:.3g})"
    else:
        nums = ""
    return Finding(
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


def residual_branch(m: MapContext) -> Finding | None:
    """Inside a residual branch the map shows only the branch's correction."""
    if "residual_branch" not in m.d.hints:
        return None
    rec = m.rec
    return Finding(
        "residual_branch",
        "warning",
        "Residual branch: the layer's output is added to the skip path (and then goes through the "
        "block's activation) before the next block sees it, so its map shows only the branch's "
        "correction, not what the network passes on.",
        f"use the block output `{rec}` (recommended)" if rec else "use the block's output",
    )


def scale_invariant_head(m: MapContext) -> Finding | None:
    """A head that ignores the features' scale makes Grad-CAM maps at the block output sum to about zero."""
    head = m.head
    if head is None or not head.scale_invariant:
        return None
    return Finding(
        "scale_invariant_head",
        "info",
        f"The head ignores how strong the features are: multiplying `{head.layer}`'s output by {head.factor:g} "
        f"changed the scores by only {head.change:.2%} (a classifier on normalised features, such as a cosine "
        "head). The gradient then points along no feature's strength, so Grad-CAM maps at the block output "
        "sum to about zero.",
        "read maps as relative evidence (signed view); compare classes with a contrast map",
    )


def centred_map(m: MapContext) -> Finding | None:
    """A map centred on zero is relative evidence: ReLU cuts about half of it."""
    if not m.centred:
        return None
    d = m.d
    why = (
        ", as the scale-invariant head measured above gives (a normalised embedding and a cosine classifier)"
        if m.scale_invariant
        else ""
    )
    return Finding(
        "centred_map",
        "info",
        f"Centred on zero: the map's mean ({d.map_mean:.3g}) is small against its spread ({d.map_std:.3g}). "
        f"It shows relative evidence (where the score would rise versus fall){why}, so ReLU cuts about half "
        f"of it ({d.neg_mass_share:.0%} of its mass here).",
        "view the signed map; to see what separates two classes, use a contrast map (logit A − logit B)",
    )


def near_bound(m: MapContext) -> Finding | None:
    """The score sits at a bound of its range (a cosine's ±1, a probability's 0 or 1): its gradient nearly
    vanishes there."""
    d, res, side = m.d, m.res, m.side
    if side is None:
        return None
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


# ---- the causes an empty or negative map's headline names ------------------------------------------------------


def _signed_cause(m: MapContext) -> str | None:
    return "the layer's activations are signed" if _signed(m.d) else None


def _residual_cause(m: MapContext) -> str | None:
    if "residual_branch" not in m.d.hints:
        return None
    return "it sits inside a residual branch, before the residual add (and the activation after it)"


def _weights_cause(m: MapContext) -> str | None:
    d = m.d
    if d.weight_pos_frac is None or d.weight_pos_frac >= NEGATIVE_WEIGHTS_SHARE or d.method != "gradcam":
        return None
    return f"most channel weights are negative ({d.weight_pos_frac:.0%} positive)"


def _centred_cause(m: MapContext) -> str | None:
    return "the map is centred on zero (relative evidence)" if m.centred else None


def _bound_cause(m: MapContext) -> str | None:
    return "the score is saturated at its bound, so its gradient nearly vanishes" if m.side == "upper" else None


# ---- the headline: what the ReLU'd view hides ------------------------------------------------------------------


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


def _because(causes: Sequence[str]) -> str:
    if causes:
        return f" Because {'; '.join(causes)}."
    return " The class's evidence at this layer is negative: what raises the score here comes from elsewhere."


def empty_after_relu(m: MapContext, causes: Sequence[str]) -> Finding | None:
    """(Nearly) no positive mass: the usual ReLU'd display is blank."""
    d = m.d
    if d.pos_mass_share > EMPTY_POS_SHARE:
        return None
    return Finding(
        "empty_after_relu",
        "warning",
        f"Empty after ReLU: {m.what} is negative {'everywhere' if d.map_max <= 0 else 'almost everywhere'} "
        f"({d.neg_mass_share:.0%} of its mass; min {d.map_min:.3g}, max {d.map_max:.3g}), so the usual "
        f"ReLU'd display is blank; the signed map keeps it.{_because(causes)}",
        _fix_for_negative(m.res, d.image, m.k, d.method, d.hints, d.recommended),
    )


def mostly_negative(m: MapContext, causes: Sequence[str]) -> Finding | None:
    """A small positive remainder, stretched to full brightness by the ReLU'd display."""
    d = m.d
    if d.pos_mass_share >= MOSTLY_NEGATIVE_SHARE:
        return None
    return Finding(
        "mostly_negative",
        "warning",
        f"Mostly negative: only {d.pos_mass_share:.0%} of {m.what} is positive; the ReLU'd display "
        f"stretches that remainder to full brightness and hides the rest.{_because(causes)}",
        _fix_for_negative(m.res, d.image, m.k, d.method, d.hints, d.recommended),
    )


def negative_majority(m: MapContext, causes: Sequence[str]) -> Finding | None:
    """More mass against the class than for it (and not merely centred on zero, which has its own finding)."""
    d = m.d
    if d.pos_mass_share >= NEGATIVE_MAJORITY_SHARE or m.centred:
        return None
    return Finding(
        "negative_majority",
        "info",
        f"More against than for: {d.neg_mass_share:.0%} of {m.what}'s mass is negative (evidence against "
        "the class); the ReLU'd display shows only the positive part, so it hides most of the map.",
        "read the signed view next to it",
    )


METHOD_RULES: tuple[Rule, ...] = (class_agnostic, random_baseline)
LAYER_RULES: tuple[Rule, ...] = (pre_activation, residual_branch, scale_invariant_head, centred_map, near_bound)
CAUSES: tuple[Callable[[MapContext], str | None], ...] = (
    _signed_cause,
    _residual_cause,
    _weights_cause,
    _centred_cause,
    _bound_cause,
)
# The first that applies is the headline (they are ever milder: empty, mostly negative, more against than for).
HEADLINES: tuple[Callable[[MapContext, Sequence[str]], Finding | None], ...] = (
    empty_after_relu,
    mostly_negative,
    negative_majority,
)
