"""The image page's comparison in headless Chromium, as a user makes it: switch *Compare with a second model* on,
upload a fine-tuned checkpoint of the same architecture (its head swaps Egyptian cat and tiger cat; its class names
rename tabby), and read the comparison: the prediction flipped, tabby "not in model B", one figure (A | B | B − A)
per class both models have; then drop a class and the comparison follows. Screenshots go to a temporary folder.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest
import torch

from benchmarks.bench_ui import ARGS
from tests.serve import chromium_or_skip, dashboard, idle

pytestmark = pytest.mark.e2e
CHROMIUM, sync_api = chromium_or_skip()
TIMEOUT_MS = 120_000
_idle = partial(idle, timeout_ms=TIMEOUT_MS)
OVERLAY = ".st-key-overlay_gradcam_0 .js-plotly-plot"
FIGURES = "[class*='st-key-compare_'] .js-plotly-plot"
EGYPTIAN, TIGER, TABBY = 285, 282, 281


@pytest.fixture(scope="module")
def finetuned(tmp_path_factory, lite0) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("finetuned")
    state = {k: v.clone() for k, v in lite0.module.state_dict().items()}
    for name in ("_fc.weight", "_fc.bias"):
        state[name][[EGYPTIAN, TIGER]] = state[name][[TIGER, EGYPTIAN]].clone()
    buf = io.BytesIO()
    torch.save(state, buf)
    (folder / "finetuned.pt").write_bytes(buf.getvalue())
    names = list(lite0.class_names)
    names[TABBY] = "striped house cat"
    (folder / "classes.txt").write_text("\n".join(names))
    return folder / "finetuned.pt", folder / "classes.txt"


@pytest.fixture(scope="module")
def page(tmp_path_factory) -> Iterator:
    with dashboard(tmp_path_factory.mktemp("server")) as url, sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        pg = browser.new_page(viewport={"width": 1600, "height": 1100})
        pg.set_default_timeout(TIMEOUT_MS)
        pg.goto(url)
        yield pg
        browser.close()


def test_compare_with_a_finetuned_checkpoint(page, finetuned, tmp_path) -> None:
    weights, classes = finetuned
    page.wait_for_selector(OVERLAY)
    _idle(page)
    assert "Model A vs model B" not in page.inner_text("body")  # off: nothing under the workspace
    page.locator(".st-key-compare_on label").click()
    _idle(page)
    page.locator(".st-key-b_model_source").get_by_text("Upload a checkpoint").click()
    _idle(page)
    box = page.locator(".st-key-b_ckpt_arch input").first
    box.click()
    box.fill("efficientnet_lite0")
    page.wait_for_timeout(300)
    page.keyboard.press("Enter")
    _idle(page)
    page.locator(".st-key-b_ckpt_labels input[type=file]").set_input_files(str(classes))
    _idle(page)
    page.locator(".st-key-b_ckpt_file input[type=file]").set_input_files(str(weights))
    page.wait_for_selector(FIGURES)
    _idle(page)
    sync_api.expect(page.locator(FIGURES)).to_have_count(2)  # Egyptian cat and tiger cat; tabby is not in B
    section = page.locator(".st-key-compare")
    text = section.inner_text()
    assert "prediction changed" in text and "not in model B" in text
    assert "B says tiger cat (45.4%)" in text
    page.evaluate("document.querySelector('.st-key-compare').scrollIntoView({block: 'start'})")
    page.wait_for_timeout(1000)
    page.screenshot(path=tmp_path / "compare.png")
    print(f"\nscreenshot: {tmp_path / 'compare.png'}")
    # Drop tiger cat from model A's classes: the comparison follows (one figure, no stale one left behind).
    page.locator(".st-key-class_picker").get_by_role("button", name=f"Remove tiger cat · {TIGER}").click()
    _idle(page)
    sync_api.expect(page.locator(FIGURES)).to_have_count(1)
    assert "tiger cat: map shift" not in section.inner_text() and "Egyptian cat: map shift" in section.inner_text()
