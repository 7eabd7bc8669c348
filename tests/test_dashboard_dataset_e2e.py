"""The Dataset page in headless Chromium: a link to a results folder, the gallery sorted wrong-first, a click
on a confusion-matrix cell filtering it (the cell outlined; clicked again, it filters again), a click on a
thumbnail opening that image on the image page, and a link outside the data root refused.

The server gets a data root made here (``photos/<class>/`` and the batch results ``runs/a``); the very first
page a fresh server serves is ``/dataset?folder=runs/a`` (a direct first visit to a page other than ``/``
is what Streamlit's older ``pages/`` folder mode got wrong: the pages live in ``views/``). Screenshots go to a
temporary folder. Skipped when Chromium is not installed.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from benchmarks.bench_ui import ARGS
from cam_core.batch import BatchJob, read_results, run_local
from cam_core.io import write_sample_folder
from tests.serve import chromium_or_skip, dashboard

pytestmark = pytest.mark.e2e

CHROMIUM, sync_api = chromium_or_skip()

TIMEOUT_MS = 120_000
CARD = "[data-testid='gallery-card']"
CONFUSION = ".st-key-ds_confusion"
MATRIX_CELL = "[data-testid='matrix-cell']"
OVERLAY = ".st-key-overlay_gradcam_0 .js-plotly-plot"


@pytest.fixture(scope="module")
def data_root(tmp_path_factory, lite0) -> Path:
    root = tmp_path_factory.mktemp("data_root")
    write_sample_folder(root / "photos", per_photo=3, seed=5)
    run_local(BatchJob(classes="pred,label", labels=True), root / "photos", root / "runs" / "a", workers=0,
              model=lite0)
    return root


@pytest.fixture(scope="module")
def server(tmp_path_factory, data_root) -> Iterator[str]:
    with dashboard(tmp_path_factory.mktemp("server"), {"CAMDASH_DATA_ROOT": str(data_root)}) as url:
        yield url


@pytest.fixture(scope="module")
def page(server):
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        pg = browser.new_page(viewport={"width": 1600, "height": 2000})
        pg.set_default_timeout(TIMEOUT_MS)
        yield pg
        browser.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("screenshots")
    print(f"\nscreenshots: {folder}")
    return folder


def _idle(page) -> None:
    page.wait_for_timeout(300)
    page.wait_for_selector("[data-testid='stApp'][data-test-script-state='notRunning']", timeout=TIMEOUT_MS)


def _titles(page) -> list[str]:
    return page.locator(f"{CARD} .gl-title").all_inner_texts()


def _choose(page, label: str, option: str) -> None:
    page.get_by_role("combobox", name=label).click()
    page.get_by_role("option", name=option, exact=True).click()
    _idle(page)


def _cell(page, true_name: str, pred_name: str):
    """The confusion cell (true, predicted): an HTML cell in the matrix widget's shadow root (locators pierce it)."""
    return page.locator(f"{CONFUSION} {MATRIX_CELL}[data-true='{true_name}'][data-pred='{pred_name}']")


