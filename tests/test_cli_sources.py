"""The command line with the new sources, methods and options: timm, hf:, --output, sigmoid, ROAD."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from cam_core.cli import main
from cam_core.engine.methods import METHODS
from tests.tiny import save_tiny_vit

transformers = pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def small_photo(tmp_path_factory):
    path = tmp_path_factory.mktemp("img") / "small.png"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(path)
    return path


@pytest.fixture(scope="module")
def hf_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hf")
    save_tiny_vit(folder)
    return folder


def test_explain_an_hf_folder_with_new_methods_and_sigmoid_scores(hf_folder, small_photo, tmp_path, capsys):
    rc = main([
        "explain", "--model", f"hf:{hf_folder}", "--image", str(small_photo), "--classes", "top2",
        "--method", "legrad", "--method", "finercam", "--method", "gradcam", "--probs", "sigmoid",
        "--aug-smooth", "--out", str(tmp_path),
    ])
    assert rc == 0
    z = np.load(tmp_path / "small.npz")
    assert z["maps_legrad"].shape == (2, 4, 4) and z["maps_finercam"].shape == (2, 4, 4)
    np.testing.assert_allclose(z["probs"], 1 / (1 + np.exp(-z["logits"])), rtol=1e-5)
    assert set(z["class_names"]) <= {"cat", "dog", "bird"}
    assert str(z["layer"]) == "vit.layers.1.layernorm_before"
    assert "small.npz" in capsys.readouterr().out


def test_layers_of_a_timm_model(capsys):
    assert main(["layers", "--model", "timm:regnetx_002", "--weights", "none", "--input-size", "64"]) == 0
    out = capsys.readouterr().out
    assert "timm:regnetx_002 (random weights)" in out
    assert any(line.lstrip().startswith("s4 ") and "★" in line for line in out.splitlines())


def test_method_list_names_every_method_with_its_cost(capsys, small_photo, tmp_path):
    assert main(["explain", "--image", str(small_photo), "--method", "list", "--out", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == list(METHODS)
    assert any("one forward per channel" in line for line in lines)


def test_trust_writes_road_beside_deletion_insertion(small_photo, tmp_path, capsys):
    rc = main([
        "trust", "--model", "tests.tiny:gapnet", "--input-size", "16", "--image", str(small_photo),
        "--randomise-units", "0", "--steps", "4", "--out", str(tmp_path),
    ])
    assert rc == 0
    data = json.loads((tmp_path / "small_trust.json").read_text())
    assert len(data["road"]["morf"]) == 9 and data["road"]["random_combined"] is not None
    assert "road_lerf" in np.load(tmp_path / "small_trust.npz")
    assert "ROAD" in capsys.readouterr().out


def test_output_that_names_nothing_is_one_line(small_photo, tmp_path, capsys):
    rc = main([
        "explain", "--model", "tests.tiny:gapnet", "--input-size", "16", "--output", "logits",
        "--image", str(small_photo), "--out", str(tmp_path),
    ])
    assert rc == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "returns a tensor" in err[0]
