"""The video page in a real browser (Debian's Chromium, headless, driven by Playwright).

A fresh server is opened straight at ``/video`` (the first visit of a server is the case Streamlit's
``pages/`` folder mode got wrong, hence ``dashboard/views``). A clip made in the test is uploaded,
explained with *Run*; then the film's ``<video>`` must load (``readyState >= 2``, no ``error``: H.264 MP4
that Chromium plays), the scrubber must move the frame shown, the timeline must be there and a click on
it must jump to a frame; then *Cancel* must stop a run of the sample clip. Screenshots go to a temporary
folder (printed).

Skipped when Chromium is not installed (``apt-get install -y chromium``).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from tests.serve import chromium_or_skip

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

CHROMIUM, sync_api = chromium_or_skip()

from tests import test_dashboard_e2e as image_e2e  # noqa: E402

server = image_e2e.server  # a fresh server for this module, started as for the image page's browser tests
TIMEOUT_MS = 240_000
OVERLAY = ".st-key-video_overlay .js-plotly-plot"
TIMELINE = "[class*='st-key-video_timeline_'] .js-plotly-plot"


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cat walking across grass: the chelsea photo pasted on scikit-image's grass texture, 16 frames."""
    from PIL import Image
    from skimage import data

    from cam_core.io.samples import load_sample
    from tests.clips import write_clip

    grass = Image.fromarray(data.grass()).convert("RGB").resize((320, 180))
    cat = load_sample("chelsea").resize((135, 90))
    frames = []
    for i in range(16):
        frame = grass.copy()
        frame.paste(cat, (round((320 - 135) * i / 15), 50))
        frames.append(np.asarray(frame))
    return write_clip(tmp_path_factory.mktemp("e2e") / "cat_walk.mp4", frames, fps=8)


_idle = image_e2e._idle


def _wait_for_frame(page, number: int) -> None:
    """Until the scrubber's caption names frame ``number`` (1-based)."""
    page.wait_for_function(
        f"() => [...document.querySelectorAll('p')].some(p => p.innerText.startsWith('Frame {number} of'))"
    )


def _caption(page) -> str:
    return page.get_by_text(re.compile(r"^Frame \d+ of \d+")).first.inner_text()


