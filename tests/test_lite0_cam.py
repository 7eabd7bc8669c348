"""The offline default explains a real photo: Grad-CAM of the top class lands on the cat, wherever it is.

The chelsea photo (451×300) is pasted onto scikit-image's grass texture (a real, busy background) at three
places; the cat's box is known exactly, so "on the cat, not the background" is measured, not eyeballed.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

import cam_core
from cam_core.io.samples import load_sample

CANVAS = 640


@pytest.mark.parametrize("corner", [(0, 340), (189, 0), (0, 0)])
def test_gradcam_of_top_class_peaks_on_the_cat(lite0, corner):
    from skimage import data

    canvas = Image.fromarray(data.grass()).convert("RGB").resize((CANVAS, CANVAS))
    cat = load_sample("chelsea")
    canvas.paste(cat, corner)
    res = cam_core.explain(lite0, lite0.preprocess(canvas)[None], classes="top1", methods=["gradcam"])
    assert res.class_names[0][0] in {"Egyptian cat", "tabby", "tiger cat"}

    up = res.upsampled("gradcam")[0, 0].numpy()
    s = up.shape[0] / CANVAS  # square canvas: resized, nothing cropped
    x0, y0 = round(corner[0] * s), round(corner[1] * s)
    x1, y1 = round((corner[0] + cat.width) * s), round((corner[1] + cat.height) * s)
    inside = np.zeros(up.shape, bool)
    inside[y0:y1, x0:x1] = True

    row, col = np.unravel_index(up.argmax(), up.shape)
    assert inside[row, col], f"peak at {(row, col)} outside the cat's box {(x0, y0, x1, y1)}"
    positive = np.maximum(up, 0)
    share = positive[inside].sum() / positive.sum()
    assert inside.mean() < 0.35 and share > 0.75  # a third of the frame holds three quarters of the evidence
