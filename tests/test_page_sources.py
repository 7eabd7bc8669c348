"""The sidebar's model sources come from cam_core's registry: a source registered from a test (one declaration,
no change to the dashboard) is offered in the sidebar, asks what it declares, loads, explains and travels in a
link; one that carries code is never offered to visitors of a shared server. The built-in sources keep their
specs, links and load arguments."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from cam_core.models.built import Built, imagenet_preprocess
from cam_core.models.registry import Ask, ModelRequest, ModelSource
from cam_core.models.sources import register, unregister
from cam_core.models.sources.asks import WEIGHTS
from dashboard.model import ModelSpec, model_args
from dashboard.page_sources import page_sources
from tests.tiny import gapnet

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "dashboard" / "app.py")
TIMEOUT = 180
BUILT_IN = ["default", "torchvision", "timm", "hf", "checkpoint", "factory"]


def _load_toy(request: ModelRequest) -> Built:
    classes = int(request.spec.removeprefix("toy:"))
    return Built(
        module=gapnet(classes=classes),
        name=f"toy with {classes} classes",
        pretrained=request.weights is not None,
        preprocess=imagenet_preprocess(64, 64),
        class_names=[f"toy {i}" for i in range(classes)],
        recommended_layer="features",
    )


TOY = ModelSource(
    key="toy", label="Toy models", form="'toy:CLASSES'", code_bearing=False, load=_load_toy,
    asks=(Ask("spec", "text", "Number of classes", required=True), WEIGHTS), prefix="toy:",
)
CODE_TOY = ModelSource(
    key="code_toy", label="Toy plug-in running code", form="'codetoy:NAME'", code_bearing=True, load=_load_toy,
    asks=(Ask("spec", "text", "Name", required=True),), prefix="codetoy:",
)


@pytest.fixture
def toys() -> Iterator[None]:
    register(TOY)
    register(CODE_TOY)
    yield
    unregister(TOY.key)
    unregister(CODE_TOY.key)


def _ok(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def test_the_sidebar_offers_the_built_in_sources_then_every_other_registered_one(toys) -> None:
    assert [e.key for e in page_sources(trusted=True)] == [*BUILT_IN, "toy", "code_toy"]
    shared = page_sources(trusted=False)
    assert [e.key for e in shared] == ["default", "torchvision", "timm", "hf", "checkpoint", "toy"]
    checkpoint = next(e for e in shared if e.key == "checkpoint")  # data-only state dicts among code formats
    assert checkpoint.shown_label(False) == "Upload weights" and checkpoint.shown_label(True) == "Upload a checkpoint"


def test_a_registered_source_is_chosen_loaded_and_shared_by_link_in_the_page(toys, monkeypatch) -> None:
    monkeypatch.delenv("CAMDASH_TRUST_VISITORS", raising=False)
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    radio = at.radio(key="model_source")
    assert radio.options[-2:] == ["Toy models", "Toy plug-in running code"]
    radio.set_value("toy").run()
    assert any("fill in Number of classes" in i.value for i in at.info)  # asked, nothing loaded yet
    at.text_input(key="src_toy_spec").input("4").run()
    _ok(at)
    picker = at.multiselect(key="class_picker")
    assert len(picker.options) == 4 and len(picker.value) == 3  # the top 3 of its 4 classes
    assert [el for el in at.get("plotly_chart") if el.key == "overlay_gradcam_0"]
    assert at.query_params["model"] == "toy:4"

    link = AppTest.from_file(APP, default_timeout=TIMEOUT)
    link.query_params["model"] = "toy:5"
    link.query_params["weights"] = "none"
    link.run()
    _ok(link)
    assert link.radio(key="model_source").value == "toy"
    assert link.text_input(key="src_toy_spec").value == "5"
    assert link.selectbox(key="src_toy_weights").value == "none"
    assert len(link.multiselect(key="class_picker").options) == 5


def test_a_source_that_carries_code_is_not_offered_to_visitors_nor_reached_by_link(toys, monkeypatch) -> None:
    monkeypatch.setenv("CAMDASH_TRUST_VISITORS", "no")
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.query_params["model"] = "codetoy:x"
    at.run()
    _ok(at)
    options = at.radio(key="model_source").options
    assert "Toy models" in options and "Toy plug-in running code" not in options
    assert at.radio(key="model_source").value == "default"


@pytest.mark.parametrize(
    ("spec", "text", "link", "checkpoint"),
    [
        (ModelSpec(), "efficientnet_lite0", ("efficientnet_lite0", None), None),
        (ModelSpec(source="torchvision", name="resnet18", weights=None), "resnet18", ("resnet18", "none"), None),
        (ModelSpec(source="torchvision", name="resnet18"), "resnet18", ("resnet18", None), None),
        (ModelSpec(source="timm", name="resnet10t", weights=None), "timm:resnet10t", ("timm:resnet10t", "none"), None),
        (ModelSpec(source="timm", name="resnet10t", weights=None, checkpoint="/u/w.pt"), "timm:resnet10t", None,
         "/u/w.pt"),
        (ModelSpec(source="hf", name="/srv/vit", weights=None), "hf:/srv/vit", None, None),
        (ModelSpec(source="checkpoint", name="w.pt", checkpoint="/u/w.pt", arch="resnet18"), "/u/w.pt", None, None),
        (ModelSpec(source="factory", name="pkg.mod:fn", checkpoint="/u/w.pt"), "pkg.mod:fn", None, "/u/w.pt"),
        (ModelSpec(source="pinned", name="resnet18", title="Demo", checkpoint="/op/w.pt"), "resnet18",
         ("pinned:Demo", None), "/op/w.pt"),
    ],
)
def test_the_built_in_sources_keep_their_specs_links_and_load_arguments(spec, text, link, checkpoint) -> None:
    assert spec.spec_text == text
    assert spec.url_model == link
    assert model_args(spec)["spec"] == text and model_args(spec)["checkpoint"] == checkpoint
