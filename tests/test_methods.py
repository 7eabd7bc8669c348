"""Every method against values worked out by hand on tests/tiny.py's SpatialNet.

With x = [[1, 2], [3, 4]], A0 = x, A1 = -x/2 and the gradient of logit c equal to V[c]:

class 0 (V00 = 1 at (0,0), V01 = 4 at (1,1)); logit0 = 1·1 + 4·(−2) = −7
  Grad-CAM   w = (1/4, 4/4) → x/4 − x/2 = −x/4
  HiResCAM   [[1·1, 0], [0, 4·(−2)]] = [[1, 0], [0, −8]]   (LayerCAM: same, gradients ≥ 0)
  XGrad-CAM  w0 = 1·1/10, w1 = 4·(−2)/(−5) = 1.6 → 0.1x − 0.8x = −0.7x
  Grad-CAM++ α0 = 1/(2 + 10·1) = 1/12, w0 = 1/12; α1 = 16/(32 − 5·64) = −1/18, w1 = −4/18
             → x/12 + (2/9)(x/2) = 7x/36
  Ablation   y − y^k = contribution of channel k: (1, −8); w = (1/−7, −8/−7) → −x/7 − 4x/7 = −5x/7
  Score-CAM  masks (min-max of each channel): m0 = (x − 1)/3, m1 = (4 − x)/3;
             y0(x⊙m0) = 0 − 2·4 = −8, y0(x⊙m1) = 1 − 0 = 1; softmax over channels:
             w = (e⁻⁸, e¹)/(e⁻⁸ + e¹) → w0·x − w1·x/2
class 1 (V10 = −1 at (0,1), V11 = 1 at (1,0)); logit1 = −2 − 1.5 = −3.5
  Grad-CAM   w = (−1/4, 1/4) → −x/4 − x/8 = −3x/8
  HiResCAM   [[0, −2], [−1.5, 0]];  LayerCAM  [[0, 0], [−1.5, 0]]
Eigen-CAM   positions × channels = (x − 2.5)·[1, −1/2]: projection (x − 2.5)·√1.25,
            sign set to correlate with the channel-mean map x/4.
"""

from __future__ import annotations

import math

import pytest
import torch

import cam_core
from cam_core.engine import methods as M
from tests.tiny import SpatialNet, X, gapnet

x = X[0, 0]


def _explain(method: str, classes=(0, 1)):
    return cam_core.explain(SpatialNet().eval(), X, layer="conv", classes=list(classes), methods=[method], device="cpu")


HAND = {
    "gradcam": [-x / 4, -3 * x / 8],
    "hirescam": [torch.tensor([[1.0, 0], [0, -8]]), torch.tensor([[0, -2.0], [-1.5, 0]])],
    "layercam": [torch.tensor([[1.0, 0], [0, -8]]), torch.tensor([[0, 0.0], [-1.5, 0]])],
    "xgradcam": [-0.7 * x, None],
    "gradcampp": [7 * x / 36, None],
    "ablationcam": [-5 * x / 7, None],
    "scorecam": [(math.exp(-8) * x - math.exp(1) * x / 2) / (math.exp(-8) + math.exp(1)), None],
}


@pytest.mark.parametrize("method", sorted(HAND))
def test_method_matches_hand_computed(method):
    res = _explain(method)
    assert res.maps[method].shape == (1, 2, 2, 2)
    for k, expected in enumerate(HAND[method]):
        if expected is not None:
            torch.testing.assert_close(res.maps[method][0, k], expected, atol=1e-5, rtol=1e-4)


def test_logits_are_the_hand_values():
    res = _explain("gradcam")
    torch.testing.assert_close(res.logits[0], torch.tensor([-7.0, -3.5]))


def test_eigencam_hand_computed_and_class_agnostic():
    res = _explain("eigencam")
    expected = (x - 2.5) * math.sqrt(1.25)
    torch.testing.assert_close(res.maps["eigencam"][0, 0], expected, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(res.maps["eigencam"][0, 1], expected, atol=1e-5, rtol=1e-4)


def test_maps_stay_signed():
    """Class 0's Grad-CAM is negative everywhere: the engine must return it as is, not zeros."""
    cam = _explain("gradcam").maps["gradcam"][0, 0]
    assert (cam < 0).all()
    assert M.relu(cam).abs().sum() == 0


def test_cam_equals_gradcam_times_area_on_gap_linear_net():
    net = gapnet()
    inp = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    res = cam_core.explain(net, inp, layer="features", classes=[0, 3, 4], methods=["cam", "gradcam"], device="cpu")
    h, w = res.maps["cam"].shape[-2:]
    torch.testing.assert_close(res.maps["cam"], res.maps["gradcam"] * (h * w), atol=1e-5, rtol=1e-4)
    # and CAM is Σ_k W[c,k] A_k with the fc weights, computed independently here
    acts = net.features(inp)
    ref = torch.einsum("kc,nchw->nkhw", net.fc.weight[[0, 3, 4]], acts)
    torch.testing.assert_close(res.maps["cam"], ref.detach(), atol=1e-5, rtol=1e-4)


def test_cam_refuses_a_layer_without_gap_linear_head():
    with pytest.raises(cam_core.CamError, match="global-average-pool"):
        _explain("cam")


def test_normalize_and_relu_helpers():
    m = torch.tensor([[[-2.0, 1.0], [0.0, 4.0]]])
    torch.testing.assert_close(M.normalize(m), torch.tensor([[[0.0, 0.5], [1 / 3, 1.0]]]))
    torch.testing.assert_close(M.normalize(m, signed=True), torch.tensor([[[-0.5, 0.25], [0.0, 1.0]]]))
    assert torch.equal(M.normalize(torch.zeros(1, 2, 2)), torch.zeros(1, 2, 2))
    torch.testing.assert_close(M.relu(m), torch.tensor([[[0.0, 1.0], [0.0, 4.0]]]))


def test_unknown_method_lists_choices():
    with pytest.raises(cam_core.CamError, match="choose from: cam, gradcam"):
        M.check_methods(["gradcam", "gradkam"])
