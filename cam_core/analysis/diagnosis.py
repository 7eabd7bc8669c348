"""The record a diagnosis makes of one map: its numbers (:class:`Diagnosis`), what they mean (:class:`Finding`),
and a head probe (:class:`HeadProbe`).

Plain data, apart from :mod:`.diagnose` (which measures) and :mod:`.findings` (which reads the numbers), so
that both can name them without importing each other.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Literal

from .thresholds import SCALE_INVARIANT_CHANGE

__all__ = ["Diagnosis", "Finding", "HeadProbe", "Severity"]

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
