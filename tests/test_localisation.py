"""Ground truth in, localisation out: the pointing game and the energy in the box, by hand and against Quantus.

The photos are real (scikit-image's chelsea, coffee, astronaut) with an object pasted at a known place;
the maps are known (one hot cell, or uniform), so where their maximum lands on the photo and what share
of their mass lies in a box can be worked out on paper for each fit. The same boxes written as COCO
JSON, Pascal VOC XML, CSV and a mask PNG give the same truth and the same numbers.
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import skimage.data
from PIL import Image
from scipy.ndimage import distance_transform_edt

from cam_core.analysis.localisation import (
    TOLERANCE_PX,
    Region,
    box_window,
    class_objects,
    energy_in_box,
    localise,
    pointing_game,
    visible_window,
)
from cam_core.batch import BatchJob, discover, run_local
from cam_core.batch.truth import load_truth
from cam_core.cli import main
from cam_core.errors import CamError
from cam_core.io.boxes import read_boxes
from cam_core.models.load import load_model
from cam_core.models.preprocess import Preprocess
from cam_core.render import carry_matrices, maps_on_image

ROOT = Path(__file__).resolve().parents[1]
PRE = Preprocess(crop_size=(224, 224), resize_size=256, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
OBJECT = (180, 60, 260, 140)  # where the coffee cup is pasted on chelsea (451×300): x0, y0, x1, y1


def _photo_with_object() -> np.ndarray:
    """chelsea (300×451) with coffee's cup (an 80×80 patch) pasted at :data:`OBJECT`."""
    photo = skimage.data.chelsea().copy()
    cup = skimage.data.coffee()[120:200, 230:310]
    x0, y0, x1, y1 = OBJECT
    photo[y0:y1, x0:x1] = cup
    return photo


def _hot_cell(place, size, grid=(7, 7)) -> tuple[np.ndarray, tuple[float, float]]:
    """A map over the input that is 1 in one cell and 0 elsewhere, and where that cell's centre lands on the photo.

    The cell is the one whose centre on the photo is nearest the pasted object's centre (so each fit moves it).
    """
    (H, W), (top, left, ch, cw) = place.size, place.content
    u_left, u_top, u_right, u_bottom = place.used
    h, w = grid

    def on_photo(i: int, j: int) -> tuple[float, float]:  # the inverse of the fit, by hand
        x_in, y_in = (j + 0.5) * W / w, (i + 0.5) * H / h
        return u_left + (x_in - left) * (u_right - u_left) / cw, u_top + (y_in - top) * (u_bottom - u_top) / ch

    cx, cy = (OBJECT[0] + OBJECT[2]) / 2, (OBJECT[1] + OBJECT[3]) / 2
    i, j = min(((i, j) for i in range(h) for j in range(w)),
               key=lambda ij: math.dist(on_photo(*ij), (cx, cy)))
    cam = np.zeros((1, h, w), np.float32)
    cam[0, i, j] = 1.0
    return cam, on_photo(i, j)


# ---- hand-computed --------------------------------------------------------------------------------------------


def test_a_box_is_the_pixels_whose_centre_lies_in_it() -> None:
    assert box_window((2, 1, 5, 3), (8, 4)) == (1, 3, 2, 5)  # rows 1..2, columns 2..4
    assert box_window((2.5, 0.5, 4.6, 1.4), (8, 4)) == (0, 1, 2, 5)  # centres 2.5, 3.5, 4.5 (< 4.6); 0.5
    assert box_window((-9, -9, 99, 99), (8, 4)) == (0, 4, 0, 8)  # clipped to the image
    two = Region.union([(1, 3, 2, 5), (0, 1, 6, 8)])
    assert two.pixels == 6 + 2 and np.argwhere(two.mask((4, 8))).tolist() == [
        [0, 6], [0, 7], [1, 2], [1, 3], [1, 4], [2, 2], [2, 3], [2, 4]]


