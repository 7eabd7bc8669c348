"""The "Debug this prediction" section: its figures as data, and its pages driven by AppTest (CPU, no browser).

Figures are checked against the values they were given (traces, z values, AUC
labels); the pages against independent ``cam_core`` calls on the same inputs.
The diagnosis card is driven with a hand-made ExplainResult (an all-negative map
in a residual branch), the section with a tiny model (``tests/tiny.py``), the
seed user's net at ``extractor.extractor.7.2.conv3``, and the full app.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from streamlit.testing.v1 import AppTest

from cam_core.analysis.trust import Curve, PerturbationCurves, SanityResult
from cam_core.render import overlay
from dashboard.figures import sent_grid
from dashboard.views.image.debug.figures import (
    curves_figure,
    point_figure,
    sanity_figure,
    sanity_maps_figure,
    short_unit,
    stage_strip,
)

ROOT = Path(__file__).resolve().parents[1]
TESTS = str(Path(__file__).resolve().parent)
APP = str(ROOT / "dashboard" / "app.py")
TIMEOUT = 120


def _no_failure(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def _figures(at: AppTest) -> dict[str, dict]:
    return {el.key: json.loads(el.proto.spec) for el in at.get("plotly_chart")}


def _array(z: dict | list) -> np.ndarray:
    """A Plotly array from a figure's JSON: typed (base64) or a plain list."""
    if isinstance(z, dict):
        flat = np.frombuffer(base64.b64decode(z["bdata"]), dtype=np.dtype(z["dtype"]))
        return flat.reshape([int(s) for s in str(z["shape"]).split(",")]) if "shape" in z else flat
    return np.asarray(z)


def _open_tab(at: AppTest, label: str) -> AppTest:
    at.session_state["dbg_tab"] = label
    return at.run()


# ---- figures ---------------------------------------------------------------------------------------------------

BG = np.full((16, 12, 3), 200, dtype=np.uint8)


def test_point_figure_has_a_clickable_grid_and_marks_the_point() -> None:
    cam = np.linspace(-1, 1, 16 * 12, dtype=np.float32).reshape(16, 12)
    fig = point_figure(BG, cam, point=(5, 7), step=4).to_plotly_json()
    image, heat, grid, mark, outline = fig["data"]
    assert (image["type"], heat["type"], grid["type"]) == ("image", "heatmap", "scatter")
    np.testing.assert_array_equal(_array(heat["z"]), cam)
    assert heat["zmin"] == pytest.approx(-1.0) and heat["zmax"] == pytest.approx(1.0)  # signed: symmetric
    # Points at the cell centres of a 4-pixel grid: rows 2, 6, 10, 14 × columns 2, 6, 10; customdata = [row, col].
    custom = _array(grid["customdata"])
    assert len(custom) == 4 * 3
    assert set(map(tuple, custom.tolist())) == {(r, c) for r in (2, 6, 10, 14) for c in (2, 6, 10)}
    np.testing.assert_array_equal(_array(grid["x"]), custom[:, 1])
    np.testing.assert_array_equal(_array(grid["y"]), custom[:, 0])
    assert grid["marker"]["color"] == "rgba(0,0,0,0)"  # invisible, yet it returns clicks
    assert (list(mark["x"]), list(mark["y"])) == ([7], [5])
    assert (list(outline["x"]), list(outline["y"])) == ([7], [5])


def test_point_figure_stretches_a_coarse_map_over_the_image() -> None:
    cam = np.array([[1.0, -1.0], [0.5, 0.0]], dtype=np.float32)
    heat = point_figure(BG, cam, point=(0, 0)).to_plotly_json()["data"][1]
    # 2×2 cells over 16×12 pixels: 8 rows and 6 columns of pixels each, centred.
    assert (heat["dy"], heat["dx"]) == (8.0, 6.0)
    assert (heat["y0"], heat["x0"]) == (3.5, 2.5)


def _curve(kind: str, scores: list[float], auc: float) -> Curve:
    return Curve(kind, np.linspace(0, 1, len(scores)), np.asarray(scores), auc)


