"""How a layer's output is read as a map: the layouts of :mod:`cam_core.models.layers` (its docstring gives
the rules), and the function that turns a captured output into N×C×h×w (N×C×T'×h×w for video).

Pure shape logic on one output at a time: no forward pass, no model state.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from torch import Tensor, nn

from ..errors import CamError

__all__ = ["MAX_PREFIX_TOKENS", "Layout", "fits_input", "layout_from_tensor", "layout_of", "token_grid", "video_layout"]

MAX_PREFIX_TOKENS = 8


@dataclass(frozen=True)
class Layout:
    """How a captured output maps to N×C×h×w (or N×C×T'×h×w for the ``video`` kinds)."""

    kind: Literal["map", "channels_last", "tokens", "video", "video_channels_last", "video_tokens"]
    grid: tuple[int, int]
    prefix: int = 0
    frames: int | None = None

    @property
    def time_dim(self) -> int | None:
        """Where the time axis sits in the per-sample output shape."""
        return {"video": 1, "video_channels_last": 0}.get(self.kind)

    def describe(self) -> str:
        """The layout in words, as the layer tree shows it."""
        h, w = self.grid
        extra = {0: "", 1: " (+1 class token)"}.get(self.prefix, f" (+{self.prefix} class/register tokens)")
        if self.kind.startswith("video"):
            what = {"video": "video map", "video_channels_last": "channels-last video map"}.get(
                self.kind, "video tokens"
            )
            return f"{what} {self.frames}×{h}×{w} (time × height × width){extra}"
        if self.kind == "map":
            return f"map {h}×{w}"
        if self.kind == "channels_last":
            return f"channels-last map {h}×{w}"
        return f"tokens {h}×{w}{extra}"

    def transform(self) -> Callable[[Tensor], Tensor]:
        """The function from the raw output to its map layout."""
        if self.kind in ("map", "video"):
            return _identity
        if self.kind == "channels_last":
            return _channels_first
        if self.kind == "video_channels_last":
            return _channels_first_3d
        prefix, (h, w) = self.prefix, self.grid
        if self.kind == "video_tokens":
            frames = self.frames or 1

            def video_tokens_to_grid(t: Tensor) -> Tensor:
                n = (t.shape[1] - prefix) // frames
                rows, cols = (h, w) if n == h * w else token_grid(n, (h, w))
                return t[:, prefix:].unflatten(1, (frames, rows, cols)).permute(0, 4, 1, 2, 3)

            return video_tokens_to_grid

        def tokens_to_grid(t: Tensor) -> Tensor:
            n = t.shape[1] - prefix
            # Another input size than the one analysed: keep the aspect ratio if the count allows.
            rows, cols = (h, w) if n == h * w else token_grid(n, (h, w))
            return t[:, prefix:].unflatten(1, (rows, cols)).permute(0, 3, 1, 2)

        return tokens_to_grid


def _identity(t: Tensor) -> Tensor:
    return t


def _channels_first(t: Tensor) -> Tensor:
    return t.permute(0, 3, 1, 2)


def _channels_first_3d(t: Tensor) -> Tensor:
    return t.permute(0, 4, 1, 2, 3)


def token_grid(n: int, like: tuple[int, int]) -> tuple[int, int]:
    """``n`` tokens as rows × columns with the aspect ratio of ``like`` (as near as the count allows)."""
    rows = max(1, round(math.sqrt(n * like[0] / like[1])))
    for r in (rows, rows - 1, rows + 1):
        if r >= 2 and n % r == 0 and n // r >= 2:
            return r, n // r
    raise CamError(f"{n} tokens do not form a grid like {like[0]}×{like[1]}; pick a layer with a spatial map")


def fits_input(h: int, w: int, size: tuple[int, int]) -> bool:
    """A grid h×w fits an H×W input: no larger, and the same stride along both axes (±1 row)."""
    H, W = size
    return 1 <= h <= H and 1 <= w <= W and abs(h * W - w * H) <= max(H, W)


def video_layout(
    module: nn.Module, shape: tuple[int, ...], size: tuple[int, int], frames: int, time_hint: int | None
) -> Layout | str:
    """The layout of a video model's per-sample output (see the module docstring), or why there is none."""
    dims = "×".join(map(str, shape)) or "a scalar"
    if len(shape) == 4:
        first = 1 <= shape[1] <= frames and shape[2] * shape[3] > 1 and fits_input(shape[2], shape[3], size)
        last = 1 <= shape[0] <= frames and shape[1] * shape[2] > 1 and fits_input(shape[1], shape[2], size)
        if first and last:  # as many channels as frames: only the module can tell
            last = (isinstance(module, nn.LayerNorm) and tuple(module.normalized_shape) == shape[3:]) or (
                list(getattr(module, "dims", ())) == [0, 2, 3, 4, 1]
            )
            first = not last
        if first:
            return Layout("video", (shape[2], shape[3]), frames=shape[1])
        if last:
            return Layout("video_channels_last", (shape[1], shape[2]), frames=shape[0])
        return f"{dims}: no time × height × width map that fits a {frames}-frame clip"
    if len(shape) == 2:
        tokens, fits = shape[0], []
        for prefix in range(min(MAX_PREFIX_TOKENS, tokens - 4) + 1):
            for t in range(1, frames + 1):
                if (tokens - prefix) % t:
                    continue
                try:
                    rows, cols = token_grid((tokens - prefix) // t, size)
                except CamError:
                    continue
                if rows * cols * t == tokens - prefix and fits_input(rows, cols, size):
                    fits.append((t != time_hint, abs(rows * size[1] - cols * size[0]), prefix, -t, rows, cols))
        if fits:
            _, _, prefix, minus_t, rows, cols = min(fits)
            return Layout("video_tokens", (rows, cols), prefix, frames=-minus_t)
        return f"{dims}: {tokens} tokens do not form a time × height × width grid"
    return f"{dims}: no time axis (a video model's map is time × height × width)"


def layout_of(
    module: nn.Module,
    shape: tuple[int, ...],
    size: tuple[int, int],
    frames: int | None = None,
    time_hint: int | None = None,
) -> Layout | str:
    """The layout of a per-sample output ``shape`` for an input of ``size`` (and ``frames``), or why there is none."""
    if frames is not None:
        return video_layout(module, shape, size, frames, time_hint)
    dims = "×".join(map(str, shape)) or "a scalar"
    if len(shape) == 3:
        first = shape[1] * shape[2] > 1 and fits_input(shape[1], shape[2], size)
        last = shape[0] * shape[1] > 1 and fits_input(shape[0], shape[1], size)
        if first and last:  # as many channels as rows: only the module can tell
            last = (isinstance(module, nn.LayerNorm) and tuple(module.normalized_shape) == shape[2:]) or (
                list(getattr(module, "dims", ())) == [0, 2, 3, 1]
            )
            first = not last
        if last and not first:
            return Layout("channels_last", (shape[0], shape[1]))
        if first:
            return Layout("map", (shape[1], shape[2]))
        if shape[1] * shape[2] > 1:
            return f"{dims}: its last two dimensions do not fit the {size[0]}×{size[1]} input (not a spatial map)"
        return f"{dims}: a 1×1 map has no spatial extent (after global pooling)"
    if len(shape) == 2:
        tokens, fits = shape[0], []
        for prefix in range(min(MAX_PREFIX_TOKENS, tokens - 4) + 1):
            try:
                rows, cols = token_grid(tokens - prefix, size)
            except CamError:
                continue
            if fits_input(rows, cols, size):
                fits.append((abs(rows * size[1] - cols * size[0]), prefix, rows, cols))
        if fits:  # the closest to the input's aspect ratio, then the fewest extra tokens
            _, prefix, rows, cols = min(fits)
            return Layout("tokens", (rows, cols), prefix)
        return f"{dims}: {tokens} tokens do not form a grid (after up to {MAX_PREFIX_TOKENS} class tokens)"
    return f"{dims}: no spatial dimensions"


def layout_from_tensor(layer: nn.Module, name: str, size: tuple[int, int]) -> Callable[[Tensor], Tensor]:
    """For a model that cannot run on the dummy input: the layout read from each captured tensor alone."""

    def to_grid(t: Tensor) -> Tensor:
        layout = layout_of(layer, tuple(t.shape[1:]), size) if t.ndim == 3 else None
        if t.ndim in (4, 5) and t.shape[-1] * t.shape[-2] > 1:
            return t
        if isinstance(layout, Layout) and layout.kind == "tokens":
            return layout.transform()(t)
        raise CamError(f"no CAM at layer {name!r}: its output {tuple(t.shape[1:])} is not a spatial map")

    return to_grid
