"""Layer listing: shapes against independent hooks, layouts, residual/sign/token hints, the recommended layer."""

from __future__ import annotations

import gc
import importlib.util
import warnings
import weakref
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torchvision
from torch import nn

from cam_core import CamError
from cam_core.models.efficientnet_lite import efficientnet_lite0
from cam_core.models.layers import HINT_TEXT, LayerInfo, format_tree, grid_transform, list_layers, recommended_layer
from cam_core.modules import LayerNotFound


def _no_hooks(model: nn.Module) -> bool:
    return all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


def _by_name(layers: list[LayerInfo]) -> dict[str, LayerInfo]:
    return {info.name: info for info in layers}


def _first_outputs(model: nn.Module, x: torch.Tensor) -> dict[str, object]:
    """Each module's first output in one forward, by hooks set here (the independent reference)."""
    seen: dict[str, object] = {}

    def keep(name: str):
        def hook(_m: nn.Module, _i: object, out: object) -> None:
            seen.setdefault(name, out.clone() if isinstance(out, torch.Tensor) else out)

        return hook

    handles = [m.register_forward_hook(keep(n)) for n, m in model.named_modules() if n]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    return seen


def _seeded(factory, *args, **kwargs) -> nn.Module:
    torch.manual_seed(0)
    return factory(*args, **kwargs).eval()


@pytest.fixture(scope="module")
def resnet50() -> nn.Module:
    return _seeded(torchvision.models.resnet50, weights=None)


@pytest.fixture(scope="module")
def seed_net(seed_net_dir: Path) -> nn.Module:
    spec = importlib.util.spec_from_file_location("seed_net", seed_net_dir / "seed_net.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.build()


@pytest.fixture(scope="module")
def vit() -> nn.Module:
    return _seeded(torchvision.models.vit_b_16, weights=None)


@pytest.fixture(scope="module")
def swin() -> nn.Module:
    return _seeded(torchvision.models.swin_t, weights=None)


def test_shapes_match_independent_hooks(resnet50):
    layers = list_layers(resnet50, 224)
    assert [i.name for i in layers] == [n for n, _ in resnet50.named_modules() if n]
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(5))
    outputs = _first_outputs(resnet50, x)
    for info in layers:
        out = outputs.get(info.name)
        expected = tuple(out.shape[1:]) if isinstance(out, torch.Tensor) else None
        assert info.out_shape == expected, info.name
    by = _by_name(layers)
    assert by["layer4"].out_shape == (2048, 7, 7) and by["layer4"].grid == (7, 7)
    assert by["conv1"].out_shape == (64, 112, 112)
    assert by["fc"].out_shape == (1000,) and not by["fc"].camable
    assert not by["avgpool"].camable and "1×1" in by["avgpool"].reason
    assert by["layer4.0.conv1"].params == 1024 * 512 and by["layer4.0.conv1"].depth == 3
    assert by["layer4.0.conv1"].parent == "layer4.0" and by["layer4"].parent == ""
    assert by["layer1"].params == sum(p.numel() for p in resnet50.layer1.parameters())
    assert by["layer4"].reason == "map 7×7"


def test_recommended_resnet50_and_every_hint_is_worded(resnet50):
    layers = list_layers(resnet50, 224)
    assert (
        [i.name for i in layers if i.recommended] == ["layer4"] == [i.name for i in layers if "recommended" in i.hints]
    )
    assert recommended_layer(resnet50, 224) == "layer4"
    assert {h for i in layers for h in i.hints} <= set(HINT_TEXT)
    assert all(text.endswith(".") and "\n" not in text for text in HINT_TEXT.values())


def test_seed_net_recommended_and_hints(seed_net):
    layers = _by_name(list_layers(seed_net, 224))
    assert recommended_layer(seed_net, 224) == "extractor.extractor.7"
    assert set(layers["extractor.extractor.7.2.conv3"].hints) >= {"residual_branch", "pre_activation"}
    assert layers["extractor.extractor.7"].hints == ("recommended",)
    assert layers["extractor.extractor.7.2"].hints == ()  # the block output: after the add and the ReLU
    relu = layers["extractor.extractor.7.2.relu"]  # one ReLU module called three times per Bottleneck
    assert not relu.camable and "shared_module" in relu.hints and "3 times" in relu.reason
    assert not layers["classifier.fc"].camable and layers["classifier.fc"].out_shape is None  # weights used directly
    assert layers["extractor.extractor.7.0.downsample"].hints == ("residual_branch", "pre_activation")