def test_curves_figure_plots_map_and_random_with_their_aucs() -> None:
    curves = PerturbationCurves(
        class_id=3,
        baseline="blur",
        deletion=_curve("deletion", [0.9, 0.2, 0.1], 0.325),
        insertion=_curve("insertion", [0.1, 0.8, 0.9], 0.65),
        random_deletion=_curve("deletion", [0.9, 0.6, 0.1], 0.55),
        random_insertion=_curve("insertion", [0.1, 0.3, 0.9], 0.4),
        forwards=1,
    )
    fig = curves_figure(curves, "tabby").to_plotly_json()
    names = [t["name"] for t in fig["data"]]
    assert names == ["map · AUC 0.325", "random · AUC 0.550", "map · AUC 0.650", "random · AUC 0.400"]
    np.testing.assert_allclose(_array(fig["data"][0]["y"]), [0.9, 0.2, 0.1])
    np.testing.assert_allclose(_array(fig["data"][3]["y"]), [0.1, 0.3, 0.9])
    np.testing.assert_allclose(_array(fig["data"][2]["x"]), [0.0, 0.5, 1.0])
    assert [t["xaxis"] for t in fig["data"]] == ["x", "x", "x2", "x2"]  # deletion left, insertion right
    assert fig["layout"]["yaxis"]["title"]["text"] == "p(tabby)"


def test_curves_figure_without_the_random_reference() -> None:
    curves = PerturbationCurves(3, "mean", _curve("deletion", [1, 0], 0.5), _curve("insertion", [0, 1], 0.5))
    assert [t["name"] for t in curves_figure(curves).to_plotly_json()["data"]] == ["map · AUC 0.500"] * 2


def test_sanity_figure_plots_each_step_and_flags() -> None:
    res = SanityResult(
        layer="features",
        class_id=1,
        methods=("gradcam", "eigencam"),
        units=["fc", "features.3", "features.0"],
        rank_corr={"gradcam": np.array([0.2, -0.1, 0.0]), "eigencam": np.array([0.9, 0.8, 0.7])},
        rank_corr_abs={"gradcam": np.array([0.3, 0.1, 0.0]), "eigencam": np.array([0.9, 0.9, 0.8])},
        maps={},
        threshold=0.5,
        flagged={"gradcam": False, "eigencam": True},
    )
    fig = sanity_figure(res).to_plotly_json()
    names = [t["name"] for t in fig["data"]]
    assert names == ["Grad-CAM", "Grad-CAM |map|", "Eigen-CAM (flagged)", "Eigen-CAM |map|"]
    np.testing.assert_allclose(_array(fig["data"][0]["y"]), [0.2, -0.1, 0.0], atol=1e-6)
    np.testing.assert_allclose(_array(fig["data"][3]["y"]), [0.9, 0.9, 0.8], atol=1e-6)
    assert list(_array(fig["data"][0]["x"])) == [1, 2, 3]
    assert fig["layout"]["xaxis"]["ticktext"] == ["fc", "features.3", "features.0"]
    assert 0.5 in [s["y0"] for s in fig["layout"]["shapes"]]  # the flag threshold


def test_sanity_maps_figure_one_symmetric_heatmap_per_map() -> None:
    maps = np.stack([np.full((3, 3), v, dtype=np.float32) for v in (1.0, -2.0)])
    maps[0, 0, 0] = -0.5
    fig = sanity_maps_figure(maps, ["original", "1: fc"]).to_plotly_json()
    heat = [t for t in fig["data"] if t["type"] == "heatmap"]
    assert len(heat) == 2
    assert [(h["zmin"], h["zmax"]) for h in heat] == [(-1.0, 1.0), (-2.0, 2.0)]
    assert [a["text"] for a in fig["layout"]["annotations"]] == ["original", "1: fc"]


