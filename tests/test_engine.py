"""Engine behaviour: batching, hooks, threads, devices, classes, and agreement with captum / pytorch-grad-cam."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
import torchvision
from torch import nn

import cam_core
from cam_core.engine import resolve_classes, resolve_device

GRADIENT_METHODS = ["gradcam", "gradcampp", "xgradcam", "hirescam", "layercam"]


@pytest.fixture(scope="module")
def resnet18():
    torch.manual_seed(0)
    return torchvision.models.resnet18(weights=None).eval()


@pytest.fixture(scope="module")
def images():
    return torch.randn(3, 3, 96, 96, generator=torch.Generator().manual_seed(2))


def _no_hooks(model: nn.Module) -> bool:
    return all(
        not m._forward_hooks and not m._forward_pre_hooks and not m._backward_hooks for m in model.modules()
    )


def test_batched_classes_equal_one_at_a_time(resnet18, images):
    classes = [1, 7, 42, 500, 999]
    res = cam_core.explain(resnet18, images[:1], layer="layer3", classes=classes, methods=GRADIENT_METHODS)
    for k, c in enumerate(classes):
        one = cam_core.explain(resnet18, images[:1], layer="layer3", classes=[c], methods=GRADIENT_METHODS)
        for m in GRADIENT_METHODS:
            torch.testing.assert_close(res.maps[m][:, k], one.maps[m][:, 0], atol=1e-5, rtol=1e-4)
    assert res.cost == {"forwards": 1, "backward_batches": 1}


def test_batch_of_images_equals_one_by_one(resnet18, images):
    res = cam_core.explain(resnet18, images, layer="layer4", classes="top2", methods=["gradcam", "hirescam"])
    assert res.maps["gradcam"].shape == (3, 2, 3, 3)
    for i in range(3):
        one = cam_core.explain(
            resnet18, images[i : i + 1], layer="layer4", classes="top2", methods=["gradcam", "hirescam"]
        )
        assert torch.equal(one.class_ids[0], res.class_ids[i])
        for m in ("gradcam", "hirescam"):
            torch.testing.assert_close(res.maps[m][i], one.maps[m][0], atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(res.logits[i], one.logits[0], atol=1e-5, rtol=1e-4)


def test_chunked_gradients_for_many_classes_match(resnet18, images, monkeypatch):
    """Forcing tiny chunks (as for K = 1000) must not change the maps."""
    full = cam_core.explain(resnet18, images[:1], layer="layer4", classes=list(range(20)), methods=["gradcam"])
    monkeypatch.setattr("cam_core.engine.explainer._GRAD_CHUNK_ELEMENTS", 1)
    chunked = cam_core.explain(resnet18, images[:1], layer="layer4", classes=list(range(20)), methods=["gradcam"])
    torch.testing.assert_close(full.maps["gradcam"], chunked.maps["gradcam"])
    assert chunked.cost["backward_batches"] == 20


def test_gradcam_agrees_with_captum_before_normalisation(resnet18, images):
    from captum.attr import LayerGradCam

    classes = [3, 250, 811]
    ours = cam_core.explain(resnet18, images[:2], layer="layer4", classes=classes, methods=["gradcam"])
    lgc = LayerGradCam(resnet18, resnet18.layer4)
    for k, c in enumerate(classes):
        # relu_attributions=False: captum's raw signed map, the same quantity as ours.
        ref = lgc.attribute(images[:2], target=c, relu_attributions=False).detach()[:, 0]
        torch.testing.assert_close(ours.maps["gradcam"][:, k], ref, atol=1e-5, rtol=1e-4)


def test_gradcam_agrees_with_pytorch_grad_cam_after_its_normalisation(resnet18, images):
    """pytorch-grad-cam returns ReLU'd, min-max scaled maps resized to the input; we apply the same steps."""
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    classes = [3, 250, 811]
    ours = cam_core.explain(resnet18, images[:1], layer="layer4", classes=classes, methods=["gradcam"])
    with GradCAM(model=resnet18, target_layers=[resnet18.layer4]) as gc:
        for k, c in enumerate(classes):
            ref = gc(input_tensor=images[:1], targets=[ClassifierOutputTarget(c)])[0]
            m = ours.maps["gradcam"][0, k].clamp_min(0)
            m = (m - m.min()) / (m.max() - m.min() + 1e-7)  # their scale_cam_image: min-max, then resize
            up = torch.nn.functional.interpolate(m[None, None], size=(96, 96), mode="bilinear", align_corners=False)
            np.testing.assert_allclose(up[0, 0].numpy(), ref, atol=2e-3)
    assert _no_hooks(resnet18)


