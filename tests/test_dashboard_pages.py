"""The multipage shell and the Fit choice, driven headless with AppTest (no browser)."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from tests.test_dashboard_app import _app as open_app


def _app(**query: str) -> AppTest:
    """The app run once with ``query`` as the URL's parameters; no exception on the page."""
    at = open_app(**query)
    assert not at.exception, [e.value for e in at.exception]
    return at


def _overlay(at: AppTest) -> dict:
    return next(json.loads(el.proto.spec) for el in at.get("plotly_chart") if el.key == "overlay_gradcam_0")


def _image_width(fig: dict) -> float:
    return fig["layout"]["xaxis"]["range"][1] + 0.5


def _array(typed: dict) -> np.ndarray:
    """A Plotly typed array (base64 data, dtype, shape) as NumPy."""
    values = np.frombuffer(base64.b64decode(typed["bdata"]), dtype=typed["dtype"])
    return values.reshape([int(v) for v in typed["shape"].split(",")]) if "shape" in typed else values


def _top_prob(at: AppTest) -> float:
    scores = next(json.loads(el.proto.spec) for el in at.get("plotly_chart") if el.key.startswith("scores_"))
    return float(_array(scores["data"][0]["x"]).max())


def test_the_image_page_is_the_root_and_the_model_is_shared() -> None:
    at = _app()
    assert at.radio(key="model_source").value == "default"  # drawn by the shell, before the page
    assert at.segmented_control(key="fit").value == "whole"  # Lite0 takes any size: nothing is cropped
    assert _image_width(_overlay(at)) == 337  # chelsea is 451×300: 224 × 451/300 = 337
    assert "fit" not in at.query_params  # the model's default fit is not written out


def test_the_fit_changes_the_input_size_and_the_scores() -> None:
    at = _app()
    whole = _top_prob(at)
    at.segmented_control(key="fit").set_value("crop").run()
    assert not at.exception
    assert _image_width(_overlay(at)) == 224
    crop = _top_prob(at)
    assert abs(whole - crop) > 0.01  # Egyptian cat 45% whole, 38% centre-cropped
    assert at.query_params["fit"] == "crop"
    assert any("centre crop: 300×300 of the 451×300 image" in c.value for c in at.caption)


def test_a_link_with_a_fit_opens_that_fit() -> None:
    at = _app(fit="squash", classes="285")
    assert at.segmented_control(key="fit").value == "squash"
    assert at.multiselect(key="class_picker").value == [285]
    assert _image_width(_overlay(at)) == 224


def test_a_letterboxed_map_is_zero_in_the_pad() -> None:
    at = _app(fit="letterbox")
    fig = _overlay(at)
    heat = next(t for t in fig["data"] if t["type"] == "heatmap")
    z = _array(heat["z"])
    # chelsea (451×300) letterboxed into 224²: the photo is 224×149 at rows 37…185 (75 rows of pad).
    step, first = heat["dy"], heat["y0"]
    rows = first + step * np.arange(z.shape[0])
    pad = (rows < 37) | (rows >= 37 + 149)
    assert pad.sum() >= 70 // step
    assert np.abs(z[pad]).max() == 0
    assert np.abs(z[~pad]).max() > 0


@pytest.mark.parametrize("fit", ["whole", "crop"])
def test_old_links_still_open_the_same_view_on_the_root(fit: str) -> None:
    """A link shared before the multipage app (model, layer, method, classes, image, k) opens that view on /."""
    at = _app(model="efficientnet_lite0", layer="_blocks.15", method="gradcam", classes="281,285", image="coffee",
              k="2", fit=fit)
    assert at.pills(key="samples").value == ["coffee"]
    assert at.multiselect(key="class_picker").value == [281, 285]
    assert at.query_params["layer"] == "_blocks.15"
    assert at.number_input(key="top_k").value == 2


def test_every_run_starts_with_the_same_hidden_plotly_chart() -> None:
    """The preload chart (so the browser loads Plotly while the maps are computed) is there on every run,
    before the page's own charts, and shows nothing of the user's: the same spec each time."""
    at = _app()
    first = at.get("plotly_chart")[0]
    assert first.key == "plotly_preload_chart"
    spec = json.loads(first.proto.spec)
    assert sorted(t["type"] for t in spec["data"]) == ["heatmap", "image"]
    assert not _array(spec["data"][1]["z"]).any()  # an 8×8 map of zeros
    at.run()
    assert at.get("plotly_chart")[0].key == "plotly_preload_chart"
    assert at.get("plotly_chart")[0].proto.spec == first.proto.spec
