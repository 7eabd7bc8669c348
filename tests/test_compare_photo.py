"""Two models on one photo (cam_core.analysis.compare_photo): a model against itself, against a copy whose head
swaps two classes, and against a head with another label set."""

from __future__ import annotations

import copy
from dataclasses import replace

import numpy as np
import pytest
import torch

from cam_core import explain
from cam_core.analysis.compare import PHOTO_SIDE, map_shift, on_photo
from cam_core.analysis.compare_photo import (
    ModelSide,
    compare_classes,
    map_difference,
    photo_grid,
    prediction_changed,
)
from cam_core.batch import BatchJob, run_local
from cam_core.batch.compare_table import join_runs
from cam_core.io.samples import SAMPLE_NAMES, load_sample
from cam_core.models.preprocess import Preprocess
from cam_core.render import maps_on_image


def _side(model, image, classes, fit=None, layer=None) -> ModelSide:
    x, place = model.prepare(image, fit)
    res = explain(model, x[None], layer=layer or model.recommended_layer, classes=list(classes), methods=["gradcam"])
    maps = res.maps["gradcam"][0].numpy()
    return ModelSide(
        names=model.class_names, logits=res.logits[0].numpy(), probs=res.probs[0].numpy(), place=place,
        maps={int(c): maps[k] for k, c in enumerate(res.class_ids[0].tolist())},
    )


def _swapped(model, p: int, q: int):
    """A copy of ``model`` whose head answers class ``q`` where it answered ``p`` and back (same names)."""
    module = copy.deepcopy(model.module)
    with torch.no_grad():
        for t in (module._fc.weight, module._fc.bias):
            t[[p, q]] = t[[q, p]].clone()
    return replace(model, module=module)


@pytest.fixture(scope="module")
def photos() -> dict[str, object]:
    return {name: load_sample(name) for name in SAMPLE_NAMES[:3]}  # chelsea, coffee, astronaut


def test_a_model_against_itself_did_not_move(lite0, photos) -> None:
    image = photos["chelsea"]
    a = _side(lite0, image, [281, 285, 282])
    b = _side(lite0, image, [281, 285, 282], fit="whole")
    rows = compare_classes(a, b, [281, 285, 282], image.size)
    assert [r.id_b for r in rows] == [281, 285, 282]
    for r in rows:
        assert r.shift.shift == pytest.approx(0.0, abs=1e-6) and r.shift.peak_px == pytest.approx(0.0)
        assert r.prob_change == pytest.approx(0.0, abs=1e-7)
        assert np.abs(map_difference(r.map_a, r.map_b)).max() == pytest.approx(0.0, abs=1e-6)
    assert not prediction_changed(a.names, a.probs, b.names, b.probs)


def test_a_head_with_two_classes_swapped_flips_exactly_those_predictions(lite0, photos) -> None:
    with torch.no_grad():
        tops = {name: int(lite0.module(lite0.prepare(im)[0][None]).argmax()) for name, im in photos.items()}
    p, q = tops["chelsea"], tops["coffee"]
    swapped = _swapped(lite0, p, q)
    flipped = set()
    for name, image in photos.items():
        a, b = _side(lite0, image, [p, q, 0]), _side(swapped, image, [p, q, 0])
        if prediction_changed(a.names, a.probs, b.names, b.probs):
            flipped.add(name)
        rows = {r.id_a: r for r in compare_classes(a, b, [p, q, 0], image.size)}
        # B's class p is A's class q: its probability and its map are A's for q, so the shift is A's q against p.
        assert rows[p].prob_b == pytest.approx(float(a.probs[q]), rel=1e-5)
        assert rows[p].prob_change == pytest.approx(float(a.probs[q] - a.probs[p]), abs=1e-6)
        carried = on_photo(np.stack([a.maps[p], a.maps[q]]), a.place, image.size, PHOTO_SIDE)
        by_hand = map_shift(carried[0], carried[1], photo_size=image.size[::-1])
        assert rows[p].shift.shift == pytest.approx(by_hand.shift, abs=1e-5)
        assert rows[p].shift.peak_px == pytest.approx(by_hand.peak_px, abs=1e-3)
        assert rows[0].shift.shift == pytest.approx(0.0, abs=1e-5)  # an untouched class did not move
    assert flipped == {n for n, top in tops.items() if top in (p, q)}
    assert {"chelsea", "coffee"} <= flipped and flipped != set(photos)


def test_classes_matched_by_name_when_label_sets_differ(lite0, photos) -> None:
    image = photos["chelsea"]
    a = _side(lite0, image, [281, 285])
    # Model B: the same network, but its head names only some classes, in another spelling and order.
    names_b = [f"other {i}" for i in range(1000)]
    names_b[7] = lite0.class_names[285].upper().replace(" ", "_")
    b = replace(a, names=names_b, probs=a.probs[np.r_[285, np.arange(1, 1000)]], maps={7: a.maps[285]})
    rows = compare_classes(a, b, [281, 285], image.size)
    assert rows[0].id_b is None and rows[0].prob_b is None and rows[0].map_b is None and rows[0].shift is None
    assert rows[1].id_b == 7 and rows[1].shift.shift == pytest.approx(0.0, abs=1e-6)


