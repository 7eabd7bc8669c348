"""What a trust check concludes about one map, decided here once so that the page, the command line and a
notebook say the same thing with the same numbers."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np

__all__ = ["FLAT_SPAN", "Outcome", "TrustVerdict", "score_range"]

# Below this spread of the class probability over every perturbed image (map and random curves together) the
# score does not depend on the image (an untrained or saturated model): the curves cannot rank any map.
FLAT_SPAN = 0.02

Outcome = Literal["trusted", "doubtful", "flat", "unreferenced"]


@dataclass(frozen=True)
class TrustVerdict:
    """One check's conclusion about one map.

    Attributes:
        check: ``deletion/insertion``, ``ROAD`` or ``randomisation``.
        outcome: ``trusted`` (the map beats its reference), ``doubtful`` (it does not clearly, or it is flagged),
            ``flat`` (the score does not move: the check cannot judge any map), ``unreferenced`` (no reference
            was run: numbers only).
        text: The numbers and what they mean, in a sentence or two.
    """

    check: str
    outcome: Outcome
    text: str

    @property
    def trusted(self) -> bool:
        """Whether the map passed this check."""
        return self.outcome == "trusted"

    def to_dict(self) -> dict[str, str]:
        """Plain data for JSON."""
        return asdict(self)


def score_range(curves: Sequence[np.ndarray | None]) -> tuple[float, float]:
    """Lowest and highest class probability over the curves given (``None`` for a reference not run); a span
    under :data:`FLAT_SPAN` says the check cannot judge any map."""
    scores = np.concatenate([c for c in curves if c is not None])
    return float(scores.min()), float(scores.max())
