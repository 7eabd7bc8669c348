"""The new methods against the peers that have them (pytorch-grad-cam, torchcam), before normalisation.

pytorch-grad-cam's raw map is read at its ``get_cam_image`` (before its ReLU, min-max and resize);
torchcam's weights at its ``_get_weights``. Principal components are compared up to their sign (the
peer leaves it to the SVD), and their sign rule is tested on its own. Where a peer draws random
numbers (noise, random weights), it is handed ours. Perturbation methods run on tests/tiny.py's
GapNet (16 channels), gradient methods on a random resnet18 at 64 px.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision

import cam_core
from cam_core.engine import perturb, smooth
from tests.tiny import gapnet

pgc = pytest.importorskip("pytorch_grad_cam")
from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget, ClassifierOutputTarget  # noqa: E402

CLASSES = [3, 7]


@pytest.fixture(scope="module")
def resnet18():
    torch.manual_seed(0)
    return torchvision.models.resnet18(num_classes=10).eval()


@pytest.fixture(scope="module")
def image():
    return torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(4))


@pytest.fixture(scope="module")
def net():
    return gapnet(seed=1, classes=6)


@pytest.fixture(scope="module")
def small():
    return torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(5))


def _raw(peer_cls):
    """A pytorch-grad-cam class that keeps its raw map (before ReLU and scaling) and its weights."""

    class Raw(peer_cls):
        def get_cam_weights(self, *args, **kwargs):
            self.weights = super().get_cam_weights(*args, **kwargs)
            return self.weights

        def get_cam_image(self, *args, **kwargs):
            self.raw = super().get_cam_image(*args, **kwargs)
            return self.raw

    return Raw


def _pgc_map(peer_cls, model, layer, x, cid, target=ClassifierOutputTarget, **kwargs) -> torch.Tensor:
    with _raw(peer_cls)(model=model, target_layers=[layer]) as cam:
        cam(input_tensor=x, targets=[target(cid)], **kwargs)
        return torch.as_tensor(np.asarray(cam.raw))[0].float()


def _same_up_to_sign(ours: torch.Tensor, theirs: torch.Tensor, atol: float) -> float:
    sign = 1.0 if (ours * theirs).sum() >= 0 else -1.0
    diff = float((ours - sign * theirs).abs().max())
    assert diff <= atol * max(1.0, float(theirs.abs().max())), diff
    return diff


@pytest.mark.parametrize(
    ("method", "peer"),
    [
        ("gradcam", "GradCAM"),
        ("gradcampp", "GradCAMPlusPlus"),
        ("xgradcam", "XGradCAM"),
        ("hirescam", "HiResCAM"),
        ("layercam", "LayerCAM"),
        ("gradcam_elementwise", "GradCAMElementWise"),
    ],
)
def test_gradient_methods_equal_pytorch_grad_cam(resnet18, image, method, peer):
    ours = cam_core.explain(resnet18, image, layer="layer3", classes=CLASSES, methods=[method], device="cpu")
    for k, c in enumerate(CLASSES):
        ref = _pgc_map(getattr(pgc, peer), resnet18, resnet18.layer3, image, c)
        torch.testing.assert_close(ours.maps[method][0, k], ref, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize(("method", "peer"), [("eigengradcam", "EigenGradCAM"), ("eigencam", "EigenCAM")])
def test_principal_component_methods_equal_pytorch_grad_cam_up_to_sign(resnet18, image, method, peer):
    ours = cam_core.explain(resnet18, image, layer="layer3", classes=CLASSES, methods=[method], device="cpu")
    for k, c in enumerate(CLASSES):
        ref = _pgc_map(getattr(pgc, peer), resnet18, resnet18.layer3, image, c)
        _same_up_to_sign(ours.maps[method][0, k], ref, 1e-4)


def test_kpcacam_equals_pytorch_grad_cam_up_to_sign(resnet18, image):
    ours = cam_core.explain(resnet18, image, layer="layer3", classes=[3], methods=["kpcacam"], device="cpu")
    ref = _pgc_map(pgc.KPCA_CAM, resnet18, resnet18.layer3, image, 3)
    _same_up_to_sign(ours.maps["kpcacam"][0, 0], ref, 1e-4)


def test_eigen_smooth_equals_pytorch_grad_cam_up_to_sign_and_follows_the_plain_map(resnet18, image):
    methods = ["gradcam", "hirescam", "layercam"]
    ours = cam_core.explain(resnet18, image, layer="layer3", classes=CLASSES, methods=methods, eigen_smooth=True)
    plain = cam_core.explain(resnet18, image, layer="layer3", classes=CLASSES, methods=methods)
    for m, peer in zip(methods, ("GradCAM", "HiResCAM", "LayerCAM"), strict=True):
        for k, c in list(enumerate(CLASSES))[:1]:
            ref = _pgc_map(getattr(pgc, peer), resnet18, resnet18.layer3, image, c, eigen_smooth=True)
            _same_up_to_sign(ours.maps[m][0, k], ref, 1e-4)
            # Our sign rule: the projection agrees with the map it smooths.
            assert float((ours.maps[m][0, k] * plain.maps[m][0, k]).sum()) > 0


def test_eigencam_sign_follows_the_mean_activation_where_the_svd_does_not():
    """pytorch-grad-cam keeps the SVD's sign; ours flips it to correlate with the channel-mean activation."""
    from pytorch_grad_cam.utils.svd_on_activations import get_2d_projection

    flipped = 0
    for seed in range(12):
        A = torch.rand(1, 6, 5, 5, generator=torch.Generator().manual_seed(seed)) ** 3
        ours = cam_core.engine.methods.eigencam(A)[0, 0]
        theirs = torch.as_tensor(get_2d_projection(A.numpy()))[0]
        _same_up_to_sign(ours, theirs, 1e-4)
        mean = A[0].mean(0)
        assert float(((ours - ours.mean()) * (mean - mean.mean())).sum()) >= 0
        flipped += float((ours * theirs).sum()) < 0
    assert flipped > 0  # the rule matters: the SVD alone gave the inverted map on some of these


