"""Map diagnosis and point inspection, against hand-computed maps (tests/tiny.py) and exact identities."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

import cam_core
from cam_core.analysis.diagnose import (
    BOUNDED_MIN_SPAN,
    HeadProbe,
    diagnose,
    diagnose_result,
    inspect_point,
    layer_context,
    output_range,
    probe_head,
)
from cam_core.engine import ExplainResult
from cam_core.errors import CamError
from tests.tiny import SpatialNet, X, gapnet

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def spatial() -> tuple[SpatialNet, ExplainResult]:
    net = SpatialNet().eval()
    return net, cam_core.explain(net, X, layer="conv", classes=[0, 1], methods=["gradcam", "hirescam"], device="cpu")


def test_all_negative_map_is_empty_after_relu_with_cause_and_fix(spatial):
    net, res = spatial
    info, rec = layer_context(net, "conv", input_size=2)
    assert info is not None and "pre_activation" in info.hints and rec == "conv"  # its only spatial layer
    d = diagnose(res, 0, 0, "gradcam", info, recommended="block_out")
    # Hand-computed (tests/tiny.py): w = (1/4, 1); A0 = x, A1 = -x/2, so Grad-CAM = -x/4 everywhere negative.
    expected = -X[0, 0] / 4
    torch.testing.assert_close(res.maps["gradcam"][0, 0], expected)  # the signed map comes back intact
    assert d.map_max == pytest.approx(-0.25) and d.map_min == pytest.approx(-1.0)
    assert d.map_mean == pytest.approx(-0.625)
    assert d.pos_mass_share == 0.0 and d.neg_mass_share == 1.0 and d.pos_area == 0.0
    assert d.act_min == -2.0 and d.act_max == 4.0 and d.act_neg_frac == 0.5
    assert d.weight_pos_frac == 1.0  # both channel weights are positive: the signed activations do it
    assert d.grad_pos_frac == pytest.approx(2 / 8)
    assert d.codes[0] == "empty_after_relu" and "pre_activation" in d.codes
    empty = d.findings[0]
    assert empty.severity == "warning"
    assert "negative everywhere" in empty.text and "activations are signed" in empty.text
    assert "`block_out` (recommended)" in empty.fix and "HiResCAM/LayerCAM" in empty.fix
    assert "signed map" in empty.fix
    assert d.empty_after_relu


def test_hirescam_keeps_some_positive_mass(spatial):
    _, res = spatial
    # HiResCAM class 0: g ⊙ A = [[1, 0], [0, -8]]: 1/9 of the mass is positive.
    torch.testing.assert_close(res.maps["hirescam"][0, 0], torch.tensor([[1.0, 0.0], [0.0, -8.0]]))
    d = diagnose(res, 0, 0, "hirescam")
    assert d.pos_mass_share == pytest.approx(1 / 9)
    assert d.codes[0] == "mostly_negative" and not d.empty_after_relu


def test_fix_leaves_out_an_alternative_that_is_just_as_empty(spatial):
    _, res = spatial
    fake = ExplainResult(**{**res.__dict__, "maps": {**res.maps, "hirescam": -res.maps["hirescam"].abs()}})
    d = diagnose(fake, 0, 0, "gradcam")
    assert "HiResCAM" not in d.findings[0].fix and "LayerCAM" in d.findings[0].fix


def test_json_round_trip_and_every_cell(spatial):
    _, res = spatial
    table = diagnose_result(res)
    assert len(table) == 1 and len(table[0]) == 2 and set(table[0][1]) == {"gradcam", "hirescam"}
    data = json.loads(json.dumps(table[0][1]["gradcam"].to_dict()))
    assert data["class_id"] == 1 and data["findings"][0]["code"] == "empty_after_relu"
    assert data["summary"].startswith("0% positive")


class CosineNet(nn.Module):
    """conv → ReLU (``features``) → GAP → bias-free linear embedding → L2 norm → cosine classifier."""

    def __init__(self, normalize: bool = True) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU())
        self.emb = nn.Linear(8, 4, bias=False)
        self.cls = nn.Linear(4, 3, bias=False)
        self.normalize = normalize

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e = self.emb(self.features(x).mean(dim=(-2, -1)))
        if not self.normalize:
            return self.cls(e)
        return F.normalize(e, dim=1) @ F.normalize(self.cls.weight, dim=1).t()


def test_scale_invariant_head_gives_a_centred_map_and_the_probe_sees_it():
    x = torch.randn(2, 3, 6, 6, generator=torch.Generator().manual_seed(1))
    cos, lin = CosineNet(normalize=True).eval(), CosineNet(normalize=False).eval()
    res = cam_core.explain(cos, x, layer="features", classes="top1", device="cpu")
    probe = probe_head(cos, x, "features")
    assert probe.scale_invariant and probe.change < 1e-5
    # Euler: <∇f y, f> = 0 for a scale-invariant y, so the Grad-CAM map at the pooled layer sums to zero.
    assert res.maps["gradcam"].mean(dim=(-2, -1)).abs().max() < 1e-5 * res.maps["gradcam"].std()
    d = diagnose(res, 0, 0, "gradcam", head=probe)
    assert d.centred_ratio < 1e-3
    assert "centred_map" in d.codes and "scale_invariant_head" in d.codes
    assert d.pos_mass_share == pytest.approx(0.5, abs=0.3)
    # A linear head: the same map sums to the logit (over h·w) and scaling doubles the logits.
    res_lin = cam_core.explain(lin, x, layer="features", classes="top1", device="cpu")
    probe_lin = probe_head(lin, x, "features")
    assert not probe_lin.scale_invariant and probe_lin.change == pytest.approx(1.0, rel=1e-4)
    top = res_lin.logits.gather(1, res_lin.class_ids)[:, 0]
    torch.testing.assert_close(res_lin.maps["gradcam"][:, 0].sum(dim=(-2, -1)), top, rtol=1e-4, atol=1e-6)
    assert "centred_map" not in diagnose(res_lin, 0, 0, "gradcam", head=probe_lin).codes


def _fake_result(logits: list[float], cam: torch.Tensor, target: str = "logit") -> ExplainResult:
    t = torch.tensor([logits])
    cid = int(t.argmax())
    return ExplainResult(
        logits=t,
        probs=t.softmax(1),
        class_ids=torch.tensor([[cid]]),
        class_names=[[f"class {cid}"]],
        layer="layer",
        methods=("gradcam",),
        maps={"gradcam": cam.view(1, 1, *cam.shape)},
        input_size=(8, 8),
        target=target,
    )


def test_the_seeds_cosine_logit_is_at_its_bound():
    # The seed question's logits.
    res = _fake_result([-0.5133612, -0.5000069, 0.9999023], torch.randn(4, 4, generator=torch.Generator()))
    d = diagnose(res, 0, 0, "gradcam")
    assert d.output_range == (-1.0, 1.0) and d.near_bound and d.rank == 1
    bound = next(f for f in d.findings if f.code == "near_bound")
    assert "upper bound" in bound.text and f"{(1 - 0.9999023**2) ** 0.5:.3f}" in bound.text
    assert "runner-up, class 1 (logit A − logit B)" in bound.fix and "Score-CAM" in bound.fix


@pytest.mark.parametrize(
    ("logits", "target", "expected"),
    [
        ([-0.51, -0.5, 0.9999], "logit", (-1.0, 1.0)),
        ([0.01, 0.02, -0.003], "logit", None),  # untrained: too small to tell
        ([3.0, -1.0, 0.5], "logit", None),  # a linear head
        ([3.0, -1.0, 0.5], "softmax", (0.0, 1.0)),
        ([0.9, 0.1], "logit − logit[1]", None),
    ],
)
def test_output_range_rule(logits, target, expected):
    bounds, rule = output_range(torch.tensor(logits), target)
    assert bounds == expected and rule
    assert BOUNDED_MIN_SPAN <= 1


def test_inspect_point_matches_the_upsampled_map_and_adds_up():
    net = gapnet(seed=0)
    x = torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    res = cam_core.explain(net, x, layer="features.1", classes=[0, 3], methods=["gradcam", "hirescam"],
                           device="cpu", keep_activations=True)
    up = res.upsampled("gradcam")
    for row, col in [(0, 0), (5, 11), (15, 15), (7, 8)]:
        p = inspect_point(res, 0, row, col, "gradcam", top=3)
        for k, pc in enumerate(p.classes):
            assert pc.value == pytest.approx(float(up[0, k, row, col]), abs=1e-5)
            assert len(pc.channels) == 3
            assert sum(c.contribution for c in pc.channels) + pc.rest == pytest.approx(pc.value, abs=1e-5)
            assert [abs(c.contribution) for c in pc.channels] == sorted((abs(c.contribution) for c in pc.channels),
                                                                        reverse=True)
    # Layer space: contribution = w_c · A_c(ij) exactly, against the stored weights and activations.
    p = inspect_point(res, 0, 3, 4, "gradcam", space="layer", top=16)
    w, A = res.weights["gradcam"][0, 1], res.activations[0, :, 3, 4]
    assert p.classes[1].value == pytest.approx(float(res.maps["gradcam"][0, 1, 3, 4]), abs=1e-6)
    for c in p.classes[1].channels:
        assert c.contribution == pytest.approx(float(w[c.channel] * A[c.channel]), abs=1e-6)
    assert p.classes[1].rest == pytest.approx(0.0, abs=1e-6)
    # HiResCAM has no channel weights: values only, and a note saying why.
    h = inspect_point(res, 0, 2, 2, "hirescam")
    assert h.classes[0].channels == [] and "no channel weights" in h.note
    assert json.loads(json.dumps(h.to_dict()))["space"] == "input"
    with pytest.raises(CamError, match="outside"):
        inspect_point(res, 0, 16, 0)


def test_explain_cli_writes_the_diagnosis_json(tmp_path):
    from skimage import data

    from cam_core.cli import main

    photo = tmp_path / "cat.jpg"
    Image.fromarray(data.chelsea()).save(photo)
    out = tmp_path / "out"
    rc = main([
        "explain", "--model", "tests.tiny:gapnet", "--import-path", str(REPO), "--input-size", "64",
        "--image", str(photo), "--classes", "0,2", "--method", "gradcam", "--method", "hirescam", "--out", str(out),
    ])
    assert rc == 0
    assert (out / "cat.npz").is_file()  # the existing contract is kept
    doc = json.loads((out / "cat.json").read_text())
    assert doc["layer"] == doc["recommended"] == "features.3"  # the last ReLU, before pooling
    assert [c["class_id"] for c in doc["classes"]] == [0, 2]
    z = np.load(out / "cat.npz")
    for c, k in zip(doc["classes"], range(2), strict=True):
        assert set(c["diagnosis"]) == {"gradcam", "hirescam"}
        g = c["diagnosis"]["gradcam"]
        assert g["map_max"] == pytest.approx(float(z["maps_gradcam"][k].max()), rel=1e-5)
        assert g["logit"] == pytest.approx(float(z["logits"][c["class_id"]]), rel=1e-5)
    assert doc["head"]["scale_invariant"] is False  # GAP + linear with bias


def test_seed_example_smoke(tmp_path, seed_net_dir, capsys):
    import importlib.util

    spec = importlib.util.spec_from_file_location("seed_empty_map", REPO / "examples" / "seed_empty_map.py")
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    rc = example.main(["--out", str(tmp_path), "--fixtures", str(seed_net_dir), "--per-class", "2",
                       "--test-per-class", "1", "--size", "64", "--steps", "2"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "== extractor.extractor.7.2.conv3" in printed and "Residual branch" in printed
    assert Image.open(tmp_path / "seed_empty_map.png").size == (5 * 64, 64)
    # The saved case reopens as a factory + state dict + labels, with the logits the example printed.
    import re

    from cam_core.models import load_model

    model = load_model(
        "seed_net:build",
        checkpoint=tmp_path / "seed_net_trained.pt",
        labels=tmp_path / "labels.txt",
        import_paths=[seed_net_dir],
    )
    assert model.class_names == example.CLASSES
    x = example.to_tensor(Image.open(tmp_path / "seed_case.png").convert("RGB"))[None]
    with torch.no_grad():
        logits = model.module(x)[0]
    printed_logits = [float(v) for v in re.search(r"logits \[([^\]]+)\]", printed).group(1).split(",")]
    assert logits.tolist() == pytest.approx(printed_logits, abs=1e-4)
    assert "--checkpoint" in printed and "seed_case.png" in printed


def test_an_untrained_vit_with_a_zero_head_is_named_as_such():
    model = cam_core.load_model("vit_b_16", weights=None)  # torchvision zero-initialises the head
    x, place = model.prepare(Image.new("RGB", (64, 48), (120, 30, 200)))
    res = cam_core.explain(model, x[None], classes="top1", region=place.content, device="cpu")
    assert res.logits.abs().max() == 0
    d = diagnose(res, 0, 0, "gradcam")
    assert d.codes == ["zero_head"]
    assert "same logit" in d.findings[0].text and "no gradient" not in d.findings[0].text


def test_a_map_more_negative_than_positive_is_not_called_sound():
    cam = torch.tensor([[1.0, -0.5], [-1.0, 0.2], [0.3, -0.7]])  # 1.5 positive of 3.7: 59% negative
    d = diagnose(_fake_result([2.0, 0.0], cam), 0, 0, "gradcam")
    assert d.codes[0] == "negative_majority" and "59%" in d.findings[0].text
    cam2 = torch.tensor([[1.0, -0.2], [0.5, 0.3]])  # mostly positive: nothing to say about the sign
    assert "negative_majority" not in diagnose(_fake_result([2.0, 0.0], cam2), 0, 0, "gradcam").codes


def test_a_centred_map_blames_a_cosine_head_only_when_the_probe_found_one():
    cam = torch.tensor([[1.0, -1.0], [0.9, -0.95]])  # mean ≈ 0 against its spread
    without = diagnose(_fake_result([2.0, 0.0], cam), 0, 0, "gradcam")
    text = next(f.text for f in without.findings if f.code == "centred_map")
    assert "cosine" not in text and "scale-invariant" not in text
    probe = HeadProbe(layer="layer", factor=2.0, change=1e-7)
    with_head = diagnose(_fake_result([2.0, 0.0], cam), 0, 0, "gradcam", head=probe)
    assert "cosine" in next(f.text for f in with_head.findings if f.code == "centred_map")


def test_each_finding_is_one_rule_and_the_headline_turns_on_its_threshold(spatial):
    """The rules of cam_core.analysis.findings one at a time, on the hand-computed map with its shares moved."""
    from dataclasses import replace

    from cam_core.analysis import findings as F_
    from cam_core.analysis.thresholds import EMPTY_POS_SHARE, MOSTLY_NEGATIVE_SHARE, NEGATIVE_MAJORITY_SHARE

    _, res = spatial
    d = diagnose(res, 0, 0, "gradcam")

    def headline(pos: float, centred_ratio: float | None = 1.0) -> str | None:
        m = F_.MapContext(replace(d, pos_mass_share=pos, centred_ratio=centred_ratio), res, 0, None, None)
        found = next((f for rule in F_.HEADLINES if (f := rule(m, [])) is not None), None)
        return found.code if found is not None else None

    assert headline(EMPTY_POS_SHARE) == "empty_after_relu"
    assert headline(EMPTY_POS_SHARE + 1e-9) == "mostly_negative"
    assert headline(MOSTLY_NEGATIVE_SHARE) == "negative_majority"
    assert headline(NEGATIVE_MAJORITY_SHARE - 1e-9, centred_ratio=0.0) is None  # centred: its own finding says it
    assert headline(NEGATIVE_MAJORITY_SHARE) is None
    plain = F_.MapContext(replace(d, act_neg_frac=0.0, act_min=0.0, hints=()), res, 0, None, None)
    assert [rule(plain) for rule in (*F_.METHOD_RULES, *F_.LAYER_RULES)] == [None] * 7
    signed = F_.MapContext(d, res, 0, None, None)  # activations from −2 to 4, half negative: signed
    assert F_.pre_activation(signed).code == "pre_activation" and F_.residual_branch(signed) is None
    assert F_.near_bound(F_.MapContext(d, res, 0, "upper", None)).severity == "warning"
    # The rules in order give what diagnose() gave.
    assert F_.findings(d, res, 0, None, None) == d.findings


def test_a_class_far_down_the_ranking_is_said_first_and_not_called_sound(spatial):
    # "Looks sound" for a class at p = 0.045 % (rank 105): its map explains a class the model does not predict.
    from dataclasses import replace

    from cam_core.analysis.findings import findings

    _, res = spatial
    d = diagnose(res, 0, 1, "hirescam")
    far = replace(d, rank=105, prob=0.00045, findings=[])
    found = findings(far, res, 1, None, None)
    assert found[0].code == "not_predicted" and found[0].severity == "warning"
    assert "comes 105th in the ranking, p = 0.045%" in found[0].text
    assert "does not explain the model's prediction" in found[0].text
    assert "top classes" in found[0].fix
    # The top classes get no such finding (rank 1, or a likely class just below the top 5).
    assert not_predicted_none(far, res, rank=1, prob=0.6) and not_predicted_none(far, res, rank=7, prob=0.05)


def not_predicted_none(d, res, rank: int, prob: float) -> bool:
    from dataclasses import replace

    from cam_core.analysis.findings import MapContext, not_predicted

    return not_predicted(MapContext(replace(d, rank=rank, prob=prob), res, 1, None, None)) is None
