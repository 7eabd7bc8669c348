"""The video page's engine calls (as :mod:`dashboard.views.image.compute` is the image page's): runs and films, cached.

Cost rules:

- A run (maps and scores of every explained frame) is cached process-wide per (model, layer, video
  digest, settings): coming back to a clip, or another session opening it, computes nothing.
- The films and the frames the scrubber shows are cached per (run, smoothing): smoothing is a
  display choice, so changing it re-draws the films (a decode and an encode) and never recomputes maps.
- Both caches are bounded by bytes (:data:`~cam_core.limits.VIDEO_RUN_CACHE_BYTES`,
  :data:`~cam_core.limits.FILM_CACHE_BYTES`; least recently used first out) and thread-safe.
"""

from __future__ import annotations

import hashlib
import io
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
import streamlit as st
from PIL import Image

from cam_core.cache import BoundedCache
from cam_core.engine.clip import ClipResult, explain_clip
from cam_core.film import Films, display_maps, maps_on_frames, write_films
from cam_core.io.samples import SAMPLE_CLIP, write_sample_clip
from cam_core.io.video import Sampling, VideoInfo, probe_video
from cam_core.limits import FILM_CACHE_BYTES, VIDEO_RUN_CACHE_BYTES
from dashboard.model import Bundle

__all__ = [
    "ClipSettings",
    "FilmSet",
    "VideoRun",
    "background",
    "cached_films",
    "cached_run",
    "compute_films",
    "compute_run",
    "film_cache_bytes",
    "frame_maps",
    "probe",
    "run_cache_bytes",
    "run_key",
    "sample_clip",
]

Progress = Callable[[int, "int | None", float], None]


@dataclass(frozen=True)
class ClipSettings:
    """What a run computes, as plain values (hashable: part of the run's cache key)."""

    classes: str = "top1"
    methods: tuple[str, ...] = ("gradcam",)
    every: int = 1
    fps: float | None = None
    max_frames: int | None = None
    batch_size: int = 16

    @property
    def sampling(self) -> Sampling:
        """The sampling these settings ask for."""
        return Sampling(every=self.every, fps=self.fps, max_frames=self.max_frames)

    def key(self) -> tuple[object, ...]:
        """What changes the result (the batch size only changes how fast it comes)."""
        return (self.classes, self.methods, self.every, self.fps, self.max_frames)


@dataclass(frozen=True)
class VideoRun:
    """One computed clip: where it came from, and its :class:`~cam_core.engine.clip.ClipResult`."""

    key: tuple[object, ...]
    path: str
    label: str
    result: ClipResult

    @property
    def nbytes(self) -> int:
        """Memory held (maps and scores)."""
        res = self.result
        return res.logits.nbytes * 2 + sum(m.nbytes for m in res.maps.values())


@dataclass(frozen=True)
class FilmSet:
    """The films of a run at one smoothing and colour scale: MP4 bytes per (method, slot), their colour scales ((T,):
    one per frame), every frame (JPEG)."""

    films: dict[tuple[str, int], bytes]
    scales: dict[tuple[str, int], np.ndarray]
    backgrounds: list[bytes]
    size: tuple[int, int]

    @property
    def nbytes(self) -> int:
        """Memory held."""
        return sum(map(len, self.films.values())) + sum(map(len, self.backgrounds))


_RUNS: BoundedCache[VideoRun] = BoundedCache(max_bytes=VIDEO_RUN_CACHE_BYTES, sizeof=lambda run: run.nbytes)
_FILMS: BoundedCache[FilmSet] = BoundedCache(max_bytes=FILM_CACHE_BYTES, sizeof=lambda films: films.nbytes)


def run_cache_bytes() -> int:
    """Bytes of the runs kept (for ``/_camdash/stats``)."""
    return _RUNS.nbytes


def film_cache_bytes() -> int:
    """Bytes of the films and scrubber frames kept (for ``/_camdash/stats``)."""
    return _FILMS.nbytes


def run_key(bundle: Bundle, layer: str, digest: str, settings: ClipSettings) -> tuple[object, ...]:
    """The cache key of a run."""
    return (bundle.spec.key, layer, digest, settings.key())


def cached_run(key: tuple[object, ...]) -> VideoRun | None:
    """The run for ``key`` if it was computed (by any session)."""
    return _RUNS.get(key)


def compute_run(
    bundle: Bundle,
    path: str,
    label: str,
    digest: str,
    layer: str,
    settings: ClipSettings,
    progress: Progress | None = None,
) -> VideoRun:
    """Explain the clip (or return the cached run).

    Raises:
        CamError: a bad video, layer, class, method or setting.
    """
    key = run_key(bundle, layer, digest, settings)
    found = cached_run(key)
    if found is not None:
        return found
    result = explain_clip(
        bundle.model, path, layer=layer, classes=settings.classes, methods=settings.methods,
        sampling=settings.sampling, batch_size=settings.batch_size, progress=progress, name=label,
    )
    run = VideoRun(key, path, label, result)
    _RUNS.put(key, run)
    return run


def cached_films(run: VideoRun, smooth: float, scale: str = "frame") -> FilmSet | None:
    """The films of ``run`` at ``smooth`` and colour ``scale`` if they were drawn."""
    return _FILMS.get((run.key, smooth, scale))


def compute_films(run: VideoRun, smooth: float, progress: Progress | None = None, scale: str = "frame") -> FilmSet:
    """Draw every film of the run (each method and class slot) and keep every frame for the scrubber."""
    found = cached_films(run, smooth, scale)
    if found is not None:
        return found
    res = run.result
    folder = Path(tempfile.mkdtemp(prefix="cam_dashboard_film_"))
    paths = {
        (m, k): folder / f"{m}_{k}.mp4" for m in res.methods for k in range(res.class_ids.shape[-1])
    }
    try:
        made: Films = write_films(
            run.path, res, paths, smooth=smooth, scale=scale, keep_backgrounds=True, progress=progress
        )
        films = FilmSet(
            films={key: p.read_bytes() for key, p in made.paths.items()},
            scales=made.scales,
            backgrounds=made.backgrounds or [],
            size=made.size,
        )
    finally:
        for p in paths.values():
            p.unlink(missing_ok=True)
        folder.rmdir()
    _FILMS.put((run.key, smooth, scale), films)
    return films


def frame_maps(
    run: VideoRun, films: FilmSet, method: str, position: int, smooth: float, size: tuple[int, int]
) -> list[np.ndarray]:
    """Every class slot's displayed map of one frame, at ``size`` (width, height) of its background."""
    res = run.result
    out = []
    for k in range(res.class_ids.shape[-1]):
        shown = display_maps(res, method, k, smooth)[position : position + 1]
        out.append(maps_on_frames(shown, res.place, size)[0])
    return out


def background(films: FilmSet, position: int) -> Image.Image:
    """Frame ``position`` as the film shows it (RGB)."""
    return Image.open(io.BytesIO(films.backgrounds[position])).convert("RGB")


@st.cache_resource(show_spinner=False, max_entries=64)
def probe(path: str, label: str, sampling: Sampling) -> VideoInfo:
    """The clip's header, checked against the limits (raises :class:`~cam_core.io.video.VideoError`)."""
    return probe_video(path, sampling, name=label)


@cache
def sample_clip() -> tuple[str, str]:
    """(path, digest) of the sample clip, written once per process from the sample photos."""
    path = Path(tempfile.gettempdir()) / "cam_dashboard_samples" / f"{SAMPLE_CLIP}.mp4"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_sample_clip(path)
    return str(path), "sample:" + hashlib.sha1(path.read_bytes()).hexdigest()
