"""The Dataset page on a comparison folder, in headless Chromium: the counts, flipped predictions first then by
map shift, both models' maps in each thumbnail, the filters, a click listing an image's classes.

The data root holds ``cmp/``: :func:`tests.tiny.colour_net` against its copy with the *red* and *green* head rows
swapped (``python -m cam_core compare``), over coloured patches with one red patch filed under *green*. The page
reads only the folders (no model). Skipped when Chromium is not installed.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from safetensors.torch import save_file

from benchmarks.bench_ui import ARGS
from cam_core.batch.compare_view import CompareRun
from cam_core.cli import main
from tests.serve import dashboard
from tests.test_dashboard_dataset_e2e import CARD, CHROMIUM, TIMEOUT_MS, _idle, _titles, sync_api  # skips too
from tests.tiny import COLOURS, colour_net, write_colour_folder

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data_root")
    write_colour_folder(root / "patches", per_class=2, misfiled={"red": "green"})
    (root / "labels.txt").write_text("\n".join(COLOURS) + "\n")
    sd = colour_net().state_dict()
    save_file({k: (v[[1, 0, 2, 3, 4]] if k.startswith("fc.") else v).contiguous() for k, v in sd.items()},
              root / "swapped.safetensors")
    assert main(["compare", "--model", "tests.tiny:colour_net", "--model-b", "tests.tiny:colour_net",
                 "--checkpoint-b", str(root / "swapped.safetensors"), "--input-size", "32", "--labels",
                 str(root / "labels.txt"), "--images", str(root / "patches"), "--labels-from-folders",
                 "--out", str(root / "cmp")]) == 0
    return root


@pytest.fixture(scope="module")
def page(tmp_path_factory, data_root) -> Iterator:
    env = {"CAMDASH_DATA_ROOT": str(data_root)}
    with dashboard(tmp_path_factory.mktemp("server"), env) as url, sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        pg = browser.new_page(viewport={"width": 1400, "height": 1600})
        pg.set_default_timeout(TIMEOUT_MS)
        pg.goto(f"{url}/dataset?folder=cmp")
        yield pg
        browser.close()


def test_a_comparison_folder_opens_flipped_first_with_both_maps(page, data_root, tmp_path_factory) -> None:
    shots = tmp_path_factory.mktemp("screenshots")
    run = CompareRun.open(data_root / "cmp")
    counts = json.loads((data_root / "cmp" / "compare.json").read_text())["counts"]
    page.wait_for_selector(CARD)
    _idle(page)
    metrics = dict(t.split("\n", 1) for t in page.locator("[data-testid='stMetric']").all_inner_texts())
    assert {k: v.strip() for k, v in metrics.items()} == {
        "Images": "11", "Flipped": str(counts["flipped"]), "A right → B wrong": "4", "A wrong → B right": "1",
        "Median map shift": "0.000",
    }
    df = run.table.to_pandas()
    expected = df.assign(name=df.path.map(lambda p: Path(p).name)).sort_values(
        ["pred_changed", "shift_max"], ascending=False)
    titles = _titles(page)
    assert titles == [Path(df.path[i]).name for i in run.rows()] and len(titles) == len(df)
    assert set(titles[: counts["flipped"]]) == set(expected.name[expected.pred_changed])
    # Each thumbnail: the photo twice (A | B, a 4-px gap) and both maps over it (the photos are under 150 px).
    with Image.open(next(p for p in df.path if Path(p).name == titles[0])) as im:
        w, h = im.size
    for part in ("base", "heat"):
        size = page.locator(f"{CARD} img.gl-{part}").first.evaluate("e => [e.naturalWidth, e.naturalHeight]")
        assert size == [2 * w + 4, h]
    page.screenshot(path=shots / "compare_01_flipped_first.png", full_page=True)
    # One report button (cam_core.report); Streamlit keeps a hidden copy of a download button's label.
    sync_api.expect(page.get_by_role("button", name="Download report (HTML)")).to_have_count(1)

    page.locator(".st-key-cmp_filter").get_by_text("A wrong → B right", exact=True).click()
    sync_api.expect(page.locator(CARD)).to_have_count(1, timeout=TIMEOUT_MS)
    _idle(page)
    assert _titles(page) == ["misfiled_red.png"]
    page.locator(CARD).first.click()
    _idle(page)
    table = page.locator("[data-testid='stDataFrame']").last
    sync_api.expect(table).to_be_visible()
    page.screenshot(path=shots / "compare_02_clicked.png", full_page=True)
    assert page.locator("[data-testid='stException']").count() == 0
    row = df[df.path.str.endswith("misfiled_red.png")].iloc[0]
    assert list(row.class_names) == ["red", "green"] and np.all(np.asarray(row.map_shift) > 0)