@pytest.mark.parametrize("fit", ["whole", "crop", "squash", "letterbox"])
@pytest.mark.parametrize("size", [(451, 300), (300, 451), (600, 400)])
def test_the_carry_matrices_are_the_overlay_s_inverse_of_the_fit(fit, size) -> None:
    place = PRE.place(*size, fit)
    m = np.random.default_rng(0).normal(size=(7, 9)).astype(np.float32)
    wy, wx = carry_matrices(place, size, m.shape)
    assert np.allclose(wy @ m @ wx.T, maps_on_image(m[None], place, size)[0], atol=1e-5)
    t, b, lo, hi = visible_window(place, size)
    seen = np.zeros((size[1], size[0]), bool)
    seen[t:b, lo:hi] = True
    assert ((maps_on_image(np.ones((1, 7, 9), np.float32), place, size)[0] > 0) == seen).all()


@pytest.mark.parametrize("fit", ["whole", "crop", "squash", "letterbox"])
def test_the_maximum_lands_where_the_fit_puts_it_and_the_tolerance_is_15_photo_pixels(fit) -> None:
    photo = _photo_with_object()
    size = (photo.shape[1], photo.shape[0])
    place = PRE.place(*size, fit)
    cam, (px, py) = _hot_cell(place, size)
    up = np.maximum(maps_on_image(cam, place, size)[0], 0)
    peak = np.unravel_index(up.argmax(), up.shape)
    assert abs(peak[1] + 0.5 - px) <= 1 and abs(peak[0] + 0.5 - py) <= 1  # the hand inverse of the fit
    x, y = int(px), int(py)
    visible = visible_window(place, size)
    cases = {  # a box holding the peak; boxes 10 and 14 px to its right (hits); 16 and 30 px (misses)
        (x - 5, y - 5, x + 5, y + 5): True,
        (x + 11, y - 5, x + 40, y + 5): True,
        (x + 15, y - 5, x + 40, y + 5): True,
        (x + 17, y - 5, x + 40, y + 5): False,
        (x + 31, y - 5, x + 60, y + 5): False,
    }
    for box, hit in cases.items():
        objects, cut = class_objects([box], [-1], False, [0], size, visible)
        hits, _ = localise(cam, place, size, objects)
        dx = max(box[0] - peak[1], 0)  # columns between the peak pixel and the box's first
        assert hits == [dx <= TOLERANCE_PX] == [hit], (fit, box, peak)
        assert cut is False


@pytest.mark.parametrize("fit", ["whole", "crop", "squash"])
def test_a_uniform_map_has_the_box_s_share_of_the_seen_pixels_as_energy(fit) -> None:
    photo = _photo_with_object()
    size = (photo.shape[1], photo.shape[0])
    place = PRE.place(*size, fit)
    cam = np.ones((1, 7, 7), np.float32)
    t, b, lo, hi = visible_window(place, size)
    objects, cut = class_objects([OBJECT], [-1], False, [0], size, (t, b, lo, hi))
    hits, energy = localise(cam, place, size, objects)
    box_px = (OBJECT[2] - OBJECT[0]) * (OBJECT[3] - OBJECT[1])  # 80 × 80, inside any crop of chelsea
    # the crop keeps the centre 262.5 × 262.5 (224/256 of the short side): x 94.25..356.75, y 18.75..281.25,
    # so the pixel centres of columns 94..356 and rows 19..280
    seen = 451 * 300 if fit != "crop" else 263 * 262
    assert (b - t) * (hi - lo) == seen
    assert energy[0] == pytest.approx(box_px / seen, rel=1e-5)
    assert hits[0] is not None and cut is False  # where a flat map's maximum falls is float rounding's choice


def test_letterbox_leaves_the_pad_out_of_the_mass() -> None:
    """Letterboxed, the pad's cells are zero: a uniform map over the content carries back to (nearly) uniform on
    the photo (the first and last rows blend with the pad by a quarter pixel), so the energy is the area share."""
    photo = _photo_with_object()
    size = (photo.shape[1], photo.shape[0])
    place = PRE.place(*size, "letterbox")
    top, left, ch, cw = place.content
    cam = np.zeros((1, 224, 224), np.float32)
    cam[0, top : top + ch, left : left + cw] = 1.0
    objects, _ = class_objects([OBJECT], [-1], False, [0], size, visible_window(place, size))
    _, energy = localise(cam, place, size, objects)
    assert energy[0] == pytest.approx(80 * 80 / (451 * 300), rel=3e-3)