def test_stage_strip_is_the_relu_overlay_above_the_signed_one() -> None:
    rng = np.random.default_rng(0)
    bg = rng.integers(0, 255, (8, 6, 3), dtype=np.uint8)
    cam = rng.standard_normal((8, 6)).astype(np.float32)
    strip = stage_strip(bg, cam, cmap="jet", signed_cmap="bwr", opacity=0.5, gap=2)
    assert strip.shape == (18, 6, 3) and strip.dtype == np.uint8
    np.testing.assert_array_equal(strip[:8], overlay(bg, cam, view="relu", cmap="jet", alpha=0.5))
    assert (strip[8:10] == 255).all()
    np.testing.assert_array_equal(strip[10:], overlay(bg, cam, view="signed", cmap="bwr", alpha=0.5))
    # An all-negative map leaves the ReLU'd half as the photo itself: blank, honestly.
    blank = stage_strip(bg, -np.abs(cam), gap=2)
    np.testing.assert_array_equal(blank[:8], bg)


def test_short_unit() -> None:
    assert short_unit("extractor.extractor.7.2") == "7.2"
    assert short_unit("classifier.fc") == "classifier.fc"
    assert short_unit("fc") == "fc"
    assert short_unit("") == "(whole model)"


# ---- the diagnosis card on a hand-made result ----------------------------------------------------------------


def _card_page(signed_shown: bool) -> None:
    """An all-negative Grad-CAM map at a pre-activation layer inside a residual branch."""
    import torch

    from cam_core.analysis.diagnose import diagnose
    from cam_core.engine import ExplainResult
    from cam_core.models.layers import LayerInfo
    from dashboard.views.image.debug import diagnosis_card, findings_summary

    res = ExplainResult(
        logits=torch.tensor([[2.0, 0.5]]),
        probs=torch.tensor([[0.8176, 0.1824]]),
        class_ids=torch.tensor([[0]]),
        class_names=[["cat"]],
        layer="block.conv",
        methods=("gradcam",),
        maps={"gradcam": -torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])},
        input_size=(4, 4),
        weights={"gradcam": torch.tensor([[[0.5, -1.0]]])},
        stats={
            "act_min": torch.tensor([-3.0]),
            "act_max": torch.tensor([2.0]),
            "act_neg_frac": torch.tensor([0.5]),
            "grad_pos_frac": torch.tensor([[0.25]]),
        },
    )
    info = LayerInfo(
        name="block.conv",
        type="Conv2d",
        out_shape=(2, 2, 2),
        params=4,
        camable=True,
        reason="map 2×2",
        recommended=False,
        hints=("residual_branch", "pre_activation"),
        depth=2,
        parent="block",
        grid=(2, 2),
    )
    diag = diagnose(res, 0, 0, "gradcam", info, recommended="block")
    findings_summary([diag], model_key="m", signed_shown=signed_shown)
    diagnosis_card(diag, "gradcam_0", model_key="m", signed_shown=signed_shown, contrast_with=(1, "dog (1)"))


def _applied(at: AppTest) -> tuple[str | None, list[str] | None]:
    views = at.session_state.get("views")
    return at.session_state.get("_layer_by_model", {}).get("m"), list(views) if views is not None else None


def test_card_explains_an_all_negative_map_and_applies_the_fix() -> None:
    at = AppTest.from_function(_card_page, args=(False,), default_timeout=TIMEOUT).run()
    _no_failure(at)
    summary, card = at.warning[0].value, at.warning[1].value
    for text in (summary, card):
        assert "Empty after ReLU." in text
        assert "negative everywhere" in text and "100% of its mass" in text
        # The causes, in plain words, and the fix naming the recommended layer and the signed view.
        assert "activations are signed" in text and "residual branch" in text
        assert "**Fix:** try the block output `block` (recommended)" in text and "view the signed map" in text
    nums = at.get("html")[-1].proto.body
    assert "0% / 100%" in nums  # positive / negative mass
    assert "yes: 50% &lt; 0, -3 … 2" in nums  # activations signed, with their range
    assert "25% of entries positive" in nums and "50% positive" in nums  # gradient and channel-weight signs
    assert _applied(at) == (None, None)  # nothing applied yet
    # The buttons apply the fixes through session state: the recommended layer, then the signed view.
    at.button(key="dbg_fix_layer_summary").click().run()
    assert _applied(at) == ("block", None)
    at.button(key="dbg_fix_signed_gradcam_0").click().run()
    assert _applied(at) == ("block", ["relu", "signed"])
    # Contrast with another class is offered only for findings a contrast answers (not here).
    assert not [b for b in at.button if b.key.startswith("dbg_fix_contrast")]


