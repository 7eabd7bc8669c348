"""The recommended layer is one a person would choose, on tiny hand-built models of each family's trap: SqueezeNet's
class-score maps, VGG's resampling ``avgpool``, timm's attention blocks not named ``Attention`` (CaiT's
``ClassAttn``, ConViT's ``MHSA``) and VOLO's per-token ``aux_head``; the input the layer tree feeds a model whose
first convolution does not see the image (TResNet), and the input size torchvision's ViT is built for."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
import torchvision
from torch import nn

import cam_core
from cam_core.models import format_tree, list_layers, recommended_layer
from cam_core.models.layer_trace import input_channels
from cam_core.models.sources import torchvision_models


def _seeded(cls: type[nn.Module], *args: object) -> nn.Module:
    torch.manual_seed(0)
    return cls(*args).eval()


def _rec(model: object, size: int) -> tuple[str, str]:
    (info,) = [i for i in list_layers(model, size) if i.recommended]
    return info.name, info.why


class NiN(nn.Module):
    """SqueezeNet's shape: features, then a 1×1 conv to one map per class, ReLU, global pool."""

    def __init__(self, head: str = "classifier", classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU())
        setattr(self, head, nn.Sequential(nn.Conv2d(8, classes, 1), nn.ReLU(), nn.AdaptiveAvgPool2d(1)))
        self.head_name = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return getattr(self, self.head_name)(self.features(x)).flatten(1)


@pytest.mark.parametrize("head", ["classifier", "scores"])
def test_class_score_maps_are_not_recommended_named_or_not(head):
    model = _seeded(NiN, head)
    name, why = _rec(model, 16)
    assert name == "features.1"  # the ReLU: `features` holds the whole trunk (it is fed the model's input)
    # Named `classifier`, the head's name says it; named otherwise, its maps pool to the logits.
    assert why.startswith("the last spatial map (8×8) before pooling and the head")
    assert f"later `{head}.0` is " + (
        "inside the classifier head" if head == "classifier" else "a map of class scores"
    ) in why


