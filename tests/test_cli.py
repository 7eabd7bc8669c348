"""The command-line contract: files, keys, shapes, and one-line errors with exit status 2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cam_core.cli import main

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def photo(tmp_path_factory) -> Path:
    from skimage import data

    path = tmp_path_factory.mktemp("img") / "cat.jpg"
    Image.fromarray(data.chelsea()).save(path)
    return path


def test_explain_writes_the_contract(photo, tmp_path):
    out = tmp_path / "out"
    rc = main([
        "explain", "--model", "resnet18", "--weights", "none", "--image", str(photo), "--classes", "top3",
        "--method", "gradcam", "--method", "hirescam", "--out", str(out),
    ])
    assert rc == 0
    z = np.load(out / "cat.npz")
    assert z["logits"].shape == (1000,) and z["probs"].shape == (1000,)
    np.testing.assert_allclose(z["probs"].sum(), 1.0, rtol=1e-5)
    assert z["class_ids"].shape == (3,) and z["class_names"].shape == (3,)
    assert list(z["class_ids"]) == list(np.argsort(-z["logits"])[:3])
    assert str(z["layer"]) == "layer4"
    # The whole 451×300 photo (resnet18 takes any size): short side 224, long side 451·224/300 = 337, layer4 7×11.
    for m in ("gradcam", "hirescam"):
        assert z[f"maps_{m}"].shape == (3, 7, 11) and z[f"maps_{m}"].dtype == np.float32
        assert z[f"up_{m}"].shape == (3, 224, 337)
        for cid in z["class_ids"]:
            png = Image.open(out / f"cat_{m}_{cid}.png")
            assert png.size == (451, 300) and png.mode == "RGB"  # at the photo's own size
    # the overlay really carries the map: where the ReLU'd map is strongest the colour differs from the photo
    assert (np.asarray(Image.open(out / f"cat_gradcam_{z['class_ids'][0]}.png")).std() > 10)
    report = json.loads((out / "cat.json").read_text())
    assert (report["model"], report["pretrained"], report["fit"]) == ("resnet18 (random weights)", False, "whole")


def test_explain_fit_crop_gives_the_weights_square(photo, tmp_path):
    rc = main([
        "explain", "--model", "resnet18", "--weights", "none", "--image", str(photo), "--classes", "top1",
        "--fit", "crop", "--out", str(tmp_path),
    ])
    assert rc == 0
    z = np.load(tmp_path / "cat.npz")
    assert z["maps_gradcam"].shape == (1, 7, 7) and z["up_gradcam"].shape == (1, 224, 224)
    assert json.loads((tmp_path / "cat.json").read_text())["fit"] == "crop"


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--layer", "layer9"], "unknown layer 'layer9'"),
        (["--classes", "tabbby cat"], "unknown class 'tabbby cat'"),
        (["--method", "gradkam"], "unknown method 'gradkam'; choose from: cam, gradcam"),
        (["--model", "resnet5O"], "resnet5O"),
    ],
)
def test_user_mistakes_exit_2_with_one_line(photo, tmp_path, args, needle):
    base = ["-m", "cam_core", "explain", "--model", "resnet18", "--weights", "none", "--image", str(photo)]
    proc = subprocess.run(
        [sys.executable, *base, *args, "--out", str(tmp_path)], capture_output=True, text=True, cwd=REPO, timeout=300
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert needle in lines[0] and "Traceback" not in proc.stderr


def test_unreadable_image_exits_2(tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image at all")
    rc = main(["explain", "--model", "resnet18", "--weights", "none", "--image", str(bad), "--out", str(tmp_path)])
    assert rc == 2