def test_card_offers_no_signed_button_when_the_signed_view_is_shown() -> None:
    at = AppTest.from_function(_card_page, args=(True,), default_timeout=TIMEOUT).run()
    _no_failure(at)
    keys = [b.key for b in at.button]
    assert "dbg_fix_layer_gradcam_0" in keys and "dbg_fix_signed_gradcam_0" not in keys


# ---- the section on a tiny model -------------------------------------------------------------------------------


def _tiny_page(tests_dir: str, spec_name: str, layer: str | None) -> None:
    from cam_core.io.samples import load_sample
    from dashboard.display import Display
    from dashboard.model import ImageItem, ModelSpec, load_bundle
    from dashboard.state import layer_for
    from dashboard.views.image.compute import compute_view
    from dashboard.views.image.debug import debug_section

    bundle = load_bundle(ModelSpec(source="factory", name=spec_name, weights=None, import_path=tests_dir))
    item = ImageItem("chelsea", load_sample("chelsea"), "sample:chelsea", sample="chelsea")
    layer = layer_for(bundle.spec.key, layer or bundle.recommended)
    view, ids = compute_view(bundle, item, layer=layer, methods=["gradcam"], classes=None, k=3)
    debug_section(bundle, item, layer, view, ids, ["gradcam"], Display(("relu", "signed"), "jet", "bwr", 0.6))


@pytest.fixture(scope="module")
def tiny() -> tuple[object, torch.Tensor]:
    """The tiny model and the image as the page computes them (for independent engine calls)."""
    from cam_core.io.samples import load_sample
    from cam_core.models import load_model

    model = load_model("tiny:gapnet", weights=None, import_paths=[TESTS])
    return model, model.preprocess(load_sample("chelsea")).unsqueeze(0)


@pytest.fixture(scope="module")
def tiny_app() -> AppTest:
    at = AppTest.from_function(_tiny_page, args=(TESTS, "tiny:gapnet", None), default_timeout=TIMEOUT).run()
    _no_failure(at)
    return at


def test_section_renders_a_card_per_overlay(tiny_app: AppTest) -> None:
    at = tiny_app
    assert [t.label for t in at.tabs] == ["Diagnosis", "Layer sweep", "Methods", "Contrast", "Inspect a point", "Trust"]
    cards = [m.value for m in at.markdown if m.value.endswith("· Grad-CAM")]
    assert len(cards) == 3  # top-3 classes, one method
    assert at.selectbox(key="dbg_method").value == "gradcam"


def test_contrast_tab_shows_the_engines_contrast_map(tiny_app: AppTest, tiny) -> None:
    from cam_core.analysis.sweep import contrast

    at = _open_tab(tiny_app, "Contrast")
    a, b = at.selectbox(key="dbg_contrast_a").value, at.selectbox(key="dbg_contrast_b").value
    assert a != b
    assert "dbg_contrast_0" not in _figures(at)  # nothing runs before the button
    at.button(key="dbg_contrast_run").click().run()
    _no_failure(at)
    fig = _figures(at)["dbg_contrast_0"]
    heat = [t for t in fig["data"] if t["type"] == "heatmap"]
    model, x = tiny
    want = contrast(model, x, a, b, layer=_facts_layer(at), methods=("gradcam", "hirescam"))
    # Two methods × (signed, ReLU'd); the z values are the engine's upsampled maps (as sent to the browser).
    assert len(heat) == 4
    for trace, method in zip(heat[:2], ("gradcam", "hirescam"), strict=True):
        sent, _ = sent_grid(want.upsampled(method)[0, 0].numpy())
        np.testing.assert_allclose(_array(trace["z"]), sent, rtol=1e-5, atol=1e-7)
    assert heat[0]["zmin"] == pytest.approx(-heat[0]["zmax"])  # the signed row first
    assert at.button(key="dbg_contrast_run").disabled  # cached: nothing to rerun for these settings


