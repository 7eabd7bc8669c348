"""Overlay films: a clip's maps over its frames, with each frame's prediction burnt in, as H.264 MP4.

Display choices, as in :mod:`cam_core.render` (the raw maps of a :class:`~cam_core.engine.clip.ClipResult`
are never changed):

- **Each frame on its own colour scale** by default (``scale="frame"``, :func:`film_scales`): a film shows
  where the model looks in every frame, even where one part of a clip explains a class far more weakly
  than another (one clip-wide scale left a cat's frames bare next to an espresso's). ``scale="clip"``
  (:func:`clip_scale`) keeps one scale for the whole clip, so that evidence that fades looks faded.
  The film's label line says which scale it shows.
- **Temporal smoothing** (:func:`smooth_maps`, off by default): an exponential moving average
  of the maps, restarting where the explained class changes; for the display only.
- **Labels**: the frame's top-1 class and probability in the corner (as in the blog post this
  project grew from), and which class and method the map shows.

Frames are decoded a second time (exactly as :func:`~cam_core.engine.clip.explain_clip` read
them): keeping a whole clip in memory would not scale, and decoding costs little next to the model.
"""

from __future__ import annotations

import io
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .engine.clip import Cancelled, ClipProgress, ClipResult
from .engine.methods import METHODS
from .engine.prefetch import batched
from .errors import CamError
from .io.video import VideoError, VideoWriter, even_size, read_frames
from .models.preprocess import Placement
from .render import label_frame, overlay

__all__ = [
    "BACKGROUND_LONG_SIDE",
    "SCALES",
    "Films",
    "Scale",
    "clip_scale",
    "display_maps",
    "film_scales",
    "label_frame",
    "maps_on_frames",
    "smooth_maps",
    "write_films",
]

Scale = Literal["frame", "clip"]
SCALES: dict[str, str] = {"frame": "each frame on its own scale", "clip": "one scale for the whole clip"}
BACKGROUND_LONG_SIDE = 640  # frames kept for a viewer (JPEG) are at most this long
_BATCH = 16


def smooth_maps(maps: np.ndarray, strength: float, class_ids: np.ndarray | None = None) -> np.ndarray:
    """Exponential smoothing over time, for display: ``s_t = (1 - a)·m_t + a·s_{t-1}`` with ``a = strength``.

    Args:
        maps: (T, h, w) one slot's maps, frame after frame.
        strength: 0 (off: the maps themselves) … 1 (excluded: nothing would change any more).
        class_ids: (T,) the class each frame explains: smoothing restarts where it changes, so one
            class's evidence never bleeds into another's.

    Returns:
        A new (T, h, w) float32 array (the input is not modified).
    """
    if not 0.0 <= strength < 1.0:
        raise CamError(f"smoothing strength must be in [0, 1), got {strength!r}")
    out = np.array(maps, dtype=np.float32, copy=True)
    if strength == 0.0:
        return out
    for t in range(1, len(out)):
        if class_ids is None or class_ids[t] == class_ids[t - 1]:
            out[t] = (1.0 - strength) * out[t] + strength * out[t - 1]
    return out


def display_maps(result: ClipResult, method: str, k: int, smooth: float = 0.0) -> np.ndarray:
    """(T, h, w) what the film shows for slot ``k`` of ``method``: the raw maps, smoothed if asked."""
    return smooth_maps(result.maps[method][:, k], smooth, result.slot_ids(k))


def clip_scale(maps: np.ndarray, view: str = "relu") -> float:
    """The one colour scale of a film: the largest positive value over every frame (signed: largest magnitude);
    1.0 when there is none (an all-negative ReLU'd film stays blank)."""
    top = float(np.abs(maps).max()) if view == "signed" else float(np.maximum(maps, 0).max(initial=0.0))
    return top if top > 0 else 1.0


def film_scales(maps: np.ndarray, scale: str = "frame", view: str = "relu") -> np.ndarray:
    """(T,) the colour scale of each frame of a film: its own largest value (``frame``) or :func:`clip_scale` for
    every frame (``clip``); 1.0 for a frame with no evidence (it stays blank, never noise blown up)."""
    if scale == "clip":
        return np.full(len(maps), clip_scale(maps, view), dtype=np.float64)
    if scale != "frame":
        raise CamError(f"unknown colour scale {scale!r}; choose from: {', '.join(SCALES)}")
    flat = np.asarray(maps, dtype=np.float64).reshape(len(maps), -1)
    top = np.abs(flat).max(axis=1, initial=0.0) if view == "signed" else np.maximum(flat, 0).max(axis=1, initial=0.0)
    return np.where(top > 0, top, 1.0)


def maps_on_frames(maps: np.ndarray, place: Placement, size: tuple[int, int]) -> np.ndarray:
    """Layer-resolution maps (N, h, w) over the model's input → the frames' pixels (N, H, W), bilinear.

    The model saw the frame at ``place.content`` inside its input (all of it for the ``whole`` fit,
    the middle of a letterbox), so each frame pixel samples the map there.

    Args:
        maps: (N, h, w) float maps.
        place: How the frames met the model.
        size: (width, height) of the frames.
    """
    (H, W), (top, left, ch, cw) = place.size, place.content
    width, height = size
    ys = top + (torch.arange(height, dtype=torch.float32) + 0.5) * ch / height
    xs = left + (torch.arange(width, dtype=torch.float32) + 0.5) * cw / width
    grid = torch.stack(torch.meshgrid(2 * xs / W - 1, 2 * ys / H - 1, indexing="xy"), dim=-1)
    src = torch.from_numpy(np.ascontiguousarray(maps, dtype=np.float32))[:, None]
    out = F.grid_sample(src, grid.expand(len(src), -1, -1, -1), mode="bilinear", align_corners=False,
                        padding_mode="border")
    return out[:, 0].numpy()


