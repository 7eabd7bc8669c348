"""The Dataset page with ground truth (``batch --boxes``): per-class pointing and energy, the sort by energy, the
"right for the wrong reasons" filter, boxes on the thumbnails, the export (AppTest, no browser).

Real photos (chelsea, coffee, rocket; whole, flipped and cropped) with boxes drawn by hand around the cat's face,
the cup and the rocket; the default model explains prediction and true class. Every number the page shows is compared
with one computed here from ``results.parquet`` with pandas.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import skimage.data
from PIL import Image
from streamlit.testing.v1 import AppTest

from cam_core.analysis.localisation import WRONG_REASONS_ENERGY
from cam_core.batch import BatchJob, read_results, run_local
from cam_core.batch.query import ResultsQuery
from dashboard.views.dataset import table as tb
from tests.test_dashboard_dataset import _gallery

PHOTOS = {"tabby": ("chelsea", (130, 10, 360, 300)), "espresso": ("coffee", (40, 20, 470, 330)),
          "missile": ("rocket", (300, 125, 340, 415))}


def make_truth_root(base: Path, model) -> Path:
    """``photos/<class>/<photo>_{orig,flip,crop}.jpg``, ``boxes.csv`` (labelled), ``runs/b`` (pred,label, boxes)."""
    lines = ["path,x0,y0,x1,y1,label"]
    for cls, (name, (x0, y0, x1, y1)) in PHOTOS.items():
        im = Image.fromarray(getattr(skimage.data, name)())
        (base / "photos" / cls).mkdir(parents=True)
        left, w, h = im.width // 3, int(im.width * 0.66), int(im.height * 0.8)  # a crop that keeps the object
        for variant, pic, box in [("orig", im, (x0, y0, x1, y1)),
                                  ("flip", im.transpose(Image.Transpose.FLIP_LEFT_RIGHT),
                                   (im.width - x1, y0, im.width - x0, y1)),
                                  ("crop", im.crop((left, 0, left + w, h)),
                                   (max(x0 - left, 0), y0, min(x1 - left, w), min(y1, h)))]:
            pic.save(base / "photos" / cls / f"{name}_{variant}.jpg", quality=92)
            lines.append(f"{cls}/{name}_{variant}.jpg,{','.join(str(v) for v in box)},{cls}")
    (base / "boxes.csv").write_text("\n".join(lines) + "\n")
    job = BatchJob(classes="pred,label", labels=True, boxes=str(base / "boxes.csv"))
    run_local(job, base / "photos", base / "runs" / "b", workers=0, model=model)
    return base


@pytest.fixture(scope="module")
def root(tmp_path_factory, lite0) -> Path:
    return make_truth_root(tmp_path_factory.mktemp("truth_root"), lite0)


def _items(at: AppTest) -> list[dict]:
    return _gallery(at)["items"]


def _scored(root: Path) -> pd.DataFrame:
    """One row per (file, explained class) of the first method, from the Parquet file alone."""
    df = read_results(root / "runs" / "b").to_pandas()
    out = []
    for r in df.itertuples():
        for k, cid in enumerate(r.class_ids):
            out.append({"path": r.path, "cid": int(cid), "pred": r.pred, "correct": r.correct,
                        "hit": r.point_hit[k], "energy": r.box_energy[k]})
    return pd.DataFrame(out)


def test_the_page_shows_pointing_and_energy_per_class(dataset_app, root) -> None:
    at = dataset_app(folder="runs/b")
    assert not at.exception, [e.value for e in at.exception]
    scored = _scored(root).dropna(subset=["hit"])
    assert len(scored) == 9  # the true class's map of every photo (a prediction of another class has no box)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Pointing game"] == f"{scored.hit.astype(float).mean():.1%}"
    assert metrics["Energy in the box"] == f"{scored.energy.mean():.1%}"
    wrong = scored[scored.correct.astype(bool) & (scored.cid == scored.pred) & (scored.energy < WRONG_REASONS_ENERGY)]
    assert metrics["Right for the wrong reasons"] == str(len(wrong))
    (table,) = [t.value for t in at.dataframe if "pointing" in t.value.columns]
    names = read_results(root / "runs" / "b").to_pandas().set_index("label").label_name.to_dict()
    want = scored.assign(cls=scored.cid.map(names)).groupby("cls").agg(
        maps=("hit", "size"), pointing=("hit", lambda h: h.astype(float).mean()), energy=("energy", "mean"))
    got = table.set_index("class")
    assert sorted(got.index) == sorted(want.index)
    np.testing.assert_allclose(got.loc[want.index, "pointing"], want.pointing, rtol=1e-9)
    np.testing.assert_allclose(got.loc[want.index, "energy"], want.energy, rtol=1e-5)
    assert list(got.energy) == sorted(got.energy)  # worst localised first
    assert any("less than 50% of its mass" in c.value for c in at.caption)  # the threshold, said on the page


def test_thumbnails_carry_their_boxes_in_the_input_s_pixels(dataset_app, root) -> None:
    at = dataset_app(folder="runs/b")
    items = {i["title"]: i for i in _items(at)}
    rocket = items["rocket_orig.jpg"]
    (x0, y0, x1, y1, _), = rocket["boxes"]["rects"]
    # the whole fit: the shorter side (427) to 224, the longer to round(640 · 224 / 427) = 336, nothing cropped
    assert (rocket["boxes"]["w"], rocket["boxes"]["h"]) == (336, 224)
    sx, sy = 336 / 640, 224 / 427
    np.testing.assert_allclose([x0, y0, x1, y1], [300 * sx, 125 * sy, 340 * sx, 415 * sy], atol=0.06)
    assert all(i["boxes"]["rects"] for i in items.values())
    assert all(any(line.startswith(("in box", "no box")) for line in i["lines"]) for i in items.values())


def test_sort_by_energy_and_the_wrong_reasons_filter(dataset_app, root) -> None:
    at = dataset_app(folder="runs/b")
    at.segmented_control(key="ds_shown").set_value("label").run()  # the true class's maps: all have a box
    at.selectbox(key="ds_sort").set_value("energy").run()
    assert not at.exception, [e.value for e in at.exception]
    df = read_results(root / "runs" / "b").to_pandas()
    slot = [list(ids).index(lab) for ids, lab in zip(df.class_ids, df.label, strict=True)]
    df["energy"] = [e[k] for e, k in zip(df.box_energy, slot, strict=True)]
    want = df.sort_values(["energy", "prob_pred", "path"], ascending=[True, False, True])
    assert [i["title"] for i in _items(at)] == [Path(p).name for p in want.path]
    at.button_group(key="ds_truth_flags").set_value(["wrong_reasons"]).run()
    wrong = want[want.correct.astype(bool) & (want.energy < WRONG_REASONS_ENERGY)]
    assert [i["title"] for i in _items(at)] == [Path(p).name for p in wrong.path]
    assert "rocket_crop.jpg" in set(wrong.path.map(lambda p: Path(p).name))  # a missile found by the gantry


def test_the_export_carries_the_new_columns(root) -> None:
    q = ResultsQuery.open(root / "runs" / "b")
    table = q.table("path")
    csv = pd.read_csv(io.StringIO(tb.export_csv(table, root)))
    assert {"boxes", "box_labels", "point_hit", "box_energy", "box_cut"} <= set(csv.columns)
    first = read_results(root / "runs" / "b").to_pandas().sort_values("path").iloc[0]
    assert csv.boxes[0] == " ".join(f"{v:g}" for v in first.boxes) and csv.path[0].startswith("photos/")
    back = pq.read_table(io.BytesIO(tb.export_parquet(table, root)))
    assert back.column("boxes").to_pylist()[0] == list(first.boxes)
    assert back.column("box_energy").to_pylist() == table.column("box_energy").to_pylist()
