"""explain_clip(): class activation maps over a video, every explained frame, in batches.

How the work is split (why it is fast):

- A background thread decodes and preprocesses frames (``model.prepare``) into a bounded
  queue while the engine works on the previous batch, so the model never waits for frames
  and memory stays bounded whatever the clip's length.
- Each batch is ONE :func:`~cam_core.engine.explain` call: one forward and one batched
  backward for every class and gradient method it needs.
- Image classifiers see one frame per input (a batch of ``batch_size`` frames). Video
  models (a ``clip_len`` on the model: R3D, S3D, MViT, Video Swin) see windows of
  ``window`` frames taken every ``stride`` frames (the last window ends with the clip; a
  clip shorter than the window repeats its last frame); their maps (K, T', h, w) are
  interpolated in time to the window's frames, and frames in two windows get the mean.

Which classes (``classes``):

- ``"topK"``: the clip's K classes by mean probability over the explained frames. Each
  batch explains its frames' own top classes and the clip's best so far (cheap: one
  backward for all); the few frames whose maps of the final K are missing are
  recomputed at the end (a second decode, rarely needed).
- ``"per-frame"``: every frame's own top-1 (the label changes as the scene does);
  ``class_ids`` is then (T, 1).
- class ids or names (``[281, 285]``, ``"tabby,Egyptian cat"``): the same for every frame.

Frames reach the model whole (``fit="whole"``: short side resized, nothing cropped) when
it takes any size, else letterboxed (``"letterbox"``, the pad left out of the maps).
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from ..errors import CamError
from ..io.video import Sampling, VideoInfo, probe_video, read_frames
from ..models.layers import recommended_layer
from ..models.preprocess import Placement
from ..modules import unwrap_model
from .classes import resolve_classes
from .clip_result import ClipResult
from .explainer import explain
from .methods import METHODS, check_methods
from .prefetch import Prefetch, batched

__all__ = [
    "DEFAULT_BATCH",
    "WORK_SHORT_SIDE",
    "Cancelled",
    "ClipClasses",
    "ClipProgress",
    "ClipResult",
    "explain_clip",
    "parse_clip_classes",
    "video_fit",
]

DEFAULT_BATCH = 16  # frames per engine call (video models: windows of frames, at least one window)
# Frames are decoded with their shorter side at most this (or the model's size, if larger): the model
# sees 224 px, the film is drawn at this size, and a 4K phone clip costs what a 480p one does.
WORK_SHORT_SIDE = 480
_EXTRA_CANDIDATES = 2  # "topK" explains each frame's top K+2, so the clip's final K is nearly always there
_QUEUE_BATCHES = 2  # batches decoded ahead of the engine

ClipProgress = Callable[[int, "int | None", float], None]


class Cancelled(CamError):
    """The run was stopped by the user between two batches."""


@dataclass(frozen=True)
class ClipClasses:
    """Which classes a clip explains: ``mode`` ``clip`` (top ``k`` by mean probability), ``frame``
    (each frame's top-1) or ``fixed`` (``ids`` for every frame)."""

    mode: Literal["clip", "frame", "fixed"]
    k: int = 1
    ids: tuple[int, ...] = ()


_PER_FRAME = ("per-frame", "per_frame", "perframe", "frame")


def parse_clip_classes(spec: str | Sequence[int | str], class_names: Sequence[str]) -> ClipClasses:
    """``top1``/``top3`` (the clip's), ``per-frame``, or class ids/names (see the module docstring).

    Raises:
        CamError: an unknown class, or k out of range.
    """
    dummy = torch.zeros(1, len(class_names))
    if isinstance(spec, str):
        text = spec.strip().lower()
        if text in _PER_FRAME:
            return ClipClasses("frame", 1)
        if text.startswith("top"):
            return ClipClasses("clip", int(resolve_classes(text, dummy, class_names).shape[1]))
    ids = resolve_classes(spec, dummy, class_names)[0].tolist()
    return ClipClasses("fixed", len(ids), tuple(dict.fromkeys(ids)))


def video_fit(model: object, fit: str | None = None) -> str:
    """How frames meet the model: ``whole`` where it takes any size, else ``letterbox`` (never cropped)."""
    fits = tuple(getattr(model, "fits", ("whole",)))
    if fit is None:
        return "whole" if "whole" in fits else "letterbox"
    if fit not in ("whole", "letterbox"):
        raise CamError(f"video frames are explained whole: fit {fit!r} would cut them; use whole or letterbox")
    if fit not in fits:
        raise CamError(f"this model takes one input size, so frames are letterboxed (fit {fit!r} does not suit it)")
    return fit


# ------------------------------------------------------------------------------------------ producer


@dataclass
class _Unit:
    """What one input row of the model stands for: one frame (image models) or one window (video models)."""

    number: int
    positions: list[int]  # explained-frame positions, in order (a padded window lists its real frames)
    x: Tensor  # (3, H, W) or (3, window, H, W)


@dataclass
class _Decoded:
    """Everything the decoding thread learnt besides the units."""

    positions: list[tuple[int, float]] = field(default_factory=list)  # (frame index, time) per position
    place: Placement | None = None
    frame_size: tuple[int, int] | None = None


def _prepared(
    model: object, frames: Iterator, fit: str, decoded: _Decoded, wanted: Callable[[int], bool]
) -> Iterator[tuple[int, Tensor | None]]:
    """(position, input tensor) per kept frame; ``None`` for frames no unit needs (skipped in a recompute)."""
    for pos, frame in enumerate(frames):
        decoded.positions.append((frame.index, frame.time))
        image = Image.fromarray(frame.rgb)
        if decoded.frame_size is None:
            decoded.frame_size = image.size
            decoded.place = model.place(image, fit)
        elif image.size != decoded.frame_size:  # a stream that changes size mid-way: batch at the first size
            image = image.resize(decoded.frame_size, Image.Resampling.BILINEAR)
        yield pos, (model.preprocess(image, fit) if wanted(pos) else None)


def _frame_units(items: Iterator[tuple[int, Tensor | None]]) -> Iterator[_Unit]:
    for pos, x in items:
        if x is not None:
            yield _Unit(pos, [pos], x)


def _window_units(items: Iterator[tuple[int, Tensor | None]], window: int, stride: int) -> Iterator[_Unit]:
    """Windows of ``window`` frames every ``stride``; the last one ends with the clip; a short clip is padded."""
    recent: deque[tuple[int, Tensor | None]] = deque(maxlen=window)
    number = count = covered = 0
    for item in items:
        recent.append(item)
        count += 1
        if count >= window and count - window == number * stride:
            unit = _window(number, recent, window)
            if unit is not None:
                yield unit
            number, covered = number + 1, count
    if count and covered < count:  # the tail (or the whole of a clip shorter than the window)
        unit = _window(number, recent, window)
        if unit is not None:
            yield unit


def _window(number: int, recent: deque, window: int) -> _Unit | None:
    tensors = [x for _, x in recent]
    if any(x is None for x in tensors):  # not needed in this (recompute) pass
        return None
    tensors += [tensors[-1]] * (window - len(tensors))  # a clip shorter than the window: hold the last frame
    return _Unit(number, [p for p, _ in recent], torch.stack(tensors, dim=1))


# ------------------------------------------------------------------------------------------ consumer


@dataclass
class _Store:
    """Per-unit scores and maps; frames are assembled from the units that hold them."""

    logits: dict[int, Tensor] = field(default_factory=dict)  # unit → (C,) or (rows, C)
    maps: dict[int, dict[int, dict[str, Tensor]]] = field(default_factory=dict)  # unit → class → method → (rows, h, w)
    positions: dict[int, list[int]] = field(default_factory=dict)
    prob_sum: Tensor | None = None

    def add(self, units: Sequence[_Unit], res: object, methods: Sequence[str], window: int | None) -> None:
        ids = res.class_ids
        for m in methods:
            maps = res.maps[m]
            if window is not None:  # (N, K, T', h, w) → every frame of the window
                maps = F.interpolate(maps, size=(window, *maps.shape[-2:]), mode="trilinear", align_corners=False)
            for row, unit in enumerate(units):
                per_class = self.maps.setdefault(unit.number, {})
                for k, cid in enumerate(ids[row].tolist()):
                    got = maps[row, k] if window is not None else maps[row, k][None]
                    per_class.setdefault(cid, {})[m] = got[: len(unit.positions)].clone()
        for row, unit in enumerate(units):
            self.logits[unit.number] = res.logits[row]
            self.positions[unit.number] = unit.positions
        probs = res.probs.sum(0)
        self.prob_sum = probs if self.prob_sum is None else self.prob_sum + probs


def _chooser(chosen: ClipClasses, store: _Store, video_model: bool, classes: int) -> Callable[[Tensor], Tensor]:
    """The class ids each batch explains (see the module docstring)."""
    if chosen.mode == "fixed":
        return lambda logits: torch.tensor(chosen.ids, device=logits.device).expand(logits.shape[0], -1)
    if chosen.mode == "frame" and not video_model:
        return lambda logits: logits.topk(1, dim=1).indices
    k = min(classes, chosen.k + _EXTRA_CANDIDATES)

    def candidates(logits: Tensor) -> Tensor:
        found = [logits.topk(k, dim=1).indices.flatten()]
        if store.prob_sum is not None:
            found.append(store.prob_sum.topk(min(classes, chosen.k)).indices.to(logits.device))
        ids = torch.unique(torch.cat(found))
        return ids.expand(logits.shape[0], -1)

    return candidates


def _frame_logits(store: _Store, total: int) -> Tensor:
    """(T, C): each frame's logits (the mean over the windows holding it)."""
    sums: list[Tensor | None] = [None] * total
    counts = [0] * total
    for u, positions in store.positions.items():
        for pos in positions:
            sums[pos] = store.logits[u] if sums[pos] is None else sums[pos] + store.logits[u]
            counts[pos] += 1
    if any(c == 0 for c in counts):
        raise CamError("some frames were not explained (the clip changed while it was read?)")
    return torch.stack([s / c for s, c in zip(sums, counts, strict=True)])


def _final_classes(chosen: ClipClasses, probs: Tensor) -> Tensor:
    if chosen.mode == "fixed":
        return torch.tensor(chosen.ids)
    if chosen.mode == "frame":
        return probs.argmax(1, keepdim=True)
    return probs.mean(0).topk(chosen.k).indices


def _missing(store: _Store, ids: Tensor) -> dict[int, list[int]]:
    """Unit → classes it lacks for some frame it holds."""
    out: dict[int, list[int]] = {}
    for u, positions in store.positions.items():
        need = ids.tolist() if ids.ndim == 1 else sorted({int(c) for p in positions for c in ids[p].tolist()})
        lacking = [c for c in need if c not in store.maps.get(u, {})]
        if lacking:
            out[u] = lacking
    return out


def _assemble(store: _Store, ids: Tensor, methods: Sequence[str], total: int) -> dict[str, np.ndarray]:
    """method → (T, K, h, w): per frame and slot, the mean over the units holding the frame."""
    k_all = ids.shape[-1]
    first = next(iter(next(iter(store.maps.values())).values()))[methods[0]]
    h, w = first.shape[-2:]
    out = {m: torch.zeros(total, k_all, h, w) for m in methods}
    counts = torch.zeros(total, k_all)
    for u, positions in store.positions.items():
        for row, pos in enumerate(positions):
            slots = ids.tolist() if ids.ndim == 1 else ids[pos].tolist()
            for k, cid in enumerate(slots):
                for m in methods:
                    out[m][pos, k] += store.maps[u][cid][m][row]
                counts[pos, k] += 1
    return {m: (v / counts[:, :, None, None].clamp_min(1)).numpy().astype(np.float32) for m, v in out.items()}


def explain_clip(
    model: object,
    video: str | os.PathLike[str],
    *,
    layer: str | None = None,
    classes: str | Sequence[int | str] = "top1",
    methods: str | Sequence[str] = ("gradcam",),
    sampling: Sampling | None = None,
    batch_size: int = DEFAULT_BATCH,
    device: str | torch.device = "auto",
    fit: str | None = None,
    window: int | None = None,
    stride: int | None = None,
    progress: ClipProgress | None = None,
    should_stop: Callable[[], bool] | None = None,
    name: str | None = None,
) -> ClipResult:
    """Explain every kept frame of a video (see the module docstring for how).

    Args:
        model: A :class:`~cam_core.models.LoadedModel` (an image classifier, or a video model with ``clip_len``).
        video: Path of the video file.
        layer: Dotted layer name (default: the recommended layer).
        classes: ``"topK"`` (the clip's), ``"per-frame"``, or class ids/names.
        methods: Method names; video models take gradient methods and Eigen-CAM.
        sampling: Which frames (default all, within the limits of :mod:`cam_core.io.video`).
        batch_size: Frames per engine call (video models: ``batch_size // window`` windows, at least one).
        device: ``auto`` (the GPU when there is one), ``cpu``, ``cuda``, ``mps``.
        fit: ``whole`` or ``letterbox`` (default: whole where the model takes any size).
        window: Video models: frames per input (default the model's ``clip_len``).
        stride: Video models: frames between window starts (default ``window``: no overlap).
        progress: Called after every batch with (frames done, frames planned or ``None``, seconds so far).
        should_stop: Checked between batches; when it returns true the run ends with :class:`Cancelled`.
        name: How to call the video in messages.

    Returns:
        A :class:`ClipResult`.

    Raises:
        CamError: a bad video (:class:`~cam_core.io.video.VideoError`), layer, class, method or setting;
            :class:`Cancelled` when stopped.
    """
    start = time.perf_counter()
    run = _ClipRun.checked(model, video, layer, classes, methods, sampling, batch_size, fit, window, stride, name)
    run.device, run.progress, run.should_stop, run.start = device, progress, should_stop, start
    decoded = run.explain_pass(None)
    total = len(decoded.positions)
    logits = _frame_logits(run.store, total)
    probs = logits.softmax(1)
    ids = _final_classes(run.chosen, probs)
    missing = _missing(run.store, ids)
    recomputed = 0
    if missing:
        run.explain_pass(missing)
        recomputed = sum(len(run.store.positions[u]) for u in missing)
    maps = _assemble(run.store, ids, run.methods, total)
    rate = run.sampling.rate(run.info.fps) or (total / max(1e-9, decoded.positions[-1][1]) if total > 1 else 1.0)
    return ClipResult(
        source=run.info.label,
        frame_index=np.array([i for i, _ in decoded.positions], dtype=np.int64),
        times=np.array([t for _, t in decoded.positions], dtype=np.float64),
        logits=logits.numpy().astype(np.float32),
        probs=probs.numpy().astype(np.float32),
        class_ids=ids.numpy().astype(np.int64),
        names=list(run.names),
        layer=run.layer,
        methods=run.methods,
        maps=maps,
        place=decoded.place,
        frame_size=decoded.frame_size,
        rate=float(rate),
        info=run.info,
        sampling=run.sampling,
        model_name=str(getattr(model, "name", "")),
        pretrained=bool(getattr(model, "pretrained", True)),
        window=run.window,
        stride=run.stride,
        seconds={"total": time.perf_counter() - start, "engine": run.engine_seconds, "waiting": run.waiting_seconds},
        recomputed=recomputed,
    )


@dataclass
class _ClipRun:
    """One explain_clip() call: its checked settings, the maps stored so far, and where the time went.

    The call makes one pass over the video, and a second over the few frames whose final classes the first
    pass did not explain; both share this.
    """

    model: object
    video: str | os.PathLike[str]
    info: VideoInfo
    sampling: Sampling
    layer: str
    methods: tuple[str, ...]
    names: Sequence[str]
    chosen: ClipClasses
    fit: str
    window: int | None
    stride: int | None
    per_batch: int
    short: int
    planned: int | None
    device: str | torch.device = "auto"
    progress: ClipProgress | None = None
    should_stop: Callable[[], bool] | None = None
    start: float = 0.0
    store: _Store = field(default_factory=_Store)
    engine_seconds: float = 0.0  # in explain()
    waiting_seconds: float = 0.0  # waiting for decoded frames

    @classmethod
    def checked(
        cls,
        model: object,
        video: str | os.PathLike[str],
        layer: str | None,
        classes: str | Sequence[int | str],
        methods: str | Sequence[str],
        sampling: Sampling | None,
        batch_size: int,
        fit: str | None,
        window: int | None,
        stride: int | None,
        name: str | None,
    ) -> _ClipRun:
        """The settings checked and the video probed before any frame is decoded: mistakes cost one line."""
        methods = check_methods(methods)
        sampling = sampling or Sampling()
        if not isinstance(batch_size, int) or batch_size < 1:
            raise CamError(f"batch size must be a whole number of at least 1, got {batch_size!r}")
        _, names = unwrap_model(model)
        if not names:
            raise CamError("explain_clip needs a LoadedModel (with class names and preprocessing)")
        chosen = parse_clip_classes(classes, names)
        fit = video_fit(model, fit)
        clip_len = getattr(model, "clip_len", None)
        window, stride = _window_and_stride(clip_len, window, stride)
        if clip_len is not None and any(METHODS[m].kind == "perturbation" for m in methods):
            raise CamError(
                "Score-CAM and Ablation-CAM would run one forward pass of a whole window per channel; for video "
                "models use a gradient method (gradcam, hirescam, …) or eigencam"
            )
        info = probe_video(video, sampling, name=name)
        return cls(
            model=model,
            video=video,
            info=info,
            sampling=sampling,
            layer=layer or recommended_layer(model),
            methods=methods,
            names=names,
            chosen=chosen,
            fit=fit,
            window=window,
            stride=stride,
            per_batch=max(1, batch_size // window) if window else batch_size,
            short=max(WORK_SHORT_SIDE, min(model.input_size)),
            planned=sampling.planned(info.frames, info.duration, info.fps),
        )

    def explain_pass(self, wanted: dict[int, list[int]] | None) -> _Decoded:
        """One pass over the video: every unit (frame or window), or only those in ``wanted`` (unit → classes)."""
        decoded = _Decoded()
        producer = Prefetch(lambda: batched(self._units(decoded, wanted), self.per_batch), _QUEUE_BATCHES,
                            "cam-clip-decode")
        batches = producer.items()
        done = 0
        try:
            for batch in batches:
                if self.should_stop is not None and self.should_stop():
                    raise Cancelled(f"stopped after {done} of {self.planned or 'the'} frames")
                if wanted is not None:
                    batch = [u for u in batch if u.number in wanted]
                    if not batch:
                        continue
                self._explain_batch(batch, decoded, wanted)
                done = max(done, max(u.positions[-1] for u in batch) + 1)
                if self.progress is not None and wanted is None:
                    self.progress(done, self.planned, time.perf_counter() - self.start)
        finally:  # stops the decoding thread at once, whatever ended the loop (an error, a cancel, a rerun)
            batches.close()
        self.waiting_seconds += producer.waiting
        return decoded

    def _units(self, decoded: _Decoded, wanted: dict[int, list[int]] | None) -> Iterator[_Unit]:
        frames = read_frames(self.video, self.sampling, name=self.info.label, max_short_side=self.short)
        need = None if wanted is None else {p for u in wanted for p in self.store.positions[u]}
        items = _prepared(self.model, frames, self.fit, decoded, lambda pos: need is None or pos in need)
        return _window_units(items, self.window, self.stride) if self.window else _frame_units(items)

    def _explain_batch(self, batch: list[_Unit], decoded: _Decoded, wanted: dict[int, list[int]] | None) -> None:
        region = decoded.place.content if decoded.place.padded else None
        if wanted is not None:
            choose = _recompute_chooser(batch, wanted)
        else:
            choose = _chooser(self.chosen, self.store, self.window is not None, len(self.names))
        tick = time.perf_counter()
        res = explain(
            self.model, torch.stack([u.x for u in batch]), layer=self.layer, classes=choose, methods=self.methods,
            device=self.device, region=region, throughput=True,  # a clip's many frames: the fused copy
        )
        self.engine_seconds += time.perf_counter() - tick
        self.store.add(batch, res, self.methods, self.window)


def _window_and_stride(clip_len: int | None, window: int | None, stride: int | None) -> tuple[int | None, int | None]:
    if clip_len is None:
        if window is not None or stride is not None:
            raise CamError("a window and stride are for video models (3-D); an image model explains every frame")
        return None, None
    window = clip_len if window is None else window
    if not isinstance(window, int) or window < 1:
        raise CamError(f"the window must be a whole number of frames, at least 1, got {window!r}")
    stride = window if stride is None else stride
    if not isinstance(stride, int) or not 1 <= stride <= window:
        raise CamError(f"the stride must be between 1 and the window ({window} frames), got {stride!r}")
    return window, stride


def _recompute_chooser(batch: Sequence[_Unit], wanted: dict[int, list[int]]) -> Callable[[Tensor], Tensor]:
    """Each row's missing classes, padded to one length by repeating its first (a duplicate map is harmless)."""
    width = max(len(wanted[u.number]) for u in batch)
    rows = [wanted[u.number] + [wanted[u.number][0]] * (width - len(wanted[u.number])) for u in batch]

    def choose(logits: Tensor) -> Tensor:
        return torch.tensor(rows, device=logits.device)

    return choose

