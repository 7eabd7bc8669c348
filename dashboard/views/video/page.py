"""The video page (``/video``): Grad-CAM over a clip, played as a film and scrubbed frame by frame.

``main()`` wires the pieces of :mod:`dashboard.views.video.panels`: the clip and the model → settings →
a Run button (progress, Cancel) → the film, the downloads, and the frame scrubber with the timeline.

What reruns when:

- the whole page: a new clip, model, layer or setting (a cached run shows at once; a new one waits
  for *Run*); smoothing re-draws the films only (a display choice: the maps are not recomputed);
- :func:`_scrubber` (a fragment): the frame slider, the step buttons, a click on the timeline;
  while playing, :func:`_scrubber_playing` reruns by itself every :data:`PLAY_TICK_S` seconds.

*Cancel* (shown while a run goes) stops it between two batches of frames: the click interrupts the
script at its next progress update (Streamlit stops a run that a newer click superseded).
"""

from __future__ import annotations

import hashlib

import streamlit as st

from cam_core.film import SCALES
from dashboard import display, shell, state
from dashboard.caches import figure_cache
from dashboard.feedback import boundary, bounded, guarded
from dashboard.figures import PLOTLY_CONFIG
from dashboard.model import Bundle, ImageItem
from dashboard.state import K
from dashboard.text import plain
from dashboard.views.video.compute import (
    VideoRun,
    background,
    cached_films,
    cached_run,
    compute_films,
    compute_run,
    probe,
    run_key,
)
from dashboard.views.video.panels import (
    Clip,
    change_summary,
    clip_ui,
    fit_words,
    frame_caption,
    frame_figure,
    model_ui,
    progress_text,
    settings_ui,
    show_downloads,
    show_film,
    timeline,
    untrained_note,
)
from dashboard.widgets.layer_panel import layer_panel

__all__ = ["PLAY_TICK_S", "main"]

PLAY_TICK_S = 0.6  # one scrubber step while playing
HOW_TO_READ = (
    "Every explained frame gets the map of the chosen classes, drawn by default on **its own colour scale** (every "
    "frame shows where the model looks; *Colour scale* gives one scale for the whole clip instead, where weak "
    "evidence looks weak). The film says which scale it shows. The film burns in each frame's top-1 class "
    "and probability. Scrub to a frame to see its maps side by side, fade them with the slider under the figure, "
    "and click the timeline to jump to a moment."
)


def page() -> st.Page:
    """This page for ``st.navigation`` (``/video``)."""
    return st.Page(boundary(main, "drawing the video page"), title="Video", icon=":material/movie:", url_path="video")


def main() -> None:
    """Wire the page: clip and model, settings, the Run button, then the results."""
    shared = shell.current()
    with st.container(horizontal=True, vertical_alignment="center", gap="medium"):  # as the image page's header
        st.subheader(":material/movie: Video: class activation maps over a clip", anchor=False, width="content")
        with st.popover("How to read this", icon=":material/help:", type="tertiary"):
            st.markdown(HOW_TO_READ)
    clip_col, model_col = st.columns([1, 1.2], gap="large")
    with clip_col:
        clip = clip_ui()
    with model_col:
        bundle = model_ui(shared)
        layer = _layer_ui(bundle) if bundle is not None else None
    if bundle is None:
        st.info("Choose a model in the sidebar, or a video model above.", icon=":material/arrow_back:")
        return
    if layer is None:
        st.error("No layer of this model gives a spatial map, so no CAM can be taken.")
        return
    settings, smooth, scale = settings_ui(bundle)
    if clip is None:
        return
    if settings is None:
        st.info("Pick at least one class and one method.", icon=":material/touch_app:")
        return
    info = guarded("reading the video", probe, clip.path, clip.label, settings.sampling)
    if info is None:
        return
    st.caption(f":material/movie: **{plain(clip.label)}**: {plain(info.describe())}")
    run = _run_ui(bundle, clip, layer, settings)
    if run is None:
        return
    films = cached_films(run, smooth, scale)
    if films is None:
        films = _draw_films(run, smooth, scale)
        if films is None:
            return
    _results(bundle, run, smooth, scale)


def _layer_ui(bundle: Bundle) -> str | None:
    """The model's layer (the one chosen for it on any page), shown with the model; the tree to change it."""
    layer = state.layer_for(bundle.spec.key, bundle.recommended or "") or None
    with st.container(horizontal=True, gap="small", key="video_model_info"):
        st.badge(bundle.model.name, icon=":material/neurology:", color="blue")
        if layer:
            st.badge(f"layer {layer}", icon=":material/layers:", color="violet")
        if bundle.model.clip_len:
            st.badge(f"windows of {bundle.model.clip_len} frames", icon=":material/view_timeline:", color="gray")
        if not bundle.model.pretrained:
            st.badge("UNTRAINED WEIGHTS", icon=":material/warning:", color="red")
    st.caption(
        f":material/crop_free: {fit_words(bundle).capitalize()}. The sidebar's *Fit* applies to images; video "
        "frames are never cropped."
    )
    if layer:
        with st.expander("Layer (the model tree)"):
            layer_panel(bundle, layer)
    return layer


