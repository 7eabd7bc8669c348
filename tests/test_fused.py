"""The throughput copy (``explain(..., throughput=True)``): what folds, what stays, and that the maps do not change."""

from __future__ import annotations

import gc
import weakref

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

import cam_core
from cam_core.engine import fused
from cam_core.engine.fused import Fusion, fused_copy
from cam_core.modules import eval_mode

METHODS = ["gradcam", "hirescam", "gradcampp"]


def _random_norms(model: nn.Module, seed: int = 0) -> nn.Module:
    """Batch norms with statistics and affine terms far from the identity, so that a wrong fold shows."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=g) * 0.5)
                m.running_var.copy_(torch.rand(n, generator=g) * 2 + 0.2)
                m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                m.bias.copy_(torch.randn(n, generator=g) * 0.3)
    return model.eval()


def _resnet18(seed: int = 0) -> nn.Module:
    """ResNet-18 with random weights and norms, and SiLU for ReLU: with random weights some ReLU input lies
    within float32 rounding of zero, where any change of summation order (NHWC, a fold) flips that unit and
    its gradient; a smooth activation makes the comparison about the fold, not about that chance."""
    torch.manual_seed(seed)
    model = torchvision.models.resnet18(weights=None)
    for m in model.modules():
        for name, child in m.named_children():
            if isinstance(child, nn.ReLU):
                setattr(m, name, nn.SiLU(inplace=True))
    return _random_norms(model, seed)


@pytest.fixture(scope="module")
def resnet18():
    return _resnet18()


@pytest.fixture(scope="module")
def images():
    return torch.randn(4, 3, 96, 96, generator=torch.Generator().manual_seed(2))


def _assert_same_maps(fast: cam_core.ExplainResult, plain: cam_core.ExplainResult) -> None:
    assert torch.equal(fast.class_ids, plain.class_ids)
    for m in plain.maps:
        scale = float(plain.maps[m].abs().max())
        torch.testing.assert_close(fast.maps[m], plain.maps[m], rtol=1e-4, atol=1e-5 * scale)
    torch.testing.assert_close(fast.probs, plain.probs, rtol=1e-4, atol=1e-6)


def test_throughput_gives_the_same_maps_and_leaves_the_model_as_it_was(resnet18, images):
    state = {n: (t.data_ptr(), t.stride(), t.clone()) for n, t in resnet18.state_dict(keep_vars=True).items()}
    kinds = [type(m) for m in resnet18.modules()]
    plain = cam_core.explain(resnet18, images, layer="layer3", classes="top2", methods=METHODS)
    fast = cam_core.explain(resnet18, images, layer="layer3", classes="top2", methods=METHODS, throughput=True)
    _assert_same_maps(fast, plain)
    after = resnet18.state_dict(keep_vars=True)
    for n, (ptr, stride, value) in state.items():
        assert (after[n].data_ptr(), after[n].stride()) == (ptr, stride), n
        assert torch.equal(after[n], value), n
    assert [type(m) for m in resnet18.modules()] == kinds  # its batch norms are still there
    assert all(not m._forward_hooks for m in resnet18.modules())


def test_resnet18_folds_every_conv_into_its_norm(resnet18, images):
    """ResNet-18: 20 convolutions, each read by its own batch norm alone (downsamples too); its activations are
    in place already (and each block's runs twice)."""
    with eval_mode(resnet18):
        fast, plan = fused_copy(resnet18, "layer4", images)
    assert fast is not resnet18
    assert len(plan.folded) == 20
    assert ("layer2.0.downsample.0", "layer2.0.downsample.1") in plan.folded
    assert plan.in_place == ()
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fast.modules())


def test_the_default_model_folds_all_49_pairs_and_joins_32_activations():
    """EfficientNet-Lite0: stem + 1 block of 2 convs + 15 of 3 + head = 49 conv→BN; 33 ReLU6 after a conv, all but
    the layer's own joined to their convolution."""
    model = cam_core.load_model()
    x = torch.randn(2, 3, 224, 288, generator=torch.Generator().manual_seed(0))
    with eval_mode(model.module):
        _, plan = fused_copy(model.module, "_head_act", x, nhwc=True)
    assert len(plan.folded) == 49
    assert len(plan.joined) == 32 and "_head_act" not in {act for _, act in plan.joined}
    assert ("_blocks.0._depthwise_conv", "_blocks.0._depthwise_act") in plan.joined
    assert plan.in_place == ()
    plain = cam_core.explain(model, x, classes="top2", methods=["gradcam", "layercam"])
    fast = cam_core.explain(model, x, classes="top2", methods=["gradcam", "layercam"], throughput=True)
    _assert_same_maps(fast, plain)


