"""``timm:NAME``: a model from timm (PyTorch Image Models), with its own preprocessing and class names.

- ``weights="DEFAULT"``: timm's pretrained weights, from the Hugging Face cache (or the torch hub
  cache for older URLs) when they are there, else downloaded if the hub answers; offline, the
  same :class:`~cam_core.models.built.WeightsUnavailable` note as for torchvision.
- ``weights=None``: random weights, flagged as untrained.
- ``checkpoint=FILE``: the user's own weights (``.safetensors``, or a ``.pt``/``.pth`` state
  dict), the head sized from the file's classifier weight (``pretrained_cfg["classifier"]``).

Preprocessing comes from the model's ``pretrained_cfg`` through timm's own
``resolve_model_data_config``: ``input_size``, ``mean``, ``std``, ``interpolation`` and
``crop_pct`` (the shorter side is resized to ``floor(size / crop_pct)``, as timm's eval
transform does, then centre-cropped). ImageNet class names come from timm's ``ImageNetInfo``
(the first of each synset's names). timm is an optional extra: ``pip install 'cam-dashboard[timm]'``.
"""

from __future__ import annotations

import difflib
import math
import os
from pathlib import Path
from typing import Any
from urllib.error import HTTPError, URLError
from urllib.request import Request, urlopen

import torch
from torch import nn
from torchvision.transforms import InterpolationMode

from ...budget import check_num_classes
from ...errors import CamError, choices_hint
from ..built import DEFAULT_MODEL, Built, CheckpointError, UnknownModel, WeightsUnavailable, weights_word
from ..checkpoints import load_state, read_checkpoint, unwrap
from ..preprocess import Preprocess
from ..registry import Ask, ModelRequest, ModelSource
from .asks import LABELS, OUTPUT, WEIGHTS

__all__ = [
    "INSTALL_HINT",
    "PREFIX",
    "SOURCE",
    "build_timm",
    "class_names_for",
    "load",
    "preprocess_from_cfg",
    "timm_name",
]

PREFIX = "timm:"
INSTALL_HINT = "timm is not installed: pip install 'cam-dashboard[timm]' (or pip install timm)"
_HUB = "https://huggingface.co"
_NET_TIMEOUT_S = 10.0


def _timm() -> Any:
    try:
        import timm
    except ImportError as exc:
        raise CamError(INSTALL_HINT) from exc
    return timm


def timm_name(spec: str) -> str:
    """The timm model name in ``timm:NAME`` (``NAME`` may carry a pretrained tag: ``convnext_tiny.fb_in1k``).

    Raises:
        UnknownModel: not a timm model, with close names.
    """
    timm = _timm()
    name = spec[len(PREFIX) :].strip() if spec.startswith(PREFIX) else spec.strip()
    arch = name.split(".", 1)[0]
    if not name or not timm.is_model(arch):
        near = difflib.get_close_matches(arch, timm.list_models(), n=5, cutoff=0.6)
        hint = f" (did you mean {choices_hint(near)}?)" if near else ""
        raise UnknownModel(f"unknown timm model {name!r}{hint}; see timm.list_models() for the names")
    return name


def preprocess_from_cfg(cfg: dict[str, Any]) -> Preprocess:
    """Our :class:`Preprocess` for a timm data config (``resolve_model_data_config``'s keys)."""
    _, h, w = cfg["input_size"]
    crop_pct = float(cfg.get("crop_pct") or 1.0)
    try:
        interpolation = InterpolationMode(cfg.get("interpolation") or "bilinear")
    except ValueError:  # "random" and the like are training-time choices
        interpolation = InterpolationMode.BILINEAR
    return Preprocess(
        (int(h), int(w)),
        math.floor(min(h, w) / crop_pct),
        tuple(float(v) for v in cfg["mean"]),
        tuple(float(v) for v in cfg["std"]),
        interpolation,
    )


def class_names_for(module: nn.Module, num_classes: int) -> list[str] | None:
    """ImageNet names from timm's own label files when the head fits an ImageNet subset, else ``None``."""
    timm = _timm()
    try:
        subset = timm.data.infer_imagenet_subset(module)
        if not subset:
            return None
        names = timm.data.ImageNetInfo(subset).label_descriptions()
    except Exception:  # label files of an unknown subset: no names rather than a failure
        return None
    if len(names) != num_classes:
        return None
    return [str(n).split(",")[0].strip() for n in names]


def _cached_weights(cfg: Any) -> Path | None:
    """A local copy of the pretrained weights: Hugging Face cache first, then torch hub's."""
    hub_id = getattr(cfg, "hf_hub_id", None)
    if hub_id:
        from huggingface_hub import try_to_load_from_cache

        repo, _, revision = hub_id.partition("@")
        names = [cfg.hf_hub_filename] if getattr(cfg, "hf_hub_filename", None) else []
        for filename in [*names, "model.safetensors", "pytorch_model.bin"]:
            found = try_to_load_from_cache(repo, filename, revision=revision or None)
            if isinstance(found, str) and os.path.isfile(found):
                return Path(found)
    url = getattr(cfg, "url", None)
    if url:
        local = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)
        if local.is_file():
            return local
    return None


