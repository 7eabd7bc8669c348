"""Architectures this package builds by name: torchvision's image and video classifiers and EfficientNet-Lite0.

Shared by the sources that name an architecture (the offline default, torchvision, a state dict
with ``arch``): the names, each architecture's recipe (preprocessing, class names, clip length),
and a state dict loaded into an architecture with its head sized from the file.
"""

from __future__ import annotations

import difflib
import functools
import os
import re
from enum import Enum
from pathlib import Path

import torch
import torchvision
from torch import nn
from torchvision.transforms import InterpolationMode

from ..budget import check_num_classes
from ..errors import choices_hint
from . import efficientnet_lite
from .built import DEFAULT_MODEL, Built, CheckpointError, UnknownModel, imagenet_preprocess
from .checkpoints import fit_prefix, load_state, read_checkpoint, unwrap
from .preprocess import Preprocess
from .registry import spec_forms
from .safetensors_file import SAFETENSORS_SUFFIX

__all__ = [
    "CHECKPOINT_SUFFIXES",
    "LITE0_PREPROCESS",
    "arch_name",
    "build_arch",
    "categories_or_none",
    "clip_len",
    "imagenet_categories",
    "into_arch",
    "list_torchvision_models",
    "list_video_models",
    "recipe",
    "torchvision_names",
    "video_names",
]

CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt", SAFETENSORS_SUFFIX, ".pt2")
_CLIP_LEN = re.compile(r"clip_len=(\d+)")
_DEFAULT_CLIP_LEN = 16
# S3D is evaluated on 128-frame clips: a window that long costs minutes per step on a CPU, and the
# network runs on any 14 frames or more; longer documented windows are capped here.
_MAX_CLIP_LEN = 32


@functools.cache
def torchvision_names() -> tuple[str, ...]:
    """torchvision's image classifiers (cached: listing them walks the package)."""
    return tuple(torchvision.models.list_models(module=torchvision.models))


@functools.cache
def video_names() -> tuple[str, ...]:
    """torchvision's video classifiers."""
    return tuple(torchvision.models.list_models(module=torchvision.models.video))


def list_torchvision_models() -> list[str]:
    """Names of torchvision's image classification models (``resnet50``, ``vit_b_16``, …)."""
    return list(torchvision_names())


def list_video_models() -> list[str]:
    """Names of torchvision's video classification models (``r3d_18``, ``s3d``, ``mvit_v2_s``, ``swin3d_t``, …)."""
    return list(video_names())


def arch_name(name: str) -> str:
    """Canonical architecture name, or :class:`UnknownModel` with the valid forms and close matches."""
    key = name.strip()
    if key.lower().replace("-", "_") == DEFAULT_MODEL:
        return DEFAULT_MODEL
    known = (*torchvision_names(), *video_names())
    if key in known:
        return key
    if key.lower() in known:
        return key.lower()
    near = difflib.get_close_matches(key.lower(), [DEFAULT_MODEL, *known], n=5, cutoff=0.6)
    hint = f" (did you mean {choices_hint(near)}?)" if near else ""
    if "." in key or "/" in key or os.sep in key:
        hint += f" (no such file; checkpoint files end in {', '.join(CHECKPOINT_SUFFIXES)})"
    raise UnknownModel(f"unknown model {name!r}{hint}; use {spec_forms()}")


LITE0_PREPROCESS = Preprocess(
    efficientnet_lite.INPUT_SIZE,
    efficientnet_lite.RESIZE_SIZE,
    efficientnet_lite.MEAN,
    efficientnet_lite.STD,
    InterpolationMode.BICUBIC,
)


def imagenet_categories() -> list[str]:
    """The 1000 ImageNet class names, as torchvision's weights carry them."""
    return list(torchvision.models.ResNet50_Weights.DEFAULT.meta["categories"])


