"""Can a map be trusted? Deletion/insertion curves, ROAD, and the model-randomisation check, each with its verdict.

One module per check: :mod:`.curves` (deletion and insertion against a random map), :mod:`.road_metric` (ROAD,
remove and debias, against Random-CAM), :mod:`.randomisation` (maps as the model's weights are randomised).
Each check's result has a :class:`~.verdict.TrustVerdict` (``curves_verdict``, ``road_verdict``,
``sanity_verdicts``), decided here so that the page and the command line show the same conclusion.
"""

from .curves import (
    AUC_MARGIN,
    AUC_MARGIN_SHARE,
    BASELINES,
    BLUR_DIVISOR,
    Curve,
    PerturbationCurves,
    Verdict,
    compare_auc,
    curves_verdict,
    deletion_insertion,
)
from .randomisation import (
    SANITY_MAX_CORR,
    SanityResult,
    barely_changes,
    randomisation_check,
    randomisation_units,
    sanity_verdicts,
    spearman,
)
from .road_metric import (
    ROAD_FRACTIONS,
    ROAD_MARGIN,
    ROAD_NOISE,
    RoadResult,
    noisy_linear_imputation,
    road,
    road_verdict,
)
from .verdict import FLAT_SPAN, Outcome, TrustVerdict

__all__ = [
    "AUC_MARGIN",
    "AUC_MARGIN_SHARE",
    "BASELINES",
    "BLUR_DIVISOR",
    "FLAT_SPAN",
    "ROAD_FRACTIONS",
    "ROAD_MARGIN",
    "ROAD_NOISE",
    "SANITY_MAX_CORR",
    "Curve",
    "Outcome",
    "PerturbationCurves",
    "RoadResult",
    "SanityResult",
    "TrustVerdict",
    "Verdict",
    "barely_changes",
    "compare_auc",
    "curves_verdict",
    "deletion_insertion",
    "noisy_linear_imputation",
    "randomisation_check",
    "randomisation_units",
    "road",
    "road_verdict",
    "sanity_verdicts",
    "spearman",
]