@pytest.mark.parametrize(
    ("factory", "expected"),
    [
        (lambda: torchvision.models.efficientnet_b0(weights=None), "features.8"),
        (lambda: efficientnet_lite0(pretrained=False), "_head_act"),
    ],
    ids=["efficientnet_b0", "efficientnet_lite0"],
)
def test_recommended_efficientnets_is_the_head_activation(factory, expected):
    model = _seeded(factory)
    layers = list_layers(model, 224)
    assert [i.name for i in layers if i.recommended] == [expected]
    assert _by_name(layers)[expected].out_shape == (1280, 7, 7)


def test_vit_tokens_recommended_and_grid(vit):
    layers = _by_name(list_layers(vit, 224))
    last = "encoder.layers.encoder_layer_11"
    assert recommended_layer(vit, 224) == f"{last}.ln_1"
    ln_1 = layers[f"{last}.ln_1"]
    assert ln_1.out_shape == (197, 768) and ln_1.grid == (14, 14) and ln_1.reason == "tokens 14×14 (+1 class token)"
    # After the last attention only the class token reaches the head.
    for name in (last, f"{last}.ln_2", f"{last}.mlp", "encoder.ln"):
        assert "no_patch_gradient" in layers[name].hints, name
    for name in (f"{last}.ln_1", "encoder.layers.encoder_layer_10", "conv_proj"):
        assert "no_patch_gradient" not in layers[name].hints, name
    assert not layers[f"{last}.self_attention"].camable  # returns a tuple
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    tokens = _first_outputs(vit, x)[f"{last}.ln_1"]
    grid = grid_transform(vit, f"{last}.ln_1", 224)(tokens)
    assert grid.shape == (2, 768, 14, 14)
    torch.testing.assert_close(grid[:, :, 3, 5], tokens[:, 1 + 3 * 14 + 5])
    assert grid_transform(vit, "conv_proj", 224)(grid) is grid


def test_swin_channels_last_grid(swin):
    layers = _by_name(list_layers(swin, 112))
    assert layers["features.0.0"].reason == "map 28×28"  # the patchify conv is channels-first
    assert layers["features.0.1"].reason == "channels-last map 28×28"  # Permute([0, 2, 3, 1])
    assert layers["norm"].out_shape == (4, 4, 768) and layers["norm"].grid == (4, 4)
    assert layers["permute"].reason == "map 4×4"
    assert recommended_layer(swin, 112) == "norm"  # the same map as the permute after it
    x = torch.randn(1, 3, 112, 112, generator=torch.Generator().manual_seed(1))
    outputs = _first_outputs(swin, x)
    grid = grid_transform(swin, "norm", 112)(outputs["norm"])
    torch.testing.assert_close(grid, outputs["permute"])
    assert grid_transform(swin, "features.1.0.attn", 112)(outputs["features.1.0.attn"]).shape == (1, 96, 28, 28)


def test_channels_last_when_channels_equal_rows():
    """16 → 4×4×4: both readings fit, so the module decides (Permute to channels-last, LayerNorm over C)."""
    from torchvision.ops.misc import Permute

    model = _seeded(
        nn.Sequential, nn.Conv2d(3, 4, 4, stride=4), Permute([0, 2, 3, 1]), nn.LayerNorm(4), Permute([0, 3, 1, 2])
    )
    layers = list_layers(model, 16)
    assert [i.reason for i in layers] == ["map 4×4", "channels-last map 4×4", "channels-last map 4×4", "map 4×4"]
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(grid_transform(model, "2", 16)(model[:3](x)), model(x))


class Residual(nn.Module):
    """``x + f(x)`` written functionally, with no downsample/shortcut attribute to go by."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(4, 4, 3, padding=1)
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(x + self.conv(x))


class Gated(nn.Module):
    """``x * f(x)``: something happens after the child, but it is not a residual sum."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(4, 4, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.conv(x)


def _tiny_residual() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), Residual(), Gated(), nn.AdaptiveAvgPool2d(1), nn.Flatten())


