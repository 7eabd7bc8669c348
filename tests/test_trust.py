"""Deletion/insertion curves and the model-randomisation sanity check."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import stats
from torch import nn

import cam_core
from cam_core.analysis.trust import (
    SANITY_MAX_CORR,
    deletion_insertion,
    randomisation_check,
    randomisation_units,
    spearman,
)
from cam_core.errors import CamError
from cam_core.io.samples import load_sample
from tests.tiny import gapnet

REPO = Path(__file__).resolve().parents[1]


class BoxScore(nn.Module):
    """logit 0 = s · Σ x over a box (all channels), logit 1 = 0: the curves can be worked out by hand."""

    def __init__(self, box: torch.Tensor, s: float = 0.1) -> None:
        super().__init__()
        self.register_buffer("box", box)
        self.s = s

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.s * (x * self.box).sum(dim=(1, 2, 3))
        return torch.stack([a, torch.zeros_like(a)], dim=1)


def test_curves_match_a_hand_computed_model():
    box = torch.zeros(8, 8)
    box[2:6, 2:6] = 1  # 16 of 64 pixels
    model = BoxScore(box)
    x = torch.ones(1, 3, 8, 8)
    seen = []
    c = deletion_insertion(model, x, box, 0, steps=4, baseline="zero", batch_size=3, device="cpu",
                           progress=lambda f, msg: seen.append(f))
    # Steps delete 0, 16, 32, 48, 64 pixels, the box first: logit 0 = 0.1·3·(16 − min(n, 16)).
    n = np.array([0, 16, 32, 48, 64])
    sig = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
    np.testing.assert_allclose(c.deletion.scores, sig(0.3 * (16 - np.minimum(n, 16))), rtol=1e-5)
    np.testing.assert_allclose(c.insertion.scores, sig(0.3 * np.minimum(n, 16)), rtol=1e-5)
    np.testing.assert_allclose(c.deletion.fractions, n / 64)
    assert c.deletion.auc == pytest.approx(np.trapezoid(c.deletion.scores, n / 64))
    assert c.insertion.auc == pytest.approx(np.trapezoid(c.insertion.scores, n / 64))
    assert c.forwards == math.ceil(10 / 3)
    assert seen == sorted(seen) and seen[-1] == 1.0
    assert c.score_range == pytest.approx((sig(0.0), sig(4.8)), rel=1e-5) and not c.flat
    assert json.loads(json.dumps(c.to_dict()))["flat"] is False
    with pytest.raises(CamError, match="unknown baseline 'fog'; choose from: blur, mean, zero"):
        deletion_insertion(model, x, box, 0, baseline="fog", device="cpu")


def test_a_model_that_ignores_the_pixels_gives_flat_curves():
    """An image-independent score: every curve sits at one probability, and the result says it cannot judge."""

    class Constant(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.tensor([[0.2, 0.1, -0.3]]).expand(len(x), 3) + 0 * x.mean()

    c = deletion_insertion(Constant(), torch.rand(1, 3, 8, 8), torch.rand(8, 8), 0, steps=4, with_random=True,
                           device="cpu")
    p0 = float(torch.softmax(torch.tensor([0.2, 0.1, -0.3]), 0)[0])
    assert c.score_range == pytest.approx((p0, p0), rel=1e-5)
    assert c.flat and json.loads(json.dumps(c.to_dict()))["flat"] is True


@pytest.fixture(scope="module")
def small_cat(lite0) -> torch.Tensor:
    """The chelsea cat pasted small on a plain canvas: a box around it is a map that covers the object."""
    canvas = Image.new("RGB", (224, 224), (124, 116, 104))
    canvas.paste(load_sample("chelsea").resize((150, 100)), (64, 100))
    x = torch.from_numpy(np.asarray(canvas, dtype=np.float32) / 255).permute(2, 0, 1)
    mean, std = torch.tensor(lite0.mean).view(3, 1, 1), torch.tensor(lite0.std).view(3, 1, 1)
    return ((x - mean) / std).unsqueeze(0)


def test_maps_that_cover_the_cat_beat_random_maps(lite0, small_cat):
    res = cam_core.explain(lite0, small_cat, classes="top1", methods=["gradcam"], device="cpu")
    cid = int(res.class_ids[0, 0])
    assert "cat" in res.class_names[0][0]
    box = torch.zeros(224, 224)
    box[100:200, 64:214] = 1
    gradcam = res.maps["gradcam"][0, 0]  # at the layer's 7×7: upsampled inside
    curves = {
        "box": deletion_insertion(lite0, small_cat, box, cid, steps=10, with_random=True, seed=1, device="cpu"),
        "gradcam": deletion_insertion(lite0, small_cat, gradcam, cid, steps=10, with_random=True, seed=2,
                                      device="cpu"),
    }
    randoms = [c.random_deletion.auc for c in curves.values()], [c.random_insertion.auc for c in curves.values()]
    for c in curves.values():
        assert c.deletion.scores[0] == pytest.approx(float(res.probs[0, cid]), rel=1e-4)
        assert c.deletion.auc < min(randoms[0]) and c.insertion.auc > max(randoms[1])


def test_randomising_the_top_blocks_decorrelates_gradcam(lite0):
    x = lite0.preprocess(load_sample("chelsea"), "crop").unsqueeze(0)
    before = {k: v.clone() for k, v in lite0.module.state_dict().items()}
    rng = torch.get_rng_state()
    seen = []
    s = randomisation_check(lite0, x, methods=["gradcam", "eigencam"], max_units=3, device="cpu",
                            progress=lambda f, msg: seen.append(f))
    assert s.units == ["_fc", "_bn1", "_conv_head"] and s.layer == "_head_act"
    assert s.maps["gradcam"].shape == (4, 7, 7) and len(s.rank_corr["gradcam"]) == 3
    assert s.rank_corr["gradcam"][-1] < SANITY_MAX_CORR and not s.flagged["gradcam"]
    # Eigen-CAM is class-agnostic: it ignores the head, so the check flags it.
    assert s.rank_corr["eigencam"][0] == pytest.approx(1.0) and s.flagged["eigencam"]
    assert seen[-1] == 1.0 and len(seen) == 4
    # The caller's model and the global RNG are untouched.
    after = lite0.module.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert torch.equal(torch.get_rng_state(), rng)
    # Step 0 is the original map.
    orig = cam_core.explain(lite0, x, classes=[s.class_id], device="cpu").maps["gradcam"][0, 0].numpy()
    np.testing.assert_allclose(s.maps["gradcam"][0], orig, rtol=1e-4, atol=1e-6)
    json.dumps(s.to_dict())


def test_units_are_blocks_head_first(seed_net_dir):
    assert randomisation_units(gapnet()) == ["fc", "features.2", "features.0"]
    import sys

    sys.path.insert(0, str(seed_net_dir))
    try:
        import seed_net
    finally:
        sys.path.remove(str(seed_net_dir))
    units = randomisation_units(seed_net.build())
    assert units[:4] == ["classifier.fc", "embedding.fc", "extractor.extractor.7.2", "extractor.extractor.7.1"]
    assert units[-2:] == ["extractor.extractor.1", "extractor.extractor.0"] and len(units) == 2 + 16 + 2


def test_spearman_against_scipy():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(7, 7))
    b = a + rng.normal(scale=0.5, size=(7, 7))
    b[0, :4] = 1.0  # ties
    assert spearman(a, b) == pytest.approx(stats.spearmanr(a.ravel(), b.ravel()).statistic, rel=1e-12)
    assert math.isnan(spearman(a, np.zeros((7, 7))))


def test_trust_cli_writes_json_and_npz(tmp_path):
    from skimage import data

    from cam_core.cli import main

    photo = tmp_path / "cat.png"
    Image.fromarray(data.chelsea()).save(photo)
    out = tmp_path / "out"
    rc = main(["trust", "--model", "tests.tiny:gapnet", "--import-path", str(REPO), "--input-size", "32",
               "--fit", "crop", "--image", str(photo), "--class", "2", "--steps", "4", "--randomise-units", "2",
               "--out", str(out)])
    assert rc == 0
    doc = json.loads((out / "cat_trust.json").read_text())
    assert doc["class_id"] == 2 and doc["layer"] == "features.3" and doc["method"] == "gradcam"
    assert len(doc["curves"]["deletion"]["scores"]) == 5 and doc["curves"]["random_insertion"] is not None
    assert doc["sanity"]["units"] == ["fc", "features.2"]
    z = np.load(out / "cat_trust.npz")
    assert z["curve_deletion"].shape == (5,) and z["sanity_maps_gradcam"].shape == (3, 16, 16)
    args = ["trust", "--model", "tests.tiny:gapnet", "--import-path", str(REPO), "--image", str(photo)]
    assert main([*args, "--method", "scorecam", "--out", str(out)]) == 2
    assert main([*args, "--baseline", "mean", "--class", "9", "--out", str(out)]) == 2


def test_a_verdict_needs_a_margin_over_the_random_map():
    from cam_core.analysis.trust import compare_auc

    # The closing note's case: insertion 0.070 against a random 0.068 is no evidence either way.
    assert compare_auc(0.070, 0.068, lower_is_better=False) == "same"
    assert compare_auc(0.457, 0.235, lower_is_better=False) == "better"
    assert compare_auc(0.428, 0.331, lower_is_better=True) == "worse"
    assert compare_auc(0.280, 0.299, lower_is_better=True) == "same"  # 0.019 < max(0.02, 10% of 0.299)
    assert compare_auc(0.10, 0.50, lower_is_better=True) == "better"


# ---- verdicts (decided in cam_core.analysis.trust; the page and the CLI only show them) ---------------------


def _road(morf, lerf, random_morf=None, random_lerf=None):
    from cam_core.analysis.trust import RoadResult

    arr = lambda v: None if v is None else np.asarray(v, dtype=np.float64)  # noqa: E731
    return RoadResult(class_id=0, fractions=np.array([0.2, 0.8]), base=0.9, morf=arr(morf), lerf=arr(lerf),
                      random_morf=arr(random_morf), random_lerf=arr(random_lerf))


def test_road_verdict_turns_on_the_margin_over_random_cam():
    from cam_core.analysis.trust import ROAD_MARGIN, road_verdict

    assert ROAD_MARGIN == 0.01
    # The map: mean((0.8 − 0.2, 0.8 − 0.4)) / 2 = 0.25. Random-CAM: (lerf − 0.5) / 2.
    above = _road([0.2, 0.4], [0.8, 0.8], [0.5, 0.5], [0.978, 0.978])  # random 0.239: 0.011 below the map
    below = _road([0.2, 0.4], [0.8, 0.8], [0.5, 0.5], [0.982, 0.982])  # random 0.241: 0.009 below the map
    assert above.combined == pytest.approx(0.25) and above.random_combined == pytest.approx(0.239)
    assert below.random_combined == pytest.approx(0.241)
    v = road_verdict(above)
    assert v.check == "ROAD" and v.outcome == "trusted" and v.trusted and above.verdict == v
    assert v.text == ("ROAD 0.250 vs Random-CAM 0.239: the map ranks the evidence better than a random map of the "
                      "same layer.")
    v = road_verdict(below)
    assert v.outcome == "doubtful" and not v.trusted
    assert v.text == ("ROAD 0.250 vs Random-CAM 0.241: not clearly better (by 0.01 or more) than random channel "
                      "weights at this layer; do not read much into this map.")
    assert road_verdict(below, margin=0.005).outcome == "trusted"  # the margin decides, nothing else
    assert road_verdict(_road([0.2, 0.4], [0.8, 0.8], [0.1, 0.1], [0.9, 0.9])).outcome == "doubtful"  # random 0.4


def test_road_verdict_without_a_reference_or_with_a_flat_probability():
    from cam_core.analysis.trust import FLAT_SPAN, road_verdict

    alone = road_verdict(_road([0.2, 0.4], [0.8, 0.8]))
    assert alone.outcome == "unreferenced" and alone.text == "ROAD 0.250."
    # Every probability within 0.015 < FLAT_SPAN, Random-CAM's included: nothing to judge.
    flat = _road([0.500, 0.505], [0.510, 0.515], [0.500, 0.500], [0.505, 0.505])
    assert flat.score_range == (0.5, 0.515) and FLAT_SPAN > 0.015 and flat.flat
    v = road_verdict(flat)
    assert v.outcome == "flat" and v.text.startswith("ROAD 0.005: the probability hardly moves (0.500 … 0.515)")
    assert json.loads(json.dumps(flat.to_dict()))["verdict"] == v.to_dict()


def _curves(deletion: float, insertion: float, random_deletion: float | None, random_insertion: float | None):
    from cam_core.analysis.trust import Curve, PerturbationCurves

    fr = np.array([0.0, 1.0])
    spread = np.array([0.1, 0.9])  # 0.8 > FLAT_SPAN: the curves can judge

    def curve(kind, auc):
        return None if auc is None else Curve(kind, fr, spread, auc)

    return PerturbationCurves(0, "blur", curve("deletion", deletion), curve("insertion", insertion),
                              curve("deletion", random_deletion), curve("insertion", random_insertion))


def test_curves_verdict_needs_both_curves_to_beat_random():
    from cam_core.analysis.trust import curves_verdict

    # Deletion 0.10 vs 0.30: 0.20 lower, beyond max(0.02, 10% of 0.30) = 0.03. Insertion 0.60 vs 0.30: 0.30 higher.
    good = curves_verdict(_curves(0.10, 0.60, 0.30, 0.30))
    assert good.check == "deletion/insertion" and good.outcome == "trusted"
    assert good.text.startswith("Deletion AUC 0.100 vs random 0.300 (better); insertion AUC 0.600 vs random 0.300 "
                                "(better).")
    assert good.text.endswith("The map ranks the evidence better than chance.")
    # Insertion 0.32 vs 0.30: 0.02 < 0.03, about the same: not trusted.
    same = curves_verdict(_curves(0.10, 0.32, 0.30, 0.30))
    assert same.outcome == "doubtful" and "(about the same)" in same.text
    assert same.text.endswith("The map does not clearly beat a random one on both curves: do not read much into it.")
    assert curves_verdict(_curves(0.10, 0.60, None, None)).outcome == "unreferenced"


def test_flat_curves_cannot_judge():
    from cam_core.analysis.trust import Curve, PerturbationCurves, curves_verdict

    fr = np.array([0.0, 1.0])
    c = Curve("deletion", fr, np.array([0.500, 0.510]), 0.505)
    v = curves_verdict(PerturbationCurves(0, "blur", c, c, c, c))
    assert v.outcome == "flat" and v.text.startswith("The class probability hardly moves (0.500 … 0.510)")


def test_a_method_is_flagged_when_its_median_correlation_exceeds_the_threshold():
    from cam_core.analysis.trust import SanityResult, barely_changes, sanity_verdicts

    assert barely_changes(np.array([0.9, 0.6, 0.2]), 0.5)  # median 0.6
    assert not barely_changes(np.array([0.9, 0.4, 0.2]), 0.5)  # median 0.4
    assert barely_changes(np.array([0.9, np.nan, 0.2]), 0.5)  # NaN left out: median 0.55
    assert not barely_changes(np.array([np.nan, np.nan]), 0.5)  # constant maps are not flagged
    corr = {"gradcam": np.array([0.9, 0.4, 0.2]), "eigencam": np.array([0.9, 0.6, 0.2])}
    res = SanityResult(layer="l", class_id=0, methods=("gradcam", "eigencam"), units=["a", "b", "c"], rank_corr=corr,
                       rank_corr_abs=corr, maps={}, threshold=0.5,
                       flagged={m: barely_changes(c, 0.5) for m, c in corr.items()})
    v = sanity_verdicts(res)
    assert v["gradcam"].outcome == "trusted" and v["eigencam"].outcome == "doubtful"
    assert v["gradcam"].text == ("Grad-CAM passes: its map changes as the weights are randomised (rank correlation "
                                 "0.90 after the first of 3 steps, median 0.40; flagged above 0.5).")
    assert v["eigencam"].text.startswith("Eigen-CAM is flagged: its map stays similar to the original")
    assert res.to_dict()["verdicts"]["eigencam"]["outcome"] == "doubtful"


def test_trust_cli_prints_the_verdicts_the_analysis_returns(tmp_path, capsys):
    """A real run on a tiny model: each printed verdict is the one cam_core.analysis.trust decides for those numbers."""
    from cam_core.analysis.trust import (
        Curve,
        PerturbationCurves,
        RoadResult,
        SanityResult,
        curves_verdict,
        road_verdict,
        sanity_verdicts,
    )
    from cam_core.cli import main

    photo = tmp_path / "noise.png"
    Image.fromarray(np.random.default_rng(3).integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(photo)
    out = tmp_path / "out"
    rc = main(["trust", "--model", "tests.tiny:gapnet", "--import-path", str(REPO), "--input-size", "16",
               "--image", str(photo), "--steps", "4", "--randomise-units", "2", "--out", str(out)])
    assert rc == 0
    printed = capsys.readouterr().out.splitlines()
    doc = json.loads((out / "noise_trust.json").read_text())

    def curve(d):
        return None if d is None else Curve(d["kind"], np.array(d["fractions"]), np.array(d["scores"]), d["auc"])

    c = doc["curves"]
    curves = PerturbationCurves(c["class_id"], c["baseline"], curve(c["deletion"]), curve(c["insertion"]),
                                curve(c["random_deletion"]), curve(c["random_insertion"]))
    r = doc["road"]
    roads = RoadResult(r["class_id"], np.array(r["fractions"]), r["base"], np.array(r["morf"]), np.array(r["lerf"]),
                       np.array(r["random_morf"]), np.array(r["random_lerf"]))
    s = doc["sanity"]
    corr = {m: np.array([np.nan if v is None else v for v in vs]) for m, vs in s["rank_corr"].items()}
    sanity = SanityResult(s["layer"], s["class_id"], tuple(s["methods"]), s["units"], corr, corr, {}, s["threshold"],
                          s["flagged"])
    expected = [curves_verdict(curves), road_verdict(roads), sanity_verdicts(sanity)["gradcam"]]
    assert printed[0].startswith(f"{photo}: ") and printed[0].endswith("noise_trust.json")
    assert printed[1:] == [f"  {v.check}: {v.outcome.upper()}: {v.text}" for v in expected]
    assert [line.split(":")[0].strip() for line in printed[1:]] == ["deletion/insertion", "ROAD", "randomisation"]
    assert doc["road"]["verdict"] == expected[1].to_dict() and doc["curves"]["verdict"] == expected[0].to_dict()
