"""Model sources that users already have: timm, Hugging Face folders, safetensors, torch.export, and models
whose forward returns a tuple, a dict or a ModelOutput.

Each source round-trips: its logits equal the source's own forward, its class names and preprocessing
come from the source's own files, and Grad-CAM through it equals Grad-CAM on the plain module. Every
model is made here, tiny and untrained: nothing is downloaded.
"""

from __future__ import annotations

import copy
import sys
from dataclasses import dataclass

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image
from torch import nn

import cam_core
from cam_core.errors import CamError
from cam_core.models import CheckpointError, UnknownModel, UntrustedCheckpoint, WeightsUnavailable, load_model
from cam_core.models.outputs import Classifier, as_classifier, pick_logits
from tests.tiny import GapNet, gapnet, save_tiny_vit

timm = pytest.importorskip("timm")
transformers = pytest.importorskip("transformers")
safetensors_torch = pytest.importorskip("safetensors.torch")

X = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(3))


def _photo(size: tuple[int, int] = (90, 70)) -> Image.Image:
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))


def _gradcam_by_hand(module: nn.Module, layer: str, x: torch.Tensor, cid: int, logits=lambda out: out) -> torch.Tensor:
    """Grad-CAM with plain hooks and autograd on the unwrapped model: the reference for every source."""
    store = {}
    handle = dict(module.named_modules())[layer].register_forward_hook(lambda m, i, o: store.update(a=o))
    try:
        score = logits(module(x))[:, cid].sum()
    finally:
        handle.remove()
    (g,) = torch.autograd.grad(score, store["a"])
    return torch.einsum("nc,nchw->nhw", g.mean(dim=(-2, -1)), store["a"]).detach()


# ---- the output rule -----------------------------------------------------------------------------------------


@dataclass
class _Out:
    features: torch.Tensor
    logits: torch.Tensor


class _Returns(nn.Module):
    """GapNet whose forward returns its logits inside a dict, a tuple or an object with ``.logits``."""

    def __init__(self, form: str) -> None:
        super().__init__()
        self.net = gapnet(seed=2, classes=5)
        self.form = form

    def forward(self, x: torch.Tensor):
        feats = self.net.pool(self.net.features(x)).flatten(1)
        logits = self.net.fc(feats)
        if self.form == "dict":
            return {"features": feats, "logits": logits}
        if self.form == "tuple":
            return feats[..., None, None], feats, logits  # (N, 16, 1, 1), (N, 16), (N, 5): the first (N, C): feats
        if self.form == "modeloutput":
            return transformers.modeling_outputs.ImageClassifierOutput(logits=logits)
        return _Out(feats, logits)


def _factory_model(form: str) -> nn.Module:
    return _Returns(form).eval()


@pytest.mark.parametrize("form", ["dict", "modeloutput", "attribute"])
def test_logits_picked_from_dicts_modeloutputs_and_attributes(form, monkeypatch):
    monkeypatch.setattr(sys.modules[__name__], "made", lambda: _factory_model(form), raising=False)
    model = load_model(f"{__name__}:made", input_size=16)
    assert isinstance(model.module, Classifier) and model.num_classes == 5
    x = torch.randn(2, 3, 16, 16)
    inner = model.module.wrapped
    torch.testing.assert_close(model.module(x), inner.net.fc(inner.net.pool(inner.net.features(x)).flatten(1)))
    # Layer names are the user's own, and so are the state dict's keys.
    assert [n for n, _ in model.module.named_modules()][1:] == [n for n, _ in inner.named_modules()][1:]
    assert list(model.module.state_dict()) == list(inner.state_dict())
    res = cam_core.explain(model, x, layer="net.features", classes=[1, 4], methods=["gradcam"], device="cpu")
    for k, c in enumerate([1, 4]):
        ref = _gradcam_by_hand(inner, "net.features", x, c, lambda out: pick_logits(out, 2))
        torch.testing.assert_close(res.maps["gradcam"][:, k], ref, atol=1e-5, rtol=1e-4)
    assert cam_core.recommended_layer(model) == "net.features.3"  # as for the plain GapNet: the last ReLU


def test_a_tuple_uses_the_first_n_by_c_tensor_unless_told(monkeypatch):
    monkeypatch.setattr(sys.modules[__name__], "made", lambda: _factory_model("tuple"), raising=False)
    x = torch.randn(1, 3, 16, 16)
    by_rule = load_model(f"{__name__}:made", input_size=16)
    assert by_rule.num_classes == 16  # the first (N, C) tensor is the features: the rule is documented, not magic
    told = load_model(f"{__name__}:made", input_size=16, output=2)
    assert told.num_classes == 5
    torch.testing.assert_close(told.module(x), told.module.wrapped(x)[2])
    with pytest.raises(CamError, match="no tensor at 7"):
        load_model(f"{__name__}:made", input_size=16, output=7)