def _facts_layer(at: AppTest) -> str:
    """The layer the section diagnosed last (its cache key: model, image, layer, classes)."""
    return list(at.session_state["_dbg_results"]["facts"].keys())[-1][2]


def test_trust_tab_runs_the_engines_checks_with_progress(tiny_app: AppTest, tiny) -> None:
    from cam_core.analysis.trust import deletion_insertion

    at = _open_tab(tiny_app, "Trust")
    assert "dbg_curves" not in _figures(at)
    at.button(key="dbg_delins_run").click().run()
    _no_failure(at)
    fig = _figures(at)["dbg_curves"]
    model, x = tiny
    cid = at.selectbox(key="dbg_class").value
    ups = at.session_state["_dbg_results"]["facts"]
    facts = list(ups.values())[-1]
    saliency = facts.value.result.upsampled("gradcam")[0, list(facts.value.result.class_ids[0]).index(cid)]
    want = deletion_insertion(model, x, saliency, cid, steps=24, baseline="blur", with_random=True)
    names = [t["name"] for t in fig["data"]]
    assert names == [
        f"map · AUC {want.deletion.auc:.3f}",
        f"random · AUC {want.random_deletion.auc:.3f}",
        f"map · AUC {want.insertion.auc:.3f}",
        f"random · AUC {want.random_insertion.auc:.3f}",
    ]
    np.testing.assert_allclose(_array(fig["data"][0]["y"]), want.deletion.scores, rtol=1e-5)
    at.button(key="dbg_sanity_run").click().run()
    _no_failure(at)
    figs = _figures(at)
    corr = [t for t in figs["dbg_sanity"]["data"] if t["name"].startswith("Grad-CAM") and "|map|" not in t["name"]]
    assert len(corr) == 1
    assert len(_array(corr[0]["y"])) == at.slider(key="dbg_san_units").value  # one point per randomised block
    assert "dbg_sanity_maps" in figs


# ---- the seed user's net -----------------------------------------------------------------------------------------


def test_seed_net_at_conv3_explains_the_blank_map_and_switches_layer(seed_net_dir: Path) -> None:
    at = AppTest.from_function(
        _tiny_page, args=(str(seed_net_dir), "seed_net:build", "extractor.extractor.7.2.conv3"), default_timeout=TIMEOUT
    ).run()
    _no_failure(at)
    summary = at.warning[0].value
    # The predicted-class question of the seed: a blank ReLU'd map, why, and how to get a sound one.
    assert summary.startswith("**Empty after ReLU.**") and "`extractor.extractor.7.2.conv3`" in summary
    assert "activations are signed" in summary and "residual branch" in summary
    assert "try the block output `extractor.extractor.7` (recommended)" in summary
    at.button(key="dbg_fix_layer_summary").click().run()
    _no_failure(at)
    assert _facts_layer(at) == "extractor.extractor.7"
    assert not any("Empty after ReLU" in w.value for w in at.warning)  # the block output's maps are not blank


# ---- the full app ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def app() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    _no_failure(at)
    at.toggle(key="dbg_open").set_value(True).run()
    _no_failure(at)
    return at


def test_the_section_costs_nothing_until_opened(monkeypatch: pytest.MonkeyPatch) -> None:
    """Closed by default: no extra forward/backward for a section nobody looks at."""
    import dashboard.views.image.debug.context as debug_context

    calls: list[object] = []
    monkeypatch.setattr(debug_context, "explain", lambda *a, **k: calls.append(a))
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    _no_failure(at)
    at.number_input(key="top_k").set_value(2).run()  # a view the other tests never measured
    _no_failure(at)
    assert at.toggle(key="dbg_open").value is False
    assert not at.tabs and calls == []
    assert _figures(at)  # the overlays are there all the same


