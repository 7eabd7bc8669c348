"""The Dataset page with ground truth in headless Chromium: the boxes drawn over each thumbnail where the object is
(the SVG layer fitted like the images), and the "right for the wrong reasons" filter narrowing the gallery.

The data root is :func:`tests.test_dashboard_localisation.make_truth_root`'s (real photos with hand-drawn boxes,
the default model). Skipped when Chromium is not installed.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from benchmarks.bench_ui import ARGS
from cam_core.analysis.localisation import WRONG_REASONS_ENERGY
from cam_core.batch.query import ResultsQuery
from tests.serve import chromium_or_skip, dashboard
from tests.test_dashboard_localisation import PHOTOS, make_truth_root

pytestmark = pytest.mark.e2e

CHROMIUM, sync_api = chromium_or_skip()

CARD = "[data-testid='gallery-card']"


@pytest.fixture(scope="module")
def data_root(tmp_path_factory, lite0) -> Path:
    return make_truth_root(tmp_path_factory.mktemp("truth_root"), lite0)


@pytest.fixture(scope="module")
def page(tmp_path_factory, data_root) -> Iterator:
    with dashboard(tmp_path_factory.mktemp("server"), {"CAMDASH_DATA_ROOT": str(data_root)}) as url, \
            sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        pg = browser.new_page(viewport={"width": 1600, "height": 2200})
        pg.set_default_timeout(120_000)
        pg.goto(f"{url}/dataset?folder=runs/b")
        pg.wait_for_selector(CARD)
        yield pg
        browser.close()


def test_boxes_sit_on_the_object_in_every_thumbnail(page, tmp_path) -> None:
    cards = page.locator(CARD)
    assert cards.count() == 9 and page.locator(f"{CARD} svg rect").count() == 9
    rocket = cards.filter(has_text="rocket_orig.jpg")
    img, rect = rocket.locator("img.gl-base").bounding_box(), rocket.locator("svg rect").bounding_box()
    # rocket (640×427) at 336×224, drawn contained in a square frame: the box (300, 125, 340, 415) at its place
    shown_w = img["width"]
    shown_h = shown_w * 224 / 336
    top = img["y"] + (img["height"] - shown_h) / 2
    x0, y0, x1, y1 = PHOTOS["missile"][1]
    assert rect["x"] == pytest.approx(img["x"] + x0 / 640 * shown_w, abs=2.5)
    assert rect["y"] == pytest.approx(top + y0 / 427 * shown_h, abs=2.5)
    assert rect["width"] == pytest.approx((x1 - x0) / 640 * shown_w, abs=3.5)
    assert rect["height"] == pytest.approx((y1 - y0) / 427 * shown_h, abs=3.5)
    page.screenshot(path=str(tmp_path / "boxes.png"), full_page=True)


def test_the_wrong_reasons_filter_narrows_the_gallery(page, data_root) -> None:
    q = ResultsQuery.open(data_root / "runs" / "b")
    want = q.count({"wrong_reasons": True})
    assert want >= 1
    page.get_by_text(f"Right for the wrong reasons (< {WRONG_REASONS_ENERGY:.0%} in the box)").click()
    sync_api.expect(page.locator(CARD)).to_have_count(want, timeout=120_000)  # the cards live in a shadow root
    assert all("in box" in t and "%" in t for t in page.locator(CARD).all_inner_texts())