def test_hooks_gone_and_grad_mode_restored_after_an_exception():
    class Exploding(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)
            self.relu = nn.ReLU(inplace=True)

        def forward(self, x):
            self.relu(self.conv(x))
            raise RuntimeError("boom after the layer")

    model = Exploding().eval()
    assert torch.is_grad_enabled()
    with pytest.raises(RuntimeError, match="boom"):
        cam_core.explain(model, torch.randn(1, 3, 8, 8), layer="conv", classes=[0])
    assert _no_hooks(model)
    assert torch.is_grad_enabled()
    with torch.no_grad():
        with pytest.raises(RuntimeError, match="boom"):
            cam_core.explain(model, torch.randn(1, 3, 8, 8), layer="conv", classes=[0])
        assert not torch.is_grad_enabled()


def test_in_place_relu_after_layer_keeps_pre_activation_values():
    """resnet's conv → bn → ReLU(inplace): the captured bn output must stay signed."""
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None).eval()
    x = torch.randn(1, 3, 64, 64)
    res = cam_core.explain(model, x, layer="bn1", classes=[0], keep_activations=True)
    ref = model.bn1(model.conv1(x)).detach()
    torch.testing.assert_close(res.activations, ref)
    assert (res.activations < 0).any()
    assert res.stats["act_neg_frac"][0] > 0.1


def test_no_graph_outlives_the_call(images):
    model = torchvision.models.resnet18(weights=None).eval()  # fresh: peers' full backwards fill .grad
    res = cam_core.explain(model, images[:1], layer="layer4", classes="top3", methods=["gradcam", "hirescam"])
    for t in (res.logits, res.probs, *res.maps.values(), *res.weights.values()):
        assert not t.requires_grad and t.grad_fn is None and t.device.type == "cpu"
    assert all(p.grad is None for p in model.parameters()), "gradients must not reach the parameters"


def test_two_threads_get_their_own_maps(resnet18, images):
    jobs = [("layer4", [1, 2]), ("layer3", [900]), ("layer2", [5, 6, 7]), ("layer4", [400])]
    alone = [cam_core.explain(resnet18, images[:1], layer=ly, classes=c, methods=["gradcam"]) for ly, c in jobs]
    results: dict[int, cam_core.ExplainResult] = {}
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(jobs))

    def work(i: int) -> None:
        try:
            barrier.wait()
            for _ in range(3):
                results[i] = cam_core.explain(resnet18, images[:1], layer=jobs[i][0], classes=jobs[i][1])
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for i, ref in enumerate(alone):
        torch.testing.assert_close(results[i].maps["gradcam"], ref.maps["gradcam"])
    assert _no_hooks(resnet18)


def test_upsampled_is_bilinear_to_input_size(resnet18, images):
    res = cam_core.explain(resnet18, images[:1], layer="layer4", classes=[0])
    up = res.upsampled("gradcam")
    assert up.shape == (1, 1, 96, 96)
    ref = torch.nn.functional.interpolate(res.maps["gradcam"], size=(96, 96), mode="bilinear", align_corners=False)
    torch.testing.assert_close(up, ref)
    with pytest.raises(cam_core.CamError, match="not computed"):
        res.upsampled("hirescam")


def test_softmax_target_differs_from_logit(resnet18, images):
    a = cam_core.explain(resnet18, images[:1], layer="layer4", classes=[0], target="logit")
    b = cam_core.explain(resnet18, images[:1], layer="layer4", classes=[0], target="softmax")
    assert not torch.allclose(a.maps["gradcam"], b.maps["gradcam"])


def test_resolve_classes_forms():
    logits = torch.tensor([[0.1, 3.0, 2.0, -1.0], [5.0, 0.0, 1.0, 2.0]])
    names = ["tabby", "Egyptian cat", "tiger cat", "dog"]
    assert resolve_classes("top2", logits, names).tolist() == [[1, 2], [0, 3]]
    assert resolve_classes("3,0", logits, names).tolist() == [[3, 0], [3, 0]]
    assert resolve_classes("tabby, egyptian cat", logits, names).tolist() == [[0, 1], [0, 1]]
    assert resolve_classes([2, "dog"], logits, names).tolist() == [[2, 3], [2, 3]]
    with pytest.raises(cam_core.CamError, match="did you mean: Egyptian cat"):
        resolve_classes("egyptain cat", logits, names)
    with pytest.raises(cam_core.CamError, match="out of range"):
        resolve_classes("7", logits, names)
    with pytest.raises(cam_core.CamError, match="between 1 and 4"):
        resolve_classes("top9", logits, names)