def test_finercam_equals_pytorch_grad_cam(resnet18, image):
    from pytorch_grad_cam import FinerCAM, GradCAM

    ours = cam_core.explain(resnet18, image, layer="layer3", classes=CLASSES, methods=["finercam"], device="cpu")
    for k, c in enumerate(CLASSES):
        cam = FinerCAM(resnet18, [resnet18.layer3], base_method=_raw(GradCAM))
        cam(input_tensor=image, target_idx=c)
        cam.base_cam.activations_and_grads.release()
        ref = torch.as_tensor(cam.base_cam.raw)[0]
        torch.testing.assert_close(ours.maps["finercam"][0, k], ref, atol=1e-5, rtol=1e-4)


def test_shapleycam_equals_pytorch_grad_cam_with_a_softmax_score(resnet18, image):
    """With the softmax score the Hessian term is not zero, so this is more than Grad-CAM."""
    ours = cam_core.explain(
        resnet18, image, layer="layer3", classes=CLASSES, methods=["shapleycam", "gradcam"], target="softmax"
    )
    assert not torch.allclose(ours.maps["shapleycam"], ours.maps["gradcam"], rtol=1e-3)
    for k, c in enumerate(CLASSES):
        ref = _pgc_map(pgc.ShapleyCAM, resnet18, resnet18.layer3, image, c, target=ClassifierOutputSoftmaxTarget)
        torch.testing.assert_close(ours.maps["shapleycam"][0, k], ref, atol=1e-6, rtol=1e-4)


def test_shapleycam_is_gradcam_where_the_score_is_piecewise_linear(resnet18, image):
    res = cam_core.explain(resnet18, image, layer="layer4", classes=CLASSES, methods=["shapleycam", "gradcam"])
    torch.testing.assert_close(res.maps["shapleycam"], res.maps["gradcam"])


def test_randomcam_is_pytorch_grad_cams_with_the_same_weights(resnet18, image, monkeypatch):
    ours = cam_core.explain(resnet18, image, layer="layer3", classes=[3], methods=["randomcam"], device="cpu")
    w = ours.weights["randomcam"][0, 0]
    assert w.abs().max() <= 1 and w.std() > 0.3  # U(−1, 1)
    monkeypatch.setattr(np.random, "uniform", lambda low, high, size: w.numpy()[None].astype(np.float64))
    ref = _pgc_map(pgc.RandomCAM, resnet18, resnet18.layer3, image, 3)
    torch.testing.assert_close(ours.maps["randomcam"][0, 0], ref, atol=1e-5, rtol=1e-4)
    again = cam_core.explain(resnet18, image, layer="layer3", classes=[3], methods=["randomcam"], device="cpu")
    assert torch.equal(again.weights["randomcam"], ours.weights["randomcam"])  # the same class, the same map


