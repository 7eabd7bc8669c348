"""The video page's pieces: ``*_ui`` functions read widgets and return plain values; ``show_*`` draw values.

The clip (the sample, or an upload), the model (the sidebar's, or a 3-D video model), the settings
(classes, methods, sampling, smoothing), the progress of a run, and its results (the film, the
downloads, the frame scrubber's figure and the timeline).
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from cam_core.engine.clip import DEFAULT_BATCH, video_fit
from cam_core.engine.methods import METHODS
from cam_core.film import SCALES
from cam_core.io.video import MAX_DURATION_S, MAX_FILE_BYTES, MAX_FRAME_PIXELS, MAX_FRAMES, VIDEO_EXTENSIONS
from cam_core.models import WeightsUnavailable, list_video_models
from dashboard.feedback import show_error
from dashboard.figures import (
    Panel,
    change_points,
    format_prob,
    overlay_figure,
    panel_height,
    timeline_figure,
)
from dashboard.model import Bundle, ModelSpec, load_bundle
from dashboard.shell import Shared
from dashboard.state import K
from dashboard.text import plain, plotly_text
from dashboard.uploads import save_upload
from dashboard.views.video.compute import ClipSettings, FilmSet, VideoRun, background, frame_maps, sample_clip

__all__ = [
    "VIDEO_METHODS",
    "Clip",
    "change_summary",
    "clip_ui",
    "fit_words",
    "frame_caption",
    "frame_figure",
    "model_ui",
    "progress_text",
    "settings_ui",
    "show_downloads",
    "show_film",
    "timeline",
    "timeline_classes",
    "untrained_note",
]

# Score-CAM and Ablation-CAM run one forward pass per channel: minutes per frame on a CPU (the CLI has them).
VIDEO_METHODS = [m for m, spec in METHODS.items() if spec.kind != "perturbation"]
DEFAULT_VIDEO_MODEL = "r3d_18"
DEFAULT_MAX_FRAMES = 600
SAMPLE_LABEL = "cat → espresso (sample)"
KEEP = "session"  # the settings stay when the user visits the image page and comes back
LIMITS = (
    f"Up to {MAX_FILE_BYTES / 2**30:.0f} GiB, {MAX_DURATION_S / 60:.0f} min, {MAX_FRAME_PIXELS / 1e6:.1f} MP (4K) a "
    f"frame and {MAX_FRAMES} explained frames per run (sample longer clips with *Every N-th frame*)."
)
CLASS_MODES = {"clip": "Clip's top-k", "frame": "Each frame's top-1", "fixed": "Chosen classes"}
CLASS_HELP = (
    "Clip's top-k: the k classes with the highest mean probability over the clip, explained in every frame. "
    "Each frame's top-1: the label follows the scene, as in the blog's video. Chosen classes: the same classes in "
    "every frame."
)


@dataclass(frozen=True)
class Clip:
    """The clip the page explains: its file, how to call it, and a digest of its bytes (part of cache keys)."""

    path: str
    label: str
    digest: str


def clip_ui() -> Clip | None:
    """The sample clip, or an uploaded video (``None`` until one is uploaded)."""
    st.session_state.setdefault(K.VIDEO_CLIP, "sample")
    choice = st.segmented_control(
        "Clip", ["sample", "upload"], format_func={"sample": "Sample clip", "upload": "Upload a video"}.get,
        key=K.VIDEO_CLIP, required=True, persist_state=KEEP,
    )
    if choice == "sample":
        path, digest = sample_clip()
        st.caption(
            "A camera panning from a cat to an espresso (made from the sample photos, no download): the top class "
            "changes half-way."
        )
        return Clip(path, SAMPLE_LABEL, digest)
    up = st.file_uploader(
        "Upload a video", type=list(VIDEO_EXTENSIONS), key=K.VIDEO_UPLOAD,
        help=f"MP4, MOV, WebM, MKV, AVI or animated GIF. {LIMITS}",
    )
    if up is None:
        st.info("Drop a video file above (a phone clip works).", icon=":material/upload_file:")
        return None
    data = up.getvalue()
    return Clip(save_upload(data, up.name), up.name, hashlib.sha1(data).hexdigest())


def _load_video_model(spec: ModelSpec) -> Bundle | None:
    try:
        with st.spinner(f"Loading {plain(spec.name)} and tracing its layers (a 3-D model takes a while)…"):
            return load_bundle(spec)
    except WeightsUnavailable:
        st.session_state[K.VIDEO_PRETRAINED_OFF] = True
        st.session_state[K.VIDEO_OFFLINE_NOTE] = spec.name
        st.rerun()
    except Exception as exc:
        show_error(exc, "loading the video model")
    return None


def model_ui(shared: Shared) -> Bundle | None:
    """The sidebar's model (frame by frame), or a torchvision video model picked here (``None`` while none)."""
    sidebar = shared.bundle.model.name if shared.bundle is not None else "none loaded"
    kinds = {
        "sidebar": f"The sidebar's model ({sidebar}), frame by frame",
        "video": "A video model (3-D, Kinetics-400)",
    }
    choice = st.radio("Model", list(kinds), format_func=kinds.get, key=K.VIDEO_MODEL, horizontal=True,
                      persist_state=KEEP)
    if choice == "sidebar":
        return shared.bundle
    names = list_video_models()
    st.session_state.setdefault(K.VIDEO_ARCH, DEFAULT_VIDEO_MODEL)
    st.session_state.setdefault(K.VIDEO_PRETRAINED, True)
    if st.session_state.pop(K.VIDEO_PRETRAINED_OFF, False):
        st.session_state[K.VIDEO_PRETRAINED] = False
    with st.container(horizontal=True, vertical_alignment="bottom"):
        arch = st.selectbox("Video model", names, key=K.VIDEO_ARCH, width=220, persist_state=KEEP)
        pretrained = st.toggle(
            "Kinetics-400 weights", key=K.VIDEO_PRETRAINED, persist_state=KEEP,
            help="Downloaded from download.pytorch.org the first time. Offline, this switches off: random weights, "
            "flagged as untrained.",
        )
    note = st.session_state.pop(K.VIDEO_OFFLINE_NOTE, None)
    if note:
        st.warning(
            f"The Kinetics-400 weights of {note} are not cached and cannot be downloaded (offline), so these are "
            "random, untrained weights: the maps mean nothing about the clip.", icon=":material/cloud_off:",
        )
    return _load_video_model(ModelSpec(source="torchvision", name=arch, weights="DEFAULT" if pretrained else None))