def _cancel() -> None:
    st.session_state[K.VIDEO_CANCEL] = True


def _run_ui(bundle: Bundle, clip: Clip, layer: str, settings) -> VideoRun | None:  # settings: ClipSettings
    """The cached run, or a Run button (with progress and Cancel while it goes)."""
    key = run_key(bundle, layer, clip.digest, settings)
    run = cached_run(key)
    stopped = st.session_state.pop(K.VIDEO_CANCEL, False)
    if stopped:
        done, total = st.session_state.pop(K.VIDEO_PROGRESS, (0, None))
        where = f"after {done} of {total} frames" if total else "before the first frames were explained"
        st.info(f"Stopped {where}; nothing was kept. Press *Run* to start again.", icon=":material/stop_circle:")
    if run is not None:
        just_ran = st.session_state.get(K.VIDEO_JUST_RAN) == key  # this session's run, a rerun ago: not "cached"
        st.caption(
            f":material/check_circle: Explained {run.result.frames} frames in {run.result.seconds['total']:.1f} s"
            + ("." if just_ran else " (from the cache: nothing is computed again).")
        )
        return run
    with st.container(horizontal=True, gap="small"):
        clicked = st.button("Run", type="primary", icon=":material/play_arrow:", key=K.VIDEO_RUN)
        stop = st.empty()
    if not clicked:
        if not stopped:
            st.info("Press *Run* to explain every frame of the clip.", icon=":material/play_circle:")
        return None
    stop.button("Cancel", icon=":material/stop:", key="video_cancel_button", on_click=_cancel)
    bar = st.progress(0.0, text="Decoding the first frames (and, the first time, tracing the model at their size)…")

    def progress(done: int, total: int | None, seconds: float) -> None:
        st.session_state[K.VIDEO_PROGRESS] = (done, total)
        bar.progress(min(1.0, done / total) if total else 0.0, text=progress_text(done, total, seconds))

    run = guarded(
        "explaining the clip", compute_run, bundle, clip.path, clip.label, clip.digest, layer, settings, progress
    )
    st.session_state.pop(K.VIDEO_PROGRESS, None)
    stop.empty()
    bar.empty()
    if run is not None:  # once more from the top: the page as it stays (the run cached, no Run button)
        st.session_state[K.VIDEO_FRAME] = 0
        st.session_state[K.VIDEO_JUST_RAN] = key
        st.rerun()
    return None


def _draw_films(run: VideoRun, smooth: float, scale: str):  # -> FilmSet | None
    bar = st.progress(0.0, text="Drawing the film…")

    def progress(done: int, total: int | None, seconds: float) -> None:
        bar.progress(min(1.0, done / (total or 1)), text=progress_text(done, total, seconds, "frames drawn"))

    films = guarded("drawing the film", compute_films, run, smooth, progress, scale)
    bar.empty()
    return films


def _results(bundle: Bundle, run: VideoRun, smooth: float, scale: str) -> None:
    """The film and downloads on the left, the frame scrubber and the timeline on the right."""
    untrained_note(bundle)
    film_col, frame_col = st.columns([1, 1.3], gap="large")
    with film_col:
        st.subheader("Film", anchor=False)
        method, _ = show_film(run, cached_films(run, smooth, scale))
        show_downloads(run)
        res = run.result
        st.caption(
            f"{res.frames} frames at {res.rate:.3g} fps, layer `{res.layer}`, {fit_words(bundle, run)}. "
            f"{res.frames / max(res.seconds['total'], 1e-9):.1f} frames/s. Colour scale: {SCALES[scale]}."
        )
    with frame_col:
        st.subheader("Frame by frame", anchor=False)
        if st.session_state.get(K.VIDEO_PLAYING):
            _scrubber_playing(bundle, run, smooth, scale, method)
        else:
            _scrubber(bundle, run, smooth, scale, method)


def _step(delta: int, total: int) -> None:
    st.session_state[K.VIDEO_FRAME] = max(0, min(total - 1, int(st.session_state.get(K.VIDEO_FRAME, 0)) + delta))


def _toggle_play() -> None:
    st.session_state[K.VIDEO_PLAYING] = not st.session_state.get(K.VIDEO_PLAYING, False)
    state.request_full_rerun()  # the other scrubber fragment (timed or not) takes over


def _timeline_clicked(chart_key: str) -> None:
    points = ((st.session_state.get(chart_key) or {}).get("selection") or {}).get("points") or []
    for point in points:
        data = point.get("customdata")
        data = data[0] if isinstance(data, list) and data else data
        if isinstance(data, int | float):
            st.session_state[K.VIDEO_FRAME] = int(data)
            break
    # A fresh chart next run, so that the same point can be clicked again.
    st.session_state[K.VIDEO_TIMELINE_NONCE] = st.session_state.get(K.VIDEO_TIMELINE_NONCE, 0) + 1