@pytest.mark.parametrize(
    ("factory", "size", "inside", "outside"),
    [
        (_tiny_residual, 16, ["1.conv"], ["1", "1.act", "2.conv", "0"]),
        (
            lambda: torchvision.models.resnet18(weights=None),
            64,
            ["layer2.0.conv2", "layer2.0.downsample.0"],
            ["layer2.0", "layer2", "conv1"],
        ),
        (
            lambda: torchvision.models.convnext_tiny(weights=None),
            64,
            ["features.1.0.block", "features.1.0.block.3", "features.1.0.stochastic_depth"],
            ["features.1.0", "features.2"],
        ),
        (
            lambda: torchvision.models.efficientnet_b0(weights=None),
            64,
            ["features.2.1.block.0"],
            ["features.2.0.block.0", "features.2.1", "features.8"],
        ),
        (
            lambda: efficientnet_lite0(pretrained=False),
            64,
            ["_blocks.2._project_conv", "_blocks.2._bn2"],
            ["_blocks.1._project_conv", "_blocks.2", "_bn1"],
        ),
    ],
    ids=["functional", "resnet18", "convnext_tiny", "efficientnet_b0", "efficientnet_lite0"],
)
def test_residual_branch_found_by_tracing(factory, size, inside, outside):
    layers = _by_name(list_layers(_seeded(factory), size))
    for name in inside:
        assert "residual_branch" in layers[name].hints, name
    for name in outside:
        assert "residual_branch" not in layers[name].hints, name


def test_pre_activation_is_measured():
    model = _seeded(nn.Sequential, nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 8, 3), nn.SiLU(), nn.Flatten())
    with torch.no_grad():
        model[2].weight.mul_(10)  # SiLU inputs of a trained scale: its dip below zero is bounded (≥ -0.28)
    layers = list_layers(model, 32)
    assert [("pre_activation" in i.hints) for i in layers] == [True, False, True, False, False]


class Tokens(nn.Module):
    """Patchify to 4×4 tokens, prepend 1 class and 4 register tokens, per-token MLP, read the class token only."""

    def __init__(self) -> None:
        super().__init__()
        self.patch = nn.Conv2d(3, 8, 4, stride=4)
        self.extra = nn.Parameter(torch.randn(1, 5, 8))
        self.mlp = nn.Linear(8, 8)
        self.head = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = self.patch(x).flatten(2).transpose(1, 2)
        t = self.mlp(torch.cat([self.extra.expand(len(x), -1, -1), t], dim=1))
        return self.head(t[:, 0])


def test_register_tokens_and_no_patch_gradient():
    model = _seeded(Tokens)
    layers = _by_name(list_layers(model, 16))
    assert layers["mlp"].reason == "tokens 4×4 (+5 class/register tokens)" and layers["mlp"].grid == (4, 4)
    assert "no_patch_gradient" in layers["mlp"].hints  # tokens never mix: patches do not reach the head
    assert recommended_layer(model, 16) == "patch"
    t = torch.arange(2 * 21 * 8, dtype=torch.float32).view(2, 21, 8)
    grid = grid_transform(model, "mlp", 16)(t)
    assert grid.shape == (2, 8, 4, 4)
    torch.testing.assert_close(grid[1, :, 2, 1], t[1, 5 + 2 * 4 + 1])


def test_grid_transform_errors_name_the_recommended_layer(resnet50):
    with pytest.raises(CamError, match=r"no CAM at layer 'fc': 1000: no spatial dimensions; use 'layer4'"):
        grid_transform(resnet50, "fc", 224)
    with pytest.raises(CamError, match=r"'layer4.0.relu'.*3 times.*use 'layer4'"):
        grid_transform(resnet50, "layer4.0.relu", 224)
    with pytest.raises(LayerNotFound, match="unknown layer 'layer9'"):
        grid_transform(resnet50, "layer9", 224)


def test_loaded_model_duck_type_and_its_own_choice():
    module = _seeded(torchvision.models.resnet18, weights=None)
    loaded = SimpleNamespace(module=module, input_size=(64, 96), recommended_layer="layer3")
    layers = _by_name(list_layers(loaded))
    assert layers["layer4"].out_shape == (512, 2, 3) and layers["layer4"].grid == (2, 3)
    assert recommended_layer(loaded) == "layer3" and layers["layer3"].recommended and not layers["layer4"].recommended
    assert recommended_layer(module, (64, 96)) == "layer4"
    loaded.recommended_layer = "fc"  # not CAM-able: the rule decides
    assert recommended_layer(loaded) == "layer4"


