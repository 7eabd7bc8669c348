"""The new sources in a real browser: a timm model with the user's own safetensors weights and a Hugging Face
folder, explained with new methods (LeGrad on the ViT), and the sigmoid scores switch. Reuses the server and
browser of tests/test_dashboard_e2e.py (skipped with it when Chromium is missing)."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import pytest
import torch

from tests.test_dashboard_e2e import CHROMIUM, TIMEOUT_MS, VIEWPORT, _idle, browser, server, shots, sync_api  # noqa: F401
from tests.tiny import save_tiny_vit

pytestmark = pytest.mark.e2e
transformers = pytest.importorskip("transformers")
timm = pytest.importorskip("timm")
safetensors_torch = pytest.importorskip("safetensors.torch")


def _pick(page, key: str, text: str) -> None:
    box = page.locator(f".st-key-{key} input").first
    box.click()
    box.fill(text)
    page.wait_for_timeout(300)
    page.keyboard.press("Enter")
    _idle(page)


def _heatmaps(page, method: str, want: int) -> int:
    """How many heatmaps the method's overlay shows, once it shows ``want`` (Plotly draws after the script run
    ends, later on a busy machine) or after a minute, whatever it shows then."""
    sel = f".st-key-overlay_{method}_0 .js-plotly-plot g.hm image"
    with contextlib.suppress(sync_api.TimeoutError):
        page.wait_for_function(f"document.querySelectorAll({sel!r}).length === {want}", timeout=60_000)
    return page.locator(sel).count()


def _titles(page, method: str) -> list[str]:
    sel = f".st-key-overlay_{method}_0 .js-plotly-plot"
    return page.evaluate(f"() => (document.querySelector({sel!r}).layout.annotations || []).map(a => a.text)")


def test_a_timm_checkpoint_and_an_hf_folder_in_the_page(browser, server, shots, tmp_path: Path) -> None:  # noqa: F811
    torch.manual_seed(0)
    safetensors_torch.save_file(timm.create_model("regnetx_002", num_classes=5).state_dict(),
                                str(tmp_path / "mine.safetensors"))
    folder = tmp_path / "hf"
    save_tiny_vit(folder, image_size=64, patch_size=16)

    page = browser.new_page(viewport=VIEWPORT)
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(server)
    _idle(page)
    page.get_by_text("timm model", exact=True).click()
    _idle(page)
    _pick(page, "timm_name", "regnetx_002")
    page.locator(".st-key-timm_ckpt input[type=file]").set_input_files(str(tmp_path / "mine.safetensors"))
    # The upload is sent after the input changes: wait until the uploader lists it (and its rerun ends) before
    # the next click, which would otherwise rerun the page first (seen once in CI: the checkpoint never arrived).
    page.locator(".st-key-timm_ckpt").get_by_text("mine.safetensors").first.wait_for()
    _idle(page)
    page.get_by_text("timm:regnetx_002 + mine.safetensors").first.wait_for()
    _idle(page)
    _pick(page, "methods", "EigenGrad-CAM")
    page.keyboard.press("Escape")
    _idle(page)
    page.get_by_text("timm:regnetx_002 + mine.safetensors").first.wait_for()
    assert page.get_by_text("timm:regnetx_002 + mine.safetensors").first.is_visible()
    # regnetx's s4 ends in a ReLU: its maps' ReLU'd row alone by default (three classes)
    assert _heatmaps(page, "gradcam", 3) == 3 and _heatmaps(page, "eigengradcam", 3) == 3
    page.screenshot(path=shots / "sources_timm.png")

    page.get_by_text("Hugging Face model", exact=True).click()
    _idle(page)
    box = page.locator(".st-key-hf_folder input")
    box.fill(str(folder))
    box.press("Enter")
    _idle(page)
    _pick(page, "methods", "LeGrad")
    page.keyboard.press("Escape")
    _idle(page)
    assert _heatmaps(page, "legrad", 6) == 6  # three classes × two views over the 4×4 patch grid
    softmax_titles = _titles(page, "legrad")
    page.get_by_text("sigmoid (multi-label)").first.click()
    page.get_by_text("sigmoid probability").first.wait_for()
    _idle(page)
    sel = ".st-key-overlay_legrad_0 .js-plotly-plot"
    page.wait_for_function(  # the panels' p follows the scores' choice
        f"old => JSON.stringify(document.querySelector({sel!r}).layout.annotations.map(a => a.text)) !== old",
        arg=json.dumps(softmax_titles),
    )
    assert _titles(page, "legrad") != softmax_titles
    assert page.locator("[data-testid='stException']").count() == 0
    page.screenshot(path=shots / "sources_hf.png")
    page.close()