def test_a_crop_cuts_a_box_flags_it_and_scores_the_visible_part_only() -> None:
    """coffee (600×400) under the crop fit (256 → 224): the model sees x 125..475, y 25..375 (350 × 350
    pixels). A box over columns 50..150 keeps columns 125..149; a box over columns 20..90 is gone: not a miss,
    not scored."""
    size = (600, 400)
    place = PRE.place(*size, "crop")
    assert place.used == (125.0, 25.0, 475.0, 375.0)
    visible = visible_window(place, size)
    assert visible == (25, 375, 125, 475)
    cam = np.ones((1, 7, 7), np.float32)
    objects, cut = class_objects([(50, 100, 150, 200)], [-1], False, [0], size, visible)
    assert cut is True and objects[0].pixels == 25 * 100
    _, energy = localise(cam, place, size, objects)
    assert energy[0] == pytest.approx(25 * 100 / (350 * 350), rel=1e-5)
    mask = np.zeros((400, 600), bool)
    mask[100:200, 50:150] = True
    from_mask, cut = class_objects([], [], False, [0], size, visible, mask)
    assert cut is True and from_mask[0].window == (100, 200, 125, 150) and from_mask[0].pixels == 2500
    gone, cut = class_objects([(20, 100, 90, 200)], [-1], False, [0], size, visible)
    assert cut is True and gone == [None]
    assert localise(cam, place, size, gone) == ([None], [None])


def test_labelled_boxes_count_for_their_class_only_unlabelled_for_every_class() -> None:
    visible = (0, 100, 0, 100)
    boxes = [(0, 0, 10, 10), (50, 50, 60, 60), (80, 80, 90, 90)]
    objects, _ = class_objects(boxes, [3, 7, -1], True, [3, 7, 9], (100, 100), visible)
    assert objects[0].window == (0, 10, 0, 10) and objects[1].window == (50, 60, 50, 60) and objects[2] is None
    everything, _ = class_objects(boxes, [-1, -1, -1], False, [3, 9], (100, 100), visible)
    assert everything[0].pixels == everything[1].pixels == 300


def test_a_blank_map_points_nowhere_and_has_no_energy() -> None:
    obj = Region.union([(5, 10, 5, 10)])
    cam = np.zeros((20, 20))
    assert pointing_game(cam, obj) is False and energy_in_box(cam, obj) == 0.0
    assert pointing_game(cam, None) is None and energy_in_box(cam, None) is None
    assert Region.union([(5, 5, 1, 9)]) is None  # no rows: no object


# ---- Quantus -----------------------------------------------------------------------------------------------------


def _against_quantus(fit: str, seed: int) -> list[bool | None]:
    """One draw of random maps and boxes: our hits and energies, asserted equal to Quantus' on the same maps."""
    import quantus

    photo = skimage.data.astronaut()[:, :400]  # 512 × 400
    size = (photo.shape[1], photo.shape[0])
    place = PRE.place(*size, fit)
    rng = np.random.default_rng(seed)
    maps = rng.normal(size=(6, 7, 7)).astype(np.float32)
    visible = visible_window(place, size)
    boxes = [tuple(float(v) for v in (*xy, *(xy + rng.integers(20, 150, 2)))) for xy in rng.integers(0, 350, (6, 2))]
    objects = [class_objects([b], [-1], False, [0], size, visible)[0][0] for b in boxes]
    hits, energies = localise(maps, place, size, objects)
    keep = [i for i, o in enumerate(objects) if o is not None]
    a = np.maximum(maps_on_image(maps[keep], place, size), 0)[:, None]
    s = np.stack([objects[i].mask((size[1], size[0])) for i in keep])[:, None]
    near = np.stack([distance_transform_edt(~o[0]) <= TOLERANCE_PX for o in s])[:, None]
    x = np.repeat(photo.transpose(2, 0, 1)[None].astype(np.float32), len(keep), 0)
    y = np.zeros(len(keep), int)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pg = quantus.PointingGame(abs=False, normalise=False, disable_warnings=True)
        al = quantus.AttributionLocalisation(abs=False, normalise=False, disable_warnings=True)
        q_hits = pg(model=None, x_batch=x, y_batch=y, a_batch=a, s_batch=near.astype(float))
        q_energy = al(model=None, x_batch=x, y_batch=y, a_batch=a, s_batch=s.astype(float))
    assert [hits[i] for i in keep] == [bool(h) for h in q_hits]
    assert np.allclose([energies[i] for i in keep], q_energy, atol=1e-6)
    return [hits[i] for i in keep]