def _classes_ui(bundle: Bundle) -> str | None:
    """The ``classes`` of a run: ``top{k}``, ``per-frame`` or ids (``None`` while no class is chosen)."""
    names = bundle.model.class_names
    st.session_state.setdefault(K.VIDEO_CLASSES, "clip")
    mode = st.segmented_control(
        "Classes", list(CLASS_MODES), format_func=CLASS_MODES.get, key=K.VIDEO_CLASSES, required=True,
        help=CLASS_HELP, persist_state=KEEP,
    )
    if mode == "frame":
        return "per-frame"
    if mode == "clip":
        k = st.number_input("k", 1, max(1, min(5, len(names))), key=K.VIDEO_K, value=1, width=90, persist_state=KEEP)
        return f"top{int(k)}"
    picked = st.multiselect(
        "Classes to explain", list(range(len(names))), format_func=lambda i: f"{names[i]} · {i}",
        key=f"{K.VIDEO_FIXED}_{bundle.spec.key}", placeholder="Type a class name or index",
        filter_mode="contains", max_selections=4, persist_state=KEEP,
    )
    return ",".join(map(str, picked)) if picked else None


def settings_ui(bundle: Bundle) -> tuple[ClipSettings | None, float, str]:
    """What a run computes, and the smoothing and colour scale of what is shown (``None`` settings while
    incomplete)."""
    with st.container(horizontal=True, vertical_alignment="bottom", gap="medium", key="video_settings"):
        classes = _classes_ui(bundle)
        st.session_state.setdefault(K.VIDEO_METHODS, ["gradcam"])
        methods = st.multiselect(
            "Methods", VIDEO_METHODS, format_func=lambda m: METHODS[m].title, key=K.VIDEO_METHODS, width=260,
            persist_state=KEEP,
            help="One film per method and class. Score-CAM and Ablation-CAM (a forward pass per channel) are for "
            "the command line.",
        )
        every = st.number_input(
            "Every N-th frame", 1, 60, value=1, key=K.VIDEO_EVERY, width=130, persist_state=KEEP,
            help="Explain every N-th frame only: long clips in less time.",
        )
        max_frames = st.number_input(
            "Max frames", 1, MAX_FRAMES, value=DEFAULT_MAX_FRAMES, key=K.VIDEO_MAX_FRAMES, width=120,
            persist_state=KEEP,
            help="Explain at most this many frames (the first ones after sampling).",
        )
        smooth = st.slider(
            "Smoothing", 0.0, 0.9, value=0.0, step=0.1, key=K.VIDEO_SMOOTH, width=160, persist_state=KEEP,
            help="Temporal smoothing of the maps the film and the scrubber show (an exponential moving average); "
            "display only: the downloaded maps stay raw. Off by default.",
        )
        scale = st.selectbox(
            "Colour scale", list(SCALES), format_func=SCALES.__getitem__, key="video_scale", width=230,
            persist_state=KEEP,
            help="Each frame on its own scale (default): every frame shows where the model looks, even where the "
            "class is explained weakly. One scale for the whole clip: evidence that fades looks faded.",
        )
    if classes is None or not methods:
        return None, float(smooth), str(scale)
    settings = ClipSettings(
        classes=classes, methods=tuple(methods), every=int(every), max_frames=int(max_frames), batch_size=DEFAULT_BATCH
    )
    return settings, float(smooth), str(scale)


