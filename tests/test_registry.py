"""The model-source registry: a new source is one declaration, and load_model, lookup and help all see it.

A toy source registered from the test loads by spec through ``cam_core.load_model``; every built-in
source is found for its own spec forms, says honestly whether it carries code, and asks only for
things ``load_model`` takes.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator

import pytest
import torch

import cam_core
from cam_core.models.built import Built, imagenet_preprocess
from cam_core.models.load import CodeNotAllowed, UnknownModel
from cam_core.models.registry import Ask, ModelRequest, ModelSource
from cam_core.models.sources import (
    BUILT_IN,
    get_source,
    register,
    registered_sources,
    source_for,
    spec_forms,
    unregister,
)
from tests.tiny import gapnet

CALLS: list[ModelRequest] = []


def _load_toy(request: ModelRequest) -> Built:
    CALLS.append(request)
    classes = int(request.spec.removeprefix("toy:"))
    return Built(
        module=gapnet(classes=classes),
        name=f"toy with {classes} classes",
        pretrained=True,
        preprocess=imagenet_preprocess(64, 64),
        class_names=[f"toy {i}" for i in range(classes)],
        recommended_layer="features",
    )


TOY = ModelSource(
    key="toy",
    label="Toy model",
    form="'toy:CLASSES'",
    code_bearing=False,
    load=_load_toy,
    asks=(Ask("spec", "text", "Classes", required=True),),
    prefix="toy:",
)


@pytest.fixture
def toy() -> Iterator[ModelSource]:
    CALLS.clear()
    register(TOY)
    yield TOY
    unregister(TOY.key)


def test_a_source_registered_from_outside_loads_by_spec(toy):
    model = cam_core.load_model("toy:3", weights=None)
    assert model.class_names == ["toy 0", "toy 1", "toy 2"]
    assert model.name == "toy with 3 classes" and model.input_size == (64, 64)
    assert model.recommended_layer == "features"
    assert [ModelRequest(spec="toy:3", weights=None)] == CALLS
    assert registered_sources()[-1] is toy and get_source("toy") is toy
    assert source_for("toy:3") is toy  # the prefix wins over the shape of a factory path
    assert "'toy:CLASSES'" in spec_forms()
    res = cam_core.explain(model, torch.randn(1, 3, 64, 64), layer="features", classes=[1], methods=["gradcam"])
    assert res.maps["gradcam"].shape[:2] == (1, 1)


def test_an_unregistered_source_is_gone(toy):
    unregister("toy")
    try:
        assert toy not in registered_sources()
        with pytest.raises(KeyError, match="no model source 'toy'"):
            get_source("toy")
        assert source_for("toy:3") is None
    finally:
        register(toy)


def test_a_code_bearing_source_is_refused_where_code_is_not_allowed(toy):
    register(ModelSource(**{**vars(TOY), "code_bearing": True}))
    with pytest.raises(CodeNotAllowed, match="not allowed here"):
        cam_core.load_model("toy:3", allow_code=False)
    assert not CALLS


def test_registering_a_known_key_replaces_it_in_place(toy):
    order = [s.key for s in registered_sources()]
    register(ModelSource(**{**vars(TOY), "label": "Another toy"}))
    assert [s.key for s in registered_sources()] == order
    assert get_source("toy").label == "Another toy"


@pytest.mark.parametrize(
    ("spec", "key"),
    [
        ("efficientnet_lite0", "default"),
        ("EfficientNet-Lite0", "default"),
        ("resnet18", "torchvision"),
        ("r3d_18", "torchvision"),
        ("timm:resnet18", "timm"),
        ("hf:some/folder", "hf"),
        ("model.PT2", "exported"),
        ("weights.safetensors", "state_dict"),
        ("weights.pth", "state_dict"),
        ("my_pkg.nets:build", "factory"),
    ],
)
def test_each_spec_form_finds_its_source(spec, key):
    assert source_for(spec).key == key


def test_a_torchscript_file_is_told_by_its_contents(tmp_path):
    path = tmp_path / "scripted.pt"
    torch.jit.save(torch.jit.script(gapnet()), path)
    assert source_for(path).key == "torchscript"
    torch.save(gapnet().state_dict(), tmp_path / "state.pt")
    assert source_for(tmp_path / "state.pt").key == "state_dict"


def test_no_source_for_nonsense_is_one_line_with_the_forms():
    assert source_for("no_such_model") is None
    with pytest.raises(UnknownModel) as info:
        cam_core.load_model("no_such_model")
    assert "\n" not in str(info.value) and "timm:NAME" in str(info.value)


def test_built_in_sources_declare_code_and_what_a_page_asks():
    code = {s.key for s in BUILT_IN if s.code_bearing}
    assert code == {"exported", "torchscript", "factory", "pickle"}
    assert [s.key for s in registered_sources()[: len(BUILT_IN)]] == [s.key for s in BUILT_IN]
    arguments = set(inspect.signature(cam_core.load_model).parameters)
    for source in BUILT_IN:
        assert source.asks and source.asks[0].field == "spec" and source.asks[0].required, source.key
        assert {ask.field for ask in source.asks} <= arguments, source.key
        assert all(ask.kind in ("text", "choice", "file", "files", "flag") for ask in source.asks)
    trusting = {s.key for s in BUILT_IN if any(ask.field == "trust_checkpoint" for ask in s.asks)}
    assert trusting == {"exported", "factory", "pickle", "state_dict"}  # a .pt may hold a pickled module


def test_a_file_is_read_as_a_file_whatever_its_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "resnet18").write_bytes(b"not a model name here")
    assert source_for("resnet18").key == "state_dict"
    assert source_for("resnet50").key == "torchvision"
