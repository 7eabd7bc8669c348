"""The Dataset page's atlas and contrast in headless Chromium, on a real run with a planted shortcut.

The data root holds sample-photo variants and six photos of the tabby pasted small into the top-left corner
of a plain canvas (the model still calls them Egyptian cat). Built from the page, the atlas gives those their
own cluster, flagged "corner"; its button narrows the gallery to them; the sheet downloads as a PNG. A click
on the confusion cell (tabby, Egyptian cat) shows each image's tabby map, Egyptian-cat map and the contrast.
Screenshots go to a temporary folder. Skipped when Chromium is not installed.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from benchmarks.bench_ui import ARGS
from cam_core.batch import BatchJob, read_results, run_local
from cam_core.io import write_sample_folder
from cam_core.io.samples import SAMPLE_CLASSES, load_sample
from tests.serve import dashboard

# The dataset page's browser helpers (importing them skips this module too where Chromium is missing).
from tests.test_dashboard_dataset_e2e import (
    CARD,
    CHROMIUM,
    TIMEOUT_MS,
    _cell,
    _idle,
    _titles,
    sync_api,
)

pytestmark = pytest.mark.e2e

CORNERS = 6


def write_corner_photos(folder: Path, count: int = CORNERS, seed: int = 0) -> None:
    """The tabby at a third of its size in the top-left corner of a noisy plain canvas."""
    rng = np.random.default_rng(seed)
    cat = load_sample("chelsea")
    for i in range(count):
        plain = rng.integers(150, 230, 3)
        canvas = (rng.normal(0, 18, (360, 480, 3)) + plain).clip(0, 255).astype(np.uint8)
        im = Image.fromarray(canvas)
        scale = 0.33 * rng.uniform(0.9, 1.1)
        im.paste(cat.resize((int(cat.width * scale), int(cat.height * scale))),
                 (int(rng.integers(0, 12)), int(rng.integers(0, 12))))
        im.save(folder / f"corner_{i:02d}.jpg", quality=90)


@pytest.fixture(scope="module")
def data_root(tmp_path_factory, lite0) -> Path:
    root = tmp_path_factory.mktemp("data_root")
    write_sample_folder(root / "photos", per_photo=5, seed=3)
    write_corner_photos(root / "photos" / SAMPLE_CLASSES["chelsea"])
    run_local(BatchJob(classes="pred,label", labels=True), root / "photos", root / "runs" / "a", workers=0,
              model=lite0)
    run_local(BatchJob(classes="pred", labels=True), root / "photos", root / "runs" / "b", workers=0, model=lite0)
    return root


@pytest.fixture(scope="module")
def page(tmp_path_factory, data_root) -> Iterator[tuple[object, str]]:
    with dashboard(tmp_path_factory.mktemp("server"), {"CAMDASH_DATA_ROOT": str(data_root)}) as url, \
            sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        pg = browser.new_page(viewport={"width": 1500, "height": 2400}, accept_downloads=True)
        pg.set_default_timeout(TIMEOUT_MS)
        yield pg, url
        browser.close()


def test_the_atlas_flags_the_corner_cluster_and_narrows_the_gallery(page, data_root, tmp_path) -> None:
    pg, url = page
    table = read_results(data_root / "runs" / "a").to_pandas()
    planted = {Path(p).name for p, n in zip(table.path, table.pred_name, strict=True)
               if Path(p).name.startswith("corner_") and n == "Egyptian cat"}  # the cluster's class: the prediction
    pg.goto(f"{url}/dataset?folder=runs/a")
    pg.wait_for_selector(CARD)
    _idle(pg)
    pg.get_by_text("Atlas of attention", exact=False).first.click()
    _idle(pg)
    pg.get_by_role("button", name="Build the atlas").click()
    _idle(pg)
    pg.wait_for_selector("[class*='st-key-ds_atlas_card_']")
    _idle(pg)
    summary = pg.locator(".st-key-ds_atlas_summary").inner_text()
    assert "1 flagged: Egyptian cat #" in summary and "(corner)" in summary
    flagged = pg.locator("[class*='st-key-ds_atlas_card_']").filter(has_text="⚑ corner")
    assert flagged.count() == 1
    assert "top-left corner" in flagged.inner_text()
    pg.screenshot(path=str(tmp_path / "atlas.png"))
    size = int(flagged.inner_text().split(" images")[0].split("·")[-1])
    flagged.get_by_role("button", name="Show in the gallery").click()
    _idle(pg)
    titles = _titles(pg)
    assert len(titles) == size and len(planted) >= CORNERS - 1
    assert len(planted & set(titles)) >= 0.9 * len(titles)  # purity
    assert len(planted & set(titles)) >= 0.9 * len(planted)  # recall
    pg.get_by_role("button", name="Show all").click()
    _idle(pg)
    assert len(_titles(pg)) > size
    with pg.expect_download() as download:
        pg.get_by_role("button", name="Atlas sheet (PNG)").click()
    sheet = Image.open(download.value.path())
    assert sheet.format == "PNG" and sheet.height > 300


@pytest.mark.parametrize(("run", "stored"), [("a", True), ("b", False)])
def test_a_confusion_cell_shows_both_maps_and_the_contrast(page, tmp_path, run, stored) -> None:
    # runs/a explained both classes (pred,label): the contrast is the stored maps' difference; runs/b only the
    # prediction: the sidebar's model (the run's) computes the true class's map for the images shown.
    pg, url = page
    pg.goto(f"{url}/dataset?folder=runs/{run}")
    pg.wait_for_selector(CARD)
    _idle(pg)
    _cell(pg, "tabby", "Egyptian cat").click()
    _idle(pg)
    box = pg.locator(".st-key-ds_contrast")
    box.wait_for()
    _idle(pg)
    text = box.inner_text()
    assert "Why Egyptian cat and not tabby?" in text
    assert "exactly map(B) − map(A)" in text  # Grad-CAM
    shown = min(6, len(_titles(pg)))
    assert box.locator("img").count() == 3 * shown
    counts = (shown, 0) if stored else (0, shown)
    assert f"{counts[0]} from the run's stored maps, {counts[1]} computed with the model now" in text
    box.screenshot(path=str(tmp_path / f"contrast_{run}.png"))


def test_the_command_lines_sheet_draws_example_images(data_root, capsys) -> None:
    import json

    from cam_core.analysis.atlas_sheet import sheet_image
    from cam_core.cli import main

    out = data_root / "runs" / "b"
    assert main(["atlas", "--results", str(out), "--sheet"]) == 0
    assert "Egyptian cat · cluster" in capsys.readouterr().out  # the corner photos, flagged
    sheet = Image.open(out / "atlas.png")
    entry = json.loads((out / "atlas.json").read_text())["methods"]["gradcam"]
    bare = sheet_image(entry, "no examples")
    assert sheet.width > bare.width  # the typical images sit beside the mean maps
