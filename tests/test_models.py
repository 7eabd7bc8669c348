"""Model loading: the offline default, torchvision names, checkpoint files, factories, labels, offline weights."""

from __future__ import annotations

import json
import time
from collections import OrderedDict
from urllib.error import URLError

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

import cam_core.models.load as models
import cam_core.models.sources.torchvision_models as torchvision_source
from cam_core.errors import CamError
from cam_core.io.samples import load_sample
from cam_core.models import (
    CheckpointError,
    UnknownModel,
    UntrustedCheckpoint,
    WeightsUnavailable,
    efficientnet_lite,
    list_torchvision_models,
    load_model,
)

X = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(3))


def _resnet18(num_classes: int = 1000) -> nn.Module:
    torch.manual_seed(0)
    return torchvision.models.resnet18(weights=None, num_classes=num_classes).eval()


def _logits(module: nn.Module, x: torch.Tensor = X) -> torch.Tensor:
    with torch.no_grad():
        return module(x)


def _top5(model, image, fit=None) -> list[tuple[str, float]]:
    with torch.no_grad():
        probs = model.module(model.preprocess(image, fit)[None]).softmax(1)[0]
    values, indices = probs.topk(5)
    return [(model.class_names[i], round(v, 4)) for v, i in zip(values.tolist(), indices.tolist(), strict=True)]


# ------------------------------------------------------------------------------------------ Lite0


def test_lite0_recognises_the_sample_photos(lite0):
    # The weights' own recipe (centre crop): Lite0 splits its vote between the domestic-cat classes
    # (Egyptian cat 0.38, tiger cat 0.33, tabby 0.17) and is sure of the espresso.
    cat, coffee = _top5(lite0, load_sample("chelsea"), "crop"), _top5(lite0, load_sample("coffee"), "crop")
    print("chelsea", cat, "\ncoffee", coffee)
    assert cat[0][0] in {"Egyptian cat", "tabby"}
    assert {"Egyptian cat", "tabby"} <= {name for name, _ in cat[:3]}
    assert coffee[0][0] == "espresso"
    assert coffee[0][1] > 0.9
    # The whole photo (the default) gives the same top classes: the saucer and table edges cost confidence.
    cat, coffee = _top5(lite0, load_sample("chelsea")), _top5(lite0, load_sample("coffee"))
    assert cat[0][0] == "Egyptian cat" and coffee[0][0] == "espresso"
    assert 0.4 < coffee[0][1] < 0.9


def test_lite0_metadata(lite0):
    assert lite0.pretrained
    assert lite0.name == "EfficientNet-Lite0 (ImageNet)"
    assert lite0.input_size == (224, 224)
    assert lite0.mean == pytest.approx((127 / 255,) * 3)
    assert lite0.std == pytest.approx((128 / 255,) * 3)
    assert len(lite0.class_names) == lite0.num_classes == 1000
    assert lite0.class_names[285] == "Egyptian cat"
    assert lite0.recommended_layer == "_head_act"
    assert not lite0.module.training
    assert lite0.preprocess(load_sample("rocket"), "crop").shape == (3, 224, 224)
    # The whole short side is kept even by the crop (only the long side is cut) ...
    assert lite0.preprocess.resize_size == 224
    # ... and by default nothing is cut: the 640×427 photo the user explains, not its centre.
    assert lite0.fit == "whole" and lite0.fits == ("whole", "crop", "squash", "letterbox")
    assert lite0.preprocess(load_sample("rocket")).shape == (3, 224, 336)


def test_lite0_layout_matches_the_shipped_state_dict(lite0):
    shipped = torch.load(efficientnet_lite.weights_path(), map_location="cpu", weights_only=True)
    mine = lite0.module.state_dict()
    assert list(mine) == list(shipped)
    for key, tensor in shipped.items():
        assert torch.equal(mine[key], tensor), key
    named = dict(lite0.module.named_modules())
    assert isinstance(named["_head_act"], nn.ReLU6)
    assert isinstance(named["_blocks.15._project_conv"], nn.Conv2d)
    assert "_blocks.16" not in named
    activations = [m for m in lite0.module.modules() if isinstance(m, nn.ReLU6)]
    assert len(activations) == 1 + 1 + 15 * 2 + 1  # stem, block 0 (no expand), blocks 1-15, head
    assert not any(m.inplace for m in activations)