def test_link_sort_click_cell_click_thumbnail(page, server, data_root, shots) -> None:
    table = read_results(data_root / "runs" / "a").to_pandas()
    page.goto(f"{server}/dataset?folder=runs/a")  # the fresh server's first session
    page.wait_for_selector(CARD)
    _idle(page)
    assert len(_titles(page)) == len(table) == 12
    # The maps' opacity changes in the browser at once (a CSS variable over every thumbnail) and the page keeps it.
    page.locator("[data-testid='gallery-opacity']").evaluate(
        "el => { el.value = '0.3'; el.dispatchEvent(new Event('input', {bubbles: true}));"
        " el.dispatchEvent(new Event('change', {bubbles: true})); }"
    )
    assert page.locator(".gl-root").evaluate("e => e.style.getPropertyValue('--gl-opacity')") == "0.3"
    _idle(page)
    assert page.locator("[data-testid='gallery-opacity']").input_value() == "0.3"
    assert page.locator(".gl-heat").first.evaluate("e => getComputedStyle(e).opacity") == "0.3"
    # Wrong first (chosen explicitly): the confident mistakes lead.
    _choose(page, "Sort", "Most confident first")
    _choose(page, "Sort", "Wrong first")
    wrong = table[~table.correct.astype(bool)].sort_values(["prob_pred", "path"], ascending=[False, True])
    assert _titles(page)[: len(wrong)] == [Path(p).name for p in wrong.path]
    assert page.locator(f"{CARD}.gl-wrong").count() == len(wrong)
    page.screenshot(path=shots / "dataset_01_wrong_first.png")

    # Click the cell (true tabby, predicted Egyptian cat): the gallery shows exactly those images.
    cell = table[(table.label_name == "tabby") & (table.pred_name == "Egyptian cat")]
    assert len(cell) >= 1
    target = _cell(page, "tabby", "Egyptian cat")
    assert target.inner_text() == str(len(cell))
    assert target.get_attribute("title").startswith(f"true tabby\npredicted Egyptian cat\n{len(cell)} image")
    target.click()
    sync_api.expect(page.locator(CARD)).to_have_count(len(cell), timeout=TIMEOUT_MS)  # the cards: in a shadow root
    _idle(page)
    assert sorted(_titles(page)) == sorted(Path(p).name for p in cell.path)
    # The cell shown is outlined (orange-red), and only it.
    sync_api.expect(page.locator(f"{MATRIX_CELL}.mx-selected")).to_have_count(1)
    outline = _cell(page, "tabby", "Egyptian cat").evaluate(
        "e => [e.classList.contains('mx-selected'), getComputedStyle(e).outlineStyle, getComputedStyle(e).outlineColor]"
    )
    assert outline == [True, "solid", "rgb(228, 87, 46)"]
    # Only correct ones (none here), then the same cell again: each click counts, and sets "Show" back to all.
    page.locator(".st-key-ds_outcome").get_by_role("radio", name="Correct").click()
    sync_api.expect(page.locator(CARD)).to_have_count(0, timeout=TIMEOUT_MS)
    _idle(page)
    _cell(page, "tabby", "Egyptian cat").click()
    sync_api.expect(page.locator(CARD)).to_have_count(len(cell), timeout=TIMEOUT_MS)
    _idle(page)
    page.screenshot(path=shots / "dataset_02_cell_filtered.png")

    # Click a thumbnail: the image page opens on it, with the run's classes (prediction and true class).
    name = _titles(page)[0]
    row = cell.set_index(cell.path.map(lambda p: Path(p).name)).loc[name]
    page.locator(CARD).first.click()
    page.wait_for_selector(OVERLAY)
    page.wait_for_function(
        f"(document.querySelector({OVERLAY!r})?.layout.annotations || []).some(a => a.text.includes('tabby'))"
    )
    _idle(page)
    assert "/dataset" not in page.url and "layer=_head_act" in page.url
    assert page.locator(".st-key-current_image").get_by_role("radio", name=name, checked=True).count() == 1
    titles = page.evaluate(f"() => document.querySelector({OVERLAY!r}).layout.annotations.map(a => a.text)")
    assert any(row.pred_name in t for t in titles) and any("tabby" in t for t in titles)
    assert page.get_by_text(f"{float(row.prob_pred):.1%}").count() >= 1
    assert page.locator("[data-testid='stException']").count() == 0
    page.screenshot(path=shots / "dataset_03_opened_on_image_page.png")


def test_a_link_outside_the_data_root_is_refused(page, server, shots) -> None:
    page.goto(f"{server}/dataset?folder=../../etc")
    page.get_by_text("outside the data root").first.wait_for()
    _idle(page)
    assert page.locator(CARD).count() == 0
    page.screenshot(path=shots / "dataset_04_refused.png")
