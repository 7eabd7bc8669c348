"""The dashboard's report downloads in headless Chromium: the image page's *Download report (HTML)* gives the file
of what the page shows (its top class and probability, its maps, the findings), and the Dataset page's gives the
opened run's report; each downloaded file opens offline with every picture decoded and nothing requested.
Screenshots go to a temporary folder (printed). Skipped when Chromium is not installed.
"""

from __future__ import annotations

import re
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
OVERLAY = ".st-key-overlay_gradcam_0 .js-plotly-plot"
REPORT = {"image": "Report (HTML)", "dataset": "Download report (HTML)"}  # each like the buttons beside it


@pytest.fixture(scope="module")
def data_root(tmp_path_factory, lite0) -> Path:
    root = tmp_path_factory.mktemp("data_root")
    write_sample_folder(root / "photos", per_photo=2, seed=5)
    run_local(BatchJob(classes="pred,label", labels=True, methods=("gradcam", "hirescam")), root / "photos",
              root / "runs" / "a", workers=0, model=lite0)
    return root


@pytest.fixture(scope="module")
def browser(tmp_path_factory, data_root) -> Iterator[tuple[str, object]]:
    with dashboard(tmp_path_factory.mktemp("server"), {"CAMDASH_DATA_ROOT": str(data_root)}) as url, \
            sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield url, b
        b.close()


def _idle(page) -> None:
    page.wait_for_timeout(300)
    page.wait_for_selector("[data-testid='stApp'][data-test-script-state='notRunning']", timeout=TIMEOUT_MS)


def _download(page, label: str, tmp_path: Path) -> Path:
    """Click the report button; the file it gives."""
    with page.expect_download(timeout=TIMEOUT_MS) as info:
        page.get_by_role("button", name=label, exact=True).click()
    path = tmp_path / info.value.suggested_filename
    info.value.save_as(path)
    return path


def _offline(b, path: Path, shot: Path) -> tuple[str, list[int]]:
    """The file opened with every request but its own aborted: its text and the pictures' natural widths."""
    page = b.new_page(viewport={"width": 1200, "height": 900}, offline=True)
    uri, leaks = path.resolve().as_uri(), []
    page.on("request", lambda r: r.url != uri and not r.url.startswith("data:") and leaks.append(r.url))
    page.goto(uri, wait_until="load")
    page.screenshot(path=shot, full_page=True)
    text, widths = page.inner_text("body"), page.evaluate("[...document.images].map(i => i.naturalWidth)")
    page.close()
    assert leaks == []
    return text, widths


def test_image_page_downloads_the_report_of_what_it_shows(browser, tmp_path) -> None:
    url, b = browser
    page = b.new_page(viewport={"width": 1500, "height": 1400})
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(url)
    page.wait_for_selector(OVERLAY)
    _idle(page)
    top = page.locator(OVERLAY).evaluate("gd => gd.layout.annotations.map(a => a.text).join(' | ')")
    path = _download(page, REPORT["image"], tmp_path)
    page.screenshot(path=tmp_path / "image_page.png")
    page.close()
    assert path.name.endswith("_report.html")
    text, widths = _offline(b, path, tmp_path / "image_report.png")
    print(f"\nreport e2e screenshots: {tmp_path}")
    assert widths and all(w > 0 for w in widths)
    predicted = re.search(r"The model predicts (.+?) with p = ([\d.]+%)", text)
    assert predicted and predicted.group(1) in top, (top, text[:300])
    assert "Findings" in text and "Maps at" in text


def test_dataset_page_downloads_the_runs_report(browser, data_root, tmp_path) -> None:
    url, b = browser
    page = b.new_page(viewport={"width": 1500, "height": 1400})
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(f"{url}/dataset?folder=runs/a")
    page.get_by_role("button", name=REPORT["dataset"]).wait_for()
    _idle(page)
    page.get_by_role("combobox", name="Method shown").click()  # inside the gallery's fragment
    page.get_by_role("option", name="HiResCAM", exact=True).click()
    _idle(page)
    path = _download(page, REPORT["dataset"], tmp_path)
    page.close()
    text, widths = _offline(b, path, tmp_path / "dataset_report.png")
    rows = read_results(data_root / "runs" / "a").to_pylist()
    right = sum(bool(r["correct"]) for r in rows)
    assert f"accuracy ({right} of {len(rows)} labelled)" in text
    assert widths and all(w > 0 for w in widths)
    assert str(data_root) not in text  # paths from the data root: no server path leaves in the file
    assert "maps shown\thirescam" in text  # the method the gallery showed at the click


def test_the_comparison_on_the_image_page_downloads_its_report(browser, tmp_path) -> None:
    url, b = browser
    page = b.new_page(viewport={"width": 1500, "height": 1400})
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(f"{url}/?model_b=efficientnet_lite0&weights_b=DEFAULT")  # model B: the same model
    page.get_by_role("button", name="Report with model B (HTML)").wait_for()
    _idle(page)
    path = _download(page, "Report with model B (HTML)", tmp_path)
    page.close()
    text, widths = _offline(b, path, tmp_path / "comparison_report.png")
    assert widths and all(w > 0 for w in widths)
    assert "Model A vs model B" in text and "the same top class" in text
    assert "map shift 0.00 (r = 1.00)" in text  # a model beside itself did not move
