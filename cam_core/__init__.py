"""cam_core: class activation maps for any PyTorch classifier.

The engine behind the dashboard and the CLI; it never imports Streamlit.
See README.md and the contracts in the design notes.
"""

from .analysis.diagnose import Diagnosis, diagnose, inspect_point
from .analysis.sweep import compare_methods, contrast, sweep
from .analysis.trust import deletion_insertion, randomisation_check, road
from .engine.explainer import ExplainResult, explain
from .engine.methods import METHODS
from .errors import CamError
from .models.layers import LayerInfo, list_layers, recommended_layer
from .models.load import LoadedModel, load_model

__all__ = [
    "METHODS",
    "CamError",
    "Diagnosis",
    "ExplainResult",
    "LayerInfo",
    "LoadedModel",
    "compare_methods",
    "contrast",
    "deletion_insertion",
    "diagnose",
    "explain",
    "inspect_point",
    "list_layers",
    "load_model",
    "randomisation_check",
    "recommended_layer",
    "road",
    "sweep",
]
