"""What every model source shares: the errors, the built-model record, and the usual preprocessing.

The bottom of the loading code: the sources (:mod:`cam_core.models.sources`) build a
:class:`Built`, and :func:`cam_core.models.finish.finish` turns it into a ``LoadedModel``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from torch import nn

from ..errors import CamError
from .preprocess import Preprocess

__all__ = [
    "DEFAULT_MODEL",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "Built",
    "CheckpointError",
    "CodeNotAllowed",
    "UnknownModel",
    "UntrustedCheckpoint",
    "WeightsUnavailable",
    "adopted",
    "assumed_preprocess",
    "first_line",
    "imagenet_preprocess",
    "weights_word",
]

DEFAULT_MODEL = "efficientnet_lite0"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class UnknownModel(CamError):
    """A model spec or architecture name that is none of the valid forms."""


class WeightsUnavailable(CamError):
    """Pretrained weights that are neither cached nor downloadable."""


class CheckpointError(CamError):
    """A checkpoint file that cannot be read or does not fit the model."""


class UntrustedCheckpoint(CheckpointError):
    """A checkpoint that needs full unpickling, which was not allowed."""


class CodeNotAllowed(CamError):
    """A model source that carries code (factory, import path, pickle, TorchScript) where code is not allowed."""


@dataclass
class Built:
    """What a loader found, before labels and preprocessing overrides are applied."""

    module: nn.Module
    name: str
    pretrained: bool
    preprocess: Preprocess
    class_names: list[str] | None = None
    num_classes: int | None = None
    notes: list[str] = field(default_factory=list)
    recommended_layer: str | None = None
    assumed_preprocessing: bool = False
    clip_len: int | None = None
    fit: str | None = None  # the recipe's own fit when it is not the usual default (a processor that squashes)
    probe_output: bool = False  # what the forward returns is unknown (the user's module): try it once


def imagenet_preprocess(size: int = 224, resize: int = 256) -> Preprocess:
    """ImageNet statistics with the usual 224-of-256 centre crop (or another size)."""
    return Preprocess((size, size), resize, IMAGENET_MEAN, IMAGENET_STD)


def assumed_preprocess() -> Preprocess:
    """For a model whose training recipe we cannot know (factory, pickle, TorchScript): ImageNet statistics at
    224, with the shorter side resized to the crop, so the model sees (and the map covers) the whole short side
    of the user's image, and an image already at 224 × 224 reaches the model untouched."""
    return Preprocess((224, 224), 224, IMAGENET_MEAN, IMAGENET_STD)


def first_line(exc: BaseException) -> str:
    """The first line of an error's text (messages stay one line), or its type when it has none."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def weights_word(weights: str | Enum | None) -> str:
    """A weights choice in capitals (``DEFAULT``, ``NONE``, ``IMAGENET1K_V2``), however it was given."""
    if weights is None:
        return "NONE"
    if isinstance(weights, Enum):
        return weights.name
    return str(weights).strip().split(".")[-1].upper() or "NONE"


def adopted(module: nn.Module, name: str) -> Built:
    """A module that came from the user (factory or pickle): put into eval mode, saying so."""
    notes = []
    if module.training:
        notes.append(
            "the model was in training mode; it is used in eval mode (dropout off, batch-norm statistics fixed)"
        )
    return Built(
        module=module.eval(),
        name=name,
        pretrained=True,
        preprocess=assumed_preprocess(),
        notes=notes,
        assumed_preprocessing=True,
        probe_output=True,
    )