def test_map_difference_by_hand() -> None:
    a = np.array([[0.0, 2.0], [4.0, -1.0]], np.float32)
    b = np.array([[1.0, 1.0], [0.0, 0.0]], np.float32)
    own = map_difference(a, b)  # b/1 − relu(a)/4
    np.testing.assert_allclose(own, [[1.0, 0.5], [-1.0, 0.0]], atol=1e-6)
    shared = map_difference(a, b, shared_scale=True)  # both over 4
    np.testing.assert_allclose(shared, [[0.25, -0.25], [-1.0, 0.0]], atol=1e-6)
    assert photo_grid((1024, 512)) == (256, 128) and photo_grid((100, 80)) == (100, 80)


def test_maps_lie_over_the_whole_photo_whatever_the_fit(lite0, photos) -> None:
    """A map that grows left to right over the model's input grows left to right over the whole photo: the carried
    map's first column is near its minimum and its last near its maximum (a centre crop leaves the cut sides
    at 0)."""
    image = photos["chelsea"]  # 451 × 300
    ramp = np.tile(np.arange(7, dtype=np.float32), (7, 1))  # 0 … 6 across the input
    for fit in ("whole", "squash", "letterbox"):
        _, place = lite0.prepare(image, fit)
        side = ModelSide(names=["x"], logits=np.zeros(1), probs=np.ones(1), place=place, maps={0: ramp})
        (row,) = compare_classes(side, side, [0], image.size)
        assert row.map_a.shape == (75, 112)  # the compare command's grid: 112 px on the longer side
        assert row.map_a[:, 0].mean() < 0.6 and row.map_a[:, -1].mean() > 5.4, fit
    _, crop = lite0.prepare(image, "crop")
    side = ModelSide(names=["x"], logits=np.zeros(1), probs=np.ones(1), place=crop, maps={0: ramp + 1})
    (row,) = compare_classes(side, side, [0], image.size)
    assert row.map_a[:, 0].max() == 0 and row.map_a[:, -1].max() == 0 and row.map_a[:, 56].min() > 0


def test_the_page_and_the_compare_command_give_the_same_numbers(lite0, photos, tmp_path) -> None:
    """The same photo, the same two models (here: one model at two layers): the page's map shift and peak shift
    equal ``compare.parquet``'s."""
    (tmp_path / "photos").mkdir()
    photos["chelsea"].save(tmp_path / "photos" / "chelsea.png")
    for out, layer in (("a", None), ("b", "_blocks.12")):
        run_local(BatchJob(classes="top3", layer=layer), tmp_path / "photos", tmp_path / out, workers=0, model=lite0)
    table, _ = join_runs(tmp_path / "a", tmp_path / "b", "gradcam")
    (row,) = table.to_pylist()
    ids = [lite0.class_names.index(n) for n in row["class_names"]]
    image = photos["chelsea"]
    a, b = _side(lite0, image, ids), _side(lite0, image, ids, layer="_blocks.12")
    page = compare_classes(a, b, ids, image.size)
    np.testing.assert_allclose([r.shift.shift for r in page], row["map_shift"], atol=1e-5)
    np.testing.assert_allclose([r.shift.peak_px for r in page], row["peak_shift_px"], atol=1e-3)
    assert min(row["map_shift"]) > 0.05  # the two layers' maps do differ: the equality is not 0 = 0


def test_maps_land_where_the_model_saw_them_on_a_photo_larger_than_the_grid(photos) -> None:
    """The grid is a smaller copy of the photo: evidence in the input's right-most column lies at its right edge
    (the photo's box scaled with it; unscaled, the map of the photo's top-left part covered the whole grid)."""
    image = photos["chelsea"]
    assert max(image.size) > PHOTO_SIDE  # the case: the grid is smaller than the photo
    place = Preprocess((224, 224), 256, (0.5,) * 3, (0.5,) * 3, fit="whole").place(*image.size)
    cam = np.zeros((7, 10), np.float32)
    cam[:, -1] = 1.0
    side = ModelSide(names=["x"], logits=np.zeros(1), probs=np.ones(1), place=place, maps={0: cam})
    row = compare_classes(side, side, [0], image.size)[0]
    full = maps_on_image(cam[None], place, image.size)[0]
    grid_w = row.map_a.shape[1]
    assert row.map_a[:, -1].mean() == pytest.approx(full[:, -1].mean(), abs=0.05) and row.map_a[:, -1].mean() > 0.5
    assert row.map_a[:, : grid_w // 2].max() == pytest.approx(0.0, abs=1e-6)
