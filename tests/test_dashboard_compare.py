"""The image page's comparison with a second model, driven with Streamlit's AppTest: off by default (the page
unchanged), a model against itself, a fine-tuned copy whose head swaps two classes (uploaded with its own class
names, one renamed), the URL round trip, and the access rules for model B."""

from __future__ import annotations

import base64
import io
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from streamlit.testing.v1 import AppTest

APP = str(Path(__file__).resolve().parents[1] / "dashboard" / "app.py")
TIMEOUT = 180
EGYPTIAN, TIGER, TABBY = 285, 282, 281


def _app(**query: str) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    for name, value in query.items():
        at.query_params[name] = value
    return at.run()


def _ok(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def _compare_figures(at: AppTest) -> dict[str, dict]:
    return {el.key: json.loads(el.proto.spec) for el in at.get("plotly_chart") if el.key.startswith("compare_")}


def _lines(at: AppTest) -> dict[str, str]:
    """The per-class summary lines, by class name."""
    found = {}
    for md in at.markdown:
        m = re.match(r"\*\*(.+?)\*\*", md.value)
        if m and ("map shift" in md.value or "not in model B" in md.value):
            found[m.group(1).replace("\\", "")] = md.value
    return found


def _heat(fig: dict) -> list[np.ndarray]:
    """The heatmaps' samples (Plotly sends them as base64 typed arrays)."""
    out = []
    for t in fig["data"]:
        if t["type"] == "heatmap":
            z = t["z"]
            shape = [int(n) for n in str(z["shape"]).split(",")]
            out.append(np.frombuffer(base64.b64decode(z["bdata"]), dtype=z["dtype"]).reshape(shape))
    return out


@pytest.fixture(scope="module")
def itself() -> AppTest:
    at = _app()
    _ok(at)
    assert not _compare_figures(at) and "model_b" not in at.query_params  # off: the page as it was
    at.toggle(key="compare_on").set_value(True).run()
    _ok(at)
    return at


def test_a_model_against_itself_did_not_move(itself: AppTest) -> None:
    at = itself
    lines = _lines(at)
    picked = at.multiselect(key="class_picker").value
    assert len(lines) == len(picked) == 3
    for line in lines.values():
        assert "map shift 0.00 (r = 1.00)" in line and "peak shift 0 px" in line and "(+0.0 pts)" in line, line
    assert any("same prediction" in md.value for md in at.markdown)
    figs = _compare_figures(at)
    assert set(figs) == {f"compare_{c}" for c in picked}
    for fig in figs.values():
        a, b, diff = _heat(fig)
        np.testing.assert_allclose(a, b, atol=1e-6)
        assert np.abs(diff).max() < 1e-5
    assert at.query_params["model_b"] == "efficientnet_lite0" and at.query_params["layer_b"] == "_head_act"


def test_url_round_trip(itself: AppTest) -> None:
    at = itself
    at.selectbox(key=next(s.key for s in at.selectbox if s.key.startswith("compare_layer_b_"))).set_value(
        "_blocks.10").run()
    _ok(at)
    assert at.query_params["layer_b"] == "_blocks.10"
    moved = _lines(at)
    assert all("map shift 0.00" not in line for line in moved.values())
    shared = {k: at.query_params[k] for k in ("model", "model_b", "layer_b", "classes", "image")}
    again = _app(**shared)  # a colleague opens the link
    _ok(again)
    assert again.toggle(key="compare_on").value
    layer_b = next(s for s in again.selectbox if s.key.startswith("compare_layer_b_"))
    assert layer_b.value == "_blocks.10"
    assert _lines(again) == moved


@pytest.fixture(scope="module")
def finetuned(tmp_path_factory, lite0) -> tuple[bytes, bytes]:
    """A state dict of the offline model with the head's rows for Egyptian cat and tiger cat swapped, and its class
    names with tabby renamed (so B has no class called tabby)."""
    state = {k: v.clone() for k, v in lite0.module.state_dict().items()}
    for name in ("_fc.weight", "_fc.bias"):
        state[name][[EGYPTIAN, TIGER]] = state[name][[TIGER, EGYPTIAN]].clone()
    buf = io.BytesIO()
    torch.save(state, buf)
    names = list(lite0.class_names)
    names[TABBY] = "striped house cat"
    return buf.getvalue(), "\n".join(names).encode()


def test_a_finetuned_checkpoint_with_two_classes_swapped(itself: AppTest, finetuned, lite0) -> None:
    at = itself
    weights, labels = finetuned
    at.radio(key="b_model_source").set_value("checkpoint").run()
    at.selectbox(key="b_ckpt_arch").set_value("efficientnet_lite0")
    at.file_uploader(key="b_ckpt_labels").set_value(("names.txt", labels, "text/plain"))
    at.file_uploader(key="b_ckpt_file").set_value(("finetuned.pt", weights, "application/octet-stream")).run()
    _ok(at)
    assert at.multiselect(key="class_picker").value == [EGYPTIAN, TIGER, TABBY]
    lines = _lines(at)
    assert "not in model B" in lines["tabby"]
    # B's Egyptian cat is A's tiger cat: B predicts tiger cat with A's Egyptian cat's probability.
    (top,) = [md.value for md in at.markdown if md.value.startswith("Top class")]
    assert "A says **Egyptian cat** (45.4%), B says **tiger cat** (45.4%)" in top and "prediction changed" in top
    assert "45.4% → 16.3% (-29.1 pts)" in lines["Egyptian cat"]
    assert "16.3% → 45.4% (+29.1 pts)" in lines["tiger cat"]
    assert "map shift 0.00" not in lines["Egyptian cat"]
    assert set(_compare_figures(at)) == {f"compare_{EGYPTIAN}", f"compare_{TIGER}"}  # none for the missing class
    assert "model_b" not in at.query_params and "layer_b" not in at.query_params  # an upload cannot travel


def test_visitors_of_a_shared_server_get_no_code_for_model_b(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CAMDASH_TRUST_VISITORS", "no")
    at = _app(model_b="tests.tiny:gapnet")  # a link to a factory: ignored, B stays the offline default
    _ok(at)
    assert at.toggle(key="compare_on").value
    assert at.radio(key="b_model_source").value == "default"
    assert "factory" not in at.radio(key="b_model_source").options
    assert at.query_params["model_b"] == "efficientnet_lite0"


def test_a_demo_with_pinned_models_offers_only_those_for_model_b(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    models = tmp_path / "demo.toml"
    models.write_text('[[model]]\ntitle = "Cat spotter"\nmodel = "efficientnet_lite0"\n\n'
                      '[[model]]\ntitle = "Tiny"\nmodel = "tests.tiny:gapnet"\n'
                      f'import_path = "{Path(__file__).resolve().parents[1]}"\n')
    monkeypatch.setenv("CAMDASH_TRUST_VISITORS", "no")
    monkeypatch.setenv("CAMDASH_MODELS", str(models))
    at = _app(model_b="pinned:Tiny")
    _ok(at)
    assert at.selectbox(key="b_pinned_model").options == ["Cat spotter", "Tiny"]
    assert at.selectbox(key="b_pinned_model").value == "Tiny"  # the link's model B, among the operator's
    assert not [r for r in at.radio if r.key == "b_model_source"]
    assert at.query_params["model_b"] == "pinned:Tiny"
    lines = _lines(at)  # the tiny net's classes are not ImageNet's: every class of A is missing from B
    assert lines and all("not in model B" in line for line in lines.values())