class _Branches(nn.Module):
    """One pair that folds, one whose conv output is also read by a skip, one at the explained layer,
    a norm subclass, an activation whose input is read twice, and one after the layer."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.bn1, self.act1 = nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU()
        self.conv2, self.bn2 = nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8)
        self.act2 = nn.ReLU()
        self.conv3, self.bn3 = nn.Conv2d(8, 8, 1), nn.BatchNorm2d(8)
        self.conv4, self.bn4 = nn.Conv2d(8, 8, 1), _NormPlusOne(8)
        self.act4 = nn.ReLU6()
        self.fc = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.act1(self.bn1(self.conv1(x)))
        c2 = self.conv2(a)
        b = self.bn2(c2) + 0.5 * c2  # conv2's output has two readers
        r = self.act2(b)
        b = r + b  # act2's input is read again
        c = self.bn3(self.conv3(b))  # conv3 is the explained layer
        d = self.act4(self.bn4(self.conv4(c)))  # after the layer
        return self.fc(d.mean((2, 3)))


class _NormPlusOne(nn.BatchNorm2d):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x) + 1.0


def test_only_sole_readers_fold_and_join():
    torch.manual_seed(0)
    model = _random_norms(_Branches())
    x = torch.randn(3, 3, 12, 12)
    with eval_mode(model):
        _, plan = fused_copy(model, "conv3", x)
    assert plan == Fusion(folded=(("conv1", "bn1"),), joined=(("conv1", "act1"),))
    plain = cam_core.explain(model, x, layer="conv3", classes="top2", methods=METHODS)
    fast = cam_core.explain(model, x, layer="conv3", classes="top2", methods=METHODS, throughput=True)
    _assert_same_maps(fast, plain)


class _BiasFreeConv(nn.Conv2d):
    """A conv whose forward never adds its bias: folding a norm into it would lose the norm's shift."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight, None, self.stride, self.padding)


def test_a_copy_that_does_not_agree_is_not_used():
    torch.manual_seed(0)
    model = _random_norms(nn.Sequential(_BiasFreeConv(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                                        nn.Conv2d(8, 8, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 3)))
    x = torch.randn(2, 3, 10, 10)
    with eval_mode(model):
        fast, plan = fused_copy(model, "3", x)
    assert fast is model and plan == Fusion()
    plain = cam_core.explain(model, x, layer="3", classes="top2")
    _assert_same_maps(cam_core.explain(model, x, layer="3", classes="top2", throughput=True), plain)


class _ShiftedConv(nn.Conv2d):
    """A conv that adds 1 after its conv2d: joining the activation into the conv2d would put it before the shift."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x) + 1.0


def _shifted_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), _ShiftedConv(8, 8, 3, padding=1), nn.ReLU6(),
                         nn.Conv2d(8, 8, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 3)).eval()


def test_an_activation_that_cannot_join_its_conv_goes_in_place():
    model, x = _shifted_net(), torch.randn(2, 3, 10, 10)
    with eval_mode(model):
        _, plan = fused_copy(model, "3", x)
    assert plan == Fusion(in_place=("2",))  # joining was tried and failed the check
    _assert_same_maps(cam_core.explain(model, x, layer="3", classes="top2", throughput=True),
                      cam_core.explain(model, x, layer="3", classes="top2"))


def test_without_onednn_activations_go_in_place(monkeypatch):
    monkeypatch.setattr(fused, "_CONV_POINTWISE", None)
    model = cam_core.load_model()
    x = torch.randn(2, 3, 96, 128, generator=torch.Generator().manual_seed(0))
    with eval_mode(model.module):
        _, plan = fused_copy(model.module, "_blocks.15", x, nhwc=True)
    assert plan.joined == () and len(plan.in_place) == 32  # the head's ReLU6 is above the layer
    assert len(plan.folded) == 49  # the head's conv→BN too: folding is exact with autograd as well


def test_the_copy_follows_the_model_when_its_weights_change(resnet18, images):
    model = _resnet18(seed=3)
    before = cam_core.explain(model, images, layer="layer3", classes=[5], throughput=True)
    with torch.no_grad():
        model.layer3[0].bn1.running_mean.add_(1.0)  # in place: the same tensor, a new version
    model.load_state_dict({**model.state_dict(), "fc.weight": -model.fc.weight.detach()})
    plain = cam_core.explain(model, images, layer="layer3", classes=[5])
    after = cam_core.explain(model, images, layer="layer3", classes=[5], throughput=True)
    _assert_same_maps(after, plain)
    assert not torch.allclose(after.maps["gradcam"], before.maps["gradcam"])


def test_the_kept_copy_does_not_keep_the_model_alive(images):
    model = _resnet18()
    cam_core.explain(model, images[:2], layer="layer2", classes=[0], throughput=True)
    ref = weakref.ref(model)
    del model
    gc.collect()
    assert ref() is None
