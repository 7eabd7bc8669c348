"""Debug this prediction: the section under the overlays (see :mod:`.section`).

Modules: ``section`` (layout), ``context`` (the layer's facts and the tabs' context), ``cards``
(diagnosis cards, findings), ``tabs`` (five of the six tabs), ``trust_tab`` (the Trust tab), ``session`` (cache, run
buttons), ``figures`` (its Plotly figures). Imports run one way: section → tabs, trust_tab → cards/context →
session.
"""

from .cards import diagnosis_card, diagnosis_rows, findings_summary, layer_notes
from .context import Ctx, LayerFacts, view_diagnoses
from .section import TABS, debug_section, debug_toggle, open_debug
from .session import DK

__all__ = [
    "DK",
    "TABS",
    "Ctx",
    "LayerFacts",
    "debug_section",
    "debug_toggle",
    "diagnosis_card",
    "diagnosis_rows",
    "findings_summary",
    "layer_notes",
    "open_debug",
    "view_diagnoses",
]