def test_the_rule_says_what_the_model_returned():
    with pytest.raises(CamError, match=r"returns dict\(a: 2×3×4\): no 'logits' and no \(2, classes\)"):
        pick_logits({"a": torch.zeros(2, 3, 4)}, 2)
    with pytest.raises(CamError, match="returns a tensor"):
        as_classifier(gapnet(), output="logits", probe=torch.zeros(1, 3, 16, 16))
    assert as_classifier(gapnet(), probe=torch.zeros(1, 3, 16, 16)).__class__ is GapNet  # a tensor: left alone


def test_the_adapter_moves_copies_and_switches_mode_with_the_model():
    inner = _factory_model("dict")
    wrapped = Classifier(inner)
    wrapped.train()
    assert inner.training and inner.net.training
    wrapped.eval()
    assert not inner.training and not inner.net.fc.training
    clone = copy.deepcopy(wrapped)
    x = torch.randn(1, 3, 16, 16)
    torch.testing.assert_close(clone(x), wrapped(x))
    wrapped.double()
    assert inner.net.fc.weight.dtype == torch.float64  # the user's parameters, not copies


# ---- timm ----------------------------------------------------------------------------------------------------


def test_timm_checkpoint_round_trips(tmp_path):
    torch.manual_seed(1)
    own = timm.create_model("resnet18", pretrained=False, num_classes=4).eval()
    safetensors_torch.save_file(own.state_dict(), str(tmp_path / "r18.safetensors"))
    model = load_model("timm:resnet18", checkpoint=tmp_path / "r18.safetensors")
    assert model.pretrained and model.num_classes == 4 and model.class_names == [f"class {i}" for i in range(4)]
    torch.testing.assert_close(model.module(X), own(X))
    # Preprocessing is timm's own eval transform for this model's pretrained_cfg.
    cfg = timm.data.resolve_model_data_config(own)
    theirs = timm.data.create_transform(**cfg)(_photo())
    torch.testing.assert_close(model.preprocess(_photo(), "crop"), theirs, atol=1e-6, rtol=0)
    assert model.preprocess.crop_size == (224, 224) and model.preprocess.resize_size == int(224 / cfg["crop_pct"])
    res = cam_core.explain(model, X[:1], layer="layer3", classes=[0, 2], methods=["gradcam"], device="cpu")
    for k, c in enumerate([0, 2]):
        torch.testing.assert_close(res.maps["gradcam"][:, k], _gradcam_by_hand(own, "layer3", X[:1], c), atol=1e-5,
                                   rtol=1e-4)


def test_timm_random_weights_are_flagged_and_named_from_timms_imagenet_labels():
    model = load_model("timm:regnetx_002", weights="none", input_size=64)
    assert not model.pretrained and model.notes[0].startswith("untrained")
    names = timm.data.ImageNetInfo("imagenet-1k").label_descriptions()
    assert model.class_names[:3] == [n.split(",")[0] for n in names[:3]] == ["tench", "goldfish", "great white shark"]
    assert cam_core.recommended_layer(model) == "s4"


def test_timm_pretrained_offline_says_so_in_one_line(monkeypatch):
    from cam_core.models.sources import timm_models as timm_source

    monkeypatch.setattr(timm_source, "_cached_weights", lambda cfg: None)
    monkeypatch.setattr(timm_source, "_reachable", lambda url: False)
    with pytest.raises(WeightsUnavailable, match=r"timm:convnext_atto .* cannot be downloaded \(offline\?\); use "
                                                   r"--weights none"):
        load_model("timm:convnext_atto")


def test_timm_unknown_name_and_missing_package(monkeypatch):
    with pytest.raises(UnknownModel, match="did you mean convnext_atto"):
        load_model("timm:convnxt_atto")
    monkeypatch.setitem(sys.modules, "timm", None)
    with pytest.raises(CamError, match=r"pip install 'cam-dashboard\[timm\]'"):
        load_model("timm:resnet18")


