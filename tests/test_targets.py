"""Scores for multi-label models (sigmoid) and Finer-CAM's score, as targets and as probabilities."""

from __future__ import annotations

import pytest
import torch

import cam_core
from cam_core.analysis.diagnose import diagnose, output_range
from cam_core.engine.targets import finer, probabilities, sigmoid
from tests.tiny import gapnet


def test_sigmoid_target_and_probabilities():
    net = gapnet(seed=3, classes=4)
    x = torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    res = cam_core.explain(net, x, layer="features", classes=[1, 2], methods=["gradcam"], target="sigmoid")
    assert res.target == "sigmoid" and res.probs_kind == "sigmoid"
    torch.testing.assert_close(res.probs, res.logits.sigmoid())
    assert not torch.allclose(res.probs.sum(1), torch.ones(1))  # independent classes: no need to sum to 1
    # The gradient of σ(z) is σ'(z) ∂z: each class's Grad-CAM is its logit map times σ(z)(1 − σ(z)).
    plain = cam_core.explain(net, x, layer="features", classes=[1, 2], methods=["gradcam"])
    scale = (res.probs * (1 - res.probs))[0, [1, 2]]
    torch.testing.assert_close(res.maps["gradcam"][0], plain.maps["gradcam"][0] * scale[:, None, None])
    both = cam_core.explain(net, x, layer="features", classes=[1], methods=["gradcam"], probs="sigmoid")
    assert both.target == "logit" and torch.allclose(both.probs, both.logits.sigmoid())
    with pytest.raises(cam_core.CamError, match="choose from: softmax, sigmoid"):
        probabilities(res.logits, "tanh")
    assert output_range(res.logits[0], "sigmoid")[0] == (0.0, 1.0)
    assert diagnose(res, 0, 0, "gradcam").output_range == (0.0, 1.0)


def test_finer_score_sets_a_class_against_its_nearest_neighbours():
    logits = torch.tensor([[5.0, 4.9, 1.0, 4.0, 4.5, -2.0]], requires_grad=True)
    ids = torch.tensor([[0]])
    p = logits.softmax(1)[0]
    refs = [1, 4, 3]  # the three logits nearest 5.0
    expected = sum(p[j] * (logits[0, 0] - logits[0, j]) for j in refs) / (sum(p[j] for j in refs) + 1e-9)
    torch.testing.assert_close(finer(logits, ids)[0, 0], expected)
    torch.testing.assert_close(sigmoid(logits, ids), logits[:, :1].sigmoid())
    with pytest.raises(cam_core.CamError, match="one output"):
        finer(torch.zeros(1, 1), torch.zeros(1, 1, dtype=torch.long))


def test_diagnosis_says_eigen_cam_is_class_agnostic_and_random_cam_a_baseline():
    net = gapnet(seed=3, classes=4)
    x = torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    res = cam_core.explain(net, x, layer="features", classes=[1, 2], methods=["eigencam", "kpcacam", "randomcam",
                                                                             "gradcam"])
    for m in ("eigencam", "kpcacam"):
        codes = [diagnose(res, 0, k, m).codes for k in range(2)]
        assert all("class_agnostic" in c for c in codes)
        torch.testing.assert_close(res.maps[m][0, 0], res.maps[m][0, 1])  # the same map for both classes
    finding = next(f for f in diagnose(res, 0, 0, "eigencam").findings if f.code == "class_agnostic")
    assert "same map for every class" in finding.text and "sign" in finding.text
    assert "random_baseline" in diagnose(res, 0, 0, "randomcam").codes
    assert "class_agnostic" not in diagnose(res, 0, 0, "gradcam").codes
