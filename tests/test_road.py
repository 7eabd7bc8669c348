"""ROAD (remove and debias) against pytorch-grad-cam's ROAD metric, on the same map."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision

import cam_core
from cam_core.analysis.trust import noisy_linear_imputation, road

road_metric = pytest.importorskip("pytorch_grad_cam.metrics.road")
from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget  # noqa: E402


@pytest.fixture(scope="module")
def case():
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=10).eval()
    x = torch.randn(1, 3, 40, 40, generator=torch.Generator().manual_seed(1))
    res = cam_core.explain(model, x, layer="layer3", classes=[3], methods=["gradcam"], device="cpu")
    cam = res.upsampled("gradcam")[0, 0]
    return model, x, (cam - cam.min()) / (cam.max() - cam.min())  # in [0, 1], as pytorch-grad-cam's maps are


def test_imputation_equals_pytorch_grad_cams_noisy_linear_imputer():
    image = torch.rand(3, 20, 24, generator=torch.Generator().manual_seed(2))
    keep = torch.rand(20, 24, generator=torch.Generator().manual_seed(3)) > 0.6
    ours = noisy_linear_imputation(image, keep, noise=0.0)
    theirs = road_metric.NoisyLinearImputer(noise=0.0)(image, keep.float())
    torch.testing.assert_close(ours, theirs, atol=1e-6, rtol=0)
    assert torch.equal(ours[:, keep], image[:, keep])  # kept pixels untouched
    noisy = noisy_linear_imputation(image, keep, noise=0.01, seed=4)
    assert 0.005 < float((noisy - ours)[:, ~keep].std()) < 0.015  # N(0, 0.01²) on the imputed pixels only


FRACTIONS = (0.2, 0.5, 0.9)  # three of ROAD_FRACTIONS: pytorch-grad-cam's imputer is slow to set up


def test_road_equals_pytorch_grad_cams_morf_lerf_and_combined(case):
    model, x, cam = case
    ours = road(model, x, cam, 3, fractions=FRACTIONS, noise=0.0, device="cpu")
    targets = [ClassifierOutputSoftmaxTarget(3)]
    for j, f in enumerate(FRACTIONS):
        percentile = round(100 * (1 - f))
        for metric, mine in ((road_metric.ROADMostRelevantFirst, ours.morf), (road_metric.ROADLeastRelevantFirst,
                                                                              ours.lerf)):
            peer = metric(percentile)
            peer.perturbation.imputer.noise = 0.0
            diff = peer(x, cam[None].numpy(), targets, model)[0]  # probability change
            np.testing.assert_allclose(mine[j] - ours.base, diff, atol=1e-6)
    combined = road_metric.ROADCombined(percentiles=[round(100 * (1 - f)) for f in FRACTIONS])
    for averager in (combined.morf_averager, combined.lerf_averager):
        averager.imputer = _noiseless(averager.imputer)
    np.testing.assert_allclose(ours.combined, combined(x, cam[None].numpy(), targets, model)[0], atol=1e-6)


def _noiseless(metric_cls):
    def make(percentile):
        metric = metric_cls(percentile)
        metric.perturbation.imputer.noise = 0.0
        return metric

    return make


def test_road_reference_is_random_cam_and_a_good_map_beats_it():
    """On a model that looks at one corner, the map of that corner wins ROAD; Random-CAM does not."""
    from tests.tiny import gapnet

    net = gapnet(seed=0, classes=2)
    x = torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(5))
    corner = torch.zeros(16, 16)
    corner[:8, :8] = 1.0

    class Corner(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = net

        def forward(self, x):
            logit = 4 * x[:, :, :8, :8].mean(dim=(1, 2, 3))
            return torch.stack([logit, -logit], dim=1) + 0 * self.net(x)

    model = Corner().eval()
    res = road(model, x, corner + 0.01 * torch.rand(16, 16), 0 if float(x[:, :, :8, :8].mean()) > 0 else 1,
               with_random=True, layer="net.features")
    assert res.random_morf is not None and res.random_combined is not None
    assert res.combined > res.random_combined
    assert res.forwards == 1 + 3  # 36 imputed images in batches of 16, plus the clean image
    assert set(res.to_dict()) >= {"morf", "lerf", "combined", "random_combined"}


def test_road_mistakes():
    from tests.tiny import gapnet

    with pytest.raises(cam_core.CamError, match="strictly between 0 and 1"):
        road(gapnet(), torch.zeros(1, 3, 16, 16), torch.zeros(16, 16), 0, fractions=(0.0, 0.5))
    with pytest.raises(cam_core.CamError, match="out of range"):
        road(gapnet(), torch.zeros(1, 3, 16, 16), torch.rand(16, 16), 9, fractions=(0.5,))