def test_a_model_that_is_all_class_score_maps_still_gets_a_layer():
    class Only(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.conv(x).mean((2, 3))

    assert recommended_layer(_seeded(Only), 16) == "conv"


class VggLike(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.avgpool = nn.AdaptiveAvgPool2d(7)
        self.classifier = nn.Linear(8 * 49, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.avgpool(self.features(x)).flatten(1))


@pytest.mark.parametrize("size", [10, 14])  # a 5×5 map resampled to 7×7, and a 7×7 map the pool leaves as it is
def test_a_resampling_adaptive_pool_is_never_recommended(size):
    name, why = _rec(_seeded(VggLike), size)
    assert name == "features.2"
    assert "later `avgpool` is an adaptive pool that resamples" in why


class ClassAttn(nn.Module):
    """CaiT's class attention: the class token attends to every token (its q, k, v are token layers)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.q, self.k, self.v = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.q(x[:, :1]), self.k(x), self.v(x)
        return (q @ k.transpose(1, 2)).softmax(-1) @ v


class LayerScaleBlockClassAttn(nn.Module):
    """A block named after the attention it holds: its norm is a place to explain, its attention is not."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = ClassAttn(dim)

    def forward(self, x: torch.Tensor, cls: torch.Tensor) -> torch.Tensor:
        return cls + self.attn(self.norm1(torch.cat([cls, x], dim=1)))


class TinyCait(nn.Module):
    def __init__(self, dim: int = 8) -> None:
        super().__init__()
        self.patch = nn.Conv2d(3, dim, 4, stride=4)
        self.cls = nn.Parameter(torch.randn(1, 1, dim))
        self.blocks_token_only = nn.ModuleList([LayerScaleBlockClassAttn(dim) for _ in range(2)])
        self.aux_head = nn.Linear(dim, 3)  # VOLO's per-token classifier: its outputs are token maps of class scores
        self.head = nn.Linear(dim, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = self.patch(x).flatten(2).transpose(1, 2)
        cls = self.cls.expand(len(x), -1, -1)
        for block in self.blocks_token_only:
            cls = block(t, cls)
        return self.head(cls[:, 0]) + 0.5 * self.aux_head(t).amax(1)


def test_never_inside_attention_however_it_is_named_nor_a_per_token_head():
    model = _seeded(TinyCait)
    layers = {i.name: i for i in list_layers(model, 16)}
    assert layers["blocks_token_only.1.attn.v"].camable and layers["aux_head"].camable  # token maps, but not these
    name, why = _rec(model, 16)
    assert name == "blocks_token_only.1.norm1"
    assert why.startswith("the last block's normalised tokens (4×4) before pooling and the head")
    assert "later `blocks_token_only.1.attn.k` is inside an attention block" in why


def test_mhsa_and_attn_named_modules_are_attention():
    class MHSA(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.qkv = nn.Linear(8, 8)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.qkv(x).softmax(1) * x

    class Net(nn.Module):
        def __init__(self, attention: nn.Module) -> None:
            super().__init__()
            self.patch = nn.Conv2d(3, 8, 4, stride=4)
            self.norm = nn.LayerNorm(8)
            self.attn = attention
            self.head = nn.Linear(8, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(self.attn(self.norm(self.patch(x).flatten(2).transpose(1, 2))).mean(1))

    assert recommended_layer(_seeded(Net, MHSA()), 16) == "norm"  # by its type
    assert recommended_layer(_seeded(Net, nn.Sequential(nn.Linear(8, 8))), 16) == "norm"  # by its name, `attn`


def test_format_tree_prints_the_recommended_layers_why():
    model = _seeded(VggLike)
    (star,) = [line for line in format_tree(list_layers(model, 10)).splitlines() if "★" in line]
    assert star.split()[0] == "features.2" and "why: the last spatial map (5×5)" in star
    assert all(not i.why for i in list_layers(model, 10) if not i.recommended)


class SpaceToDepthNet(nn.Module):
    """TResNet's stem: 4×4 space-to-depth, so the first convolution takes 48 channels made from the image's 3."""

    def __init__(self, declared: bool = True) -> None:
        super().__init__()
        if declared:
            self.pretrained_cfg = {"input_size": (3, 32, 32)}
        self.conv = nn.Conv2d(48, 8, 3, padding=1)
        self.fc = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = nn.functional.pixel_unshuffle(x, 4)
        return self.fc(self.conv(x).mean((2, 3)))


def test_the_dummy_input_has_the_images_channels_not_the_first_convolutions():
    model = _seeded(SpaceToDepthNet)
    assert input_channels(model) == 3
    assert recommended_layer(model, 32) == "conv"
    bare = _seeded(SpaceToDepthNet, False)  # nothing declared: the preprocessing says 3 (one mean per channel)
    assert input_channels(bare) == 48
    loaded = SimpleNamespace(module=bare, input_size=(32, 32), mean=(0.5, 0.5, 0.5))
    assert recommended_layer(loaded) == "conv"


def test_random_torchvision_vit_takes_the_size_it_is_built_for(monkeypatch):
    """vit_h_14's default weights are at 518, but ``get_model(weights=None)`` builds a 224 model."""

    def small_vit(name, weights=None):
        assert name == "vit_h_14" and weights is None
        torch.manual_seed(0)
        return torchvision.models.VisionTransformer(
            image_size=224, patch_size=56, num_layers=1, num_heads=1, hidden_dim=8, mlp_dim=8
        )

    monkeypatch.setattr(torchvision.models, "get_model", small_vit)
    model = cam_core.load_model("vit_h_14", weights=None)
    assert model.input_size == (224, 224)
    assert recommended_layer(model) == "encoder.layers.encoder_layer_0.ln_1"
    assert torchvision_models._built_size(nn.Conv2d(3, 3, 1)) is None  # CNNs: the weights' own crop
