"""Page logic of the dashboard, driven headless with Streamlit's AppTest (no browser).

Covers: the zero-click default view (offline model, chelsea, top-3, overlay figure),
class toggling and finding, bad input as messages (not tracebacks), the URL, the
cache (drawing changes compute nothing), and custom models (torchvision offline,
factory, untrusted pickle). Plotly figures are read back from their JSON spec.
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from streamlit.testing.v1 import AppTest
from torch import nn

APP = str(Path(__file__).resolve().parents[1] / "dashboard" / "app.py")
TIMEOUT = 120


def _app(**query: str) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    for name, value in query.items():
        at.query_params[name] = value
    return at.run()


def _no_failure(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


def _figures(at: AppTest) -> dict[str, dict]:
    return {el.key: json.loads(el.proto.spec) for el in at.get("plotly_chart")}


def _overlay(at: AppTest, method: str = "gradcam") -> dict:
    return _figures(at)[f"overlay_{method}_0"]


def _heatmaps(fig: dict) -> list[dict]:
    return [t for t in fig["data"] if t["type"] == "heatmap"]


def _captions(at: AppTest) -> list[str]:
    return [c.value for c in at.caption]


def _png(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def default_app() -> AppTest:
    at = _app()
    _no_failure(at)
    return at


def test_defaults_show_chelsea_explained_with_top3(default_app: AppTest) -> None:
    at = default_app
    assert not at.error
    assert at.radio(key="model_source").value == "default"
    assert at.pills(key="samples").value == ["chelsea"]
    assert at.multiselect(key="methods").value == ["gradcam"]
    picked = at.multiselect(key="class_picker").value
    assert len(picked) == 3
    # The top-3 of the offline model on the cat photo are domestic cats (ImageNet 281-285).
    assert set(picked) <= set(range(281, 286)), picked

    fig = _overlay(at)
    heat = _heatmaps(fig)
    # The default layer (a ReLU6 output) cannot be negative: its signed row would be one colour and double the
    # figure, so the ReLU'd view alone is shown by default, and one caption says why.
    assert len(heat) == 3  # three classes, the ReLU'd view
    assert sum(t["type"] == "image" for t in fig["data"]) == 3
    assert at.pills(key="views_nonneg").value == ["relu"]
    assert sum("Signed view off by default" in c for c in _captions(at)) == 1
    # Heatmaps travel as float32, every 4th pixel of the 224×337 map of the whole photo (upsampled from the
    # layer's 7×11 grid: 8 samples a cell; the browser interpolates), not float64 lists.
    assert heat[0]["z"]["dtype"] == "f4"
    assert heat[0]["z"]["shape"].replace(" ", "") == "56,84"
    assert (heat[0]["x0"], heat[0]["dx"], heat[0]["zsmooth"]) == (2, 4, "fast")
    assert heat[0]["zmin"] == 0.0  # the ReLU'd view starts at zero
    # The in-figure opacity slider restyles exactly the heatmaps and starts at the preferred opacity.
    slider = fig["layout"]["sliders"][0]
    heat_idx = [i for i, t in enumerate(fig["data"]) if t["type"] == "heatmap"]
    assert all(step["method"] == "restyle" and step["args"][1] == heat_idx for step in slider["steps"])
    assert float(slider["steps"][slider["active"]]["label"]) == pytest.approx(at.session_state["opacity"])
    assert all(t["opacity"] == pytest.approx(at.session_state["opacity"]) for t in heat)
    # One opacity control: the figure's own slider (in the browser, no rerun), none in the toolbar above it.
    assert not [s for s in at.slider if s.key == "opacity"]

    scores = _figures(at)["scores_0"]
    assert [t["type"] for t in scores["data"]] == ["bar", "bar"]  # probability and logit


def test_a_signed_layer_shows_the_signed_view_by_default() -> None:
    at = _app(layer="_bn1")  # BatchNorm output: signed (the tree's ± hint)
    _no_failure(at)
    heat = _heatmaps(_overlay(at))
    assert len(heat) == 3 * 2  # three classes, ReLU'd and signed views
    relu, signed = heat[0], heat[3]
    assert relu["zmin"] == 0.0
    assert signed["zmin"] == pytest.approx(-signed["zmax"])  # symmetric around zero
    assert not any("Signed view off" in c for c in _captions(at))
    # The user can still turn the signed view on at a layer where it starts off.
    at.query_params.clear()
    at = _app()
    at.pills(key="views_nonneg").set_value(["relu", "signed"]).run()
    _no_failure(at)
    assert len(_heatmaps(_overlay(at))) == 3 * 2
    assert not any("Signed view off" in c for c in _captions(at))


def test_model_tree_gets_layers_with_shapes_hints_and_the_recommended_one(default_app: AppTest) -> None:
    (data,) = [d for d in (json.loads(c.proto.json) for c in default_app.get("bidi_component")) if "nodes" in d]
    nodes = {n["name"]: n for n in data["nodes"]}
    assert data["selected"] == "_head_act"
    assert [n for n, node in nodes.items() if node["recommended"]] == ["_head_act"]
    assert [n for n, node in nodes.items() if node["why"]] == ["_head_act"]  # the rule's one line, on its row
    assert nodes["_head_act"]["why"] == "the last spatial map (7×7) before pooling and the head: the backbone's output"
    assert nodes["_head_act"]["shape"] == "1280×7×7" and nodes["_head_act"]["type"] == "ReLU6"
    assert nodes["_head_act"]["camable"] and not nodes["_fc"]["camable"] and nodes["_fc"]["reason"]
    assert nodes["_blocks.15"]["parent"] == "_blocks" and nodes["_blocks.15"]["label"] == "15"
    # Hints travel with their explanation: BatchNorm output is signed; block internals sit in a residual branch.
    assert "pre-activation" in nodes["_bn1"]["hints"][0]["word"]
    assert any(h["short"] == "res" for h in nodes["_blocks.14._project_conv"]["hints"])
    assert all(h["text"] for node in nodes.values() for h in node["hints"])


def test_the_image_uploader_shows_the_limit_that_applies(default_app: AppTest) -> None:
    from cam_core.limits import MAX_IMAGE_UPLOAD_BYTES

    (up,) = [u for u in default_app.get("file_uploader") if u.proto.id.endswith("uploads")]
    # The browser writes "Limit … per file" from this number (it said 200MB, the server-wide limit).
    assert up.proto.max_upload_size_mb == MAX_IMAGE_UPLOAD_BYTES // 2**20 == 64
    assert "64 MB each" in up.proto.help


def test_the_debug_switch_has_a_plain_label(default_app: AppTest) -> None:
    # The label is the switch's accessible name: markdown in it was read out raw (":material/troubleshoot: **…**").
    assert default_app.toggle(key="dbg_open").label == "Debug this prediction"


def test_a_wide_photo_shows_fewer_classes_a_row() -> None:
    at = _app()
    wide = np.zeros((300, 900, 3), np.uint8)
    wide[:, :300] = 200
    at.file_uploader(key="uploads").set_value(("wide.png", _png(wide), "image/png")).run()
    at.pills(key="samples").set_value([]).run()
    _no_failure(at)
    figs = {k: f for k, f in _figures(at).items() if k.startswith("overlay_gradcam_")}
    assert sorted(figs) == ["overlay_gradcam_0", "overlay_gradcam_2"]  # two classes a row, then the third
    assert [len(_heatmaps(figs[k])) for k in sorted(figs)] == [2, 1]
    # the short last row keeps the rows' panel size (its figure takes half the width, not all of it)
    assert figs["overlay_gradcam_2"]["layout"]["height"] == figs["overlay_gradcam_0"]["layout"]["height"]
    assert [c.weight for c in at.columns].count(0.5) == 2  # the third class in a column of its share, one empty


def test_default_writes_a_shareable_url(default_app: AppTest) -> None:
    qp = default_app.query_params
    assert qp["model"] == "efficientnet_lite0"
    assert qp["layer"] == "_head_act"
    assert qp["method"] == "gradcam"
    assert qp["image"] == "chelsea"
    ids = [int(v) for v in qp["classes"].split(",")]
    assert len(ids) == 3


def test_toggling_classes_reuses_cached_maps() -> None:
    at = _app()
    picked = at.multiselect(key="class_picker").value
    at.multiselect(key="class_picker").unselect(picked[-1]).run()
    _no_failure(at)
    assert len(_heatmaps(_overlay(at))) == 2
    assert any("nothing was computed" in c for c in _captions(at))

    at.multiselect(key="class_picker").select(285).run()  # Egyptian cat, maybe already cached
    at.multiselect(key="class_picker").select(1).run()  # goldfish: surely not cached yet
    _no_failure(at)
    assert 1 in at.session_state["_classes_by_view"][next(iter(at.session_state["_classes_by_view"]))]
    assert any("Computed 1 map in" in c for c in _captions(at))
    fig = _overlay(at)
    assert any("goldfish (1)" in a["text"] for a in fig["layout"]["annotations"])


def test_drawing_changes_compute_nothing() -> None:
    at = _app()
    at.selectbox(key="cmap").set_value("viridis").run()
    at.session_state["opacity"] = 0.3  # where the figure's slider was left, as the sync stores it
    at.run()
    _no_failure(at)
    assert any("nothing was computed" in c for c in _captions(at))
    fig = _overlay(at)
    assert all(t["opacity"] == pytest.approx(0.3) for t in _heatmaps(fig))


def test_find_class_by_name_and_index() -> None:
    at = _app()
    shown = at.multiselect(key="class_picker").value
    at.text_input(key="class_find").input(f"goldfish, 207, {shown[0]}").run()
    _no_failure(at)
    picked = at.multiselect(key="class_picker").value
    assert 1 in picked  # goldfish
    assert 207 in picked  # golden retriever
    assert shown[0] not in picked  # typing a class already shown takes it away
    assert at.text_input(key="class_find").value == ""


def test_a_word_many_classes_share_lists_them_instead_of_adding_all() -> None:
    at = _app()
    before = at.multiselect(key="class_picker").value
    at.text_input(key="class_find").input("cat").run()
    _no_failure(at)
    assert at.multiselect(key="class_picker").value == before  # nothing guessed
    names = list(at.pills(key="class_suggest_pick").options)  # "Egyptian cat · 45.4%", …
    assert len(names) >= 5 and all(" cat · " in n for n in names[:5]), names
    assert names[0].startswith("Egyptian cat")  # whole-word matches, ranked by the image's probability
    first = at.session_state["_class_suggest"][1][0]
    at.pills(key="class_suggest_pick").set_value(first).run()
    _no_failure(at)
    assert first in at.multiselect(key="class_picker").value
    assert all(p.key != "class_suggest_pick" for p in at.pills)  # used up


def test_unknown_class_name_is_a_message_once() -> None:
    at = _app()
    at.text_input(key="class_find").input("zqxwv").run()
    _no_failure(at)
    messages = [w.value for w in at.warning]
    assert any("'zqxwv'" in m for m in messages), messages
    assert len(_heatmaps(_overlay(at))) == 3  # the page still shows the view
    at.selectbox(key="cmap").set_value("viridis").run()  # any later change clears it
    assert not any("'zqxwv'" in w.value for w in at.warning)
    at.text_input(key="class_find").input("tabbby").run()  # a misspelling: suggested, not guessed
    assert next(o.split(" · ")[0] for o in at.pills(key="class_suggest_pick").options) == "tabby"


@pytest.mark.parametrize(
    ("name", "data"),
    [("broken.png", b"\x89PNG\r\n\x1a\n not really a png"), ("notes.jpg", b"just some text, not an image")],
)
def test_bad_upload_is_a_message_and_the_rest_works(name: str, data: bytes) -> None:
    at = _app()
    at.file_uploader(key="uploads").set_value((name, data, "image/png")).run()
    _no_failure(at)
    messages = [e.value for e in at.error]
    assert any(name in m for m in messages), messages
    assert not at.expander  # a user mistake, not a bug: no details section
    assert len(_heatmaps(_overlay(at))) == 3  # chelsea still explained


def test_upload_several_images_and_switch() -> None:
    from skimage import data

    at = _app()
    files = [("coffee.png", _png(data.coffee()), "image/png"), ("rocket.png", _png(data.rocket()), "image/png")]
    at.file_uploader(key="uploads").set_value(files).run()
    _no_failure(at)
    switcher = at.get("button_group")[0]
    assert list(switcher.options) == ["coffee.png", "rocket.png", "chelsea"]
    # What just arrived is shown at once: the first of the uploads.
    assert at.session_state["current_image"] == "coffee.png"
    picked = at.multiselect(key="class_picker").value
    assert 967 in picked, picked  # espresso
    at.session_state["current_image"] = "rocket.png"
    at.run()
    _no_failure(at)
    assert at.session_state["current_image"] == "rocket.png"  # a rerun with nothing new keeps the user's choice
    # Back to the cat: its maps come from the cache.
    at.session_state["current_image"] = "chelsea"
    at.run()
    assert any("nothing was computed" in c for c in _captions(at))
    # Switching a sample on shows it.
    at.pills(key="samples").set_value(["chelsea", "astronaut"]).run()
    _no_failure(at)
    assert at.session_state["current_image"] == "astronaut"


def test_url_opens_a_shared_view() -> None:
    at = _app(layer="_blocks.15", method="gradcam,hirescam", classes="281,1", k="2")
    _no_failure(at)
    assert not at.error
    assert not at.warning
    at.toggle(key="dbg_open").set_value(True).run()
    # _blocks.15 ends in BatchNorm with no activation: the diagnosis says so once, above its four cards,
    # and each card points to it instead of repeating it.
    # Goldfish (1) is far down this photo's ranking: its two cards (one per method) say so first.
    assert [w.value.split(".")[0].split(":")[0] for w in at.warning] == [
        "**Signed activations", "**Not what the model predicts", "**Not what the model predicts"]
    assert sum("Layer notes above apply: pre activation" in c for c in _captions(at)) == 4
    assert at.multiselect(key="class_picker").value == [281, 1]
    figs = _figures(at)
    assert {"overlay_gradcam_0", "overlay_hirescam_0"} <= set(figs)
    assert len(_heatmaps(figs["overlay_hirescam_0"])) == 4
    assert at.query_params["layer"] == "_blocks.15"
    assert at.number_input(key="top_k").value == 2
    at.button(key="back_to_recommended").click().run()
    assert at.query_params["layer"] == "_head_act"
    assert "back_to_recommended" not in [b.key for b in at.button]


def test_a_method_the_layer_cannot_take_is_a_message_and_the_others_show() -> None:
    at = _app(layer="_blocks.15", method="cam,gradcam")
    _no_failure(at)
    messages = [e.value for e in at.error]
    assert any(m.startswith("CAM at this layer") and "gradcam" in m for m in messages), messages
    figs = _figures(at)
    assert "overlay_cam_0" not in figs
    assert len(_heatmaps(figs["overlay_gradcam_0"])) == 6
    at.run()  # the failure is remembered: nothing is recomputed
    assert any("nothing was computed" in c for c in _captions(at))


def test_unknown_layer_in_url_falls_back_to_recommended() -> None:
    at = _app(layer="no.such.layer")
    _no_failure(at)
    assert any("no.such.layer" in w.value for w in at.warning)
    assert at.query_params["layer"] == "_head_act"


def test_torchvision_offline_falls_back_to_untrained_and_says_so() -> None:
    at = _app()
    at.radio(key="model_source").set_value("torchvision").run()  # resnet50, pretrained: not downloadable here
    _no_failure(at)
    warnings = " ".join(w.value for w in at.warning)
    assert "cannot be downloaded" in warnings and "is now off" in warnings
    assert "--weights" not in warnings  # page words, not CLI words
    assert at.toggle(key="tv_pretrained").value is False  # the toggle says what is shown
    assert at.query_params["weights"] == "none"
    at.selectbox(key="tv_name").set_value("mobilenet_v3_small").run()
    _no_failure(at)
    assert "untrained" in " ".join(w.value for w in at.warning).lower()
    assert len(_heatmaps(_overlay(at))) == 6
    assert at.query_params["model"] == "mobilenet_v3_small"


def test_factory_model_with_import_path(seed_net_dir: Path) -> None:
    at = _app()
    at.radio(key="model_source").set_value("factory").run()
    at.text_input(key="factory_path").input(str(seed_net_dir)).run()
    at.text_input(key="factory_spec").input("seed_net:build").run()
    _no_failure(at)
    assert not at.error, [e.value for e in at.error]
    assert at.number_input(key="top_k").value == 3  # the seed net has 3 classes
    assert sorted(at.multiselect(key="class_picker").value) == [0, 1, 2]
    assert "model" not in at.query_params  # a factory cannot travel in a URL


def test_factory_import_error_is_a_message() -> None:
    at = _app()
    at.radio(key="model_source").set_value("factory").run()
    at.text_input(key="factory_spec").input("no_such_module_xyz:build").run()
    _no_failure(at)
    assert any("no_such_module_xyz" in e.value for e in at.error)


def test_pickled_model_needs_explicit_trust(tmp_path: Path) -> None:
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3)
    )
    path = tmp_path / "whole.pt"
    torch.save(net, path)
    at = _app()
    at.radio(key="model_source").set_value("checkpoint").run()
    at.file_uploader(key="ckpt_file").set_value(("whole.pt", path.read_bytes(), "application/octet-stream")).run()
    _no_failure(at)
    assert any("Trust this checkpoint" in e.value for e in at.error)
    at.checkbox(key="ckpt_trust").check().run()
    _no_failure(at)
    assert not at.error, [e.value for e in at.error]
    assert len(_heatmaps(_overlay(at))) == 3  # a ReLU output: the ReLU'd view alone


def test_exports_are_well_formed() -> None:
    from cam_core.render import overlay
    from dashboard.display import Display
    from dashboard.views.image import exports

    rng = np.random.default_rng(0)
    bg = rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)
    up = {("gradcam", 2): rng.standard_normal((8, 8)).astype(np.float32)}
    raw = {("gradcam", 2): rng.standard_normal((2, 2)).astype(np.float32)}
    names = ["a", "b", "c/d"]
    logits = np.array([0.0, 1.0, 2.0], dtype=np.float32)
    probs = np.exp(logits) / np.exp(logits).sum()
    blob = exports.maps_npz(
        logits=logits, probs=probs, class_ids=[2], class_names=names, layer="l", methods=["gradcam"], raw=raw, up=up
    )
    npz = np.load(io.BytesIO(blob))
    assert npz["maps_gradcam"].shape == (1, 2, 2) and npz["up_gradcam"].dtype == np.float32
    assert npz["class_names"].tolist() == ["c/d"] and str(npz["layer"]) == "l"
    payload = json.loads(exports.scores_json(names, logits, probs, [2], meta={"layer": "l"}))
    assert payload["scores"][0] == {
        "rank": 1,
        "class_id": 2,
        "class_name": "c/d",
        "prob": pytest.approx(probs[2]),
        "logit": 2.0,
        "selected": True,
    }
    assert (
        exports.scores_csv(names, logits, probs, [2]).splitlines()[0] == "rank,class_id,class_name,prob,logit,selected"
    )
    display = Display(views=("relu", "signed"), cmap="inferno", signed_cmap="RdBu", opacity=0.5)
    meta = {"model": "m (ImageNet)", "pretrained": True, "fit": "whole", "layer": "l"}
    zipped = exports.overlays_zip(bg, up, names, stem="x", display=display, meta=meta)
    with zipfile.ZipFile(io.BytesIO(zipped)) as zf:
        assert sorted(zf.namelist()) == ["meta.json", "x_gradcam_2_c_d_relu.png", "x_gradcam_2_c_d_signed.png"]
        png = Image.open(io.BytesIO(zf.read("x_gradcam_2_c_d_relu.png")))
        assert png.size == (8, 8)
        assert (png.text["model"], png.text["fit"], png.text["class"], png.text["view"]) == (
            "m (ImageNet)", "whole", "c/d (2)", "relu")
        assert json.loads(zf.read("meta.json"))["pretrained"] is True
        # The PNG is the screen's picture: the display's colormap and opacity, not defaults.
        expected = overlay(bg, up[("gradcam", 2)], view="relu", cmap="inferno", alpha=0.5)
        np.testing.assert_array_equal(np.asarray(png.convert("RGB")), expected)
    assert json.loads(str(np.load(io.BytesIO(exports.maps_npz(
        logits=logits, probs=probs, class_ids=[2], class_names=names, layer="l", methods=["gradcam"], raw=raw, up=up,
        meta=meta)))["meta"]))["fit"] == "whole"
