"""The built-in model sources, one module each, registered in the order specs are tried.

A new source is one module here that declares ``SOURCE`` (a :class:`~cam_core.models.registry.ModelSource`)
plus one line below; code outside the package (a test, a plug-in) calls
:func:`~cam_core.models.registry.register` instead.
"""

from __future__ import annotations

from ..registry import ModelSource, get_source, register, registered_sources, source_for, spec_forms, unregister
from . import (
    exported,
    factory,
    hf_folder,
    offline_default,
    pickled,
    state_dict,
    timm_models,
    torchscript,
    torchvision_models,
)

__all__ = [
    "BUILT_IN",
    "ModelSource",
    "get_source",
    "register",
    "registered_sources",
    "source_for",
    "spec_forms",
    "unregister",
]

# The order specs are tried in, as before the registry: a file (of any name) before a factory path before a
# model name; a TorchScript .pt, told by its contents, before the state-dict source takes every .pt. The
# pickled source is reached only from the state-dict source. Pages may list them in their own order.
BUILT_IN: tuple[ModelSource, ...] = (
    timm_models.SOURCE,
    hf_folder.SOURCE,
    exported.SOURCE,
    torchscript.SOURCE,
    state_dict.SOURCE,
    factory.SOURCE,
    offline_default.SOURCE,
    torchvision_models.SOURCE,
    pickled.SOURCE,
)

for _source in BUILT_IN:
    register(_source)