def _percent(p: float) -> str:
    return f"{p:.1%}" if p >= 0.001 else "< 0.1%"


@dataclass
class Films:
    """What :func:`write_films` made: ``paths`` per (method, slot), the colour ``scales`` used ((T,) per film: one per
    frame, all equal for ``scale="clip"``), which ``scale`` rule, and (when asked) every frame as JPEG bytes
    (``backgrounds``, long side at most :data:`BACKGROUND_LONG_SIDE`) for a viewer."""

    paths: dict[tuple[str, int], Path]
    scales: dict[tuple[str, int], np.ndarray]
    size: tuple[int, int]
    scale: str = "frame"
    backgrounds: list[bytes] | None = None
    seconds: dict[str, float] = field(default_factory=dict)


def _jpeg(rgb: np.ndarray) -> bytes:
    image = Image.fromarray(rgb)
    if max(image.size) > BACKGROUND_LONG_SIDE:
        image.thumbnail((BACKGROUND_LONG_SIDE, BACKGROUND_LONG_SIDE), Image.Resampling.BILINEAR)
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=88)
    return buf.getvalue()


def write_films(
    video: str | os.PathLike[str],
    result: ClipResult,
    paths: dict[tuple[str, int], str | os.PathLike[str]],
    *,
    smooth: float = 0.0,
    scale: str = "frame",
    alpha: float = 0.5,
    cmap: str = "jet",
    keep_backgrounds: bool = False,
    progress: ClipProgress | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> Films:
    """Write one overlay MP4 per (method, slot) in ``paths``, decoding the video once more.

    Args:
        video: The video ``result`` was computed from (read with the same sampling).
        result: The maps and scores.
        paths: (method, slot k) → output file.
        smooth: Temporal smoothing strength for the display (0: off).
        scale: ``frame`` (default): each frame on its own colour scale; ``clip``: one for the whole clip.
        alpha: Opacity of the strongest evidence.
        cmap: Sequential colormap (ReLU'd view: positive evidence only).
        keep_backgrounds: Also return every frame as JPEG bytes.
        progress: Called per batch with (frames done, frames in all, seconds so far).
        should_stop: Checked between batches (:class:`~cam_core.engine.clip.Cancelled`).

    Returns:
        :class:`Films`.

    Raises:
        CamError: an unknown method or slot; the video no longer matches the result.
    """
    start = time.perf_counter()
    for method, k in paths:
        if method not in result.maps or not 0 <= k < result.class_ids.shape[-1]:
            raise CamError(f"no maps for method {method!r}, class slot {k} in this result")
    shown = {key: display_maps(result, key[0], key[1], smooth) for key in paths}
    scales = {key: film_scales(maps, scale) for key, maps in shown.items()}
    scale_note = "scale: this frame" if scale == "frame" else "scale: whole clip"
    width, height = even_size(*result.frame_size)
    top1 = result.top1
    # Decoded as explain_clip decoded them: frames larger than its working size came out at result.frame_size.
    frames = read_frames(video, result.sampling, name=result.source, max_short_side=min(result.frame_size))
    backgrounds: list[bytes] | None = [] if keep_backgrounds else None
    writers = {key: VideoWriter(path, result.rate, (width, height)) for key, path in paths.items()}
    done = 0
    try:
        for batch in batched(frames, _BATCH):
            if should_stop is not None and should_stop():
                raise Cancelled(f"stopped after {done} of {result.frames} frames of the film")
            if done + len(batch) > result.frames:
                raise VideoError(f"{result.source} gave more frames than when it was explained; run it again")
            rows = slice(done, done + len(batch))
            ups = {key: maps_on_frames(maps[rows], result.place, (width, height)) for key, maps in shown.items()}
            for j, frame in enumerate(batch):
                t = done + j
                rgb = np.ascontiguousarray(frame.rgb[:height, :width])
                if backgrounds is not None:
                    backgrounds.append(_jpeg(rgb))
                head = f"{result.names[top1[t]]}  {_percent(result.probs[t, top1[t]])}"
                for key, writer in writers.items():
                    method, k = key
                    cid = int(result.slot_ids(k)[t])
                    image = overlay(rgb, ups[key][j], cmap=cmap, alpha=alpha, top=float(scales[key][t]))
                    note = (f"{METHODS[method].title} of {result.names[cid]} ({_percent(result.probs[t, cid])})"
                            f" · {scale_note}")
                    writer.write(label_frame(image, [head, note]))
            done += len(batch)
            if progress is not None:
                progress(done, result.frames, time.perf_counter() - start)
    finally:
        for writer in writers.values():
            writer.close()
    if done != result.frames:
        raise VideoError(f"{result.source} gave {done} frames, {result.frames} when it was explained; run it again")
    return Films(
        paths={key: Path(p) for key, p in paths.items()},
        scales=scales,
        size=(width, height),
        scale=scale,
        backgrounds=backgrounds,
        seconds={"total": time.perf_counter() - start},
    )