@pytest.mark.parametrize("fit", ["whole", "crop", "letterbox"])
def test_the_same_numbers_as_quantus(fit) -> None:
    """Quantus' PointingGame on the object dilated by the tolerance (it has none of its own), and its
    AttributionLocalisation on the object, fed the same ReLU'd maps on the photo: the same hits and energies
    (random maps and boxes; hits and misses both occur)."""
    pytest.importorskip("quantus")
    hits = [h for seed in range(3) for h in _against_quantus(fit, seed)]
    assert True in hits and False in hits


# ---- formats ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    """photos/cats/chelsea.jpg with the cup pasted at OBJECT, photos/coffee.png (600×400), photos/astro.png."""
    root = tmp_path_factory.mktemp("loc") / "photos"
    (root / "cats").mkdir(parents=True)
    Image.fromarray(_photo_with_object()).save(root / "cats" / "chelsea.jpg", quality=95)
    Image.fromarray(skimage.data.coffee()).save(root / "coffee.png")
    Image.fromarray(skimage.data.astronaut()[::4, ::4]).save(root / "astro.png")
    return root


CUP = (20.0, 40.0, 200.0, 180.0)  # a box on coffee.png


def _write_sources(folder: Path) -> dict[str, Path]:
    """The same two labelled boxes in every format (masks: unlabelled, chelsea's only)."""
    folder.mkdir(parents=True, exist_ok=True)
    coco = {
        "images": [{"id": 1, "file_name": "cats/chelsea.jpg", "width": 451, "height": 300},
                   {"id": 2, "file_name": "coffee.png", "width": 600, "height": 400}],
        "annotations": [{"id": 1, "image_id": 1, "bbox": [180, 60, 80, 80], "category_id": 5},
                        {"id": 2, "image_id": 2, "bbox": [20, 40, 180, 140], "category_id": 6}],
        "categories": [{"id": 5, "name": "Tabby"}, {"id": 6, "name": "cup"}],
    }
    (folder / "coco.json").write_text(json.dumps(coco))
    (folder / "boxes.csv").write_text("path,x0,y0,x1,y1,label\ncats/chelsea.jpg,180,60,260,140,tabby\n"
                                      "coffee.png,20,40,200,180,968\n")
    voc = folder / "voc"
    voc.mkdir(exist_ok=True)
    for name, (w, h), label, (x0, y0, x1, y1) in [("chelsea.jpg", (451, 300), "tabby", OBJECT),
                                                   ("coffee.png", (600, 400), "cup", CUP)]:
        (voc / f"{Path(name).stem}.xml").write_text(
            f"<annotation><filename>{name}</filename><size><width>{w}</width><height>{h}</height><depth>3</depth>"
            f"</size><object><name>{label}</name><bndbox><xmin>{x0 + 1:g}</xmin><ymin>{y0 + 1:g}</ymin>"
            f"<xmax>{x1:g}</xmax><ymax>{y1:g}</ymax></bndbox></object></annotation>")
    masks = folder / "masks" / "cats"
    masks.mkdir(parents=True, exist_ok=True)
    mask = np.zeros((300, 451), np.uint8)
    mask[OBJECT[1]:OBJECT[3], OBJECT[0]:OBJECT[2]] = 255
    Image.fromarray(mask).save(masks / "chelsea.png")
    return {"coco": folder / "coco.json", "csv": folder / "boxes.csv", "voc": voc, "masks": folder / "masks"}


