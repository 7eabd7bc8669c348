"""torchvision classifiers by name: image models (``resnet50``, ``vit_b_16``, …) and video models.

``weights`` is ``DEFAULT``, a member of the model's weights enum (``IMAGENET1K_V2``) or ``none``
(random, untrained). Video models (``r3d_18``, ``mc3_18``, ``r2plus1d_18``, ``s3d``, ``mvit_v2_s``,
``swin3d_t``, …; Kinetics-400 classes) take clips of ``clip_len`` frames (``N×3×T×H×W``), each frame
preprocessed like an image. Pretrained weights come from torch hub's cache, or a download when
online; offline, the load fails at once rather than waiting on the network. With a ``checkpoint``,
the architecture gets the user's state dict instead.
"""

from __future__ import annotations

import os
from enum import Enum
from pathlib import Path
from urllib.error import HTTPError, URLError
from urllib.parse import urlparse
from urllib.request import Request, urlopen

import torch
import torchvision
from torch import nn

from ...errors import CamError, choices_hint
from ..architectures import (
    arch_name,
    categories_or_none,
    clip_len,
    into_arch,
    recipe,
    torchvision_names,
    video_names,
)
from ..built import DEFAULT_MODEL, Built, WeightsUnavailable, imagenet_preprocess, weights_word
from ..registry import Ask, ModelRequest, ModelSource
from .asks import LABELS, OUTPUT, WEIGHTS

__all__ = ["SOURCE", "hub_file", "load"]

_NET_TIMEOUT_S = 10.0


def load(request: ModelRequest) -> Built:
    """The named model with the chosen weights, or (``checkpoint``) its architecture with the user's."""
    name = arch_name(request.spec)
    if request.arch is not None:
        raise CamError(f"--arch is for state-dict files; {request.spec!r} already names an architecture")
    if request.checkpoint is not None:
        return into_arch(name, request.checkpoint, request.trust, request.allow_code)
    return _pretrained_or_random(name, request.weights)


def _known(spec: str) -> bool:
    known = (*torchvision_names(), *video_names())
    return spec in known or spec.lower() in known


# Pinned: MViT's last place where patch tokens still get a gradient (through the attention) is its last block's
# norm, as ViT's ``ln_1``. The rule now gives the same (it never looks inside attention); the pin keeps it so.
_RECOMMENDED = {"mvit_v1_b": "blocks.15.norm1", "mvit_v2_s": "blocks.15.norm1"}


def _built_size(module: nn.Module) -> int | None:
    """The input side a model was built for, where it is fixed (torchvision's ViT: ``image_size``).

    Random weights build the architecture's own size, which need not be the default weights' (``vit_h_14``
    is built for 224, its default SWAG weights are at 518), so that size is the one the model takes.
    """
    size = getattr(module, "image_size", None)
    return size if isinstance(size, int) and size > 0 else None


def _pretrained_or_random(name: str, weights: str | Enum | None) -> Built:
    enum = torchvision.models.get_model_weights(name)
    members = [m for m in enum.__members__ if m != "DEFAULT"]
    word = weights_word(weights)
    if word == "NONE":
        module = torchvision.models.get_model(name, weights=None).eval()
        default = enum.DEFAULT
        crop = _built_size(module) or default.transforms().crop_size[0]
        video = name in video_names()  # the Kinetics statistics: untrained, but fed as the weights would be
        return Built(
            module=module,
            name=f"{name} (random weights)",
            pretrained=False,
            preprocess=recipe(default) if video else imagenet_preprocess(crop, round(crop / 0.875)),
            class_names=categories_or_none(default),
            clip_len=clip_len(name),
            recommended_layer=_RECOMMENDED.get(name),
        )
    if word not in enum.__members__:
        raise CamError(
            f"unknown weights {weights!r} for {name}; choose one of: {choices_hint(['DEFAULT', *members, 'none'])}"
        )
    chosen = enum[word]
    module = _download_pretrained(name, chosen).eval()
    built = Built(
        module=module,
        name=f"{name} ({chosen.name})",
        pretrained=True,
        preprocess=recipe(chosen),
        class_names=categories_or_none(chosen),
        clip_len=clip_len(name),
        recommended_layer=_RECOMMENDED.get(name),
    )
    if built.class_names is None:  # e.g. VGG16_Weights.IMAGENET1K_FEATURES: only the trunk is trained
        built.pretrained = False
        built.notes.append(f"{chosen} trains only the feature layers; the classifier head is random")
    return built


def hub_file(url: str) -> Path:
    """Where torch hub keeps the file of ``url``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(url).path)


def _download_pretrained(name: str, weights: Enum) -> nn.Module:
    """Build ``name`` with ``weights``, from torch hub's cache or, if online, a download; fail fast offline."""
    unavailable = (
        f"pretrained weights {weights} for {name} are not in the torch hub cache ({hub_file(weights.url).parent}) "
        "and cannot be downloaded (offline?); use --weights none for random, untrained weights, "
        f"or the offline default model {DEFAULT_MODEL}"
    )
    if not hub_file(weights.url).is_file():
        # A quick reachability check first: torch's own download has no timeout and can hang offline.
        try:
            with urlopen(Request(weights.url, method="HEAD"), timeout=_NET_TIMEOUT_S):
                pass
        except HTTPError:
            pass  # the server answered: online, so let the download itself succeed or fail
        except (URLError, OSError) as exc:
            raise WeightsUnavailable(unavailable) from exc
    try:
        return torchvision.models.get_model(name, weights=weights)
    except (URLError, OSError) as exc:
        raise WeightsUnavailable(unavailable) from exc


SOURCE = ModelSource(
    key="torchvision",
    label="torchvision model",
    form="a torchvision model name such as 'resnet50' (or a video model such as 'r3d_18')",
    code_bearing=False,
    load=load,
    asks=(Ask("spec", "choice", "Model", required=True), WEIGHTS, LABELS, OUTPUT),
    recognise=_known,
)
