"""The video page's wiring, driven headless with Streamlit's AppTest (no browser).

The sidebar's model is the tiny ``tiny:gapnet`` factory (fast); the clip is the page's sample (36 frames
made from the sample photos). Covers: Run → film, scrubber and timeline; each frame's colour scale or the clip's; play;
nothing recomputed on a rerun, and smoothing re-drawing the film only; the class modes; a bad upload as one
line with the page still working; a frame sent to the image page with the same model and layer.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

import dashboard.views.video.compute as video_compute

APP = str(Path(__file__).resolve().parents[1] / "dashboard" / "app.py")
TESTS = str(Path(__file__).resolve().parent)
TIMEOUT = 300


def _no_failure(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


def _to_page(at: AppTest, url_path: str) -> AppTest:
    """Switch to a page registered by ``st.navigation`` with a callable (``switch_page`` matches files only)."""
    at._page_hash = next(h for h, info in at._registered_pages.items() if info.get("url_pathname") == url_path)
    return at.run()


def _video_page() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    at.radio(key="model_source").set_value("factory").run()
    at.text_input(key="factory_spec").set_value("tiny:gapnet")
    at.text_input(key="factory_path").set_value(TESTS)
    at.run()
    _no_failure(at)
    return _to_page(at, "video")


def _array(value: object) -> np.ndarray:
    """A Plotly array from a figure's JSON (plain, or binary ``{"dtype", "bdata"}``)."""
    if isinstance(value, dict) and "bdata" in value:
        return np.frombuffer(base64.b64decode(value["bdata"]), dtype=value["dtype"])
    return np.asarray(value)


def _figures(at: AppTest) -> dict[str, dict]:
    return {el.key: json.loads(el.proto.spec) for el in at.get("plotly_chart")}


@pytest.fixture(scope="module")
def calls() -> list[str]:
    """Counts the engine runs the page asks for (the page's cache must make reruns free)."""
    found: list[str] = []
    original = video_compute.explain_clip

    def counting(*args, **kwargs):
        found.append(str(args[1]))
        return original(*args, **kwargs)

    video_compute.explain_clip = counting
    yield found
    video_compute.explain_clip = original


@pytest.fixture(scope="module")
def ran(calls) -> AppTest:
    at = _video_page()
    _no_failure(at)
    assert at.button(key="video_run") is not None and not at.get("video")  # nothing runs before Run
    at.button(key="video_run").click().run()
    _no_failure(at)
    return at


def test_run_shows_the_film_scrubber_and_timeline(ran, calls) -> None:
    at = ran
    assert len(calls) == 1
    assert len(at.get("video")) == 1
    frame = at.slider(key="video_frame")
    assert (frame.min, frame.max, frame.value) == (0, 35, 0)
    figs = _figures(at)
    assert {"video_overlay", "video_timeline_0"} <= set(figs)
    timeline = figs["video_timeline_0"]
    assert timeline["data"][0]["name"] == "each frame's top-1" and len(_array(timeline["data"][0]["x"])) == 36
    assert any(t["mode"] == "lines+markers" for t in timeline["data"][1:])
    # a click anywhere picks the nearest frame: an invisible column of points at every frame, no hover limit
    grid = next(t for t in timeline["data"] if t.get("name") == "frames")
    frames = _array(grid["customdata"])
    assert sorted(set(frames.tolist())) == list(range(36)) and len(frames) == 36 * 12
    assert grid["marker"]["opacity"] == 0 and grid["hoverinfo"] == "none"
    assert timeline["layout"]["hoverdistance"] == -1
    assert {d.key for d in at.get("download_button")} >= {"video_dl_film", "video_dl_npz", "video_dl_csv"}
    assert any("Frame 1 of 36" in m.value for m in at.markdown)
    done = [c.value for c in at.caption if "Explained 36 frames" in c.value]
    assert done and "from the cache" not in done[0]  # this session computed it a moment ago