NAMES = [str(i) for i in range(1000)]
NAMES[281], NAMES[968] = "tabby, tabby cat", "cup"
NAMES[5] = "tabby"


@pytest.mark.parametrize("fmt", ["coco", "csv", "voc"])
def test_every_box_format_gives_the_same_truth(fmt, photos, tmp_path) -> None:
    sources = _write_sources(tmp_path)
    truth = load_truth(sources[fmt], discover(photos), NAMES)
    chelsea, coffee = str(photos / "cats" / "chelsea.jpg"), str(photos / "coffee.png")
    assert set(truth.truth) == {chelsea, coffee}
    assert truth.truth[chelsea].boxes == (tuple(float(v) for v in OBJECT),)
    assert truth.truth[coffee].boxes == (CUP,)
    assert truth.truth[chelsea].labels == (5,) and truth.truth[coffee].labels == (968,)
    assert truth.truth[chelsea].labelled


def test_a_mask_folder_matches_images_by_name_whatever_the_extension(photos, tmp_path) -> None:
    sources = _write_sources(tmp_path)
    truth = load_truth(sources["masks"], discover(photos), NAMES)
    (path, t), = truth.truth.items()
    assert path == str(photos / "cats" / "chelsea.jpg") and t.mask and not t.labelled


@pytest.mark.parametrize("fmt", ["csv", "masks"])
@pytest.mark.parametrize("fit", ["whole", "crop", "letterbox"])
def test_a_batch_run_scores_the_pasted_object_alike_from_boxes_and_masks(fmt, fit, photos, tmp_path) -> None:
    """End to end on the tiny model: the row's numbers equal the module's on that image's own maps (explain()
    alone), with the object from the box (CSV, unlabelled) or from the mask."""
    sources = _write_sources(tmp_path)
    csv = tmp_path / "plain.csv"
    csv.write_text("cats/chelsea.jpg,180,60,260,140\n")
    job = BatchJob(model={"spec": "tests.tiny:gapnet", "weights": None, "import_paths": [str(ROOT)],
                          "input_size": 64}, fit=fit, boxes=str(csv if fmt == "csv" else sources["masks"]))
    run_local(job, photos, tmp_path / "out", workers=0, streams=1)
    t = pq.read_table(tmp_path / "out" / "results.parquet").to_pylist()
    row = next(r for r in t if r["path"].endswith("chelsea.jpg"))
    others = [r for r in t if not r["path"].endswith("chelsea.jpg")]
    assert row["boxes"] == [float(v) for v in OBJECT] and row["box_labels"] == [-1] and row["box_cut"] is False
    assert all(r["boxes"] is None and r["point_hit"] is None and r["box_cut"] is None for r in others)
    size = (451, 300)
    model = load_model("tests.tiny:gapnet", weights=None, import_paths=[str(ROOT)], input_size=64)
    place = model.preprocess.place(*size, fit)
    maps = np.asarray(row["map_gradcam"], np.float32).reshape(row["map_shape"])
    objects, _ = class_objects([OBJECT], [-1], False, row["class_ids"], size, visible_window(place, size))
    hits, energies = localise(maps, place, size, objects)
    assert row["point_hit"] == hits
    assert np.allclose(row["box_energy"], energies, atol=1e-6)
    assert 0 < row["box_energy"][0] < 1
    run = json.loads((tmp_path / "out" / "run.json").read_text())
    assert run["boxes"]["format"] == fmt and run["boxes"]["images"] == 1 and run["job"]["boxes"]["sha256"]


