"""PIL image → the tensor a model takes, with a choice of how the image is fitted to the model's size.

Four fits, because users explain the photo they gave, not its centre:

- ``whole``: the shorter side is resized to the model's size and the aspect is kept; nothing is
  cropped. The default for models that take any size (a global/adaptive pooling head: CNNs).
- ``crop``: the weights' own recipe (shorter side → ``resize_size``, centre crop ``crop_size``),
  as torchvision's ``weights.transforms()``.
- ``squash``: resized to exactly ``crop_size``; the aspect is lost, nothing is cut.
- ``letterbox``: resized to fit inside ``crop_size`` and padded with the mean colour (zero after
  normalisation). The default for models fixed to one size (ViT); the pad is described by
  :attr:`Placement.content`, so maps and their statistics can leave it out.

Memory stays bounded whatever the input's shape: ``whole`` refuses an aspect ratio beyond
:data:`MAX_ASPECT` (its input would grow with it), and ``crop`` trims the long side to that ratio
before resizing (the centre crop discards it anyway).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Literal, get_args

import torch
from PIL import Image
from torchvision.transforms import InterpolationMode
from torchvision.transforms import functional as TF

from ..errors import CamError, choices_hint
from ..limits import MAX_ASPECT

__all__ = ["FITS", "FIT_TITLES", "MAX_ASPECT", "Fit", "Placement", "Preprocess", "check_fit"]

Fit = Literal["whole", "crop", "squash", "letterbox"]
FITS: tuple[Fit, ...] = get_args(Fit)
FIT_TITLES: dict[str, str] = {
    "whole": "Whole image",
    "crop": "Centre crop",
    "squash": "Squash",
    "letterbox": "Letterbox",
}


def check_fit(fit: str, allowed: tuple[str, ...] = FITS) -> Fit:
    """``fit`` if it is one of ``allowed``, else a :class:`CamError` naming the choices."""
    if fit not in allowed:
        if fit in FITS:
            raise CamError(
                f"fit {fit!r} does not suit this model (it takes one input size); use {choices_hint(allowed)}"
            )
        raise CamError(f"unknown fit {fit!r}; choose from: {choices_hint(allowed)}")
    return fit  # type: ignore[return-value]


@dataclass(frozen=True)
class Placement:
    """Where an image lands in the model's input for one fit.

    Attributes:
        fit: The fit that produced it.
        size: (H, W) of the input tensor.
        content: (top, left, height, width) of the image's pixels in the input; the rest is pad.
        used: (left, top, right, bottom) of the part of the original image that reached the input.
    """

    fit: Fit
    size: tuple[int, int]
    content: tuple[int, int, int, int]
    used: tuple[float, float, float, float]

    @property
    def padded(self) -> bool:
        """Whether part of the input is pad (a letterbox)."""
        return self.content != (0, 0, *self.size)

    def describe(self, width: int, height: int) -> str:
        """One line for the page: what of a ``width`` × ``height`` image the model saw, and at what size."""
        h, w = self.size
        left, top, right, bottom = self.used
        if self.fit == "crop":
            return f"centre crop: {right - left:.0f}×{bottom - top:.0f} of the {width}×{height} image, at {w}×{h}"
        if self.fit == "letterbox":
            _, _, ch, cw = self.content
            return f"letterbox: the whole {width}×{height} image at {cw}×{ch}, padded to {w}×{h}"
        if self.fit == "squash":
            return f"squash: the whole {width}×{height} image stretched to {w}×{h}"
        return f"whole image: {width}×{height} at {w}×{h}, nothing cropped"


def _scaled(value: float) -> int:
    return max(1, round(value))


@dataclass(frozen=True)
class Preprocess:
    """PIL image → normalised (3, H, W) float tensor, for one of the :data:`FITS`.

    A plain value (picklable, comparable, shown in the dashboard). ``fit`` is this model's default;
    every call may ask for another.
    """

    crop_size: tuple[int, int]
    resize_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: InterpolationMode = InterpolationMode.BILINEAR
    fit: Fit = "crop"

    def with_fit(self, fit: Fit) -> Preprocess:
        """The same recipe with another default fit."""
        return replace(self, fit=check_fit(fit))

    def place(self, width: int, height: int, fit: Fit | None = None) -> Placement:
        """Where a ``width`` × ``height`` image lands for ``fit`` (default: this recipe's).

        Raises:
            CamError: an unknown fit, or ``whole`` for an aspect ratio beyond :data:`MAX_ASPECT`.
        """
        fit = check_fit(fit or self.fit)
        H, W = self.crop_size
        if width < 1 or height < 1:
            raise CamError(f"an image of {width}×{height} pixels has nothing to explain")
        if fit == "squash":
            return Placement(fit, (H, W), (0, 0, H, W), (0.0, 0.0, float(width), float(height)))
        if fit == "letterbox":
            scale = min(H / height, W / width)
            ch, cw = min(H, _scaled(height * scale)), min(W, _scaled(width * scale))
            top, left = (H - ch) // 2, (W - cw) // 2
            return Placement(fit, (H, W), (top, left, ch, cw), (0.0, 0.0, float(width), float(height)))
        if fit == "whole":
            aspect = max(width, height) / min(width, height)
            if aspect > MAX_ASPECT:
                raise CamError(
                    f"the image is {width}×{height} (aspect {aspect:.0f}:1): with the 'whole image' fit its input "
                    f"would be {aspect:.0f} times as long as wide, beyond the {MAX_ASPECT:g}:1 limit; crop it first, "
                    "or use the crop or letterbox fit"
                )
            short = min(H, W)
            scale = short / min(width, height)
            size = (_scaled(height * scale), _scaled(width * scale))
            return Placement(fit, size, (0, 0, *size), (0.0, 0.0, float(width), float(height)))
        scale = self.resize_size / min(width, height)
        used_w, used_h = min(width, W / scale), min(height, H / scale)
        left, top = (width - used_w) / 2, (height - used_h) / 2
        return Placement(fit, (H, W), (0, 0, H, W), (left, top, left + used_w, top + used_h))

    def __call__(self, image: Image.Image, fit: Fit | None = None) -> torch.Tensor:
        return self.prepare(image, fit)[0]

    def prepare(self, image: Image.Image, fit: Fit | None = None) -> tuple[torch.Tensor, Placement]:
        """The normalised (3, H, W) input for ``image`` and where the image lies in it.

        A plain function of this value (no model), so decoding workers (a ``DataLoader``'s, a Ray
        actor's) can run exactly the preprocessing :meth:`LoadedModel.prepare` runs.
        """
        place = self.place(image.width, image.height, fit)
        if image.mode != "RGB":
            image = image.convert("RGB")
        if place.fit == "crop":
            image = self._crop(image)
        else:
            _, _, ch, cw = place.content
            image = TF.resize(image, [ch, cw], interpolation=self.interpolation, antialias=True)
            if place.padded:
                fill = tuple(round(m * 255) for m in self.mean)
                canvas = Image.new("RGB", (place.size[1], place.size[0]), fill)
                canvas.paste(image, (place.content[1], place.content[0]))
                image = canvas
        x = TF.convert_image_dtype(TF.pil_to_tensor(image), torch.float32)
        return TF.normalize(x, list(self.mean), list(self.std)), place

    def _crop(self, image: Image.Image) -> Image.Image:
        """The weights' recipe, as ``weights.transforms()``; an extreme long side is trimmed first."""
        width, height = image.size
        keep = math.ceil(MAX_ASPECT * min(width, height))
        if max(width, height) > keep:  # the centre crop discards it anyway; resizing it would not be bounded
            left, top = (width - min(width, keep)) // 2, (height - min(height, keep)) // 2
            image = image.crop((left, top, left + min(width, keep), top + min(height, keep)))
        image = TF.resize(image, [self.resize_size], interpolation=self.interpolation, antialias=True)
        return TF.center_crop(image, list(self.crop_size))

    def describe(self, fit: Fit | None = None) -> str:
        """One line for notes and the dashboard."""
        fit = fit or self.fit
        h, w = self.crop_size
        mean = ", ".join(f"{m:.3f}" for m in self.mean)
        std = ", ".join(f"{s:.3f}" for s in self.std)
        how = {
            "crop": f"shorter side → {self.resize_size}, centre crop {h}×{w}",
            "whole": f"shorter side → {min(h, w)}, aspect kept, nothing cropped",
            "squash": f"resized to {h}×{w} (aspect not kept)",
            "letterbox": f"fitted inside {h}×{w}, padded with the mean colour",
        }[fit]
        return f"{how} ({self.interpolation.value}), mean ({mean}), std ({std})"
