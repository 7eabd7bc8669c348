"""cam_core: class activation maps for any PyTorch classifier.

The engine behind the dashboard and the CLI; it never imports Streamlit.
See README.md and the contracts in the design notes.
"""

from .engine import ExplainResult, explain
from .errors import CamError
from .layers import LayerInfo, list_layers
from .methods import METHODS
from .models import LoadedModel, load_model

__all__ = ["METHODS", "CamError", "ExplainResult", "LayerInfo", "LoadedModel", "explain", "list_layers", "load_model"]