def test_cli_batch_with_a_csv_of_boxes_and_a_resumed_run(photos, tmp_path, capsys) -> None:
    csv = tmp_path / "b.csv"
    csv.write_text("chelsea.jpg,180,60,260,140\ncoffee.png,20,40,200,180\nnot-here.png,1,1,5,5\n")
    args = ["batch", "--model", "tests.tiny:gapnet", "--import-path", str(ROOT), "--input-size", "64",
            "--weights", "none", "--images", str(photos), "--boxes", str(csv), "--workers", "0",
            "--method", "gradcam", "--method", "hirescam", "--out", str(tmp_path / "o")]
    assert main(args) == 0
    assert "ground truth: 2 boxes on 2 images (csv); 1 entries match no image" in capsys.readouterr().out
    assert main(args) == 0  # resumes: nothing to compute, the columns stay
    assert "0 explained now, 3 already done" in capsys.readouterr().out
    t = pq.read_table(tmp_path / "o" / "results.parquet")
    assert {"boxes", "box_labels", "point_hit", "box_energy", "box_cut"} <= set(t.column_names)
    rows = {Path(r["path"]).name: r for r in t.to_pylist()}
    assert len(rows["chelsea.jpg"]["point_hit"]) == 2 and rows["astro.png"]["boxes"] is None
    run = json.loads((tmp_path / "o" / "run.json").read_text())
    assert run["boxes"]["unmatched_entries"] == 1
    csv.write_text("chelsea.jpg,180,60,260,141\n")  # another truth: a rerun into the same folder is refused
    assert main(args) == 2
    assert "boxes" in capsys.readouterr().err


# ---- bad input: one line -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("a.csv", "x.jpg,1,2,3\n", "line 1: 4 fields; expected path,x0,y0,x1,y1[,label]"),
        ("a.csv", "x.jpg,1,2,abc,4\n", "line 1: x1 'abc' is not a number"),
        ("a.csv", "x.jpg,5,2,3,4\n", "line 1: the box (5, 2, 3, 4) is empty"),
        ("a.json", "{nope", "is not JSON"),
        ("a.json", '{"images": [{"id": 1}]}', "is not COCO JSON as expected"),
        ("a.xml", "<!DOCTYPE x [<!ENTITY a 'b'>]><annotation/>", "XML with a DTD or entities is refused"),
        ("a.xml", "<annotation><object><name>c</name></object></annotation>", "object 1 has no <bndbox>"),
        ("a.txt", "x", "unknown format"),
    ],
)
def test_a_bad_boxes_file_is_one_line(name, text, message, tmp_path) -> None:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(CamError, match=None) as err:
        read_boxes(path)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_names_that_match_no_image_or_several_are_one_line(photos, tmp_path) -> None:
    csv = tmp_path / "none.csv"
    csv.write_text("elsewhere/x.jpg,1,1,5,5\n")
    with pytest.raises(CamError, match="none of its 1 entries names an image under"):
        load_truth(csv, discover(photos), NAMES)
    twin = tmp_path / "twin"
    for sub in ("a", "b"):
        (twin / sub).mkdir(parents=True)
        Image.fromarray(skimage.data.astronaut()[::8, ::8]).save(twin / sub / "x.png")
    csv.write_text("x.png,1,1,5,5\n")
    with pytest.raises(CamError, match="names 2 images"):
        load_truth(csv, discover(twin), NAMES)
    csv.write_text("a/x.png,1,1,5,5\n")
    assert list(load_truth(csv, discover(twin), NAMES).truth) == [str(twin / "a" / "x.png")]


def test_a_mask_of_another_size_is_that_file_s_error(photos, tmp_path) -> None:
    masks = tmp_path / "m"
    masks.mkdir()
    Image.fromarray(np.full((10, 10), 255, np.uint8)).save(masks / "coffee.png")
    job = BatchJob(model={"spec": "tests.tiny:gapnet", "weights": None, "import_paths": [str(ROOT)],
                          "input_size": 64}, boxes=str(masks))
    run_local(job, photos, tmp_path / "out", workers=0, streams=1)
    rows = {Path(r["path"]).name: r for r in pq.read_table(tmp_path / "out" / "results.parquet").to_pylist()}
    assert rows["coffee.png"]["error"] == f"its mask {masks / 'coffee.png'} is 10×10, the image 600×400"
    assert rows["chelsea.jpg"]["error"] is None
