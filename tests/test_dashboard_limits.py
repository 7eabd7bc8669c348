"""The page under resource limits: bombs, too many or too large uploads, running out of memory, and the
uploads of a session deleted when it ends (a real server and browser)."""

from __future__ import annotations

import io
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "dashboard" / "app.py")
TIMEOUT = 120


def _app() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _png(width: int, height: int, seed: int = 0) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (height, width, 3), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def test_an_aspect_bomb_upload_is_a_message_and_the_page_works() -> None:
    from tests.test_bad_inputs import _png_header_only

    at = _app()
    at.file_uploader(key="uploads").set_value(("strip.png", _png_header_only(100_000, 5), "image/png")).run()
    assert not at.exception
    assert any("strip.png" in e.value and "32:1 limit" in e.value for e in at.error)
    assert [el for el in at.get("plotly_chart") if el.key == "overlay_gradcam_0"]  # the sample is still explained


def test_a_session_works_with_a_bounded_number_of_images(monkeypatch: pytest.MonkeyPatch) -> None:
    import dashboard.views.image.sidebar as sidebar

    monkeypatch.setattr(sidebar, "MAX_SESSION_IMAGES", 3)  # chelsea + 2 uploads
    at = _app()
    files = [(f"p{i}.png", _png(40, 30, i), "image/png") for i in range(4)]
    at.file_uploader(key="uploads").set_value(files).run()
    assert not at.exception
    assert any("2 more images were not opened" in w.value and "at most 3" in w.value for w in at.warning)
    assert at.segmented_control(key="current_image").options == ["p0.png", "p1.png", "chelsea"]


def test_a_too_large_image_is_refused_by_its_size(monkeypatch: pytest.MonkeyPatch) -> None:
    import dashboard.model as model

    monkeypatch.setattr(model, "MAX_IMAGE_UPLOAD_BYTES", 1000)
    at = _app()
    at.file_uploader(key="uploads").set_value(("big.png", _png(200, 200, 7), "image/png")).run()
    assert any("big.png is" in e.value and "allowed per image" in e.value for e in at.error)


def test_running_out_of_memory_is_a_message_and_the_server_keeps_serving(monkeypatch: pytest.MonkeyPatch) -> None:
    import cam_core.engine.explainer as explainer

    real = explainer._Run._first_order  # the gradient maps' batched backward

    def exhausted(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    at = _app()
    monkeypatch.setattr(explainer._Run, "_first_order", exhausted)
    at.text_input(key="class_find").input("volcano").run()  # a map to compute: the engine runs out of memory
    assert not at.exception
    assert any("out of memory" in e.value and "explain fewer classes" in e.value for e in at.error)
    monkeypatch.setattr(explainer._Run, "_first_order", real)
    at.text_input(key="class_find").input("jellyfish").run()  # the classes stayed editable, and the page goes on
    assert not at.exception and not at.error
    titles = [
        a["text"]
        for el in at.get("plotly_chart")
        if el.key.startswith("overlay_gradcam_")
        for a in json.loads(el.proto.spec)["layout"]["annotations"]
    ]
    assert any("jellyfish" in t for t in titles) and any("volcano" in t for t in titles)  # not remembered as failing


@pytest.mark.e2e
def test_a_sessions_uploads_are_deleted_when_it_ends(monkeypatch: pytest.MonkeyPatch) -> None:
    if shutil.which("chromium") is None:
        pytest.skip("chromium is not installed")
    sync_api = pytest.importorskip("playwright.sync_api")
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from bench_ui import ARGS, IDLE, server

    from cam_core.models import efficientnet_lite
    from dashboard.uploads import UPLOAD_ROOT

    monkeypatch.setenv("CAMDASH_SWEEP_SECONDS", "0.5")

    def folders() -> set[str]:  # session folders, in every server's folder (uploads.server_folder())
        return {f"{s.name}/{f.name}" for s in UPLOAD_ROOT.glob("server-*") for f in s.iterdir() if f.is_dir()}

    weights = Path(efficientnet_lite.weights_path())
    with sync_api.sync_playwright() as p, server(ROOT, "--server.disconnectedSessionTTL", "1") as url:
        browser = p.chromium.launch(executable_path=shutil.which("chromium"), args=ARGS)
        page = browser.new_page(viewport={"width": 1600, "height": 1100})
        page.set_default_timeout(180_000)
        page.goto(url)
        page.wait_for_selector(IDLE)
        before = folders()
        page.locator(".st-key-model_source label", has_text="Upload a checkpoint").click()
        page.locator(".st-key-ckpt_arch input").click()
        page.get_by_role("option", name="efficientnet_lite0", exact=True).click()
        page.wait_for_selector(IDLE)
        page.locator(".st-key-ckpt_file [data-testid='stFileUploaderDropzoneInput']").set_input_files(str(weights))
        page.get_by_text("input 224×224").first.wait_for()  # the uploaded weights are loaded and used
        page.wait_for_selector(IDLE)
        mine = folders() - before
        assert len(mine) == 1  # this session's folder
        page.close()  # the session ends
        time.sleep(3)  # past its grace period
        other = browser.new_page()
        other.goto(url)  # any later run sweeps
        other.wait_for_selector(IDLE)
        time.sleep(1)
        other.reload()
        other.wait_for_selector(IDLE)
        assert not (mine & folders())
        browser.close()
