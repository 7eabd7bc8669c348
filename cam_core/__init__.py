"""cam_core: class activation maps for any PyTorch classifier.

The engine behind the dashboard and the CLI; it never imports Streamlit.
See README.md and the contracts in the design notes.

The public names below load on first use (PEP 562), so ``import cam_core`` and the CLI's
argument checks do not wait for torch to import.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .errors import CamError

if TYPE_CHECKING:
    from .analysis.diagnose import Diagnosis, diagnose, inspect_point
    from .analysis.sweep import compare_methods, contrast, sweep
    from .analysis.trust import deletion_insertion, randomisation_check, road
    from .engine.clip import ClipResult, explain_clip
    from .engine.explainer import explain
    from .engine.methods import METHODS
    from .engine.result import ExplainResult
    from .models.layers import LayerInfo, list_layers, recommended_layer
    from .models.load import LoadedModel, load_model

_WHERE = {
    "Diagnosis": ".analysis.diagnose",
    "diagnose": ".analysis.diagnose",
    "inspect_point": ".analysis.diagnose",
    "compare_methods": ".analysis.sweep",
    "contrast": ".analysis.sweep",
    "sweep": ".analysis.sweep",
    "deletion_insertion": ".analysis.trust",
    "randomisation_check": ".analysis.trust",
    "ClipResult": ".engine.clip",
    "explain_clip": ".engine.clip",
    "road": ".analysis.trust",
    "ExplainResult": ".engine.result",
    "explain": ".engine.explainer",
    "METHODS": ".engine.methods",
    "LayerInfo": ".models.layers",
    "list_layers": ".models.layers",
    "recommended_layer": ".models.layers",
    "LoadedModel": ".models.load",
    "load_model": ".models.load",
}

__all__ = [
    "METHODS",
    "CamError",
    "ClipResult",
    "Diagnosis",
    "ExplainResult",
    "LayerInfo",
    "LoadedModel",
    "compare_methods",
    "contrast",
    "deletion_insertion",
    "diagnose",
    "explain",
    "explain_clip",
    "inspect_point",
    "list_layers",
    "load_model",
    "randomisation_check",
    "recommended_layer",
    "road",
    "sweep",
]


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        value = getattr(importlib.import_module(_WHERE[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'cam_core' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_WHERE})
