"""Colormaps and overlays as arrays and PNGs, shared by the CLI and the dashboard.

Display choices live here, not in the engine: the ReLU'd view min-max scales
``relu(map)`` onto a sequential colormap; the signed view scales by the largest
absolute value so that zero sits at the middle of a diverging colormap
(positive evidence warm, negative cool). Colormaps are small lookup tables
(anchor colours linearly interpolated to 256 entries) so no matplotlib is needed.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping, Sequence
from dataclasses import replace
from functools import cache, lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont, PngImagePlugin

from .errors import CamError

if TYPE_CHECKING:
    from .models.preprocess import Placement

__all__ = [
    "COLORMAPS",
    "View",
    "carry_matrices",
    "colorize",
    "evidence_alpha",
    "heat_color",
    "heat_rgba",
    "heat_scale",
    "image_uri",
    "label_frame",
    "maps_on_image",
    "model_view",
    "overlay",
    "photo_overlay",
    "place_on_grid",
    "plotly_colorscale",
    "save_png",
    "scale_rgba",
    "to_png_bytes",
    "view_map",
]

View = Literal["relu", "signed"]

# Anchor colours (RGB 0-255), evenly spaced over [0, 1].
_ANCHORS: dict[str, list[tuple[int, int, int]]] = {
    # sequential, perceptually ordered (after matplotlib's inferno/viridis and the classic jet)
    "inferno": [(0, 0, 4), (40, 11, 84), (101, 21, 110), (159, 42, 99), (212, 72, 66), (245, 125, 21),
                (250, 193, 39), (252, 255, 164)],
    "viridis": [(68, 1, 84), (70, 50, 127), (54, 92, 141), (39, 127, 142), (31, 161, 135), (74, 194, 109),
                (159, 218, 58), (253, 231, 37)],
    "jet": [(0, 0, 131), (0, 60, 170), (5, 255, 255), (255, 255, 0), (250, 0, 0), (128, 0, 0)],
    # diverging, low = blue (negative evidence), high = red (positive); the pale centre marks zero.
    # "bwr" stays saturated at moderate values, so it reads on warm photos (RdBu's pinks vanish there).
    "bwr": [(5, 30, 160), (20, 80, 230), (70, 140, 255), (225, 225, 225), (255, 110, 60), (225, 30, 20),
            (140, 0, 10)],
    "RdBu": [(5, 48, 97), (33, 102, 172), (103, 169, 207), (209, 229, 240), (247, 247, 247), (253, 219, 199),
             (239, 138, 98), (178, 24, 43), (103, 0, 31)],
    "coolwarm": [(59, 76, 192), (98, 130, 234), (141, 176, 254), (184, 208, 249), (221, 221, 221),
                 (245, 196, 173), (244, 154, 123), (222, 96, 77), (180, 4, 38)],
}
DIVERGING = ("bwr", "RdBu", "coolwarm")


def _lut(name: str) -> np.ndarray:
    anchors = np.asarray(_ANCHORS[name], dtype=np.float32)
    xs = np.linspace(0.0, 1.0, len(anchors))
    grid = np.linspace(0.0, 1.0, 256)
    return np.stack([np.interp(grid, xs, anchors[:, c]) for c in range(3)], axis=1).astype(np.uint8)


COLORMAPS: dict[str, np.ndarray] = {name: _lut(name) for name in _ANCHORS}


def view_map(cam: np.ndarray, view: View = "relu", top: float | None = None) -> np.ndarray:
    """Scale a signed map for display: ``relu`` → [0, 1]; ``signed`` → [0, 1] with 0.5 meaning zero.

    The ReLU'd view divides by the largest positive value (not min-max), so an
    all-negative map shows as empty: the honest rendering of "no positive evidence".
    ``top`` replaces that largest value (the signed view's largest magnitude) by a given one, e.g.
    one scale for every frame of a film, so that evidence that fades looks faded; values beyond it clip.
    """
    cam = np.asarray(cam, dtype=np.float32)
    if view == "relu":
        pos = np.maximum(cam, 0.0)
        top = top if top is not None else float(pos.max()) if pos.size else 0.0
        return np.minimum(pos / top, 1.0) if top > 0 else np.zeros_like(pos)
    if view == "signed":
        top = top if top is not None else float(np.abs(cam).max()) if cam.size else 0.0
        return 0.5 + 0.5 * (np.clip(cam / top, -1.0, 1.0) if top > 0 else np.zeros_like(cam))
    raise CamError(f"unknown view {view!r}; choose relu or signed")


def evidence_alpha(unit: np.ndarray | float, view: View) -> np.ndarray | float:
    """How strongly the colour covers the photo at a display value from :func:`view_map`.

    ReLU'd: the value itself (no evidence leaves the photo untouched). Signed: the
    square root of the distance from zero, so moderate evidence of either sign is
    visible, not only the extremes. The dashboard's colorscales use the same rule.
    """
    return unit if view == "relu" else np.sqrt(np.abs(2.0 * np.asarray(unit) - 1.0))


def colorize(unit: np.ndarray, cmap: str = "inferno") -> np.ndarray:
    """Values in [0, 1] (h, w) → RGB uint8 (h, w, 3) through a colormap lookup table."""
    if cmap not in COLORMAPS:
        raise CamError(f"unknown colormap {cmap!r}; choose from {', '.join(COLORMAPS)}")
    return COLORMAPS[cmap][_color_index(unit)]


def _color_index(unit: np.ndarray) -> np.ndarray:
    """Display values in [0, 1] → colormap rows 0…255 (uint8)."""
    return np.clip(np.rint(np.asarray(unit, dtype=np.float32) * 255.0), 0, 255).astype(np.uint8)


def overlay(
    image: np.ndarray | Image.Image,
    cam: np.ndarray,
    *,
    view: View = "relu",
    cmap: str | None = None,
    alpha: float = 0.6,
    top: float | None = None,
) -> np.ndarray:
    """Blend a map (already at the image's size) over an RGB image: (H, W, 3) uint8.

    In the ReLU'd view the colour's weight follows the map value too, so zero
    evidence leaves the photo untouched instead of tinting it with the colormap's low end.
    ``top``: a fixed scale instead of the map's own maximum (see :func:`view_map`).
    """
    img = np.asarray(image.convert("RGB") if isinstance(image, Image.Image) else image)
    if img.shape[:2] != cam.shape:
        raise ValueError(f"map {cam.shape} and image {img.shape[:2]} differ in size; upsample the map first")
    if view == "relu" and img.dtype == np.uint8:
        # Here the colour and its weight both follow one byte (the map's colour index), so each output
        # value is a function of that index and the photo's value: a lookup, 5× faster than the formula.
        tables = _relu_blend(cmap or "jet", float(alpha))
        at = _color_index(view_map(cam, view, top)).astype(np.intp) * 256
        return np.stack([tables[c].ravel()[at + img[..., c]] for c in range(3)], axis=-1)
    layer = heat_rgba(cam, view=view, cmap=cmap, top=top).astype(np.float32)
    return _blend(img.astype(np.float32), layer[..., :3], layer[..., 3:], alpha)


def _blend(photo: np.ndarray, color: np.ndarray, alpha_byte: np.ndarray, alpha: float) -> np.ndarray:
    """The overlay formula, in float32: ``photo·(1−w) + colour·w`` with ``w = alpha · alpha_byte / 255``, as uint8."""
    weight = alpha * alpha_byte / 255.0
    return np.clip(photo * (1 - weight) + color * weight, 0, 255).astype(np.uint8)


@lru_cache(maxsize=32)
def _relu_blend(cmap: str, alpha: float) -> np.ndarray:
    """(3, 256, 256) uint8: channel c of a ReLU'd :func:`overlay` at colour index i over photo value v, from
    the very float32 formula of its general path (so a lookup gives exactly its result)."""
    if cmap not in COLORMAPS:
        raise CamError(f"unknown colormap {cmap!r}; choose from {', '.join(COLORMAPS)}")
    index = np.arange(256, dtype=np.float32)[:, None]  # the ReLU'd alpha byte is the colour index
    photo = np.arange(256, dtype=np.float32)[None, :]
    color = COLORMAPS[cmap].astype(np.float32)
    return np.stack([_blend(photo, color[:, c : c + 1], index, alpha) for c in range(3)])


def heat_color(
    unit: np.ndarray | float, *, view: View = "relu", cmap: str | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The heat colour rule: the colour of display values (from :func:`view_map`) and how much of it covers the photo.

    One rule for every picture of a map (PNG overlays, the page's colour scales, its stills, thumbnails), so
    they agree: the colour is ``cmap``'s, the cover :func:`evidence_alpha` (0 at the low end: the photo shows
    through where there is no evidence). Returns RGB uint8 (..., 3) and the cover in [0, 1] (...,).
    """
    unit = np.asarray(unit)
    color = colorize(unit, cmap or ("bwr" if view == "signed" else "jet"))
    return color, np.asarray(evidence_alpha(unit, view))


def heat_rgba(cam: np.ndarray, *, view: View = "relu", cmap: str | None = None, top: float | None = None) -> np.ndarray:
    """The colour layer of an overlay, (H, W, 4) uint8: :func:`heat_color` with the cover as alpha.

    Composited over the image with opacity ``a`` (a browser's CSS ``opacity``), it gives
    :func:`overlay` with ``alpha=a``: so a page can change the opacity without redrawing.
    ``top``: a fixed scale, as for :func:`view_map`.
    """
    color, cover = heat_color(view_map(cam, view, top), view=view, cmap=cmap)
    return np.concatenate([color, _color_index(cover)[..., None]], axis=-1)


def heat_scale(cmap: str, view: View, steps: int = 17) -> list[tuple[float, tuple[int, int, int], float]]:
    """:func:`heat_color` at ``steps`` even stops of [0, 1]: (stop, RGB, cover), for a renderer that interpolates
    between stops (a Plotly colour scale)."""
    stops = [i / (steps - 1) for i in range(steps)]
    color, cover = heat_color(np.asarray(stops), view=view, cmap=cmap)
    return [(t, (int(r), int(g), int(b)), float(a)) for t, (r, g, b), a in zip(stops, color, cover, strict=True)]


def scale_rgba(unit: np.ndarray, stops: Sequence[float], rgba: np.ndarray) -> np.ndarray:
    """What a renderer interpolating linearly between colour stops draws at ``unit`` (values in [0, 1], clipped):
    (..., 4) uint8. ``rgba``: (n, 4) per stop, RGB in 0…255 and the cover in 0…1 (as :func:`heat_scale` gives)."""
    unit = np.clip(np.asarray(unit, dtype=np.float64), 0.0, 1.0)
    rgba = np.asarray(rgba, dtype=np.float64)
    out = np.stack([np.interp(unit, stops, rgba[:, c]) for c in range(4)], axis=-1)
    out[..., 3] *= 255.0
    return np.rint(out).astype(np.uint8)


def model_view(x: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """A preprocessed (3, H, W) tensor back as the RGB uint8 image the model saw (resized, cropped)."""
    m = torch.tensor(mean, dtype=x.dtype).view(3, 1, 1)
    s = torch.tensor(std, dtype=x.dtype).view(3, 1, 1)
    rgb = (x.detach().cpu() * s + m).clamp(0, 1).permute(1, 2, 0).numpy()
    return (rgb * 255 + 0.5).astype(np.uint8)


def to_png_bytes(rgb: np.ndarray, text: Mapping[str, str] | None = None) -> bytes:
    """Encode an RGB uint8 array as PNG bytes; ``text`` becomes PNG text chunks (e.g. what produced it)."""
    buf = io.BytesIO()
    info = None
    if text:
        info = PngImagePlugin.PngInfo()
        for key, value in text.items():
            info.add_text(str(key), str(value))
    Image.fromarray(np.asarray(rgb, dtype=np.uint8)).save(buf, format="PNG", pnginfo=info)
    return buf.getvalue()


def image_uri(im: Image.Image, fmt: str, **kw: object) -> str:
    """``im`` encoded as ``fmt`` (PIL's name: JPEG, PNG, WEBP; ``kw`` its options) in a data URI: a picture that
    travels inside the page (the dashboard's figures, a report opened offline)."""
    buf = io.BytesIO()
    im.save(buf, format=fmt, **kw)
    return f"data:image/{fmt.lower()};base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def save_png(rgb: np.ndarray, path: str | Path) -> Path:
    """Write an RGB uint8 array as a PNG file."""
    path = Path(path)
    path.write_bytes(to_png_bytes(rgb))
    return path


def plotly_colorscale(cmap: str, steps: int = 11) -> list[list[float | str]]:
    """The same colormap as a Plotly colorscale, so the dashboard and PNGs agree."""
    lut = COLORMAPS[cmap]
    return [[i / (steps - 1), "rgb({},{},{})".format(*lut[round(i * 255 / (steps - 1))])] for i in range(steps)]


def place_on_grid(place: Placement, size: tuple[int, int], grid: tuple[int, int]) -> Placement:
    """``place`` (how an image of ``size`` (width, height) met the model) for that image resampled to ``grid``
    (width, height): :func:`maps_on_image` over a smaller copy of a photo needs the photo's box scaled with it,
    or it lays the maps of the photo's top-left part over the whole copy."""
    sx, sy = grid[0] / size[0], grid[1] / size[1]
    left, top, right, bottom = place.used
    return replace(place, used=(left * sx, top * sy, right * sx, bottom * sy))


def maps_on_image(maps: np.ndarray, place: Placement, size: tuple[int, int]) -> np.ndarray:
    """Maps over the model's input (N, h, w), at any resolution → over the original image's pixels (N, H, W).

    The inverse of the fit: the image's part ``place.used`` (all of it, but for a centre crop) reached the input at
    ``place.content``, so each image pixel samples the map there (bilinear); pixels the model never saw (outside a
    crop) get 0: no evidence, the photo shows through.

    Args:
        maps: (N, h, w) float maps over the whole input (the layer's grid, or already at the input's size).
        place: How the image met the model (:meth:`~cam_core.models.LoadedModel.prepare`).
        size: (width, height) of the image.
    """
    (H, W) = place.size
    (xs, seen_x), (ys, seen_y) = _photo_in_input(place, size)
    grid = torch.stack(torch.meshgrid(2 * xs / W - 1, 2 * ys / H - 1, indexing="xy"), dim=-1).float()
    src = torch.from_numpy(np.ascontiguousarray(maps, dtype=np.float32))[:, None]
    out = F.grid_sample(src, grid.expand(len(src), -1, -1, -1), mode="bilinear", align_corners=False,
                        padding_mode="border")[:, 0]
    seen = seen_y[:, None] & seen_x[None, :]
    return (out * seen.to(out.dtype)).numpy()


def _photo_in_input(place: Placement, size: tuple[int, int]) -> tuple[tuple[torch.Tensor, torch.Tensor], ...]:
    """Per axis (x, then y): where each photo pixel's centre lands in the model's input (input pixels, float64),
    and whether the model saw it (not cut away by a crop)."""
    (top, left, ch, cw), (u_left, u_top, u_right, u_bottom) = place.content, place.used
    px = torch.arange(size[0], dtype=torch.float64) + 0.5
    py = torch.arange(size[1], dtype=torch.float64) + 0.5
    return ((left + (px - u_left) * cw / (u_right - u_left), (px >= u_left) & (px <= u_right)),
            (top + (py - u_top) * ch / (u_bottom - u_top), (py >= u_top) & (py <= u_bottom)))


def carry_matrices(place: Placement, size: tuple[int, int], grid: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """:func:`maps_on_image` as two matrices: for a map ``m`` of ``grid`` (h, w), ``Wy @ m @ Wx.T`` is its
    carried copy (H, W) (equal to float rounding).

    Bilinear sampling with border padding is separable, and so is what a crop cut away; the matrices
    make a map's sums and maximum on the photo cost two small matrix products instead of a grid sample.

    Returns:
        ``Wy`` (H, h) and ``Wx`` (W, w), float32; rows of pixels the model never saw are zero.
    """
    (xs, seen_x), (ys, seen_y) = _photo_in_input(place, size)

    def axis(pos: torch.Tensor, seen: torch.Tensor, n_in: int, n: int) -> np.ndarray:
        src = np.clip(pos.numpy() * n / n_in - 0.5, 0, n - 1)  # grid_sample's unnormalised coordinate (border)
        i0 = np.floor(src).astype(np.intp)
        t = (src - i0) * seen.numpy()
        weights = np.zeros((len(src), n), dtype=np.float32)
        rows = np.arange(len(src))
        weights[rows, i0] = (1 - t) * seen.numpy()
        weights[rows, np.minimum(i0 + 1, n - 1)] += t  # at the last cell t is 0: the two add up to 1
        return weights

    (H, W), (h, w) = place.size, grid
    return axis(ys, seen_y, H, h), axis(xs, seen_x, W, w)


@cache
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def label_frame(rgb: np.ndarray, lines: Sequence[str]) -> np.ndarray:
    """Burn ``lines`` into the top-left corner on a dark box (the first line large, the others smaller)."""
    image = Image.fromarray(rgb)
    draw = ImageDraw.Draw(image, "RGBA")
    big = max(11, image.height // 18)
    fonts = [_font(big), *[_font(max(9, round(big * 0.7)))] * (len(lines) - 1)]
    pad, x, y = max(3, big // 4), max(4, big // 3), max(4, big // 3)
    boxes = [draw.textbbox((0, 0), text, font=f) for text, f in zip(lines, fonts, strict=True)]
    width = max(b[2] - b[0] for b in boxes) + 2 * pad
    height = sum(b[3] - b[1] + pad for b in boxes) + pad
    draw.rectangle((x, y, x + width, y + height), fill=(0, 0, 0, 150))
    cursor = y + pad
    for text, f, b in zip(lines, fonts, boxes, strict=True):
        draw.text((x + pad - b[0], cursor - b[1]), text, font=f, fill=(255, 255, 255, 255))
        cursor += b[3] - b[1] + pad
    return np.asarray(image)


def _colorbar(height: int, view: View, cmap: str | None, top: float) -> np.ndarray:
    """A colour bar (H, w, 3) for the right of an overlay: the colormap, its top value and its bottom (0, or
    −top for the signed view), on white."""
    font = _font(max(10, height // 28))
    labels = (f"{top:.3g}", "0" if view == "relu" else f"{-top:.3g}")
    bar, pad = max(10, height // 25), max(4, height // 60)
    text_w = max(int(ImageDraw.Draw(Image.new("RGB", (1, 1))).textlength(t, font=font)) for t in labels)
    panel = Image.new("RGB", (pad * 3 + bar + text_w, height), (255, 255, 255))
    span = max(1, height - 2 * pad)
    color, _ = heat_color(np.linspace(1.0, 0.0, span), view=view, cmap=cmap)
    panel.paste(Image.fromarray(np.repeat(color[:, None], bar, axis=1)), (pad, pad))
    draw = ImageDraw.Draw(panel)
    draw.text((2 * pad + bar, pad), labels[0], font=font, fill=(0, 0, 0), anchor="lt")
    draw.text((2 * pad + bar, height - pad), labels[1], font=font, fill=(0, 0, 0), anchor="lb")
    return np.asarray(panel)


def photo_overlay(
    photo: np.ndarray | Image.Image,
    cam: np.ndarray,
    *,
    view: View = "relu",
    cmap: str | None = None,
    alpha: float = 0.6,
    top: float | None = None,
    colorbar: bool = False,
    label: str | Sequence[str] | None = None,
) -> np.ndarray:
    """An overlay to export, at the photo's own size: :func:`overlay` of a map already over the photo's pixels
    (:func:`maps_on_image`), with the class and probability burnt in (``label``) and a colour bar on the right
    (``colorbar``: the image gets wider by the bar). RGB uint8."""
    rgb = overlay(photo, cam, view=view, cmap=cmap, alpha=alpha, top=top)
    if label:
        rgb = label_frame(rgb, [label] if isinstance(label, str) else list(label))
    if colorbar:
        cam = np.asarray(cam, dtype=np.float32)
        scale = top if top is not None else float(np.abs(cam).max() if view == "signed" else np.maximum(cam, 0).max())
        rgb = np.concatenate([rgb, _colorbar(rgb.shape[0], view, cmap, scale if scale > 0 else 1.0)], axis=1)
    return rgb
