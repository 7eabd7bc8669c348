"""cam_core: class activation maps for any PyTorch classifier.

The engine behind the dashboard and the CLI; it never imports Streamlit.
See README.md and the contracts in the design notes.
"""

from .diagnose import Diagnosis, diagnose, inspect_point
from .engine import ExplainResult, explain
from .errors import CamError
from .layers import LayerInfo, list_layers, recommended_layer
from .methods import METHODS
from .models import LoadedModel, load_model
from .sweep import compare_methods, contrast, sweep
from .trust import deletion_insertion, randomisation_check

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
    "sweep",
]