def test_unknown_layer_and_device_are_clear(resnet18, images):
    with pytest.raises(cam_core.CamError, match=r"unknown layer 'layer9'.*valid layers include"):
        cam_core.explain(resnet18, images[:1], layer="layer9", classes=[0])
    with pytest.raises(cam_core.CamError, match="unknown device"):
        resolve_device("tpu9")
    assert resolve_device("auto").type in ("cpu", "cuda", "mps")
    assert _no_hooks(resnet18)


def test_contrast_target_is_difference_of_gradcams(resnet18, images):
    from cam_core.engine.targets import Contrast

    ab = cam_core.explain(resnet18, images[:1], layer="layer4", classes=[10, 20], methods=["gradcam", "hirescam"])
    contrast = cam_core.explain(
        resnet18, images[:1], layer="layer4", classes=[10], methods=["gradcam", "hirescam"], target=Contrast(20)
    )
    for m in ("gradcam", "hirescam"):
        torch.testing.assert_close(
            contrast.maps[m][:, 0], ab.maps[m][:, 0] - ab.maps[m][:, 1], atol=1e-5, rtol=1e-4
        )


def test_perturbation_methods_run_batched_and_count_forwards():
    from tests.tiny import gapnet

    net = gapnet()
    x = torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(3))
    res = cam_core.explain(net, x, layer="features", classes=[1], methods=["scorecam", "ablationcam"], batch_size=5)
    # 16 channels in batches of 5 → 4 forwards each, plus the first forward
    assert res.cost["forwards"] == 1 + 4 + 4
    # Ablation-CAM by brute force: zero each channel with a plain forward
    acts = net.features(x).detach()
    base = net.fc(acts.mean((2, 3)))[0, 1]
    w = []
    for k in range(16):
        a = acts.clone()
        a[:, k] = 0
        w.append((base - net.fc(a.mean((2, 3)))[0, 1]) / base)
    ref = torch.einsum("c,chw->hw", torch.stack(w).detach(), acts[0])
    torch.testing.assert_close(res.maps["ablationcam"][0, 0], ref, atol=1e-4, rtol=1e-3)


def test_capture_several_layers_one_backward_matches_single_layer(resnet18, images):
    """Deeper captures stay in the graph: one backward gives every layer's gradient, as separate calls do."""
    from cam_core.engine.capture import capture_layers

    layers = ["layer2", "layer3", "layer4"]
    with capture_layers(resnet18, layers) as cap, torch.no_grad():
        out = resnet18(images[:1])
    cap.check()
    grads = torch.autograd.grad(out[0, 5], [cap[n] for n in layers])
    for name, g in zip(layers, grads, strict=True):
        single = cam_core.explain(resnet18, images[:1], layer=name, classes=[5], methods=["gradcam"])
        torch.testing.assert_close(single.weights["gradcam"][0, 0], g[0].mean((-2, -1)), atol=1e-6, rtol=1e-4)
    assert _no_hooks(resnet18)


@pytest.mark.parametrize(
    "exc",
    [torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
     RuntimeError("[enforce fail at alloc_cpu.cpp:119] DefaultCPUAllocator: can't allocate memory: you tried 9 GB")],
)
def test_out_of_memory_becomes_a_clear_message(exc):
    from tests.tiny import gapnet

    net = gapnet()

    def explode(_m, _i, _o):
        raise exc

    handle = net.fc.register_forward_hook(explode)
    try:
        with pytest.raises(cam_core.CamError, match="out of memory on cpu while computing the maps"):
            cam_core.explain(net, torch.randn(1, 3, 16, 16), layer="features", classes=[0])
    finally:
        handle.remove()
    assert torch.is_grad_enabled()


def test_other_runtime_errors_are_not_disguised_as_memory():
    from tests.tiny import gapnet

    with pytest.raises(RuntimeError, match=r"size mismatch|shape|channels"):
        cam_core.explain(gapnet(), torch.randn(1, 4, 16, 16), layer="features", classes=[0])
