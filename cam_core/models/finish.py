"""From what a source built to the :class:`LoadedModel` a user gets: labels, sizes, normalisation, fits.

The same for every source, so a source only says what it knows (:class:`~cam_core.models.built.Built`)
and this module fills in the rest, probing the network once where the source could not say.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from PIL import Image
from torch import nn

from ..budget import check_input_side
from ..errors import CamError
from ..modules import float_dtype
from .built import Built, first_line
from .preprocess import FITS, Fit, Placement, Preprocess, check_fit

__all__ = ["LoadedModel", "finish", "parse_input_size"]


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


def _read_labels(path: Path) -> list[str]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise CamError(f"cannot read labels file {path}: {first_line(exc)}") from exc
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
            f"({type(exc).__name__}: {first_line(exc)}); check --input-size"
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


def parse_input_size(value: int | Sequence[int] | None) -> tuple[int, int] | None:
    """``(H, W)`` from one int or a pair, within :func:`~cam_core.budget.check_input_side`'s bounds, or ``None``."""
    if value is None:
        return None
    pair = (value, value) if isinstance(value, int) else tuple(value)
    if len(pair) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) for v in pair):
        raise CamError(f"input size must be one or two whole numbers, got {value!r}")
    check_input_side(*pair)
    return (int(pair[0]), int(pair[1]))


def _triple(value: Sequence[float], what: str) -> tuple[float, float, float]:
    triple = tuple(float(v) for v in value)
    if len(triple) == 1:
        triple = triple * 3
    if len(triple) != 3 or (what == "std" and min(triple) <= 0):
        raise CamError(f"{what} must be one or three numbers{' above 0' if what == 'std' else ''}, got {value!r}")
    return triple  # type: ignore[return-value]


def finish(
    built: Built,
    labels: str | os.PathLike[str] | None,
    input_size: int | tuple[int, int] | None,
    mean: Sequence[float] | None,
    std: Sequence[float] | None,
    fit: str | None,
) -> LoadedModel:
    """The :class:`LoadedModel` for what a source built, with the user's labels, size, statistics and fit.

    One forward pass tells whether the model takes any input size (then the ``whole`` fit is its default);
    another counts the outputs when the source did not say.
    """
    pre = built.preprocess
    size = parse_input_size(input_size)
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
