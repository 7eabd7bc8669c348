"""A TorchScript archive (``torch.jit.save``): it runs, but no layer inside it can be hooked for a CAM.

Recognised by its contents (a zip with ``constants.pkl``), whatever the file's name. Its graph is
code that can read and write files, so it is code-bearing.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..built import Built, CheckpointError, assumed_preprocess
from ..checkpoints import file_alone, is_torchscript, read_checkpoint
from ..registry import Ask, ModelRequest, ModelSource
from .asks import LABELS, OUTPUT

__all__ = ["SOURCE", "load"]

_NO_HOOKS = (
    "TorchScript modules do not run Python hooks, so no layer inside this model can be hooked for a CAM; to "
    "explain it, save it with torch.export instead (a .pt2 file keeps every layer hookable), load its state dict "
    "with --arch, or a factory with --checkpoint"
)


def load(request: ModelRequest) -> Built:
    """The archive named by the spec, with the assumed (ImageNet) preprocessing."""
    path = file_alone(request, holds="a whole model")
    module = read_checkpoint(path, request.trust, request.allow_code)
    if not isinstance(module, torch.jit.ScriptModule):  # pragma: no cover - recognised by the same test
        raise CheckpointError(f"{path} is not a TorchScript archive")
    return Built(
        module=module.eval(),
        name=f"{path.name} (TorchScript)",
        pretrained=True,
        preprocess=assumed_preprocess(),
        assumed_preprocessing=True,
        probe_output=True,
        notes=[_NO_HOOKS],
    )


def _is_archive(spec: str) -> bool:
    path = Path(spec)
    return path.is_file() and is_torchscript(path)


SOURCE = ModelSource(
    key="torchscript",
    label="TorchScript archive",
    form="a TorchScript archive (.pt)",
    code_bearing=True,  # its graph can read and write files
    load=load,
    asks=(Ask("spec", "file", "TorchScript archive", required=True, suffixes=("pt", "pth")), LABELS, OUTPUT),
    recognise=_is_archive,
)
