"""Display helpers: the views, colormaps and blends computed by hand on small arrays."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from cam_core import render


def test_relu_view_scales_by_positive_max_and_keeps_empty_maps_empty():
    cam = np.array([[-2.0, 1.0], [0.0, 4.0]], dtype=np.float32)
    np.testing.assert_allclose(render.view_map(cam, "relu"), [[0, 0.25], [0, 1]])
    # all-negative evidence: nothing to show, not a min-max stretch of the negatives
    assert not render.view_map(-np.abs(cam) - 1, "relu").any()


def test_signed_view_puts_zero_at_the_centre():
    cam = np.array([[-2.0, 1.0], [0.0, 4.0]], dtype=np.float32)
    np.testing.assert_allclose(render.view_map(cam, "signed"), [[0.25, 0.625], [0.5, 1.0]])


def test_colormaps_run_from_first_to_last_anchor():
    for name, lut in render.COLORMAPS.items():
        assert lut.shape == (256, 3) and lut.dtype == np.uint8
        np.testing.assert_array_equal(render.colorize(np.array([[0.0, 1.0]]), name)[0], [lut[0], lut[255]])
    # diverging maps: low is blue-ish (negative evidence), high is red-ish (positive)
    for name in render.DIVERGING:
        lo, hi = render.COLORMAPS[name][0], render.COLORMAPS[name][255]
        assert lo[2] > lo[0] and hi[0] > hi[2]


def test_signed_evidence_alpha_is_sqrt_of_distance_from_zero():
    np.testing.assert_allclose(render.evidence_alpha(np.array([0.5, 0.75, 1.0, 0.0]), "signed"), [0, 0.5**0.5, 1, 1])
    img = np.full((1, 2, 3), 100, np.uint8)
    out = render.overlay(img, np.array([[0.0, -1.0]], np.float32), view="signed", cmap="bwr", alpha=1.0)
    np.testing.assert_array_equal(out[0, 0], [100, 100, 100])  # zero evidence: photo untouched
    np.testing.assert_array_equal(out[0, 1], render.COLORMAPS["bwr"][0])  # strongest negative: full blue


def test_overlay_blends_by_value_and_leaves_zero_evidence_untouched():
    img = np.full((2, 2, 3), 100, np.uint8)
    cam = np.array([[0.0, 0.0], [0.0, 1.0]], dtype=np.float32)
    out = render.overlay(img, cam, view="relu", cmap="inferno", alpha=0.5)
    np.testing.assert_array_equal(out[0, 0], [100, 100, 100])
    top = render.COLORMAPS["inferno"][255].astype(np.float32)
    np.testing.assert_array_equal(out[1, 1], np.clip(100 * 0.5 + top * 0.5, 0, 255).astype(np.uint8))
    with pytest.raises(ValueError, match="differ in size"):
        render.overlay(img, np.zeros((3, 3), np.float32))


@pytest.mark.parametrize("cmap", ["jet", "inferno", "viridis"])
@pytest.mark.parametrize("alpha", [0.0, 0.35, 0.5, 1.0])
def test_relu_overlay_lookup_equals_the_blend_formula(cmap, alpha):
    """The ReLU'd overlay reads a table; every pixel must be what the blend formula gives (every byte value)."""
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    img[0, :, :] = np.arange(64)[:, None] * 4 + np.array([0, 1, 3])  # photo values 0 … 255 in every channel
    cam = rng.normal(size=(64, 64)).astype(np.float32)
    cam[1, :4] = [0.0, 1e-9, -1.0, cam.max()]
    for top in (None, 1.7):
        unit = render.view_map(cam, "relu", top)
        idx = np.clip(np.rint(unit * 255.0), 0, 255).astype(np.uint8)
        weight = alpha * idx.astype(np.float32)[..., None] / 255.0
        color = render.COLORMAPS[cmap][idx].astype(np.float32)
        expected = np.clip(img.astype(np.float32) * (1 - weight) + color * weight, 0, 255).astype(np.uint8)
        np.testing.assert_array_equal(render.overlay(img, cam, cmap=cmap, alpha=alpha, top=top), expected)
    with pytest.raises(render.CamError, match="unknown colormap"):
        render.overlay(img, cam, cmap="nope")


def test_png_round_trip_and_plotly_scale():
    rgb = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    back = np.asarray(Image.open(io.BytesIO(render.to_png_bytes(rgb))))
    np.testing.assert_array_equal(back, rgb)
    scale = render.plotly_colorscale("viridis")
    assert scale[0][0] == 0.0 and scale[-1][0] == 1.0 and scale[-1][1] == "rgb(253,231,37)"


def test_model_view_inverts_normalisation():
    rgb = np.array([[[0, 128, 255]]], dtype=np.uint8)  # one pixel
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.5)
    x = (torch.from_numpy(rgb).permute(2, 0, 1).float() / 255 - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(
        std
    ).view(3, 1, 1)
    np.testing.assert_array_equal(render.model_view(x, mean, std), rgb)
