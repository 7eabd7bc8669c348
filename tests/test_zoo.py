"""A sample of the model zoos, one small model per family, end to end with random weights (tests/zoo_check.py):
loads, lists its layers, recommends a layer a person would choose (with its one-line why), explains the top 3
classes with the gradient methods without NaN, and its Grad-CAM equals pytorch-grad-cam's at that layer.

The whole zoo (every torchvision classifier, a timm model per family) is benchmarks/zoo.py; this sample is sized
for CI (about a minute on two busy cores). DenseNet is left out of the peer comparison: torchvision's in-place
ReLU after ``features`` changes the tensor pytorch-grad-cam keeps.
"""

from __future__ import annotations

import pytest
import torch

from tests.zoo_check import check_model

pytest.importorskip("timm")
pytest.importorskip("pytorch_grad_cam")

pytestmark = pytest.mark.slow

# (spec, input size or None for the model's own, the layer the rule must pick)
SAMPLE = [
    ("resnet18", 64, "layer4"),
    ("squeezenet1_1", 64, "features.12"),  # not the ReLU over the class-score maps
    ("alexnet", 96, "features.12"),  # not the resampling avgpool
    ("mobilenet_v3_small", 64, "features.12"),
    ("timm:tresnet_m", 64, "body.layer4"),  # its space-to-depth stem: the dummy input has the image's 3 channels
    ("timm:fastvit_t8", 64, "final_conv"),
    ("timm:mobilevit_xxs", 64, "final_conv"),
    ("timm:vit_tiny_patch16_224", None, "blocks.11.norm1"),
    ("timm:convit_tiny", None, "blocks.11.norm1"),  # not inside its MHSA
    ("timm:cait_xxs24_224", None, "blocks_token_only.1.norm1"),  # not inside its ClassAttn
    ("timm:volo_d1_224", None, "norm"),  # not its per-token aux_head
    ("timm:swin_tiny_patch4_window7_224", None, "norm"),
    ("timm:levit_128s", None, "stages.2"),
    ("timm:efficientformer_l1", None, "norm"),
    ("timm:coatnet_nano_rw_224", None, "norm"),
    ("timm:mixer_s16_224", None, "norm"),  # a zero head: every map is zero, and the diagnosis says why
]


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize(("spec", "size", "layer"), SAMPLE, ids=[s for s, _, _ in SAMPLE])
def test_zoo_sample_explains_on_a_layer_a_person_would_choose(spec, size, layer):
    row = check_model(spec, size)
    assert not row.error, row.error
    assert row.layer == layer, row.why
    assert row.why.startswith(("the last spatial map", "the last block's normalised tokens", "the last tokens"))


def test_zero_head_models_say_so():
    import cam_core
    from cam_core.analysis.diagnose import diagnose

    model = cam_core.load_model("timm:mixer_s16_224", weights=None)
    x = torch.randn(1, 3, *model.input_size, generator=torch.Generator().manual_seed(0))
    res = cam_core.explain(model, x, classes="top1", methods=["gradcam"], device="cpu")
    assert float(res.maps["gradcam"].abs().max()) == 0.0
    d = diagnose(res, 0, 0, "gradcam")
    assert d.codes == ["zero_head"]
    assert "classifier's weights are all zero" in d.findings[0].text and "MLP-Mixer" in d.findings[0].text
