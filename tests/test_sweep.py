"""Layer sweep (one forward, one backward), method comparison and contrast maps."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision

import cam_core
from cam_core.analysis.sweep import compare_methods, contrast, stage_layers, sweep
from cam_core.engine.methods import METHODS
from cam_core.errors import CamError
from cam_core.io.samples import load_sample
from cam_core.models.layers import LayerInfo, list_layers
from tests.tiny import SpatialNet, X, gapnet

REPO = Path(__file__).resolve().parents[1]
CONV3 = "extractor.extractor.7.2.conv3"
STAGES = ["extractor.extractor.2", "extractor.extractor.4", "extractor.extractor.5", "extractor.extractor.6",
          "extractor.extractor.7"]


@pytest.fixture(scope="module")
def seed(seed_net_dir):
    model = cam_core.load_model("seed_net:build", import_paths=[seed_net_dir])
    x = model.preprocess(load_sample("chelsea"), "crop").unsqueeze(0)
    list_layers(model)  # the layer tree's own traced forward, before anything is counted
    return model, x


@pytest.fixture(scope="module")
def seed_sweep(seed):
    """The sweep with the seed's layer added, counting forwards of the model and backwards through its output."""
    model, x = seed
    module = model.module
    counts = {"forward": 0, "backward": 0, "autograd.grad": 0}
    inner = module.forward

    def counting_forward(*args, **kwargs):
        counts["forward"] += 1
        out = inner(*args, **kwargs)
        if out.requires_grad:  # fires once per backward pass that reaches the output
            out.register_hook(lambda g: counts.__setitem__("backward", counts["backward"] + 1))
        return out

    real_grad = torch.autograd.grad

    def counting_grad(*args, **kwargs):
        counts["autograd.grad"] += 1
        return real_grad(*args, **kwargs)

    module.forward = counting_forward
    torch.autograd.grad = counting_grad
    try:
        res = sweep(model, x, extra=[CONV3], device="cpu")
    finally:
        del module.forward
        torch.autograd.grad = real_grad
    return res, counts


def test_seed_sweep_is_one_forward_and_one_backward(seed_sweep):
    res, counts = seed_sweep
    assert counts == {"forward": 1, "backward": 1, "autograd.grad": 1}
    assert res.cost == {"forwards": 1, "backwards": 1}
    # Shallow → deep in the order the forward finished them: conv3 before the stage that holds it.
    assert res.names == [*STAGES[:4], CONV3, STAGES[4]]
    assert [la.grid for la in res.layers] == [(112, 112), (56, 56), (28, 28), (14, 14), (7, 7), (7, 7)]
    assert [la.added for la in res.layers] == [False] * 4 + [True, False]
    assert res.recommended == "extractor.extractor.7"
    for la in res.layers:
        assert set(la.result.maps) == {"gradcam", "hirescam"}
        assert la.result.maps["gradcam"].shape == (1, 1, *la.grid)
        assert la.result.maps["gradcam"].abs().max() > 0  # every layer got its gradient
    assert not any(la.result.maps["gradcam"].requires_grad for la in res.layers)


def test_seed_conv3_findings_and_the_block_output(seed_sweep):
    res, _ = seed_sweep
    conv3 = res.layers[4].diagnosis["gradcam"]
    block = res.layers[5].diagnosis["gradcam"]
    assert {"residual_branch", "pre_activation"} <= set(conv3.codes)
    assert conv3.act_neg_frac > 0.4 and conv3.act_min < 0
    fixes = " ".join(f.fix for f in conv3.findings)
    assert "`extractor.extractor.7` (recommended)" in fixes
    assert not {"residual_branch", "pre_activation"} & set(block.codes)
    assert block.act_min == 0.0  # after the ReLU
    # A normalised embedding: the block output's map is centred on zero (relative evidence).
    assert "centred_map" in block.codes and block.centred_ratio < 0.1
    json.dumps(res.to_dict())


def test_sweep_maps_equal_explain_maps_at_each_layer(seed, seed_sweep):
    model, x = seed
    res, _ = seed_sweep
    for j in (0, 4, 5):  # the leaf (shallowest), the nested conv3, the deepest
        la = res.layers[j]
        ref = cam_core.explain(model, x, layer=la.name, classes=[res.class_id], methods=["gradcam", "hirescam"],
                               device="cpu")
        for m in ("gradcam", "hirescam"):
            scale = ref.maps[m].abs().max()
            torch.testing.assert_close(la.result.maps[m], ref.maps[m], rtol=1e-4, atol=1e-5 * float(scale))
        torch.testing.assert_close(la.result.stats["act_neg_frac"], ref.stats["act_neg_frac"])


def test_stage_rule_on_known_models(lite0):
    assert stage_layers(list_layers(lite0)) == ["_blocks.0", "_blocks.2", "_blocks.4", "_blocks.10", "_head_act"]
    r18 = torchvision.models.resnet18(weights=None).eval()
    assert stage_layers(list_layers(r18, input_size=64)) == ["relu", "layer1", "layer2", "layer3", "layer4"]


