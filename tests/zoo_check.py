"""One model of the zoo, checked end to end: it loads with random weights, lists its layers, recommends a layer a
person would choose, explains its top 3 classes with the gradient methods (no NaN), and its Grad-CAM equals
pytorch-grad-cam's at the same layer.

Shared by tests/test_zoo.py (a CI sample) and benchmarks/zoo.py (the whole zoo). The checks on the recommended
layer are written here from the names and types a person reads, apart from the rule's own code
(:mod:`cam_core.models.layer_choice`), so that they test it rather than repeat it.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

import numpy as np
import torch

import cam_core
from cam_core.models import LayerInfo, grid_transform, list_layers
from cam_core.modules import get_layer

__all__ = ["GRADIENT_METHODS", "ZooRow", "check_model", "person_problems"]

GRADIENT_METHODS = ("gradcam", "hirescam", "layercam", "xgradcam", "gradcampp")
_HEADS = {"head", "heads", "head_dist", "aux_head", "classifier", "fc", "pre_logits", "last_linear"}
_ATTENTION = re.compile(r"^(self_|cross_)?(attn|attention|mhsa)$|^(q|k|v|qkv)$", re.IGNORECASE)
# pytorch-grad-cam's Grad-CAM at the same layer, within this share of the map's largest |value|.
PEER_RTOL = 1e-3


@dataclass
class ZooRow:
    """What one model gave (one row of benchmarks/zoo.py's table)."""

    spec: str
    family: str = ""
    size: tuple[int, int] | None = None
    layer: str = ""
    why: str = ""
    peer: str = ""
    seconds: float = 0.0
    error: str = ""
    zero_head: bool = False


def person_problems(layers: list[LayerInfo], num_classes: int) -> list[str]:
    """Why the recommended layer is not one a person would choose (empty when it is)."""
    recommended = [i for i in layers if i.recommended]
    if len(recommended) != 1:
        return [f"{len(recommended)} recommended layers"]
    info = recommended[0]
    parts = info.name.lower().split(".")
    types = {i.name: i.type for i in layers}
    problems = []
    if not info.camable:
        problems.append("not CAM-able")
    if not info.why:
        problems.append("no one-line why")
    if _HEADS & set(parts):
        problems.append("inside the classifier head")
    for k in range(1, len(parts) + 1):
        prefix = ".".join(info.name.split(".")[:k])
        if _ATTENTION.search(parts[k - 1]) or re.search("Attention$|^ClassAttn$|^MHSA$|^GPSA$", types[prefix]):
            problems.append(f"inside attention ({prefix}: {types[prefix]})")
    if info.type.startswith("Adaptive") and "Pool" in info.type:
        problems.append("a resampling adaptive pool")
    if info.channels == num_classes and num_classes > 64:
        problems.append(f"class-score maps ({num_classes} channels)")
    if "no_patch_gradient" in info.hints:
        problems.append("patch tokens get no gradient")
    return problems


def _peer_gradcam(model: cam_core.models.LoadedModel, layer: str, x: torch.Tensor, cid: int) -> torch.Tensor:
    """pytorch-grad-cam's raw Grad-CAM (before its ReLU and scaling), the layer's output read as a map."""
    import pytorch_grad_cam as pgc
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    class Raw(pgc.GradCAM):
        def get_cam_image(self, *args, **kwargs):
            self.raw = super().get_cam_image(*args, **kwargs)
            return self.raw

    info = next(i for i in list_layers(model) if i.name == layer)
    # Token and channels-last layers need a reshape (pytorch-grad-cam's ViT/Swin recipe); a plain map does not.
    reshape = None if info.reason.startswith("map ") else grid_transform(model, layer)
    with Raw(model=model.module, target_layers=[get_layer(model.module, layer)], reshape_transform=reshape) as cam:
        cam(input_tensor=x, targets=[ClassifierOutputTarget(cid)])
        return torch.as_tensor(np.asarray(cam.raw))[0].float()


def check_model(
    spec: str, size: int | None = None, family: str = "", peer: bool = True, seed: int = 0
) -> ZooRow:
    """Load ``spec`` with random weights (at ``size``), check its recommended layer, explain, compare.

    Failures are returned in ``row.error`` (one line), not raised, so that a sweep goes on.
    """
    row = ZooRow(spec, family)
    start = time.perf_counter()
    try:
        torch.manual_seed(seed)
        model = cam_core.load_model(spec, weights=None, input_size=size)
        row.size = model.input_size
        layers = list_layers(model)
        problems = person_problems(layers, model.num_classes)
        info = next((i for i in layers if i.recommended), None)
        row.layer, row.why = (info.name, info.why) if info is not None else ("", "")
        if problems:
            raise AssertionError(f"recommended {row.layer!r}: {'; '.join(problems)}")
        x = torch.randn(1, 3, *model.input_size, generator=torch.Generator().manual_seed(seed))
        res = cam_core.explain(model, x, classes="top3", methods=list(GRADIENT_METHODS), device="cpu")
        if res.layer != row.layer:
            raise AssertionError(f"explain used {res.layer!r}, not the recommended {row.layer!r}")
        for method, maps in res.maps.items():
            if not bool(torch.isfinite(maps).all()):
                raise AssertionError(f"{method}: NaN or infinite values in the map")
        row.zero_head = bool((res.logits == res.logits[0, 0]).all())
        if peer:
            ours = res.maps["gradcam"][0, 0]
            theirs = _peer_gradcam(model, row.layer, x, int(res.class_ids[0, 0]))
            scale = float(theirs.abs().max())
            diff = float((ours - theirs).abs().max()) if ours.shape == theirs.shape else float("inf")
            row.peer = f"{diff:.1e}" + (" (zero head)" if row.zero_head else f" of {scale:.1e}")
            if not diff <= PEER_RTOL * max(scale, 1e-12) and not (row.zero_head and scale == 0):
                raise AssertionError(f"Grad-CAM differs from pytorch-grad-cam's by {diff:.3g} (its max {scale:.3g})")
        else:
            row.peer = "skipped"
    except Exception as exc:  # one line per model: the sweep goes on
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        row.error = f"{type(exc).__name__}: {text}"[:300]
    row.seconds = time.perf_counter() - start
    return row