def _reachable(url: str) -> bool:
    try:
        with urlopen(Request(url, method="HEAD"), timeout=_NET_TIMEOUT_S):
            return True
    except HTTPError:
        return True  # the server answered
    except (URLError, OSError):
        return False


def _pretrained(name: str) -> nn.Module:
    timm = _timm()
    cfg = timm.models.get_pretrained_cfg(name)
    if cfg is None or not (cfg.hf_hub_id or cfg.url or cfg.file):
        raise WeightsUnavailable(
            f"timm has no pretrained weights for {name}; use --weights none for random weights or "
            "--checkpoint FILE for your own"
        )
    local = _cached_weights(cfg)
    if local is not None:
        return timm.create_model(name, pretrained=True, pretrained_cfg_overlay={"file": str(local)})
    if not _reachable(_HUB if cfg.hf_hub_id else cfg.url):
        raise WeightsUnavailable(
            f"pretrained weights for timm:{name} ({cfg.hf_hub_id or cfg.url}) are not in the Hugging Face cache "
            "and cannot be downloaded (offline?); use --weights none for random, untrained weights, "
            f"--checkpoint FILE for weights you have, or the offline default model {DEFAULT_MODEL}"
        )
    try:
        return timm.create_model(name, pretrained=True)
    except (OSError, RuntimeError) as exc:  # network errors mid-download surface in several ways
        raise WeightsUnavailable(f"pretrained weights for timm:{name} could not be downloaded: {exc}") from exc


def _head_classes(cfg: dict[str, Any], state: dict[str, torch.Tensor]) -> int | None:
    heads = cfg.get("classifier") or ()
    for head in (heads,) if isinstance(heads, str) else heads:
        weight = state.get(f"{head}.weight")
        if weight is not None and weight.ndim >= 1:
            return int(weight.shape[0])
    return None


def build_timm(
    spec: str, weights: str | None, checkpoint: Path | None, trust: bool, word: str, allow_code: bool = True
) -> Built:
    """The timm model for ``spec`` (see the module docstring); ``word`` is the weights choice in capitals.

    ``allow_code=False`` reads ``checkpoint`` as weights only (see :func:`cam_core.load_model`).
    """
    timm = _timm()
    name = timm_name(spec)
    if checkpoint is not None:
        found = unwrap(read_checkpoint(checkpoint, trust, allow_code), checkpoint)
        if isinstance(found, nn.Module):
            raise CheckpointError(
                f"{checkpoint} holds a whole model, not a state dict for timm:{name}; load it directly"
            )
        probe = timm.create_model(name, pretrained=False)
        num_classes = _head_classes(probe.pretrained_cfg, found)
        if num_classes is not None:
            check_num_classes(num_classes, f"{checkpoint.name}: its head")
        module = probe if num_classes in (None, probe.num_classes) else timm.create_model(
            name, pretrained=False, num_classes=num_classes
        )
        load_state(module, found, checkpoint, f"timm:{name} with {module.num_classes} classes")
        title, pretrained = f"timm:{name} + {checkpoint.name}", True
    elif word == "NONE":
        module, title, pretrained = timm.create_model(name, pretrained=False), f"timm:{name} (random weights)", False
    elif word == "DEFAULT":
        module, title, pretrained = _pretrained(name), f"timm:{name} (pretrained)", True
    else:
        raise CamError(f"unknown weights {weights!r} for timm:{name}; choose one of: DEFAULT, none")
    module = module.eval()
    count = int(module.num_classes)
    return Built(
        module=module,
        name=title,
        pretrained=pretrained,
        preprocess=preprocess_from_cfg(timm.data.resolve_model_data_config(module)),
        class_names=class_names_for(module, count),
        num_classes=count,
        fit="squash" if module.pretrained_cfg.get("crop_mode") == "squash" else None,
    )


def load(request: ModelRequest) -> Built:
    """``timm:NAME`` with the request's weights or checkpoint (``arch: timm:NAME`` goes through the state-dict
    source, which calls :func:`build_timm` with its file)."""
    word = weights_word(request.weights)
    weights = request.weights if isinstance(request.weights, str | None) else request.weights.name
    return build_timm(request.spec, weights, request.checkpoint, request.trust, word, request.allow_code)


SOURCE = ModelSource(
    key="timm",
    label="timm model",
    form="'timm:NAME'",
    code_bearing=False,
    load=load,
    asks=(
        Ask("spec", "choice", "timm model", required=True, help="a name from timm.list_models()"),
        WEIGHTS,
        Ask("checkpoint", "file", "Your own weights (optional)", suffixes=("safetensors", "pt", "pth", "ckpt"),
            help="a state dict for this model; its head is sized from the file"),
        LABELS,
        OUTPUT,
    ),
    prefix=PREFIX,
)
