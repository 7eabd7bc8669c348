"""A state dict in a file (``.safetensors``, or ``.pt``/``.pth``/``.ckpt`` read weights-only) plus its architecture.

``arch`` names the architecture: a torchvision model, ``efficientnet_lite0`` or ``timm:NAME``; the
head is sized from the file. Weights carry no code, so this source is data-only; a ``.pt`` file
that turns out to hold a whole pickled module goes to :mod:`.pickled` (only when trusted).
"""

from __future__ import annotations

from pathlib import Path

from ..architectures import CHECKPOINT_SUFFIXES, arch_name, into_arch
from ..built import DEFAULT_MODEL, Built, CheckpointError
from ..checkpoints import file_alone, read_checkpoint, unwrap
from ..registry import Ask, ModelRequest, ModelSource
from .asks import LABELS, OUTPUT, TRUST
from .pickled import from_module
from .timm_models import PREFIX as TIMM_PREFIX
from .timm_models import build_timm

__all__ = ["SOURCE", "load"]

_SUFFIXES = tuple(s for s in CHECKPOINT_SUFFIXES if s != ".pt2")


def load(request: ModelRequest) -> Built:
    """The file's state dict in ``arch``; without ``arch``, a pickled module if the file holds one."""
    path = file_alone(request)
    if request.arch is not None and request.arch.startswith(TIMM_PREFIX):
        return build_timm(request.arch, None, path, request.trust, "NONE", request.allow_code)
    if request.arch is not None:
        return into_arch(arch_name(request.arch), path, request.trust, request.allow_code)
    found = unwrap(read_checkpoint(path, request.trust, request.allow_code), path)
    if isinstance(found, dict):
        raise CheckpointError(
            f"{path} is a state dict (weights only); name its architecture with --arch (a torchvision model "
            f"name, {DEFAULT_MODEL} or timm:NAME), or give a factory 'package.module:function' or a timm model "
            f"with --checkpoint {path}"
        )
    return from_module(found, path)


SOURCE = ModelSource(
    key="state_dict",
    label="State dict (+ architecture)",
    form=f"a {'/'.join(_SUFFIXES)} file (a state dict with an architecture)",
    code_bearing=False,
    load=load,
    asks=(
        Ask("spec", "file", "Checkpoint", required=True, suffixes=tuple(s.lstrip(".") for s in _SUFFIXES)),
        Ask("arch", "choice", "Architecture", required=True,
            help="a torchvision model name, efficientnet_lite0 or timm:NAME"),
        TRUST,
        LABELS,
        OUTPUT,
    ),
    suffixes=_SUFFIXES,
    recognise=lambda spec: Path(spec).is_file(),  # a file of another name: read as a checkpoint too
)