@pytest.mark.parametrize(
    ("name", "kwargs", "size", "layer"),
    [
        ("convnext_atto", {}, 64, "stages.3"),
        ("efficientnet_b0", {}, 64, "bn2"),
        ("regnetx_002", {}, 64, "s4"),
        ("vit_tiny_patch16_224", {"img_size": 64, "depth": 3}, 64, "blocks.2.norm1"),
    ],
)
def test_timm_families_get_the_stage_output_as_recommended_layer(name, kwargs, size, layer):
    module = timm.create_model(name, pretrained=False, num_classes=3, **kwargs).eval()
    layers = cam_core.list_layers(module, size)
    assert [li.name for li in layers if li.recommended] == [layer]
    # Attention internals (queries, keys, heads × tokens × tokens) are no maps.
    assert not any(li.camable for li in layers if ".attn." in li.name and li.out_shape and len(li.out_shape) == 3)


def test_timm_vit_legrad_equals_its_definition():
    """LeGrad on timm's ViT (its fused attention switched off for the call), by hand with plain hooks."""
    torch.manual_seed(4)
    vit = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=64, depth=3, num_classes=4).eval()
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(5))
    res = cam_core.explain(vit, x, layer="blocks.1", classes=[1], methods=["legrad"], device="cpu")
    assert all(block.attn.fused_attn for block in vit.blocks)  # put back after the call
    seen, handles = {}, []
    for b in (1, 2):
        vit.blocks[b].attn.fused_attn = False
        handles.append(vit.blocks[b].attn.attn_drop.register_forward_hook(lambda m, i, o, b=b: seen.update({b: o})))
        handles.append(vit.blocks[b].register_forward_hook(lambda m, i, o, b=b: seen.update({-b: o})))
    vit(x)
    maps = []
    for b in (1, 2):
        score = vit.head(vit.fc_norm(vit.norm(seen[-b].mean(1))))[0, 1]
        (g,) = torch.autograd.grad(score, seen[b], retain_graph=True)
        maps.append(g.clamp_min(0).mean(dim=(1, 2))[0, 1:].reshape(4, 4))
    for h in handles:
        h.remove()
    torch.testing.assert_close(res.maps["legrad"][0, 0], torch.stack(maps).mean(0), atol=1e-7, rtol=1e-4)


# ---- Hugging Face -----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def hf_vit(tmp_path_factory):
    """A tiny ViT saved as a Hugging Face folder, with its image processor."""
    folder = tmp_path_factory.mktemp("hf_vit")
    model = save_tiny_vit(folder, seed=3, image_mean=[0.4, 0.5, 0.6], image_std=[0.2, 0.25, 0.3])
    return folder, model


def test_hf_folder_round_trips(hf_vit):
    folder, own = hf_vit
    model = load_model(f"hf:{folder}")
    assert model.class_names == ["cat", "dog", "bird"] and model.pretrained
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(model.module(x), own(x).logits)
    # The processor's own recipe: squash to 32×32, its mean and std; the model's default fit is that squash.
    assert model.fit == "squash" and "whole" not in model.fits
    assert model.mean == (0.4, 0.5, 0.6) and model.std == (0.2, 0.25, 0.3)
    processor = transformers.AutoImageProcessor.from_pretrained(folder, local_files_only=True)
    image = _photo((32, 32))  # already the model's size: no resampling, so the normalisation must be exact
    theirs = processor(image, return_tensors="pt")["pixel_values"][0]
    torch.testing.assert_close(model.preprocess(image), theirs, atol=1e-6, rtol=0)
    resized = processor(_photo(), return_tensors="pt")["pixel_values"][0]
    assert float((model.preprocess(_photo()) - resized).abs().mean()) < 0.05  # PIL vs tensor resampling


def test_hf_vit_tokens_are_a_grid_with_the_users_names(hf_vit):
    folder, own = hf_vit
    model = load_model(f"hf:{folder}")
    layers = cam_core.list_layers(model)
    assert [li.name for li in layers] == [n for n, _ in own.named_modules()][1:]
    rec = next(li for li in layers if li.recommended)
    assert rec.name == "vit.layers.1.layernorm_before" and rec.reason == "tokens 4×4 (+1 class token)"
    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    res = cam_core.explain(model, x, classes=[0, 2], methods=["gradcam", "legrad"], device="cpu")
    store = {}
    handle = own.vit.layers[1].layernorm_before.register_forward_hook(lambda m, i, o: store.update(a=o))
    for k, c in enumerate([0, 2]):
        score = own(x).logits[0, c]
        (g,) = torch.autograd.grad(score, store["a"])
        a, g = store["a"][:, 1:].unflatten(1, (4, 4)), g[:, 1:].unflatten(1, (4, 4))  # tokens → 4×4 grid
        ref = torch.einsum("nc,nhwc->nhw", g.mean(dim=(1, 2)), a).detach()
        torch.testing.assert_close(res.maps["gradcam"][:, k], ref, atol=1e-5, rtol=1e-4)
    handle.remove()
    assert res.maps["legrad"].shape == (1, 2, 4, 4) and (res.maps["legrad"] >= 0).all()


