"""A whole ``nn.Module`` saved with ``torch.save(model)``: loading it unpickles, which runs code from the file.

No spec names it by form (a ``.pt`` file is read as a state dict first, weights only); the
state-dict source hands over what turns out to be a pickled module, once ``trust_checkpoint``
(and ``allow_code``) let it be unpickled.
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

from ..built import Built, CheckpointError, adopted
from ..checkpoints import read_checkpoint, unwrap
from ..registry import Ask, ModelRequest, ModelSource
from .asks import LABELS, OUTPUT, TRUST

__all__ = ["SOURCE", "from_module", "load"]


def from_module(module: nn.Module, path: Path) -> Built:
    """The unpickled module of ``path``, adopted as the user's model."""
    return adopted(module, f"{path.name} (pickled module)")


def load(request: ModelRequest) -> Built:
    """The pickled module in the spec's file (refused unless trusted, and where code is allowed)."""
    path = Path(request.spec)
    found = unwrap(read_checkpoint(path, request.trust, request.allow_code), path)
    if not isinstance(found, nn.Module):
        raise CheckpointError(f"{path} holds a state dict, not a whole model; name its architecture with --arch")
    return from_module(found, path)


SOURCE = ModelSource(
    key="pickle",
    label="Pickled model",
    form="a pickled nn.Module (.pt, with trust_checkpoint)",
    code_bearing=True,
    load=load,
    asks=(Ask("spec", "file", "Checkpoint", required=True, suffixes=("pt", "pth", "ckpt")), TRUST, LABELS, OUTPUT),
)