def progress_text(done: int, total: int | None, seconds: float, what: str = "frames explained") -> str:
    """``12/36 frames explained · 4.1 frames/s · about 6 s left``."""
    rate = done / seconds if seconds > 0 else 0.0
    text = f"{done}/{total or '?'} {what} · {rate:.1f} frames/s"
    if total and rate > 0:
        text += f" · about {max(0.0, (total - done) / rate):.0f} s left"
    return text


def fit_words(bundle: Bundle, run: VideoRun | None = None) -> str:
    """How frames meet the model, in words (before a run: from the model's fits)."""
    if run is not None:
        res = run.result
        return res.place.describe(*res.frame_size)
    fit = video_fit(bundle.model)
    return "frames are explained whole (short side resized, nothing cropped)" if fit == "whole" else (
        "this model takes one input size: frames are letterboxed (the pad is left out of the maps)"
    )


def _film_label(run: VideoRun, key: tuple[str, int]) -> str:
    res = run.result
    method, k = key
    what = f"top-1 #{k + 1}" if res.per_frame else res.names[int(res.class_ids[k])]
    return f"{METHODS[method].title} · {what}"


def show_film(run: VideoRun, films: FilmSet) -> tuple[str, int]:
    """The overlay film (an HTML5 ``<video>``) with its download; returns the (method, slot) shown."""
    keys = list(films.films)
    if st.session_state.get(K.VIDEO_FILM) not in keys:
        st.session_state[K.VIDEO_FILM] = keys[0]
    if len(keys) > 1:
        st.selectbox("Film", keys, format_func=lambda key: _film_label(run, key), key=K.VIDEO_FILM)
    key = st.session_state[K.VIDEO_FILM]
    with st.container(key="video_film_box"):
        st.video(films.films[key], format="video/mp4")
    stem = run.label.rsplit(".", 1)[0].replace(" ", "_").replace("→", "to")
    st.download_button(
        "Film (MP4)", films.films[key], file_name=f"{stem}_{key[0]}_{key[1]}.mp4", mime="video/mp4",
        icon=":material/movie:", on_click="ignore", key="video_dl_film",
    )
    return key


