"""Overlay exports at the photo's own size: the maps carried back through the fit (the inverse of the placement),
the heat where the map's peak lies in the photo's coordinates (worked out by hand), nothing where the model saw
nothing (outside a centre crop); the CLI's PNGs, its ``--colorbar`` and ``--label``; the page's zip."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cam_core.cli import main
from cam_core.models.preprocess import Placement
from cam_core.render import maps_on_image, photo_overlay

TESTS = str(Path(__file__).resolve().parent)
# RedNet (tests/clips.py): Grad-CAM of class 0 is relu(r - (g + b) / 2), up to a positive factor, at the input's
# resolution; pixels in [0, 1], no normalisation. Inferno: its pale-yellow peak stands out on red.
RED = ["--model", "clips:RedNet", "--import-path", TESTS, "--mean", "0", "0", "0", "--std", "1", "1", "1",
       "--input-size", "32", "--classes", "0", "--cmap", "inferno", "--labels"]


def _photo(path: Path) -> Path:
    """451×300 grey, a red square at x 300…339, y 120…159 (inside the centre crop, x 75.5…375.5) and another at
    x 10…39 (outside it)."""
    rgb = np.full((300, 451, 3), 90, np.uint8)
    rgb[120:160, 300:340] = (255, 0, 0)
    rgb[120:160, 10:40] = (255, 0, 0)
    Image.fromarray(rgb).save(path)
    return path


def test_maps_go_back_to_the_photo_through_the_crop() -> None:
    # A 451×300 photo centre-cropped to its middle 300×300 (x 75.5…375.5) at a 30×30 input: one input pixel is
    # 10×10 photo pixels. A map that is 1 at input pixel (row 12, col 20) only: photo x 75.5 + 200…210, y 120…130.
    place = Placement("crop", (30, 30), (0, 0, 30, 30), (75.5, 0.0, 375.5, 300.0))
    cam = np.zeros((1, 30, 30), np.float32)
    cam[0, 12, 20] = 1.0
    up = maps_on_image(cam, place, (451, 300))[0]
    assert up.shape == (300, 451)
    row, col = np.unravel_index(up.argmax(), up.shape)
    assert 120 <= row < 130 and 275 <= col < 286, (row, col)
    assert up[:, :75].max() == 0 and up[:, 376:].max() == 0  # the model never saw these columns


def test_cli_overlays_are_at_the_photos_size_with_the_heat_on_the_object(tmp_path) -> None:
    photo = _photo(tmp_path / "photo.png")
    labels = tmp_path / "labels.txt"
    labels.write_text("red thing\nnot red\n")
    out = tmp_path / "out"
    assert main(["explain", *RED, str(labels), "--fit", "crop", "--image", str(photo), "--out", str(out)]) == 0
    png = np.asarray(Image.open(out / "photo_gradcam_0.png").convert("RGB")).astype(float)
    assert png.shape == (300, 451, 3)  # the photo's size, not the model's 32×32
    src = np.asarray(Image.open(photo).convert("RGB")).astype(float)
    diff = np.abs(png - src).mean(axis=2)
    assert diff[125:155, 305:335].mean() > 40  # the heat on the square the model saw
    assert diff[:, :70].max() < 1  # none on the square outside the crop: the model never saw it
    assert diff[:100, 100:280].max() < 1  # nor on the grey


def test_cli_colorbar_and_label(tmp_path) -> None:
    photo = _photo(tmp_path / "photo.png")
    labels = tmp_path / "labels.txt"
    labels.write_text("red thing\nnot red\n")
    out = tmp_path / "out"
    assert main(["explain", *RED, str(labels), "--image", str(photo), "--colorbar", "--label", "--out", str(out)]) == 0
    png = np.asarray(Image.open(out / "photo_gradcam_0.png").convert("RGB"))
    assert png.shape[0] == 300 and png.shape[1] > 451  # the bar to the right
    assert (png[:, 451:] == 255).all(axis=2).mean() > 0.5  # on white
    plain = photo_overlay(np.asarray(Image.open(photo).convert("RGB")), np.zeros((300, 451), np.float32))
    assert not np.array_equal(png[:40, :200], plain[:40, :200])  # the label's box in the corner


def test_the_pages_zip_is_at_the_photos_size() -> None:
    import io
    import zipfile

    from dashboard.display import Display
    from dashboard.views.image.exports import overlays_zip

    photo = Image.new("RGB", (451, 300), (90, 90, 90))
    place = Placement("whole", (224, 337), (0, 0, 224, 337), (0.0, 0.0, 451.0, 300.0))
    cam = np.zeros((224, 337), np.float32)
    cam[100:120, 200:220] = 1.0
    data = overlays_zip(np.zeros((224, 337, 3), np.uint8), {("gradcam", 0): cam}, ["a"], stem="p",
                        display=Display(), photo=photo, place=place)
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        names = [n for n in zf.namelist() if n.endswith(".png")]
        assert names
        for name in names:
            assert Image.open(io.BytesIO(zf.read(name))).size == (451, 300)


@pytest.mark.parametrize("view", ["relu", "signed"])
def test_photo_overlay_without_extras_is_the_overlay(view) -> None:
    rgb = np.random.default_rng(0).integers(0, 255, (30, 40, 3), dtype=np.uint8)
    cam = np.random.default_rng(1).normal(size=(30, 40)).astype(np.float32)
    from cam_core.render import overlay

    np.testing.assert_array_equal(photo_overlay(rgb, cam, view=view), overlay(rgb, cam, view=view))