def _info(name: str, grid: tuple[int, int] | None, type_: str = "Block", rec: bool = False) -> LayerInfo:
    return LayerInfo(name, type_, None, 0, grid is not None, "", rec, (), name.count(".") + 1,
                     name.rpartition(".")[0], grid)


def test_stage_rule_for_a_constant_resolution_model():
    # ViT-like: 12 blocks at one resolution; the recommended layer sits inside the last one.
    layers = [_info("patch", (14, 14), "Conv2d"), _info("blocks", (14, 14), "Sequential")]
    for b in range(12):
        layers += [_info(f"blocks.{b}", (14, 14)), _info(f"blocks.{b}.ln", (14, 14), "LayerNorm", rec=b == 11)]
    names = stage_layers(layers)
    assert names[-1] == "blocks.11.ln" and names[0] == "blocks.0" and "blocks.11" in names
    assert len(names) == 7  # six evenly spaced blocks and the recommended layer


def test_contrast_is_the_difference_of_the_two_maps():
    # Hand-computed (tests/tiny.py): Grad-CAM of class 0 is -x/4, of class 1 -3x/8, so 0 rather than 1 is x/8.
    net = SpatialNet().eval()
    res = contrast(net, X, 0, 1, layer="conv", device="cpu")
    torch.testing.assert_close(res.maps["gradcam"][0, 0], X[0, 0] / 8)
    assert res.target == "logit − logit[1]"
    # At a layer with spatially varying gradients, for both methods linear in the gradient.
    g = gapnet(seed=3)
    x = torch.randn(2, 3, 12, 12, generator=torch.Generator().manual_seed(0))
    both = cam_core.explain(g, x, layer="features.1", classes=[2, 4], methods=["gradcam", "hirescam"], device="cpu")
    diff = contrast(g, x, 2, "4", layer="features.1", device="cpu")
    for m in ("gradcam", "hirescam"):
        torch.testing.assert_close(diff.maps[m][:, 0], both.maps[m][:, 0] - both.maps[m][:, 1], rtol=1e-5, atol=1e-6)
    with pytest.raises(CamError, match="two different classes"):
        contrast(g, x, 2, 2)


def test_compare_methods_runs_all_and_says_why_cam_is_left_out():
    g = gapnet(seed=1)
    x = torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    res, skipped = compare_methods(g, x, layer="features.3", class_id=1, batch_size=8, device="cpu")
    assert set(skipped) == {"legrad"} and "vision transformer" in skipped["legrad"]  # a CNN has no attention
    assert set(res.maps) == set(METHODS) - {"legrad"}
    # CAM equals Grad-CAM times h·w where it applies (GAP + linear).
    torch.testing.assert_close(res.maps["cam"], res.maps["gradcam"] * 64, rtol=1e-4, atol=1e-6)
    res, skipped = compare_methods(g, x, layer="features.1", methods=["cam", "gradcam", "hirescam"], device="cpu")
    assert set(res.maps) == {"gradcam", "hirescam"} and "global-average-pool" in skipped["cam"]


def test_sweep_refuses_what_one_backward_cannot_serve():
    g = gapnet(seed=0)
    x = torch.randn(1, 3, 16, 16)
    with pytest.raises(CamError, match="choose from: gradcam"):
        sweep(g, x, methods=["scorecam"], device="cpu")
    with pytest.raises(CamError, match=r"unknown layer 'features\.9'"):
        sweep(g, x, extra=["features.9"], device="cpu")
    with pytest.raises(CamError, match="one image"):
        sweep(g, torch.randn(2, 3, 16, 16), device="cpu")
    assert not any(m._forward_hooks for m in g.modules())


def test_sweep_cli_writes_json_npz_and_filmstrip(tmp_path):
    from PIL import Image
    from skimage import data

    from cam_core.cli import main

    photo = tmp_path / "cat.png"
    Image.fromarray(data.chelsea()).save(photo)
    out = tmp_path / "out"
    rc = main(["sweep", "--model", "tests.tiny:gapnet", "--import-path", str(REPO), "--input-size", "32",
               "--fit", "crop", "--image", str(photo), "--class", "3", "--layer", "features.0", "--out", str(out)])
    assert rc == 0
    doc = json.loads((out / "cat_sweep.json").read_text())
    names = [la["name"] for la in doc["layers"]]
    assert names == ["features.0", "features.1", "features.3"] and doc["class_id"] == 3
    assert [la["added"] for la in doc["layers"]] == [True, False, False]
    assert "pre_activation" in [f["code"] for f in doc["layers"][0]["diagnosis"]["gradcam"]["findings"]]
    z = np.load(out / "cat_sweep.npz")
    assert list(z["layers"]) == names and z["up_gradcam"].shape == (3, 32, 32)
    assert z["maps_hirescam_2"].shape == (16, 16)
    strip = Image.open(out / "cat_sweep.png")
    assert strip.size == (3 * 32, 2 * 32)
    assert main(["sweep", "--model", "tests.tiny:gapnet", "--import-path", str(REPO), "--image", str(photo),
                 "--method", "scorecam", "--out", str(out)]) == 2