def test_upload_run_play_scrub_and_click_the_timeline(server, clip, tmp_path_factory) -> None:
    shots = tmp_path_factory.mktemp("video_screenshots")
    print(f"\nscreenshots: {shots}")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=image_e2e.ARGS)
        page = browser.new_page(viewport={"width": 1600, "height": 2000})
        page.set_default_timeout(TIMEOUT_MS)
        page.goto(f"{server}/video")  # the server's first visit, straight to the page
        page.get_by_text("Video: class activation maps over a clip").wait_for()
        _idle(page)
        page.locator(".st-key-video_clip").get_by_role("radio", name="Upload a video").click()
        _idle(page)
        page.locator(".st-key-video_upload [data-testid='stFileUploaderDropzoneInput']").set_input_files(str(clip))
        page.get_by_text("cat_walk.mp4: 320×180 h264").wait_for()
        _idle(page)
        page.screenshot(path=shots / "v1_uploaded.png")
        page.get_by_role("button", name="Run").click()
        page.locator("[data-testid='stProgress']").first.wait_for()
        page.screenshot(path=shots / "v2_progress.png")
        page.wait_for_selector("video", timeout=TIMEOUT_MS)
        _idle(page)
        # The film loads and can play: H.264 (yuv420p, +faststart) in MP4, as Chromium's <video> takes it.
        page.wait_for_function("document.querySelector('video').readyState >= 2")
        state = page.evaluate(
            "() => { const v = document.querySelector('video');"
            " return {ready: v.readyState, error: v.error && v.error.code, width: v.videoWidth,"
            " height: v.videoHeight, duration: v.duration}; }"
        )
        assert state["error"] is None and state["ready"] >= 2, state
        assert (state["width"], state["height"]) == (320, 180) and state["duration"] == pytest.approx(2.0, abs=0.2)
        page.evaluate("document.querySelector('video').play()")
        page.wait_for_function("document.querySelector('video').currentTime > 0.3")
        page.wait_for_selector(f"{TIMELINE} .scatterlayer .trace")
        page.wait_for_selector(f"{OVERLAY} g.hm image")
        assert page.locator(TIMELINE).count() == 1 and page.locator(f"{TIMELINE} .scatterlayer .trace").count() >= 2
        assert page.locator(f"{OVERLAY} g.hm image").count() == 1
        assert page.locator("[data-testid='stException']").count() == 0
        assert "Frame 1 of 16" in _caption(page)
        page.screenshot(path=shots / "v3_results.png")
        # The scrubber moves the frame shown (and its overlay).
        before = page.evaluate(f"() => JSON.stringify(document.querySelector({OVERLAY!r}).data[1].z)")
        slider = page.locator(".st-key-video_frame input[type=range]")
        for number in range(2, 12):  # one step at a time: each step reruns the scrubber, which may redraw the slider
            slider.focus()
            page.keyboard.press("ArrowRight")
            _wait_for_frame(page, number)
        _idle(page)
        after = page.evaluate(f"() => JSON.stringify(document.querySelector({OVERLAY!r}).data[1].z)")
        assert after != before
        page.screenshot(path=shots / "v4_scrubbed.png")
        # A click on the timeline jumps to that frame.
        point = page.locator(f"{TIMELINE} .scatterlayer .trace").nth(1).locator("path.point").nth(3)
        box = point.bounding_box()
        page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        page.wait_for_timeout(200)
        page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        _wait_for_frame(page, 4)
        _idle(page)
        # A click on empty space, high above the lines at frame 10's time, jumps to frame 10.
        far = page.locator(f"{TIMELINE} .scatterlayer .trace").nth(0).locator("path.point").nth(9).bounding_box()
        plot = page.locator(f"{TIMELINE} .nsewdrag").first.bounding_box()
        page.mouse.move(far["x"] + far["width"] / 2, plot["y"] + 4)
        page.wait_for_timeout(200)
        page.mouse.click(far["x"] + far["width"] / 2, plot["y"] + 4)
        _wait_for_frame(page, 10)
        _idle(page)
        page.screenshot(path=shots / "v5_timeline_click.png")
        # Cancel stops a run between two batches (the sample clip: 36 frames, batches of 16). Clicked as soon as
        # it shows: the whole run takes only ~2.5 s here.
        page.locator(".st-key-video_clip").get_by_role("radio", name="Sample clip").click()
        _idle(page)
        page.get_by_role("button", name="Run").click()
        page.get_by_role("button", name="Cancel").click()
        page.get_by_text(re.compile(r"Stopped (after \d+ of 36 frames|before the first frames were explained); "
                                    "nothing was kept")).wait_for()
        _idle(page)
        assert page.locator("video").count() == 0 and page.locator("[data-testid='stException']").count() == 0
        page.screenshot(path=shots / "v6_cancelled.png")
        browser.close()


def test_opening_a_page_directly_asks_for_nothing_that_is_not_there(server) -> None:
    # Opened at /video, Streamlit's browser code used to try /video as the server's base path first: 404s for
    # /video/_stcore/health and /video/_stcore/host-config in the console (streamlit#7074). The page head says
    # where the server is.
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=image_e2e.ARGS)
        for path, title in (("video", "Video: class activation maps over a clip"), ("dataset", "Dataset")):
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            page.set_default_timeout(TIMEOUT_MS)
            missing: list[str] = []
            page.on("response", lambda r, missing=missing: missing.append(r.url) if r.status == 404 else None)
            page.goto(f"{server}/{path}")
            page.get_by_text(title).first.wait_for()
            _idle(page)
            assert missing == [], missing
            assert page.url.rstrip("/").endswith(f"/{path}")  # still the page that was opened
            page.close()
        browser.close()