# ---- Score-CAM and its noisy / integrated kin ----------------------------------------------------------------


def _pgc_masks(A_i: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """pytorch-grad-cam's ScoreCAM masks: upsample with align_corners=True, then min-max (+1e-8)."""
    up = torch.nn.UpsamplingBilinear2d(size=size)(A_i.unsqueeze(1))
    lo, hi = up.amin(dim=(-2, -1), keepdim=True), up.amax(dim=(-2, -1), keepdim=True)
    return (up - lo) / (hi - lo + 1e-8)


def _torchcam_masks(A_i: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """torchcam's ScoreCAM masks: min-max (+1e-8) at the layer's resolution, then bilinear upsampling."""
    a = A_i - A_i.amin(dim=(-2, -1), keepdim=True)
    a = a / (a.amax(dim=(-2, -1), keepdim=True) + 1e-8)
    return F.interpolate(a.unsqueeze(1), size=size, mode="bilinear", align_corners=False)


def _torchcam_weights(cls, model, x, cid, **kwargs) -> torch.Tensor:
    with cls(model, "features", input_shape=tuple(x.shape[1:]), **kwargs) as ext:
        with torch.no_grad():
            model(x)
        return ext._get_weights(cid)[0][0]


def test_scorecam_is_the_papers_softmax_over_channels_and_equals_both_peers(net, small, monkeypatch):
    from torchcam.methods import ScoreCAM

    ours = cam_core.explain(net, small, layer="features", classes=[2], methods=["scorecam"], device="cpu")
    w = ours.weights["scorecam"][0, 0]
    torch.testing.assert_close(w.sum(), torch.tensor(1.0))  # normalised over channels
    monkeypatch.setattr(perturb, "minmax_masks", _pgc_masks)
    pgc_recipe = cam_core.explain(net, small, layer="features", classes=[2], methods=["scorecam"], device="cpu")
    with _raw(pgc.ScoreCAM)(model=net, target_layers=[net.features]) as cam:
        cam(input_tensor=small, targets=[ClassifierOutputTarget(2)])
        torch.testing.assert_close(pgc_recipe.weights["scorecam"][0, 0], torch.as_tensor(cam.weights[0]).float(),
                                   atol=1e-6, rtol=1e-5)
    monkeypatch.setattr(perturb, "minmax_masks", _torchcam_masks)
    tc_recipe = cam_core.explain(net, small, layer="features", classes=[2], methods=["scorecam"], device="cpu")
    torch.testing.assert_close(tc_recipe.weights["scorecam"][0, 0], _torchcam_weights(ScoreCAM, net, small, 2),
                               atol=1e-6, rtol=1e-5)


def test_sscam_equals_torchcam_with_the_same_noise(net, small, monkeypatch):
    from torchcam.methods import SSCAM

    drawn = []

    def noise(gen, shape, std):
        drawn.append(torch.randn(tuple(shape), generator=gen) * std)
        return drawn[-1]

    monkeypatch.setattr(perturb, "minmax_masks", _torchcam_masks)
    monkeypatch.setattr(perturb, "mask_noise", noise)
    ours = cam_core.explain(net, small, layer="features", classes=[2], methods=["sscam"], samples=3, batch_size=64)
    assert ours.cost["forwards"] == 1 + 3  # 16 channels in one batch, three noisy passes

    class Replay:
        def __init__(self):
            self.noise = iter(drawn)

        def sample(self, size):
            return next(self.noise).reshape(size)

    with SSCAM(net, "features", num_samples=3, std=2.0, input_shape=tuple(small.shape[1:])) as ext:
        ext._distrib = Replay()
        with torch.no_grad():
            net(small)
        ref = ext._get_weights(2)[0][0]
    torch.testing.assert_close(ours.weights["sscam"][0, 0], ref, atol=1e-6, rtol=1e-5)


def test_iscam_equals_torchcam(net, small, monkeypatch):
    from torchcam.methods import ISCAM

    monkeypatch.setattr(perturb, "minmax_masks", _torchcam_masks)
    ours = cam_core.explain(net, small, layer="features", classes=[2], methods=["iscam"], samples=4, batch_size=8)
    assert ours.cost["forwards"] == 1 + 4 * 2
    ref = _torchcam_weights(ISCAM, net, small, 2, num_samples=4, batch_size=8)
    torch.testing.assert_close(ours.weights["iscam"][0, 0], ref, atol=1e-6, rtol=1e-5)


def test_smoothgradcampp_without_noise_is_pytorch_grad_cams_gradcampp(net, small, monkeypatch):
    """No peer implements the paper's SmoothGrad-CAM++: torchcam's divides by Σ_ab (A·D3)_ab (as its
    Grad-CAM++ does) and takes relu of the last sample's gradient. With the noise switched off the
    paper's formula is Grad-CAM++, which pytorch-grad-cam has."""
    monkeypatch.setattr(smooth, "input_noise", lambda gen, shape, std: torch.zeros(shape))
    ours = cam_core.explain(net, small, layer="features", classes=[2], methods=["smoothgradcampp"], samples=2)
    ref = _pgc_map(pgc.GradCAMPlusPlus, net, net.features, small, 2)
    torch.testing.assert_close(ours.maps["smoothgradcampp"][0, 0], ref, atol=1e-6, rtol=1e-5)


def test_smoothgradcampp_averages_gradient_moments_over_noisy_copies(net, small):
    """The paper's formula with four noisy copies, computed with plain autograd."""
    res = cam_core.explain(net, small, layer="features", classes=[2], methods=["smoothgradcampp"], samples=4)
    gen = torch.Generator().manual_seed(0)
    noisy = small + torch.randn((4, *small.shape[1:]), generator=gen) * cam_core.engine.methods.SMOOTHGRAD_STD
    acts = net.features(noisy).detach().requires_grad_(True)
    (g,) = torch.autograd.grad(net.fc(net.pool(acts).flatten(1))[:, 2].sum(), acts)
    D1, D2, D3 = (g.pow(p).mean(0, keepdim=True).unsqueeze(1) for p in (1, 2, 3))
    A = net.features(small).detach()
    expected = cam_core.engine.methods.smoothgradcampp(A, D1, D2, D3)
    torch.testing.assert_close(res.maps["smoothgradcampp"], expected, atol=1e-5, rtol=1e-4)


# ---- LeGrad ---------------------------------------------------------------------------------------------------


def test_legrad_equals_torchcam_on_a_torchvision_vit():
    from torchcam.methods import LeGrad

    torch.manual_seed(2)
    vit = torchvision.models.VisionTransformer(
        image_size=32, patch_size=8, num_layers=3, num_heads=2, hidden_dim=16, mlp_dim=32, num_classes=5
    ).eval()
    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(6))
    layer = "encoder.layers.encoder_layer_1"
    ours = cam_core.explain(vit, x, layer=layer, classes=[1, 4], methods=["legrad"], device="cpu")
    blocks = ["encoder.layers.encoder_layer_1", "encoder.layers.encoder_layer_2"]
    for k, c in enumerate([1, 4]):
        with LeGrad(vit, blocks) as ext:
            scores = vit(x)
            (ref,) = ext.compute_cams(c, scores, normalized=False)
        torch.testing.assert_close(ours.maps["legrad"][0, k], ref[0].detach(), atol=1e-6, rtol=1e-4)


def test_legrad_refuses_a_cnn(net, small):
    with pytest.raises(cam_core.CamError, match="vision transformer"):
        cam_core.explain(net, small, layer="features", classes=[1], methods=["legrad"])


# ---- aug_smooth ------------------------------------------------------------------------------------------------


def test_aug_smooth_averages_the_map_of_the_flipped_image_flipped_back(resnet18, image):
    methods = ["gradcam", "hirescam", "eigencam"]
    res = cam_core.explain(resnet18, image, layer="layer3", classes=CLASSES, methods=methods, aug_smooth=True)
    plain = cam_core.explain(resnet18, image, layer="layer3", classes=CLASSES, methods=methods)
    flipped = cam_core.explain(resnet18, image.flip(-1), layer="layer3", classes=CLASSES, methods=methods)
    for m in methods:
        torch.testing.assert_close(res.maps[m], (plain.maps[m] + flipped.maps[m].flip(-1)) / 2, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(res.logits, plain.logits)
    assert res.cost["forwards"] == 1 and res.weights == {}