def test_lite0_head_act_is_the_pooled_feature_map(lite0):
    m = lite0.module
    x = lite0.preprocess(load_sample("coffee"), "crop")[None]
    with torch.no_grad():
        feats = m._head_act(m._bn1(m._conv_head(m._blocks(m._stem_act(m._bn0(m._conv_stem(x)))))))
        assert feats.shape == (1, 1280, 7, 7)
        torch.testing.assert_close(m._fc(feats.mean((2, 3))), m(x))


@pytest.mark.parametrize(
    ("size", "kernel", "stride"),
    [(224, 3, 2), (225, 3, 2), (56, 5, 2), (28, 5, 1), ((224, 299), 3, 2), ((75, 56), 5, 2), ((9, 10), 4, 1)],
)
@pytest.mark.parametrize("groups", [1, 4])
@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_same_padding_is_tensorflows(size, kernel, stride, groups, layout):
    # TensorFlow "SAME": output ceil(size / stride); total padding split with the extra row at the bottom/right.
    h, w = (size, size) if isinstance(size, int) else size
    conv = efficientnet_lite.SameConv2d(4, 8, kernel, stride=stride, groups=groups)
    conv.weight.data = conv.weight.data.contiguous(memory_format=layout)
    x = torch.randn(2, 4, h, w, generator=torch.Generator().manual_seed(0)).contiguous(memory_format=layout)
    pads = []
    for n in (w, h):  # F.pad's order: last dimension first
        total = max((-(-n // stride) - 1) * stride + kernel - n, 0)
        pads += [total // 2, total - total // 2]
    expected = F.conv2d(F.pad(x, pads), conv.weight, stride=stride, groups=groups)
    assert expected.shape[-2:] == (-(-h // stride), -(-w // stride))
    torch.testing.assert_close(conv(x), expected, rtol=1e-5, atol=1e-6)


def test_lite0_random_weights_are_flagged():
    model = load_model("efficientnet_lite0", weights="none")
    assert not model.pretrained
    assert "untrained" in model.notes[0]
    assert "random" in model.name


# ------------------------------------------------------------------------------------ torchvision


def test_torchvision_random_weights():
    model = load_model("resnet18", weights=None)
    assert not model.pretrained
    assert model.class_names[0] == "tench"
    assert model.input_size == (224, 224)
    assert model.mean == pytest.approx(models.IMAGENET_MEAN)
    assert "untrained" in model.notes[0]
    assert isinstance(model.module, torchvision.models.ResNet)


def test_list_torchvision_models():
    names = list_torchvision_models()
    assert {"resnet50", "vit_b_16", "efficientnet_b0", "convnext_tiny"} <= set(names)
    assert not any(n.startswith(("fasterrcnn", "deeplab", "raft", "r3d")) for n in names)


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """An empty torch hub cache and no network: any download attempt raises at once."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    attempts = []

    def no_network(*args, **kwargs):
        attempts.append(args)
        raise URLError("network is unreachable (test)")

    monkeypatch.setattr(torchvision_source, "urlopen", no_network)
    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    return attempts


def test_offline_weights_fail_fast(offline):
    start = time.perf_counter()
    with pytest.raises(WeightsUnavailable, match="--weights none") as info:
        load_model("resnet18")
    assert time.perf_counter() - start < 30  # generous: it must not wait for a network timeout
    assert offline, "the download path was never tried"
    assert "offline" in str(info.value)
    assert "\n" not in str(info.value)


def test_cached_weights_load_without_network(offline, tmp_path):
    weights = torchvision.models.ResNet18_Weights.IMAGENET1K_V1
    reference = _resnet18()
    cached = torchvision_source.hub_file(weights.url)
    cached.parent.mkdir(parents=True)
    torch.save(reference.state_dict(), cached)
    model = load_model("resnet18", weights="IMAGENET1K_V1")
    assert not offline
    assert model.pretrained
    assert model.name == "resnet18 (IMAGENET1K_V1)"
    torch.testing.assert_close(_logits(model.module), _logits(reference))
    image = load_sample("chelsea")
    torch.testing.assert_close(model.preprocess(image, "crop"), weights.transforms()(image))


def test_unknown_weights_name_lists_choices():
    with pytest.raises(CamError, match="IMAGENET1K_V2") as info:
        load_model("resnet50", weights="IMAGENET9K")
    assert "none" in str(info.value)


def test_unknown_spec_lists_valid_forms():
    with pytest.raises(UnknownModel, match="resnet50") as info:
        load_model("resnet5O")
    message = str(info.value)
    assert "efficientnet_lite0" in message
    assert "package.module:function" in message
    assert ".pt" in message


# ---------------------------------------------------------------------------------- checkpoint files


@pytest.mark.filterwarnings("ignore:`torch.jit:FutureWarning")
def test_torchscript_round_trip(tmp_path):
    reference = _resnet18()
    path = tmp_path / "scripted.pt"
    torch.jit.save(torch.jit.trace(reference, X[:1]), str(path))
    model = load_model(path)
    assert model.name == "scripted.pt (TorchScript)"
    assert model.class_names[:2] == ["class 0", "class 1"]
    assert any("TorchScript" in note for note in model.notes)
    torch.testing.assert_close(_logits(model.module), _logits(reference))


def test_state_dict_with_arch_infers_num_classes(tmp_path):
    reference = _resnet18(num_classes=10)
    path = tmp_path / "weights.pth"
    torch.save(reference.state_dict(), path)
    model = load_model(path, arch="resnet18")
    assert model.class_names == [f"class {i}" for i in range(10)]
    assert model.module.fc.out_features == 10
    assert any("preprocessing assumed" in note for note in model.notes)
    torch.testing.assert_close(_logits(model.module), _logits(reference))


@pytest.mark.parametrize(
    "wrap",
    [
        lambda sd: OrderedDict(("module." + k, v) for k, v in sd.items()),  # DataParallel
        lambda sd: {"state_dict": sd, "epoch": 3},
        lambda sd: {"model_state_dict": {"module." + k: v for k, v in sd.items()}, "optimizer": {}},
        lambda sd: {"model": sd},
    ],
    ids=["dataparallel", "state_dict", "model_state_dict+module", "model"],
)
def test_wrapped_state_dicts(tmp_path, wrap):
    reference = _resnet18(num_classes=7)
    path = tmp_path / "wrapped.ckpt"
    torch.save(wrap(reference.state_dict()), path)
    model = load_model(path, arch="resnet18")
    assert model.num_classes == 7
    torch.testing.assert_close(_logits(model.module), _logits(reference))


def test_state_dict_into_efficientnet_lite0_by_name(tmp_path):
    reference = efficientnet_lite.EfficientNetLite0(num_classes=5).eval()
    path = tmp_path / "lite.pt"
    torch.save(reference.state_dict(), path)
    model = load_model("efficientnet_lite0", checkpoint=path)
    assert model.num_classes == 5
    assert model.mean == pytest.approx(efficientnet_lite.MEAN)
    torch.testing.assert_close(_logits(model.module), _logits(reference))


def test_state_dict_without_arch_says_what_to_do(tmp_path):
    path = tmp_path / "weights.pt"
    torch.save(_resnet18().state_dict(), path)
    with pytest.raises(CheckpointError, match="--arch"):
        load_model(path)


def test_state_dict_that_does_not_fit(tmp_path):
    path = tmp_path / "weights.pt"
    torch.save(_resnet18().state_dict(), path)
    with pytest.raises(CheckpointError, match=r"does not fit resnet34 with 1000 classes: missing \d+ keys"):
        load_model(path, arch="resnet34")


def test_unreadable_checkpoint(tmp_path):
    path = tmp_path / "broken.pt"
    path.write_bytes(b"this is not a checkpoint")
    with pytest.raises(CheckpointError, match=r"broken\.pt is not a PyTorch checkpoint"):
        load_model(path, arch="resnet18")
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load_model(tmp_path / "missing.pth")


def test_pickled_module_needs_trust(tmp_path):
    reference = _resnet18()
    path = tmp_path / "full.pt"
    torch.save(reference, path)
    with pytest.raises(UntrustedCheckpoint) as info:
        load_model(path)
    message = str(info.value)
    assert "--trust-checkpoint" in message
    assert "runs code" in message
    model = load_model(path, trust_checkpoint=True)
    assert model.name == "full.pt (pickled module)"
    torch.testing.assert_close(_logits(model.module), _logits(reference))


# ------------------------------------------------------------------------------------------ factories


def test_seed_net_factory_with_checkpoint(tmp_path, seed_net_dir):
    import sys

    sys.path.insert(0, str(seed_net_dir))
    try:
        import seed_net
    finally:
        sys.path.remove(str(seed_net_dir))
    reference = seed_net.build()
    with torch.no_grad():  # differ from what build() returns, so the checkpoint must really be loaded
        for p in reference.parameters():
            p.mul_(1.5)
    path = tmp_path / "seed.pth"
    torch.save({"state_dict": reference.state_dict()}, path)
    model = load_model("seed_net:build", checkpoint=path, import_paths=[seed_net_dir])
    assert model.name == "seed_net:build + seed.pth"
    assert model.class_names == ["class 0", "class 1", "class 2"]
    torch.testing.assert_close(_logits(model.module), _logits(reference))
    assert "extractor.extractor.7.2.conv3" in dict(model.module.named_modules())



def test_a_user_models_assumed_preprocessing_keeps_the_whole_image(seed_net_dir):
    """Unknown recipe: ImageNet statistics at 224, the shorter side resized to 224: a 224² image arrives untouched."""
    from PIL import Image

    model = load_model("seed_net:build", import_paths=[seed_net_dir])
    assert any("preprocessing assumed" in n for n in model.notes)
    pixels = torch.randint(0, 256, (224, 224, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    x = model.preprocess(Image.fromarray(pixels.numpy()))
    mean, std = torch.tensor(models.IMAGENET_MEAN).view(3, 1, 1), torch.tensor(models.IMAGENET_STD).view(3, 1, 1)
    torch.testing.assert_close(x, (pixels.permute(2, 0, 1) / 255.0 - mean) / std)
    # A 448 × 300 image: the whole 300-pixel side is kept (resized to 224), only the long side is cropped.
    wide = Image.new("RGB", (448, 300), (255, 0, 0))
    wide.paste((0, 0, 255), (0, 0, 448, 2))  # a 2-pixel blue band along the top edge
    top = model.preprocess(wide)[:, 0, 112] * std[:, 0, 0] + mean[:, 0, 0]
    assert top[2] > top[0], top  # still blue-ish: the top edge was not cropped away

def test_factory_errors(tmp_path):
    with pytest.raises(UnknownModel, match="--import-path"):
        load_model("no_such_package_xyz:build")
    (tmp_path / "factories_xyz.py").write_text(
        "import torch\ndef not_a_model():\n    return 3\ndef broken():\n    raise RuntimeError('boom')\n"
        "def tiny():\n    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(192, 4))\n"
    )
    with pytest.raises(CamError, match=r"returned a value of type int, not an nn\.Module"):
        load_model("factories_xyz:not_a_model", import_paths=[tmp_path])
    with pytest.raises(CamError, match="raised RuntimeError while building the model: boom"):
        load_model("factories_xyz:broken", import_paths=[tmp_path])
    with pytest.raises(UnknownModel, match="no attribute"):
        load_model("factories_xyz:missing", import_paths=[tmp_path])
    with pytest.raises(CamError, match="input-size"):
        load_model("factories_xyz:tiny", import_paths=[tmp_path])
    model = load_model("factories_xyz:tiny", import_paths=[tmp_path], input_size=8)
    assert model.num_classes == 4
    assert model.input_size == (8, 8)
    assert str(tmp_path) not in __import__("sys").path


# --------------------------------------------------------------------------------- labels and sizes


def test_labels_text_and_json(tmp_path):
    reference = _resnet18(num_classes=3)
    path = tmp_path / "w.pt"
    torch.save(reference.state_dict(), path)
    text = tmp_path / "labels.txt"
    text.write_text("cat\ndog\n\nbird\n")
    assert load_model(path, arch="resnet18", labels=text).class_names == ["cat", "dog", "bird"]
    as_list = tmp_path / "labels.json"
    as_list.write_text(json.dumps(["a", "b", "c"]))
    assert load_model(path, arch="resnet18", labels=as_list).class_names == ["a", "b", "c"]
    as_map = tmp_path / "map.json"
    as_map.write_text(json.dumps({"1": "y", "0": "x", "2": "z"}))
    assert load_model(path, arch="resnet18", labels=as_map).class_names == ["x", "y", "z"]
    wrong = tmp_path / "two.txt"
    wrong.write_text("cat\ndog\n")
    with pytest.raises(CamError, match="has 2 names but the model has 3 outputs"):
        load_model(path, arch="resnet18", labels=wrong)


def test_input_size_and_normalisation_overrides():
    model = load_model("resnet18", weights=None, input_size=(160, 192), mean=[0.5], std=[0.25, 0.25, 0.25])
    assert model.input_size == (160, 192)
    assert model.mean == (0.5, 0.5, 0.5)
    assert model.std == (0.25, 0.25, 0.25)
    assert model.preprocess(load_sample("coffee"), "crop").shape == (3, 160, 192)
    with pytest.raises(CamError, match="input size"):
        load_model("resnet18", weights=None, input_size=(0, 5))
    with pytest.raises(CamError, match="std"):
        load_model("resnet18", weights=None, std=[0.0])