def test_scrubbing_shows_each_frame_on_its_scale_or_the_clips(ran) -> None:
    at = ran
    assert at.selectbox(key="video_scale").value == "frame"  # each frame on its own scale by default
    assert any("Colour scale: each frame on its own scale" in c.value for c in at.caption)
    first = [t for t in _figures(at)["video_overlay"]["data"] if t["type"] == "heatmap"]
    at.slider(key="video_frame").set_value(30).run()
    _no_failure(at)
    assert any("Frame 31 of 36" in m.value for m in at.markdown)
    later = [t for t in _figures(at)["video_overlay"]["data"] if t["type"] == "heatmap"]
    assert not np.array_equal(_array(first[0]["z"]), _array(later[0]["z"]))  # another frame's map
    assert first[0]["zmax"] != later[0]["zmax"] and first[0]["zmin"] == later[0]["zmin"] == 0  # its own scale
    at.selectbox(key="video_scale").set_value("clip").run()  # the films are drawn again on one scale
    _no_failure(at)
    assert any("Colour scale: one scale for the whole clip" in c.value for c in at.caption)
    clip_late = [t for t in _figures(at)["video_overlay"]["data"] if t["type"] == "heatmap"]
    at.slider(key="video_frame").set_value(0).run()
    clip_first = [t for t in _figures(at)["video_overlay"]["data"] if t["type"] == "heatmap"]
    assert clip_first[0]["zmax"] == clip_late[0]["zmax"] > 0  # one scale
    at.selectbox(key="video_scale").set_value("frame").run()
    at.slider(key="video_frame").set_value(30).run()
    at.button(key="video_prev").click().run()
    assert at.slider(key="video_frame").value == 29


def test_play_steps_through_the_frames_until_paused(ran) -> None:
    at = ran
    at.slider(key="video_frame").set_value(0).run()
    at.button(key="video_play").click().run()  # playing: the scrubber's timed fragment steps 0.6 s of frames a tick
    _no_failure(at)
    assert at.session_state["_video_playing"] is True
    first = at.slider(key="video_frame").value
    at.run()
    assert first == 7 and at.slider(key="video_frame").value == 14  # 12 fps × 0.6 s a step
    at.button(key="video_play").click().run()  # pause
    paused = at.slider(key="video_frame").value
    at.run()
    assert at.session_state["_video_playing"] is False and at.slider(key="video_frame").value == paused


def test_a_rerun_computes_nothing_and_smoothing_redraws_the_film_only(ran, calls) -> None:
    at = ran
    before = len(calls)
    at.run()
    _no_failure(at)
    other = _video_page()  # another visitor, the same clip and settings: the run is shared, and said to be
    _no_failure(other)
    assert any("from the cache" in c.value for c in other.caption)
    assert len(calls) == before
    at.slider(key="video_smooth").set_value(0.5).run()
    _no_failure(at)
    assert len(calls) == before  # the maps are not recomputed for a display choice
    assert len(at.get("video")) == 1


def _badges(at: AppTest) -> list[str]:
    return [m.value for m in at.markdown if "-badge[" in m.value]


def test_frame_goes_to_the_image_page_with_the_same_model_and_layer(ran) -> None:
    at = ran
    key = at.session_state["_shared_view"].bundle.spec.key
    at.session_state["_layer_by_model"] = {key: "features.1"}  # as a pick in the model tree does
    at.run()
    assert any("layer features.1" in b for b in _badges(at))
    assert not any("Explained 36 frames" in c.value for c in at.caption)  # another layer: press Run again
    at.button(key="video_run").click().run()
    at.slider(key="video_frame").set_value(20).run()
    at.button(key="video_to_image").click().run()
    _no_failure(at)
    label = at.session_state["current_image"]
    assert label.startswith("cat → espresso (sample) @ ") and label.endswith(" s")
    assert any(t.value.endswith("Class activation maps") for t in at.subheader)  # the image page
    assert at.segmented_control(key="current_image").value == label
    assert at.text_input(key="factory_spec").value == "tiny:gapnet"  # the same sidebar model …
    assert any("layer features.1" in b for b in _badges(at))  # … and layer
    assert any("whole image: 384×216 at 398×224" in c.value for c in at.caption)  # the frame itself, explained


def test_class_modes_and_a_bad_upload(calls) -> None:
    at = _video_page()
    at.segmented_control(key="video_classes").set_value("fixed").run()
    _no_failure(at)
    assert any("Pick at least one class" in i.value for i in at.info)
    at.segmented_control(key="video_classes").set_value("frame").run()
    at.button(key="video_run").click().run()
    _no_failure(at)
    assert len(at.get("video")) == 1
    at.segmented_control(key="video_clip").set_value("upload").run()
    at.file_uploader(key="video_upload").upload("holiday.mp4", b"just some text, not a video", "video/mp4").run()
    _no_failure(at)
    errors = [e.value for e in at.error]
    assert len(errors) == 1 and "holiday.mp4 is not a video that can be read" in errors[0]
    assert "\n" not in errors[0]
    assert at.segmented_control(key="video_clip").value == "upload"  # the page keeps working


def test_the_sidebar_has_no_fit_control_on_the_video_page() -> None:
    # The Fit (how a photo meets the model's input size) applies to photos; the video page scales its frames
    # with its own control, so the sidebar does not show one that does nothing here.
    from dashboard import state

    at = _video_page()  # a fresh one: other tests take the module's page elsewhere
    _no_failure(at)
    assert not [w for w in at.get("segmented_control") if w.key == state.K.FIT]
