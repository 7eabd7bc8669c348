"""How an image meets the model's size: whole, crop, squash, letterbox; the pad left out of maps."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import cam_core
from cam_core.engine import region_mask
from cam_core.errors import CamError
from cam_core.models import MAX_ASPECT, load_model
from cam_core.models.preprocess import Preprocess
from tests.tiny import gapnet

PRE = Preprocess((224, 224), 256, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))


def _wide(width: int = 448, height: int = 224) -> Image.Image:
    """Left half red, right half blue."""
    pixels = np.zeros((height, width, 3), np.uint8)
    pixels[:, : width // 2, 0] = 255
    pixels[:, width // 2 :, 2] = 255
    return Image.fromarray(pixels)


def _rgb(x: torch.Tensor) -> torch.Tensor:
    return x * 0.25 + 0.5


def test_whole_keeps_every_pixel_and_the_aspect() -> None:
    x = PRE(_wide(), "whole")
    assert x.shape == (3, 224, 448)
    rgb = _rgb(x)
    assert rgb[0, :, :200].min() > 0.99 and rgb[2, :, 250:].min() > 0.99  # both halves are there
    place = PRE.place(448, 224, "whole")
    assert place.size == (224, 448) and not place.padded


def test_crop_is_the_weights_recipe() -> None:
    x = PRE(_wide(), "crop")  # shorter side 224 → 256, then the centre 224²: the middle of the picture
    assert x.shape == (3, 224, 224)
    rgb = _rgb(x)
    assert rgb[0, :, :100].mean() > 0.95 and rgb[2, :, 124:].mean() > 0.95
    left, top, right, bottom = PRE.place(448, 224, "crop").used
    assert (right - left, bottom - top) == pytest.approx((196.0, 196.0))


def test_squash_stretches_and_letterbox_pads_with_the_mean() -> None:
    assert PRE(_wide(), "squash").shape == (3, 224, 224)
    x = PRE(_wide(), "letterbox")
    place = PRE.place(448, 224, "letterbox")
    assert x.shape == (3, 224, 224) and place.padded and place.content == (56, 0, 112, 224)
    assert x[:, :56].abs().max() < 0.01 and x[:, 168:].abs().max() < 0.01  # the pad is the mean: 0 once normalised
    assert _rgb(x)[0, 60:160, :100].min() > 0.95


def test_extreme_aspect_is_refused_or_bounded() -> None:
    strip = Image.new("RGB", (20000, 5))
    with pytest.raises(CamError, match=f"{MAX_ASPECT:g}:1"):
        PRE(strip, "whole")
    # The centre crop trims the long side before resizing: bounded memory, the weights' square out.
    assert PRE(strip, "crop").shape == (3, 224, 224)
    assert PRE(strip, "letterbox").shape == PRE(strip, "squash").shape == (3, 224, 224)
    with pytest.raises(CamError, match="unknown fit 'zoom'"):
        PRE(strip, "zoom")


def test_models_that_take_any_size_default_to_whole_and_vit_to_letterbox() -> None:
    cnn = load_model("resnet18", weights=None)
    assert cnn.fit == "whole" and "whole" in cnn.fits
    vit = load_model("vit_b_16", weights=None)
    assert vit.fit == "letterbox" and "whole" not in vit.fits
    with pytest.raises(CamError, match="does not suit this model"):
        vit.prepare(_wide(), "whole")
    x, place = vit.prepare(_wide())
    assert x.shape == (3, 224, 224) and place.content == (56, 0, 112, 224)


def test_fit_changes_the_scores(lite0) -> None:
    from cam_core.io import load_sample

    photo = load_sample("coffee")
    probs = {}
    for fit in lite0.fits:
        x, _ = lite0.prepare(photo, fit)
        with torch.no_grad():
            probs[fit] = lite0.module(x[None]).softmax(1)[0]
    assert len({round(float(p.max()), 4) for p in probs.values()}) == 4


def test_region_mask_takes_cells_whose_centre_is_inside() -> None:
    mask = region_mask((56, 0, 112, 224), (224, 224), (7, 7))[0, 0]
    # Cell rows are 32 px: centres 16, 48, 80, ... 208; inside [56, 168): rows 2, 3, 4.
    assert mask.any(1).tolist() == [False, False, True, True, True, False, False]
    assert mask.all(1)[2:5].all()


def test_a_letterboxed_map_is_zero_in_the_pad_and_its_statistics_leave_the_pad_out() -> None:
    model = gapnet(seed=3)
    x = torch.randn(1, 3, 32, 32)
    res = cam_core.explain(model, x, layer="features.3", classes=[1], methods=["gradcam"], region=(8, 0, 16, 32))
    plain = cam_core.explain(model, x, layer="features.3", classes=[1], methods=["gradcam"])
    maps, ref = res.maps["gradcam"][0, 0], plain.maps["gradcam"][0, 0]
    assert maps.shape == (16, 16)
    assert maps[:4].abs().max() == 0 and maps[12:].abs().max() == 0
    torch.testing.assert_close(maps[4:12], ref[4:12])  # the image's cells are untouched
    up = res.upsampled("gradcam")[0, 0]
    assert up[:8].abs().max() == 0 and up[24:].abs().max() == 0 and up[8:24].abs().max() > 0
    d = cam_core.diagnose(res, 0, 0, "gradcam")
    inner = ref[4:12].double()
    assert d.pos_area == pytest.approx(float((inner > 0).double().mean()))
    assert d.map_mean == pytest.approx(float(inner.mean()))
    with pytest.raises(CamError, match="does not lie inside"):
        cam_core.explain(model, x, layer="features.3", classes=[1], region=(0, 0, 40, 32))


def _composite() -> Image.Image:
    """The issue's 2:1 photo: a cat (left) beside an espresso (right)."""
    from PIL import ImageOps

    from cam_core.io import load_sample

    photo = Image.new("RGB", (600, 300))
    photo.paste(ImageOps.fit(load_sample("chelsea"), (300, 300)), (0, 0))
    photo.paste(ImageOps.fit(load_sample("coffee"), (300, 300)), (300, 0))
    return photo


def test_the_whole_2_to_1_photo_is_explained_and_each_class_sits_on_its_half(lite0) -> None:
    x, place = lite0.prepare(_composite())
    assert place.fit == "whole" and x.shape == (3, 224, 448)
    res = cam_core.explain(lite0, x[None], classes=["espresso", "Egyptian cat"], methods=["gradcam"])
    up = res.upsampled("gradcam")[0].clamp_min(0)
    right = (up[..., 224:].sum(dim=(-2, -1)) / up.sum(dim=(-2, -1))).tolist()
    assert right[0] > 0.8  # espresso: its positive evidence is on the right half (0.96 measured)
    assert right[1] < 0.2  # Egyptian cat: on the left (0.01 measured)
    # The centre crop would have cut both halves down to the middle square.
    assert lite0.prepare(_composite(), "crop")[0].shape == (3, 224, 224)