def _send_frame(run: VideoRun, films, position: int) -> str:  # films: FilmSet
    """Put the frame among the image page's images (selected there, with the same model and layer)."""
    jpeg = films.backgrounds[position]
    stem = run.label.rsplit(".", 1)[0]
    item = ImageItem(
        label=f"{stem} @ {run.result.times[position]:.2f} s", image=background(films, position),
        digest=hashlib.sha1(jpeg).hexdigest(),
    )
    state.open_image(item)
    return item.label


def _frame_view(bundle: Bundle, run: VideoRun, smooth: float, scale: str, method: str) -> None:
    """Slider and step buttons, the frame's overlays (classes side by side), the timeline, and the way to the
    image page."""
    res = run.result
    films = cached_films(run, smooth, scale)
    total = res.frames
    position = max(0, min(total - 1, int(st.session_state.get(K.VIDEO_FRAME, 0))))
    st.session_state[K.VIDEO_FRAME] = position
    playing = bool(st.session_state.get(K.VIDEO_PLAYING))
    with st.container(horizontal=True, vertical_alignment="center", gap="small", key="video_scrub_controls"):
        st.button("", icon=":material/skip_previous:", key="video_prev", on_click=_step, args=(-1, total),
                  help="Previous frame")
        st.button("", icon=":material/pause:" if playing else ":material/play_arrow:", key="video_play",
                  on_click=_toggle_play, help="Pause" if playing else "Play the frames here, step by step")
        st.button("", icon=":material/skip_next:", key="video_next", on_click=_step, args=(1, total),
                  help="Next frame")
        st.slider("Frame", 0, max(1, total - 1), key=K.VIDEO_FRAME, label_visibility="collapsed",
                  disabled=total < 2)
    position = int(st.session_state[K.VIDEO_FRAME])
    st.markdown(frame_caption(run, position))
    opacity = display.current().opacity
    fig = figure_cache().get_or_build(
        ("video", run.key, smooth, scale, method, position, opacity),
        lambda: frame_figure(run, films, method, position, smooth, opacity),
    )
    st.plotly_chart(fig, config=PLOTLY_CONFIG, key="video_overlay")
    display.sync_opacity(".st-key-video_overlay .js-plotly-plot")
    chart_key = f"video_timeline_{st.session_state.get(K.VIDEO_TIMELINE_NONCE, 0)}"
    st.plotly_chart(
        timeline(run, position), config={**PLOTLY_CONFIG, "displayModeBar": False}, key=chart_key,
        on_select=lambda: _timeline_clicked(chart_key), selection_mode="points",
    )
    st.caption(f"{change_summary(run)} Click the timeline to jump to a frame.")
    _to_image_page_ui(bundle, run, films, position)


def _to_image_page_ui(bundle: Bundle, run: VideoRun, films, position: int) -> None:  # films: FilmSet
    """"Open this frame on the image page": one click, or two where the model came from an uploaded file
    (``st.switch_page`` drops uploads; a page link, like the navigation, keeps them)."""
    video_model = bundle.model.clip_len is not None
    link = bundle.spec.has_uploads
    clicked = st.button(
        "Send this frame to the image page" if link else "Open this frame on the image page",
        icon=":material/open_in_new:", key="video_to_image", disabled=video_model,
        help="A 3-D video model does not take single images; use the sidebar's model." if video_model else
        "The frame becomes an image on the image page, with the same model and layer, so the whole debug section "
        "(diagnosis, sweep, contrast) applies to it.",
    )
    if clicked:
        label = _send_frame(run, films, position)
        if not link:
            st.switch_page(shell.page("image"))
        st.session_state[K.VIDEO_SENT] = label
    if link and st.session_state.get(K.VIDEO_SENT):
        st.page_link(shell.page("image"), label=f"Open {plain(st.session_state[K.VIDEO_SENT])} on the image page",
                     icon=":material/image:")


@st.fragment
@bounded("drawing the frame")
def _scrubber(bundle: Bundle, run: VideoRun, smooth: float, scale: str, method: str) -> None:
    state.honour_full_rerun()
    _frame_view(bundle, run, smooth, scale, method)


@st.fragment(run_every=PLAY_TICK_S)
@bounded("playing the frames")
def _scrubber_playing(bundle: Bundle, run: VideoRun, smooth: float, scale: str, method: str) -> None:
    state.honour_full_rerun()
    res = run.result
    position = int(st.session_state.get(K.VIDEO_FRAME, 0))
    if position >= res.frames - 1:
        st.session_state[K.VIDEO_PLAYING] = False
        st.rerun(scope="app")
    step = max(1, round(res.rate * PLAY_TICK_S))
    st.session_state[K.VIDEO_FRAME] = min(res.frames - 1, position + step)
    _frame_view(bundle, run, smooth, scale, method)

