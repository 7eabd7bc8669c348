"""Read and write video: any common clip in, upright RGB frames with their times out; H.264 MP4 back.

Decoding goes through PyAV (FFmpeg inside its wheel): MP4, MOV, WebM, MKV, AVI and animated GIF.
Defensive like :mod:`.images` (uploads and command lines are untrusted): the limits below are
checked from the container's header before a pixel is decoded (and again while decoding, where
the header does not say), and every failure is one :class:`VideoError` line naming the input.

- **Times** come from the container (``pts × time_base``), so variable-rate clips keep their timing.
- **Rotation**: phones store portrait clips landscape with a display matrix; frames are turned
  upright with it (:func:`upright`; mirror flags are not applied).
- **Sampling** (:class:`Sampling`): every N-th frame, a target rate, at most N frames.
- **Encoding** (:class:`VideoWriter`): H.264 in MP4, ``yuv420p``, even sizes, ``+faststart``
  (the index first, so a browser's ``<video>`` starts playing before the whole file arrived).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from ..errors import CamError
from ..limits import MAX_VIDEO_BYTES, MAX_VIDEO_FRAME_PIXELS, MAX_VIDEO_FRAMES, MAX_VIDEO_SECONDS

__all__ = [
    "MAX_DURATION_S",
    "MAX_FILE_BYTES",
    "MAX_FRAMES",
    "MAX_FRAME_PIXELS",
    "VIDEO_EXTENSIONS",
    "Frame",
    "Sampling",
    "VideoError",
    "VideoInfo",
    "VideoWriter",
    "even_size",
    "probe_video",
    "read_frames",
    "upright",
]

# The limits (set in cam_core.limits with every other; each error names the way around it).
MAX_FILE_BYTES = MAX_VIDEO_BYTES
MAX_DURATION_S = MAX_VIDEO_SECONDS
MAX_FRAME_PIXELS = MAX_VIDEO_FRAME_PIXELS
MAX_FRAMES = MAX_VIDEO_FRAMES

# File name extensions, e.g. for an upload widget's ``type=``.
VIDEO_EXTENSIONS: tuple[str, ...] = ("mp4", "m4v", "mov", "webm", "mkv", "avi", "gif")
_FORMATS_HINT = "MP4, MOV, WebM, MKV, AVI or animated GIF"
_SAMPLE_HINT = "sample it with --every N, --fps F or --max-frames N"
_TIME_SLACK_S = 1e-4  # container times are rounded to their time base


class VideoError(CamError):
    """An input that is not a readable video, or one beyond the limits."""


@dataclass(frozen=True)
class Sampling:
    """Which decoded frames are explained.

    Attributes:
        every: Keep every N-th decoded frame (1: all).
        fps: Keep frames at about this rate instead (by their times); ``None``: use ``every``.
        max_frames: Stop after this many kept frames (the first ones); ``None``: up to :data:`MAX_FRAMES`.
    """

    every: int = 1
    fps: float | None = None
    max_frames: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.every, int) or self.every < 1:
            raise VideoError(f"--every must be a whole number of at least 1, got {self.every!r}")
        if self.fps is not None and not (math.isfinite(self.fps) and self.fps > 0):
            raise VideoError(f"--fps must be a positive number, got {self.fps!r}")
        if self.fps is not None and self.every != 1:
            raise VideoError("give either --every or --fps, not both")
        if self.max_frames is not None and not 1 <= self.max_frames <= MAX_FRAMES:
            raise VideoError(f"--max-frames must be between 1 and {MAX_FRAMES}, got {self.max_frames!r}")

    def rate(self, fps: float) -> float:
        """The rate of the kept frames for a clip at ``fps``."""
        if self.fps is not None:
            return min(self.fps, fps) if fps > 0 else self.fps
        return fps / self.every if fps > 0 else 0.0

    def planned(self, frames: int | None, duration: float | None, fps: float) -> int | None:
        """How many frames this sampling keeps from a clip with that header, when it can be told."""
        if self.fps is not None and duration:
            count = math.ceil(duration * min(self.fps, fps or self.fps))
        elif frames:
            count = math.ceil(frames / self.every)
        else:
            return self.max_frames
        return min(count, self.max_frames) if self.max_frames else count


@dataclass(frozen=True)
class VideoInfo:
    """What the container's header says about its first video stream.

    Attributes:
        label: How the input is called in messages.
        width, height: Stored size of a frame (before rotation).
        fps: Average frame rate (0 when unknown).
        duration: Seconds (``None`` when unknown).
        frames: Frame count from the header (``None`` when unknown: WebM, MKV, some GIFs).
        codec: Decoder name, e.g. ``h264``.
        container: Demuxer name(s), e.g. ``mov,mp4,m4a,3gp,3g2,mj2``.
    """

    label: str
    width: int
    height: int
    fps: float
    duration: float | None
    frames: int | None
    codec: str
    container: str

    def describe(self) -> str:
        """One line for the page and the CLI."""
        rate = f"{self.fps:.3g} fps" if self.fps else "unknown rate"
        length = f"{self.duration:.1f} s" if self.duration else "unknown length"
        count = f", {self.frames} frames" if self.frames else ""
        return f"{self.width}×{self.height} {self.codec}, {rate}, {length}{count}"


@dataclass(frozen=True)
class Frame:
    """One decoded frame: its index among all decoded frames, its time in seconds, its upright RGB pixels."""

    index: int
    time: float
    rgb: np.ndarray


def _label(source: str | os.PathLike[str], name: str | None) -> str:
    return name or str(source)


def _open(path: Path, label: str) -> av.container.InputContainer:
    try:
        return av.open(str(path), metadata_errors="ignore")
    except av.FFmpegError as exc:
        raise VideoError(f"{label} is not a video that can be read ({_FORMATS_HINT})") from exc
    except OSError as exc:
        raise VideoError(f"cannot read {label}: {exc.strerror or exc}") from exc


def _video_stream(container: av.container.InputContainer, label: str) -> av.video.stream.VideoStream:
    if not container.streams.video:
        if container.streams.audio:
            raise VideoError(f"{label} has no video stream (audio only)")
        raise VideoError(f"{label} has no video stream that can be read: it is truncated, or not a video")
    stream = container.streams.video[0]
    if stream.codec_context is None:
        raise VideoError(
            f"{label} uses a video codec this build of FFmpeg cannot decode; convert it to H.264 (MP4) or VP9 (WebM)"
        )
    return stream


def _duration(container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> float | None:
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    if container.duration:
        return container.duration / 1_000_000  # AV_TIME_BASE
    return None


def _fps(stream: av.video.stream.VideoStream) -> float:
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    return float(rate) if rate else 0.0


def _span(seconds: float) -> str:
    """``42.0 s`` or ``20 min``."""
    return f"{seconds:.1f} s" if seconds < 120 else f"{seconds / 60:.0f} min"


def _check_frame_size(label: str, width: int, height: int, where: str = "") -> None:
    """A frame's size against the limit: from the header, and again for every decoded frame (a clip may
    start small and grow: an MJPEG AVI is a series of JPEGs, each with its own size)."""
    if width < 1 or height < 1:
        raise VideoError(f"{label} has frames of {width}×{height} pixels{where}: nothing to explain")
    pixels = width * height
    if pixels > MAX_FRAME_PIXELS:
        what = f"has a frame of {width}×{height} = {pixels / 1e6:.0f} MP{where}" if where else (
            f"is {width}×{height} = {pixels / 1e6:.0f} MP a frame"
        )
        limit = f"{MAX_FRAME_PIXELS / 1e6:.1f} MP (4K)"
        raise VideoError(f"{label} {what}, more than the {limit} allowed; downscale it first")


def _check_header(info: VideoInfo, sampling: Sampling) -> None:
    """The limits that the header lets us check before decoding."""
    _check_frame_size(info.label, info.width, info.height)
    if info.duration is not None and info.duration > MAX_DURATION_S:
        raise VideoError(
            f"{info.label} lasts {_span(info.duration)}, more than the {_span(MAX_DURATION_S)} allowed; cut it first"
        )
    planned = sampling.planned(info.frames, info.duration, info.fps)
    if planned is not None and planned > MAX_FRAMES:
        raise VideoError(
            f"{info.label} would give {planned} frames to explain, more than the {MAX_FRAMES} allowed in one run; "
            f"{_SAMPLE_HINT}"
        )


def probe_video(
    source: str | os.PathLike[str], sampling: Sampling | None = None, *, name: str | None = None
) -> VideoInfo:
    """Read a video's header and check it against the limits, decoding nothing.

    Args:
        source: Path of the video file.
        sampling: The sampling that will be used (the frame-count limit applies to the kept frames).
        name: How to call the input in messages (default: the path).

    Returns:
        The header's facts.

    Raises:
        VideoError: A missing, empty, oversized, unreadable or audio-only file, an unknown codec,
            or a clip beyond the limits.
    """
    label = _label(source, name)
    path = Path(source)
    if not path.is_file():
        raise VideoError(f"no such video file: {label}")
    size = path.stat().st_size
    if size == 0:
        raise VideoError(f"{label} is empty (0 bytes)")
    if size > MAX_FILE_BYTES:
        raise VideoError(f"{label} is {size / 2**20:.0f} MiB, more than the {MAX_FILE_BYTES / 2**20:.0f} MiB allowed")
    with _open(path, label) as container:
        stream = _video_stream(container, label)
        ctx = stream.codec_context
        info = VideoInfo(
            label=label,
            width=int(ctx.width),
            height=int(ctx.height),
            fps=_fps(stream),
            duration=_duration(container, stream),
            frames=int(stream.frames) or None,
            codec=ctx.name,
            container=container.format.name,
        )
    _check_header(info, sampling or Sampling())
    return info


def upright(rgb: np.ndarray, rotation: int) -> np.ndarray:
    """Turn a frame as its display matrix says: ``rotation`` degrees counter-clockwise (PyAV's
    ``VideoFrame.rotation``, a multiple of 90 in practice; others are rounded to one)."""
    quarter = round(rotation / 90) % 4
    return np.ascontiguousarray(np.rot90(rgb, quarter)) if quarter else rgb


class _Sampler:
    """Decides, frame by frame, whether a decoded frame is kept."""

    def __init__(self, sampling: Sampling) -> None:
        self.sampling = sampling
        self.kept = 0
        self.next_time: float | None = None

    def keep(self, index: int, time: float) -> bool:
        s = self.sampling
        if s.fps is None:
            ok = index % s.every == 0
        else:
            step = 1.0 / s.fps
            ok = self.next_time is None or time >= self.next_time - _TIME_SLACK_S
            if ok:  # the next kept time follows the grid from the first kept frame, never the jitter
                self.next_time = (time if self.next_time is None else self.next_time) + step
                while self.next_time <= time + _TIME_SLACK_S:
                    self.next_time += step
        if ok:
            self.kept += 1
        return ok

    @property
    def full(self) -> bool:
        return self.sampling.max_frames is not None and self.kept >= self.sampling.max_frames


def _scaled(width: int, height: int, short: int | None) -> tuple[int, int] | None:
    """(w, h) with the short side at most ``short`` (aspect kept), or ``None`` when already small enough."""
    if short is None or min(width, height) <= short:
        return None
    scale = short / min(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def read_frames(
    source: str | os.PathLike[str],
    sampling: Sampling | None = None,
    *,
    name: str | None = None,
    max_short_side: int | None = None,
) -> Iterator[Frame]:
    """Decode a video's kept frames, upright, with their container times.

    Args:
        source: Path of the video file (checked with :func:`probe_video` first).
        sampling: Which frames to keep (default: all, up to :data:`MAX_FRAMES`).
        name: How to call the input in messages.
        max_short_side: Downscale (in the decoder, aspect kept) frames whose shorter side is longer.

    Yields:
        :class:`Frame` records in display order.

    Raises:
        VideoError: Anything :func:`probe_video` raises; a stream that fails to decode part-way
            (truncated, corrupt); no frame at all; more than :data:`MAX_FRAMES` kept frames or
            :data:`MAX_DURATION_S` seconds where the header did not say.
    """
    sampling = sampling or Sampling()
    info = probe_video(source, sampling, name=name)
    label = info.label
    sampler = _Sampler(sampling)
    decoded = 0
    with _open(Path(source), label) as container:
        stream = _video_stream(container, label)
        stream.thread_type = "AUTO"
        # The decoder itself refuses a larger picture before allocating it (FFmpeg's ``max_pixels``): the
        # header only tells the first frame's size, and a 16000×16000 frame is 384 MB decoded, 768 MB as RGB.
        stream.codec_context.options = {**stream.codec_context.options, "max_pixels": str(MAX_FRAME_PIXELS)}
        base = stream.start_time if stream.start_time is not None else 0
        try:
            for frame in container.decode(stream):
                index = decoded
                decoded += 1
                pts = frame.pts if frame.pts is not None else base + index
                time = float((pts - base) * stream.time_base) if stream.time_base else index / (info.fps or 1.0)
                if time > MAX_DURATION_S:
                    raise VideoError(f"{label} lasts more than the {_span(MAX_DURATION_S)} allowed; cut it first")
                if not sampler.keep(index, time):
                    continue
                if sampler.kept > MAX_FRAMES:
                    raise VideoError(
                        f"{label} gives more than the {MAX_FRAMES} frames allowed in one run; {_SAMPLE_HINT}"
                    )
                _check_frame_size(label, frame.width, frame.height, f" (frame {index})")  # before any conversion
                size = _scaled(frame.width, frame.height, max_short_side)
                image = frame.reformat(*size, format="rgb24") if size else frame
                yield Frame(index, time, upright(image.to_ndarray(format="rgb24"), frame.rotation or 0))
                if sampler.full:
                    return
        except av.FFmpegError as exc:
            where = f"after {decoded} frames" if decoded else "at its first frame"
            ctx = stream.codec_context
            refused = isinstance(exc, av.error.ArgumentError) and ctx.width * ctx.height == 0  # by max_pixels
            if refused or ctx.width * ctx.height > MAX_FRAME_PIXELS:
                raise VideoError(
                    f"{label} has a frame larger than the {MAX_FRAME_PIXELS / 1e6:.1f} MP (4K) allowed "
                    f"(frame {decoded}); downscale it first"
                ) from exc
            raise VideoError(f"{label} is truncated or corrupt: decoding failed {where}") from exc
    if decoded == 0:
        raise VideoError(f"{label} has no video frames")
    if info.frames and decoded < info.frames - max(2, info.frames // 50) and sampling.max_frames is None:
        raise VideoError(
            f"{label} is truncated: its header promises {info.frames} frames but only {decoded} could be decoded"
        )


def even_size(width: int, height: int) -> tuple[int, int]:
    """The size rounded down to even numbers (``yuv420p`` halves both axes for colour), at least 2×2."""
    return max(2, width - width % 2), max(2, height - height % 2)


class VideoWriter:
    """An H.264 MP4 that browsers play: ``yuv420p``, even sizes, the index first (``+faststart``).

    Frames of another size than the first are a bug (they are not rescaled); odd sizes are
    cropped by one row or column. Use as a context manager; the file is complete on exit.
    """

    def __init__(
        self, path: str | os.PathLike[str], fps: float, size: tuple[int, int], *, crf: int = 23,
        preset: str = "veryfast",
    ) -> None:
        if not fps > 0:
            raise VideoError(f"cannot write a video at {fps!r} frames per second")
        self.path = Path(path)
        self.width, self.height = even_size(*size)
        self.frames = 0
        self._container = av.open(str(self.path), "w", format="mp4", options={"movflags": "+faststart"})
        stream = self._container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        stream.width, stream.height, stream.pix_fmt = self.width, self.height, "yuv420p"
        stream.options = {"crf": str(crf), "preset": preset}
        self._stream = stream

    def write(self, rgb: np.ndarray) -> None:
        """Append one (H, W, 3) uint8 frame."""
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb[: self.height, : self.width]), format="rgb24")
        for packet in self._stream.encode(frame):
            self._container.mux(packet)
        self.frames += 1

    def close(self) -> None:
        """Flush the encoder and write the index."""
        if self._container is None:
            return
        try:
            for packet in self._stream.encode():
                self._container.mux(packet)
        finally:
            self._container.close()
            self._container = None

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