def test_hf_legrad_equals_its_definition_with_transformers_own_outputs(hf_vit):
    """LeGrad by hand from transformers' output_attentions / output_hidden_states (no hooks of ours)."""
    folder, own = hf_vit
    model = load_model(f"hf:{folder}")
    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(4))
    res = cam_core.explain(model, x, layer="vit.layers.0", classes=[1], methods=["legrad"], device="cpu")
    own.config._attn_implementation = "eager"
    out = own(x, output_attentions=True, output_hidden_states=True)
    maps = []
    for block in (0, 1):
        tokens = out.hidden_states[block + 1]  # the block's output
        score = own.classifier(own.vit.layernorm(tokens.mean(1)))[0, 1]
        (g,) = torch.autograd.grad(score, out.attentions[block], retain_graph=True)
        maps.append(g.clamp_min(0).mean(dim=(1, 2))[0, 1:].reshape(4, 4))
    torch.testing.assert_close(res.maps["legrad"][0, 0], torch.stack(maps).mean(0), atol=1e-6, rtol=1e-4)


def test_hf_convnext_folder_takes_its_processors_crop_pct(tmp_path):
    """A CNN from transformers: shortest edge / crop_pct, then a centre crop, as ConvNextImageProcessor does."""
    config = transformers.ConvNextConfig(hidden_sizes=[8, 16, 24, 32], depths=[1, 1, 1, 1], num_labels=2,
                                         id2label={0: "a", 1: "b"}, label2id={"a": 0, "b": 1})
    torch.manual_seed(0)
    own = transformers.ConvNextForImageClassification(config).eval()
    own.save_pretrained(tmp_path)
    transformers.ConvNextImageProcessor(size={"shortest_edge": 64}, crop_pct=0.875).save_pretrained(tmp_path)
    model = load_model(f"hf:{tmp_path}")
    assert model.preprocess.crop_size == (64, 64) and model.preprocess.resize_size == int(64 / 0.875)
    assert model.fit == "whole"  # a CNN takes any size: the whole photo, as for torchvision's
    processor = transformers.AutoImageProcessor.from_pretrained(tmp_path, local_files_only=True)
    theirs = processor(_photo((120, 90)), return_tensors="pt")["pixel_values"][0]
    assert float((model.preprocess(_photo((120, 90)), "crop") - theirs).abs().mean()) < 1e-3
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model.module(x), own(x).logits)
    assert cam_core.recommended_layer(model) == "convnext.encoder.stages.3"


def test_hf_mistakes_are_one_line(tmp_path, monkeypatch):
    with pytest.raises(UnknownModel, match=r"no config\.json"):
        load_model(f"hf:{tmp_path}")
    with pytest.raises(UnknownModel, match="no such folder"):
        load_model(f"hf:{tmp_path / 'missing'}")
    (tmp_path / "config.json").write_text('{"model_type": "bert", "num_labels": 2}')
    with pytest.raises(CheckpointError, match="cannot load the Hugging Face model"):
        load_model(f"hf:{tmp_path}")
    monkeypatch.setitem(sys.modules, "transformers", None)
    with pytest.raises(CamError, match=r"pip install 'cam-dashboard\[hf\]'"):
        load_model(f"hf:{tmp_path}")


# ---- safetensors ------------------------------------------------------------------------------------------------


def test_safetensors_state_dicts_load_wherever_state_dicts_do(tmp_path):
    own = torchvision.models.resnet18(num_classes=3).eval()
    path = tmp_path / "r18.safetensors"
    safetensors_torch.save_file(own.state_dict(), str(path))
    by_arch = load_model(path, arch="resnet18")  # never needs trust: safetensors holds no code
    assert by_arch.num_classes == 3
    torch.testing.assert_close(by_arch.module(X), own(X))
    net = gapnet(seed=4)
    safetensors_torch.save_file(net.state_dict(), str(tmp_path / "gap.safetensors"))
    factory = load_model("tests.tiny:gapnet", checkpoint=tmp_path / "gap.safetensors", input_size=16)
    x = torch.randn(1, 3, 16, 16)
    torch.testing.assert_close(factory.module(x), net(x))


