"""Confusions explained: the contrast "why B and not A" equals map_B − map_A exactly where the shortcut is used (held
against the engine's own contrast target on the tiny model), and is computed with the model where it is not."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cam_core.analysis.confusions import DIFFERENCE_METHODS, confusion_maps, contrast_route, stored_contrast
from cam_core.analysis.sweep import contrast
from cam_core.engine.explainer import explain
from cam_core.engine.methods import METHODS
from tests.tiny import gapnet

A, B = 1, 3


@pytest.fixture(scope="module")
def net_x():
    torch.manual_seed(0)
    return gapnet(seed=1), torch.randn(2, 3, 16, 20)


@pytest.mark.parametrize("method", ["gradcam", "xgradcam", "hirescam"])
def test_the_difference_of_two_maps_is_the_engines_contrast(net_x, method) -> None:
    net, x = net_x
    maps = explain(net, x, layer="features", classes=[B, A], methods=[method]).maps[method].numpy()
    engine = contrast(net, x, B, A, layer="features", methods=[method]).maps[method][:, 0].numpy()
    diff = maps[:, 0] - maps[:, 1]
    assert np.abs(engine).max() > 1e-3
    np.testing.assert_allclose(diff, engine, rtol=1e-5, atol=1e-6 * np.abs(engine).max())
    for i in range(len(x)):  # the stored-maps route: a row that explained both classes
        np.testing.assert_allclose(stored_contrast(maps[i], [B, A], A, B), engine[i], rtol=1e-5,
                                   atol=1e-6 * np.abs(engine).max())
        got = confusion_maps(net, x[i : i + 1], A, B, method, "features")
        np.testing.assert_allclose(got.contrast, engine[i], rtol=1e-5, atol=1e-6 * np.abs(engine).max())
        np.testing.assert_allclose(got.map_b - got.map_a, got.contrast, rtol=1e-5, atol=1e-6)


def test_cam_difference_is_the_contrast_of_a_linear_head(net_x) -> None:
    # GAP + linear: Grad-CAM's weights are the head's rows over h·w, so CAM's contrast is h·w times Grad-CAM's,
    # which the engine's contrast target gives (CAM itself refuses any target but the logit).
    net, x = net_x
    cam = confusion_maps(net, x[:1], A, B, "cam", "features")
    engine = contrast(net, x[:1], B, A, layer="features", methods=["gradcam"]).maps["gradcam"][0, 0].numpy()
    h, w = engine.shape
    np.testing.assert_allclose(cam.contrast, engine * h * w, rtol=1e-4, atol=1e-5 * np.abs(cam.contrast).max())
    assert cam.route.how == "difference"


@pytest.mark.parametrize("method", ["gradcampp", "layercam"])
def test_nonlinear_methods_use_the_models_contrast_target(net_x, method) -> None:
    net, x = net_x
    got = confusion_maps(net, x[:1], A, B, method, "features")
    engine = contrast(net, x[:1], B, A, layer="features", methods=[method]).maps[method][0, 0].numpy()
    assert got.route.how == "model"
    np.testing.assert_allclose(got.contrast, engine, rtol=1e-5, atol=1e-7)
    # ... because the difference of the two maps is not the contrast for them.
    assert not np.allclose(got.map_b - got.map_a, engine, rtol=1e-3, atol=1e-5)


def test_every_method_has_a_route_in_words() -> None:
    routes = {m: contrast_route(m) for m in METHODS}
    assert {m for m, r in routes.items() if r.how == "difference" and r.method == m} == set(DIFFERENCE_METHODS)
    assert {m for m, r in routes.items() if r.method == "gradcam" and m != "gradcam"} == {
        "eigencam", "kpcacam", "randomcam", "finercam"}
    assert all(r.note for r in routes.values())
    assert stored_contrast(np.zeros((1, 2, 2)), [B], A, B) is None  # A not explained: no shortcut