class Counting(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.conv(x).mean((2, 3))


def test_one_forward_cached_per_size_and_dropped_with_the_model():
    from cam_core.models import layers as layers_module

    model = _seeded(Counting)
    first = list_layers(model, 16)
    assert model.calls == 1
    assert list_layers(model, 16) == first and recommended_layer(model, 16) == "conv"
    grid_transform(model, "conv", 16)
    assert model.calls == 1
    list_layers(model, 20)
    assert model.calls == 2
    model.conv = nn.Conv2d(3, 4, 5)  # a changed structure is analysed again
    assert _by_name(list_layers(model, 16))["conv"].out_shape == (4, 12, 12) and model.calls == 3
    assert model in layers_module._cache
    ref = weakref.ref(model)
    del model
    gc.collect()
    assert ref() is None  # the cache holds no strong reference


def test_concurrent_calls_on_one_model_agree_with_serial_ones():
    model = _seeded(torchvision.models.resnet18, weights=None)
    sizes = [32, 48, 64] * 2
    with ThreadPoolExecutor(max_workers=6) as pool:
        results = list(pool.map(lambda size: list_layers(model, size), sizes))
    twin = _seeded(torchvision.models.resnet18, weights=None)
    for size, got in zip(sizes, results, strict=True):
        assert got == list_layers(twin, size)
    assert _no_hooks(model)


class Exploding(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.bn = nn.BatchNorm2d(4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.bn(self.conv(x))
        raise RuntimeError("boom\nsecond line")


def test_no_hooks_left_and_modes_restored_even_when_the_forward_raises(resnet50, vit):
    model = Exploding().train()
    with pytest.raises(
        CamError,
        match=r"forward pass failed on a dummy input of shape \(1, 3, 224, 224\) "
        r"\(RuntimeError: boom\); give the input size",
    ):
        list_layers(model)
    assert _no_hooks(model) and model.training and model.bn.training
    assert int(model.bn.num_batches_tracked) == 0  # ran in eval mode: running statistics untouched
    # A model that runs: no hooks, the caller's train/eval flags as they were, BN statistics untouched.
    net = _seeded(torchvision.models.resnet18, weights=None).train()
    net.layer1.eval()
    stats = net.bn1.running_mean.clone()
    list_layers(net, 64)
    assert _no_hooks(net) and net.training and not net.layer1.training and net.layer2.training
    torch.testing.assert_close(net.bn1.running_mean, stats)
    list_layers(vit, 224)  # the token-gradient probe hooks as well
    assert _no_hooks(resnet50) and _no_hooks(vit)
    assert torch.is_grad_enabled()


def test_torchscript_is_refused_clearly():
    with warnings.catch_warnings():  # torch.jit.script is deprecated; users' .pt files are still made with it
        warnings.simplefilter("ignore", FutureWarning)
        scripted = torch.jit.script(_seeded(nn.Sequential, nn.Conv2d(3, 4, 3), nn.ReLU()))
    with pytest.raises(CamError, match="TorchScript modules do not run Python hooks"):
        list_layers(scripted, 16)


def test_grid_transform_when_the_model_only_runs_at_its_own_size():
    """A head fixed to 2×2 maps: no dummy forward at 224 works, so the captured tensor decides."""

    class Fixed(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(1, 2, 1)
            self.head = nn.Linear(8, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(self.conv(x).flatten(1))

    model = Fixed()
    a = torch.randn(1, 2, 2, 2)
    assert grid_transform(model, "conv")(a) is a
    with pytest.raises(CamError, match="not a spatial map"):
        grid_transform(model, "head")(torch.randn(1, 3))
    assert recommended_layer(model, 2) == "conv"


def test_format_tree(seed_net):
    layers = list_layers(seed_net, 224)
    lines = format_tree(layers).splitlines()
    assert len(lines) == len(layers) + 1 and lines[0].split() == ["layer", "type", "output", "params", "CAM", "hints"]
    (star,) = [line for line in lines if "★" in line]
    assert star.split()[:5] == ["extractor.extractor.7", "Sequential", "2048×7×7", "14,964,736", "✓"]
    assert star.startswith("    extractor.extractor.7 ")  # indented by depth
    conv3 = next(line for line in lines if line.strip().startswith("extractor.extractor.7.2.conv3 "))
    assert conv3.rstrip().endswith("residual_branch, pre_activation")
    assert next(line for line in lines if line.strip().startswith("classifier.fc ")).split()[2] == "—"
