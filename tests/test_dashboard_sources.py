"""The page with the new sources and methods, driven headless with AppTest: a timm model, a Hugging Face
folder (typed and uploaded), safetensors and .pt2 uploads, the methods' costs, sigmoid scores, and the
Methods and Trust tabs with every method and ROAD."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from streamlit.testing.v1 import AppTest

from cam_core.engine.methods import METHODS
from tests.test_dashboard_debug import _array, _figures
from tests.tiny import save_tiny_vit

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "dashboard" / "app.py")
TESTS = str(ROOT / "tests")
TIMEOUT = 180

transformers = pytest.importorskip("transformers")
pytest.importorskip("timm")
safetensors_torch = pytest.importorskip("safetensors.torch")


def _app() -> AppTest:
    return AppTest.from_file(APP, default_timeout=TIMEOUT).run()


def _ok(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


@pytest.fixture(scope="module")
def hf_folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("hf_page")
    save_tiny_vit(folder)
    return folder


def test_a_timm_model_offline_turns_pretrained_off_and_explains_with_the_new_methods(monkeypatch) -> None:
    from cam_core.models.sources import timm_models as timm_source

    monkeypatch.setattr(timm_source, "_cached_weights", lambda cfg: None)
    monkeypatch.setattr(timm_source, "_reachable", lambda url: False)
    at = _app()
    at.session_state["timm_name"] = "regnetx_002"  # small: the default convnext_tiny takes long to build here
    at.radio(key="model_source").set_value("timm").run()
    assert not at.exception
    warnings = " ".join(w.value for w in at.warning)
    assert "timm:regnetx_002" in warnings and "is now off" in warnings
    assert at.toggle(key="timm_pretrained").value is False
    at.multiselect(key="methods").set_value(["gradcam", "eigengradcam", "finercam"]).run()
    _ok(at)
    figs = _figures(at)
    assert {"overlay_gradcam_0", "overlay_eigengradcam_0", "overlay_finercam_0"} <= set(figs)
    assert at.query_params["model"] == "timm:regnetx_002" and at.query_params["weights"] == "none"
    assert at.query_params["layer"] == "s4"


def test_an_hf_folder_in_the_page_with_legrad_and_sigmoid_scores(hf_folder: Path) -> None:
    at = _app()
    at.radio(key="model_source").set_value("hf").run()
    at.text_input(key="hf_folder").input(str(hf_folder)).run()
    at.multiselect(key="methods").set_value(["gradcam", "legrad"]).run()
    _ok(at)
    assert at.segmented_control(key="fit").value == "squash"  # the processor's own recipe
    assert sorted(at.multiselect(key="class_picker").value) == [0, 1, 2]
    figs = _figures(at)
    assert "overlay_legrad_0" in figs
    scores = figs[next(k for k in figs if k.startswith("scores_"))]
    assert scores["layout"]["annotations"][0]["text"] == "probability"
    at.segmented_control(key="probs_kind").set_value("sigmoid").run()
    _ok(at)
    scores = next(v for k, v in _figures(at).items() if k.startswith("scores_"))
    assert scores["layout"]["annotations"][0]["text"] == "sigmoid probability"
    probs, logits = _array(scores["data"][0]["x"]), _array(scores["data"][1]["x"])
    np.testing.assert_allclose(probs, 1 / (1 + np.exp(-logits)), rtol=1e-5)


def test_a_missing_package_is_one_line_saying_how_to_install_it(monkeypatch) -> None:
    from dashboard import model_ui

    monkeypatch.setattr(model_ui, "_installed", lambda package: False)
    at = _app()
    for source, extra in (("timm", "timm"), ("hf", "hf")):
        at.radio(key="model_source").set_value(source).run()
        assert not at.exception
        assert any(f"pip install 'cam-dashboard[{extra}]'" in i.value for i in at.info)


def test_an_hf_folder_uploaded_as_files(hf_folder: Path) -> None:
    at = _app()
    at.radio(key="model_source").set_value("hf").run()
    files = [(p.name, p.read_bytes(), "application/octet-stream") for p in sorted(hf_folder.iterdir())]
    at.file_uploader(key="hf_files").set_value(files).run()
    _ok(at)
    assert sorted(at.multiselect(key="class_picker").value) == [0, 1, 2]


def test_safetensors_and_exported_program_uploads(tmp_path: Path) -> None:
    from tests.tiny import gapnet

    path = tmp_path / "r18.safetensors"
    safetensors_torch.save_file(torchvision.models.resnet18(num_classes=4).state_dict(), str(path))
    at = _app()
    at.radio(key="model_source").set_value("checkpoint").run()
    at.selectbox(key="ckpt_arch").set_value("resnet18").run()
    at.file_uploader(key="ckpt_file").set_value(("r18.safetensors", path.read_bytes(), "application/octet-stream"))
    at.run()
    _ok(at)  # never asks for trust: safetensors holds no code
    assert at.number_input(key="top_k").value == 3
    exported = torch.export.export(gapnet(seed=1, classes=4), (torch.randn(2, 3, 224, 224),),
                                   dynamic_shapes=({0: torch.export.Dim("batch")},))
    torch.export.save(exported, tmp_path / "gap.pt2")
    at.selectbox(key="ckpt_arch").set_value("(none: exported program, TorchScript or whole model)").run()
    at.file_uploader(key="ckpt_file").set_value(("gap.pt2", (tmp_path / "gap.pt2").read_bytes(),
                                                 "application/octet-stream")).run()
    assert any("Trust this checkpoint" in e.value for e in at.error)
    at.checkbox(key="ckpt_trust").check().run()
    _ok(at)
    assert "overlay_gradcam_0" in _figures(at)


def test_the_methods_picker_says_what_the_costly_methods_cost() -> None:
    from dashboard.views.image.sidebar import cost_line

    at = _app()
    at.multiselect(key="methods").set_value(["gradcam", "shapleycam", "smoothgradcampp"]).run()
    _ok(at)
    caption = next(c.value for c in at.caption if "Beyond the shared forward and backward" in c.value)
    assert "`_head_act` (1280 channels" in caption and "ShapleyCAM: 2 backwards" in caption
    assert "SmoothGrad-CAM++: 4 images in 1 forward batch and 1 backward" in caption
    slow = [m for m in METHODS if at.multiselect(key="methods").format_func(m).endswith("(slow)")]
    assert slow == ["scorecam", "sscam", "iscam", "ablationcam"]
    line = cost_line(["gradcam", "scorecam", "sscam", "finercam"], "layer4", 2048)
    assert "Score-CAM: 2048 images in 32 forward batches" in line
    assert "SS-CAM: 16384 images in 256 forward batches" in line  # 8 noisy masks per channel
    assert "Finer-CAM: 1 backward" in line and "Grad-CAM" not in line.replace("Finer-CAM", "")
    assert cost_line(["gradcam", "hirescam", "eigencam"], "layer4", 2048) is None


# ---- the debug tabs on a tiny model -------------------------------------------------------------------------


def _sources_page(tests_dir: str) -> None:
    from cam_core.io.samples import load_sample
    from dashboard.display import Display
    from dashboard.model import ImageItem, ModelSpec, load_bundle
    from dashboard.views.image.compute import compute_view
    from dashboard.views.image.debug import debug_section

    bundle = load_bundle(ModelSpec(source="factory", name="tiny:gapnet", weights=None, import_path=tests_dir))
    item = ImageItem("chelsea", load_sample("chelsea"), "sample:chelsea", sample="chelsea")
    view, ids = compute_view(bundle, item, layer=bundle.recommended, methods=["gradcam"], classes=None, k=3)
    debug_section(bundle, item, bundle.recommended, view, ids, ["gradcam"], Display(("relu", "signed"), "jet", "bwr",
                                                                                    0.6))


@pytest.fixture(scope="module")
def tiny_app() -> AppTest:
    at = AppTest.from_function(_sources_page, args=(TESTS,), default_timeout=TIMEOUT).run()
    assert not at.exception
    return at


def test_methods_tab_lists_every_method_with_its_cost(tiny_app: AppTest) -> None:
    tiny_app.session_state["dbg_tab"] = "Methods"
    at = tiny_app.run()
    labels = [c.label for c in at.checkbox if c.key and c.key.startswith("dbg_cmp_")]
    slow = [m for m in METHODS if METHODS[m].slow]
    assert len(labels) == len(slow) and all("forward" in label for label in labels)
    at.button(key="dbg_methods_run").click().run()
    assert not at.exception
    table = next(d.value for d in at.dataframe if "method" in d.value.columns)
    skipped = {c.value.split(":material/block: ")[1].split(" left out")[0] for c in at.caption if "left out" in c.value}
    # Every method but the slow (opt-in) ones is computed or said to be left out, with why: LeGrad needs a ViT,
    # and KPCA-CAM's kernel matrix would be too large at this shallow 112×169 map.
    assert skipped == {"LeGrad", "KPCA-CAM"}
    assert set(table["method"]) | skipped == {METHODS[m].title for m in METHODS if not METHODS[m].slow}
    assert "cost" in table.columns and table["cost"].str.len().min() > 0


def test_trust_tab_runs_road_against_random_cam(tiny_app: AppTest) -> None:
    from cam_core.analysis.trust import road
    from cam_core.io.samples import load_sample
    from cam_core.models import load_model

    tiny_app.session_state["dbg_tab"] = "Trust"
    at = tiny_app.run()
    assert "dbg_road" not in _figures(at)
    at.button(key="dbg_road_run").click().run()
    assert not at.exception
    fig = _figures(at)["dbg_road"]
    assert [t["name"] for t in fig["data"]] == [
        "map: most relevant removed", "map: least relevant removed",
        "Random-CAM: most relevant removed", "Random-CAM: least relevant removed",
    ]
    model = load_model("tiny:gapnet", weights=None, import_paths=[TESTS])
    x = model.preprocess(load_sample("chelsea")).unsqueeze(0)
    cid = at.selectbox(key="dbg_class").value
    facts = list(at.session_state["_dbg_results"]["facts"].values())[-1].value.result
    saliency = facts.upsampled("gradcam")[0, list(facts.class_ids[0]).index(cid)]
    want = road(model, x, saliency, cid, with_random=True, layer=facts.layer)
    np.testing.assert_allclose(_array(fig["data"][0]["y"]), want.morf, rtol=1e-5, atol=1e-6)