def test_a_safetensors_file_of_the_wrong_shape_is_one_clear_line(tmp_path):
    state = torchvision.models.resnet18(num_classes=3).state_dict()
    state["conv1.weight"] = torch.zeros(64, 3, 5, 5)
    path = tmp_path / "bad.safetensors"
    safetensors_torch.save_file(state, str(path))
    with pytest.raises(CheckpointError) as info:
        load_model(path, arch="resnet18")
    message = str(info.value)
    assert "\n" not in message and "does not fit resnet18" in message and "conv1.weight" in message
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match="not a safetensors file that can be read"):
        load_model(tmp_path / "junk.safetensors", arch="resnet18")
    with pytest.raises(CheckpointError, match="name its architecture with --arch"):
        load_model(path)


# ---- torch.export ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pt2")
    net = gapnet(seed=5, classes=4)
    dynamic = torch.export.export(net, (torch.randn(2, 3, 16, 16),), dynamic_shapes=({0: torch.export.Dim("batch")},))
    torch.export.save(dynamic, folder / "dynamic.pt2")
    torch.export.save(torch.export.export(net, (torch.randn(1, 3, 16, 16),)), folder / "static.pt2")
    return folder, net


def test_an_exported_program_is_unflattened_and_every_layer_hooked(exported):
    folder, net = exported
    model = load_model(folder / "dynamic.pt2", trust_checkpoint=True)
    assert model.input_size == (16, 16) and model.num_classes == 4
    x = torch.randn(3, 3, 16, 16, generator=torch.Generator().manual_seed(6))
    torch.testing.assert_close(model.module(x), net(x))
    layers = {li.name: li for li in cam_core.list_layers(model)}
    assert set(layers) == {n for n, _ in net.named_modules()} - {""}
    assert layers["features.0"].type == "Conv2d" and layers["features"].type == "Sequential"  # the classes exported
    assert layers["features.3"].recommended
    res = cam_core.explain(model, x[:1], layer="features", classes=[1, 3], methods=["gradcam", "scorecam"])
    for k, c in enumerate([1, 3]):
        torch.testing.assert_close(res.maps["gradcam"][:, k], _gradcam_by_hand(net, "features", x[:1], c), atol=1e-5,
                                   rtol=1e-4)
    sanity = cam_core.randomisation_check(model, x[:1], "features", 1, max_units=2)  # a deep copy works
    assert len(sanity.units) == 2


def test_an_exported_program_needs_trust_and_says_what_a_fixed_batch_blocks(exported):
    folder, _ = exported
    with pytest.raises(UntrustedCheckpoint, match="falls back to unpickling"):
        load_model(folder / "dynamic.pt2")
    model = load_model(folder / "static.pt2", trust_checkpoint=True)
    assert any("batch of 1" in note for note in model.notes)
    x = torch.randn(1, 3, 16, 16)
    assert cam_core.explain(model, x, layer="features", classes=[1], methods=["gradcam"]).maps["gradcam"].shape == (
        1, 1, 8, 8)
    with pytest.raises(CamError, match=r"takes a batch of 1 only \(got 8\).*dynamic_shapes") as info:
        cam_core.explain(model, x, layer="features", classes=[1], methods=["scorecam"], batch_size=8)
    assert "\n" not in str(info.value)


def test_torchscript_note_points_to_torch_export(tmp_path):
    torch.jit.save(torch.jit.script(gapnet()), tmp_path / "ts.pt")
    assert any("torch.export" in note for note in load_model(tmp_path / "ts.pt", input_size=16).notes)


def test_visitors_without_code_get_weights_only_sources(exported, hf_vit, tmp_path):
    """allow_code=False (a shared dashboard's visitors): an exported program is refused, a timm checkpoint is read
    as weights only, and timm models, safetensors and Hugging Face folders (no code from them) still load."""
    from cam_core.models.load import CodeNotAllowed

    folder, _ = exported
    with pytest.raises(CodeNotAllowed, match="exported program"):
        load_model(folder / "dynamic.pt2", trust_checkpoint=True, allow_code=False)
    own = timm.create_model("resnet18", pretrained=False, num_classes=3)
    torch.save(own, tmp_path / "whole.pt")  # a pickled module: code
    with pytest.raises(CodeNotAllowed, match="not allowed here"):
        load_model("timm:resnet18", checkpoint=tmp_path / "whole.pt", trust_checkpoint=True, allow_code=False)
    safetensors_torch.save_file(own.state_dict(), str(tmp_path / "own.safetensors"))
    assert load_model("timm:resnet18", checkpoint=tmp_path / "own.safetensors", allow_code=False).num_classes == 3
    assert load_model(f"hf:{hf_vit[0]}", allow_code=False).class_names == ["cat", "dog", "bird"]