def _npz_bytes(run: VideoRun) -> bytes:
    buf = io.BytesIO()
    np.savez_compressed(buf, **run.result.arrays())
    return buf.getvalue()


def show_downloads(run: VideoRun) -> None:
    """Raw maps and scores of every frame (the CLI's ``.npz`` and ``.csv``)."""
    stem = run.label.rsplit(".", 1)[0].replace(" ", "_").replace("→", "to")
    with st.container(horizontal=True, gap="small"):
        st.download_button(
            "Maps (.npz)", lambda: _npz_bytes(run), file_name=f"{stem}.npz", mime="application/octet-stream",
            icon=":material/grid_on:", on_click="ignore", key="video_dl_npz",
        )
        st.download_button(
            "Scores per frame (CSV)", run.result.csv_text(), file_name=f"{stem}.csv", mime="text/csv",
            icon=":material/table:", on_click="ignore", key="video_dl_csv",
        )


def frame_figure(
    run: VideoRun, films: FilmSet, method: str, position: int, smooth: float, opacity: float
) -> go.Figure:
    """Frame ``position``'s overlays, the explained classes side by side, on the film's colour scale (the frame's own,
    or the clip's)."""
    res = run.result
    image = np.asarray(background(films, position))
    size = (image.shape[1], image.shape[0])
    cams = frame_maps(run, films, method, position, smooth, size)
    panels = []
    for k, cam in enumerate(cams):
        cid = int(res.slot_ids(k)[position])
        panels.append(
            Panel(
                title=f"{plotly_text(res.names[cid])} ({cid})<br><span style='font-size:0.85em'>p = "
                f"{format_prob(res.probs[position, cid])}</span>",
                cam=cam.astype(np.float32),
                name=f"{plotly_text(res.names[cid])} · {METHODS[method].title}",
                top=float(films.scales[(method, k)][position]),
            )
        )
    return overlay_figure(
        image, panels, views=("relu",), opacity=opacity,
        panel_height=panel_height(image.shape[:2], len(panels), width=760),
    )


def timeline_classes(run: VideoRun, limit: int = 6) -> list[int]:
    """The classes the timeline draws: the explained ones (per-frame: the top-1 classes, most frequent first)."""
    res = run.result
    if not res.per_frame:
        return [int(c) for c in res.class_ids.tolist()]
    ids, counts = np.unique(res.class_ids[:, 0], return_counts=True)
    return [int(c) for c in ids[np.argsort(-counts, kind="stable")][:limit]]


def timeline(run: VideoRun, position: int) -> go.Figure:
    """The probabilities over time with the cursor at ``position``."""
    res = run.result
    return timeline_figure(res.times, res.probs, timeline_classes(run), res.names, res.top1.tolist(), position)


def change_summary(run: VideoRun) -> str:
    """``The top-1 changes 3 times: …`` for the caption under the timeline."""
    res = run.result
    top1 = res.top1.tolist()
    changes = change_points(top1)
    if not changes:
        return f"The top-1 class is {plain(res.names[top1[0]])} throughout."
    steps = ", ".join(f"{res.times[t]:.2f} s → {plain(res.names[top1[t]])}" for t in changes[:6])
    more = " …" if len(changes) > 6 else ""
    return f"The top-1 class changes {len(changes)} time{'s' if len(changes) > 1 else ''}: {steps}{more}."


def frame_caption(run: VideoRun, position: int) -> str:
    """One line about frame ``position``: time, index and its top-1 class."""
    res = run.result
    top = int(res.top1[position])
    return (
        f"Frame {position + 1} of {res.frames} (index {int(res.frame_index[position])}, {res.times[position]:.2f} s): "
        f"top-1 **{plain(res.names[top])}** {format_prob(res.probs[position, top])}"
    )


def untrained_note(bundle: Bundle) -> None:
    """Say loudly that an untrained model's maps mean nothing."""
    if not bundle.model.pretrained:
        st.warning("Untrained (random) weights: these maps say nothing about the clip.", icon=":material/warning:")