def recipe(weights: Enum) -> Preprocess:
    """The preprocessing of ``weights.transforms()`` (image or per-frame video), as a :class:`Preprocess`."""
    t = weights.transforms()
    return Preprocess((t.crop_size[0], t.crop_size[0]), t.resize_size[0], tuple(t.mean), tuple(t.std), t.interpolation)


def clip_len(name: str) -> int | None:
    """A video model's clip length, from its default weights' documented evaluation (``clip_len=16``)."""
    if name not in video_names():
        return None
    docs = torchvision.models.get_model_weights(name).DEFAULT.meta.get("_docs", "")
    found = _CLIP_LEN.search(docs)
    return min(_MAX_CLIP_LEN, int(found.group(1))) if found else _DEFAULT_CLIP_LEN


def categories_or_none(weights: Enum) -> list[str] | None:
    """The class names ``weights`` were trained on, if it says."""
    categories = weights.meta.get("categories")
    return list(categories) if categories else None


def build_arch(name: str, num_classes: int | None = None) -> nn.Module:
    """A randomly initialised architecture; ``num_classes`` None keeps its default head."""
    kwargs = {} if num_classes is None else {"num_classes": num_classes}
    if name == DEFAULT_MODEL:
        return efficientnet_lite.EfficientNetLite0(**kwargs)
    return torchvision.models.get_model(name, weights=None, **kwargs)


def _probe(arch: str, num_classes: int) -> nn.Module:
    try:
        with torch.device("meta"):  # no memory, no random init
            return build_arch(arch, num_classes)
    except (NotImplementedError, RuntimeError):  # builders that compute with tensors (RegNet) need real ones
        return build_arch(arch, num_classes)


@functools.cache
def _arch_keys(arch: str) -> tuple[frozenset[str], str | None]:
    """``arch``'s state-dict keys, and the key of its classifier weight (``fc.weight``, ``heads.head.weight``, …).

    The head is the last weight whose shape follows ``num_classes``: ``arch`` is built with two class counts.
    """
    first, second = (_probe(arch, n).state_dict() for n in (1000, 1001))
    heads = [k for k, v in first.items() if k.endswith("weight") and second[k].shape != v.shape]
    return frozenset(first), (heads[-1] if heads else None)


def _num_classes_in(arch: str, state: dict[str, torch.Tensor]) -> int | None:
    """Class count of a state dict for ``arch``: the out dim of its classifier weight (None if absent)."""
    keys, head = _arch_keys(arch)
    state = fit_prefix(state, set(keys))
    if head is None or head not in state:
        return None
    return int(state[head].shape[0])


def into_arch(arch: str, path: Path, trust: bool, allow_code: bool = True) -> Built:
    """A state dict loaded into a torchvision architecture or EfficientNet-Lite0, head size from the file."""
    found = unwrap(read_checkpoint(path, trust, allow_code), path)
    if isinstance(found, nn.Module):
        raise CheckpointError(f"{path} holds a whole model, not a state dict; load it without --arch")
    num_classes = _num_classes_in(arch, found)
    if num_classes is not None:
        check_num_classes(num_classes, f"{path.name}: its head")
    module = build_arch(arch, num_classes)
    load_state(module, found, path, f"{arch} with {num_classes or 'its default number of'} classes")
    video = arch in video_names()
    if video:  # the Kinetics recipe and classes of the architecture's default weights
        default = torchvision.models.get_model_weights(arch).DEFAULT
        preprocess, names = recipe(default), categories_or_none(default) if num_classes in (None, 400) else None
    else:
        preprocess = LITE0_PREPROCESS if arch == DEFAULT_MODEL else imagenet_preprocess()
        names = imagenet_categories() if num_classes == 1000 else None
    return Built(
        module=module.eval(),
        name=f"{path.name} ({arch})",
        pretrained=True,
        preprocess=preprocess,
        num_classes=num_classes,
        class_names=names,
        recommended_layer="_head_act" if arch == DEFAULT_MODEL else None,
        assumed_preprocessing=arch != DEFAULT_MODEL and not video,
        clip_len=clip_len(arch),
    )