def test_app_shows_the_section_and_sweeps_on_demand(app: AppTest) -> None:
    at = app
    assert any("Debug this prediction" in s.value for s in at.subheader)
    assert [t.label for t in at.tabs][:6] == [
        "Diagnosis",
        "Layer sweep",
        "Methods",
        "Contrast",
        "Inspect a point",
        "Trust",
    ]
    assert len([m for m in at.markdown if m.value.endswith("· Grad-CAM")]) == 3  # a card per overlay
    at = _open_tab(at, "Layer sweep")
    assert not at.main.get("image")  # nothing runs before the button (the sidebar has its own thumbnails)
    at.button(key="dbg_sweep_run").click().run()
    _no_failure(at)
    (sweep,) = at.session_state["_dbg_results"]["sweep"].values()
    names = sweep.value.names
    assert len(at.main.get("image")) == len(names) >= 3  # one figure per stage, shallow → deep
    assert names[-1] == "_head_act"  # the recommended (and current) layer is the deepest stage
    assert not [b for b in at.button if b.key == f"dbg_use_{len(names) - 1}"]  # the current one: no button
    # A layer the user adds joins the same single forward/backward; the stages stay.
    assert "_blocks.3._depthwise_act" not in names
    at.multiselect(key="dbg_sweep_extra").set_value(["_blocks.3._depthwise_act"]).run()
    assert not at.button(key="dbg_sweep_run").disabled  # something new to compute
    at.button(key="dbg_sweep_run").click().run()
    _no_failure(at)
    sweep = at.session_state["_dbg_results"]["sweep"].values()[-1]  # the latest
    assert "_blocks.3._depthwise_act" in sweep.value.names and set(names) <= set(sweep.value.names)
    assert sweep.value.cost == {"forwards": 1, "backwards": 1}
    names = sweep.value.names
    assert len(at.main.get("image")) == len(names)
    # Choosing a stage selects its layer for the whole page.
    at.button(key="dbg_use_0").click().run()
    _no_failure(at)
    assert at.query_params["layer"] == names[0]


def test_a_second_visitor_reuses_the_layers_facts(app: AppTest, monkeypatch: pytest.MonkeyPatch) -> None:
    """The diagnosis' extra forward/backward runs once per process, not once per browser session."""
    import dashboard.views.image.debug.context as debug_context

    calls: list[str] = []
    real = debug_context.explain

    def counted(*args, **kwargs):
        calls.append(kwargs.get("layer", ""))
        return real(*args, **kwargs)

    monkeypatch.setattr(debug_context, "explain", counted)
    probes: list[object] = []
    real_probe = debug_context.probe_head
    monkeypatch.setattr(debug_context, "probe_head", lambda *a, **k: probes.append(a) or real_probe(*a, **k))
    second = AppTest.from_file(APP, default_timeout=TIMEOUT).run()  # a new session, same page
    second.toggle(key="dbg_open").set_value(True).run()
    _no_failure(second)
    assert len([m for m in second.markdown if m.value.endswith("· Grad-CAM")]) == 3  # its cards are there
    assert calls == []
    # A view nobody has seen yet is measured (once); the head probe depends on the image only: not rerun.
    second.number_input(key="top_k").set_value(4).run()
    _no_failure(second)
    assert len(calls) == 1 and probes == []


def test_the_card_says_the_head_probe_in_plain_words() -> None:
    # "Scale-invariant head? no: output ×2 moves the logits 99.69 %" was jargon.
    from dataclasses import replace

    import cam_core
    from cam_core.analysis.diagnose import diagnose
    from dashboard.views.image.debug.cards import diagnosis_rows
    from tests.tiny import SpatialNet, X

    res = cam_core.explain(SpatialNet().eval(), X, layer="conv", classes=[0], methods=["gradcam"], device="cpu")
    d = replace(diagnose(res, 0, 0, "gradcam"), scale_change=0.9969)
    rows = dict(diagnosis_rows(d))
    assert "Scale-invariant head?" not in rows
    assert rows["Doubling the features"] == "changes the scores by 99.69%: the head uses their strength (as usual)"
