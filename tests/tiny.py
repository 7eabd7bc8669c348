"""Tiny hand-built models whose maps can be worked out on paper (captum's style).

``SpatialNet``: x (1, 1, 2, 2) = [[1, 2], [3, 4]]; a 1×1 conv with weights
[1, -0.5] gives A0 = x, A1 = -0.5·x; the head is linear over every position,
logit_c = Σ_kij V[c, k, i, j] A_kij, so the gradient of logit c is exactly V[c].
"""

from __future__ import annotations

import torch
from torch import nn

X = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])

# V[c, k]: class 0 uses A0 at (0,0) and A1 at (1,1); class 1 uses A0 at (0,1) (negatively) and A1 at (1,0).
V = torch.zeros(2, 2, 2, 2)
V[0, 0, 0, 0] = 1.0
V[0, 1, 1, 1] = 4.0
V[1, 0, 0, 1] = -1.0
V[1, 1, 1, 0] = 1.0


class SpatialHead(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(V.clone())

    def forward(self, a: torch.Tensor) -> torch.Tensor:
        return torch.einsum("nkij,ckij->nc", a, self.weight)


class SpatialNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, kernel_size=1, bias=False)
        with torch.no_grad():
            self.conv.weight.copy_(torch.tensor([1.0, -0.5]).view(2, 1, 1, 1))
        self.head = SpatialHead()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.conv(x))


class GapNet(nn.Module):
    """conv → ReLU → conv → ReLU (``features``) → global average pool → linear: CAM applies at ``features``."""

    def __init__(self, classes: int = 5) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(inplace=True), nn.Conv2d(8, 16, 3, stride=2, padding=1),
            nn.ReLU(inplace=True),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.features(x)).flatten(1))


def gapnet(seed: int = 0, classes: int = 5) -> GapNet:
    torch.manual_seed(seed)
    return GapNet(classes).eval()


def save_tiny_vit(folder, image_size: int = 32, patch_size: int = 8, seed: int = 0, **processor):
    """A tiny Hugging Face ViT (2 blocks, classes cat/dog/bird) saved with its image processor in ``folder``.

    ``processor`` overrides the ViTImageProcessor's settings (``image_mean``, ``image_std``, …). Returns the model.
    """
    import transformers

    labels = {0: "cat", 1: "dog", 2: "bird"}
    config = transformers.ViTConfig(
        image_size=image_size, patch_size=patch_size, num_hidden_layers=2, hidden_size=32, num_attention_heads=2,
        intermediate_size=64, num_labels=3, id2label=labels, label2id={v: k for k, v in labels.items()},
    )
    torch.manual_seed(seed)
    model = transformers.ViTForImageClassification(config).eval()
    model.save_pretrained(folder)
    size = {"height": image_size, "width": image_size}
    transformers.ViTImageProcessor(size=size, **processor).save_pretrained(folder)
    return model


COLOURS = {"red": (1, 0, 0), "green": (0, 1, 0), "blue": (0, 0, 1), "yellow": (1, 1, 0), "cyan": (0, 1, 1)}


def colour_net() -> GapNet:
    """A :class:`GapNet` that names a patch's colour (classes :data:`COLOURS`, in order): its features pass each
    channel through as itself and as its negative (ReLU'd), and class c's weights add the channels that are on
    (positive) and off (negative) in c's colour. Its maps light up where the colour is."""
    net = GapNet(classes=len(COLOURS)).eval()
    with torch.no_grad():
        for p in net.parameters():
            p.zero_()
        first, second = net.features[0], net.features[2]
        for k in range(3):
            first.weight[k, k, 1, 1], first.weight[3 + k, k, 1, 1] = 1.0, -1.0
        for k in range(6):
            second.weight[k, k, 1, 1] = 1.0
        for c, rgb in enumerate(COLOURS.values()):
            for k, on in enumerate(rgb):
                net.fc.weight[c, k if on else 3 + k] = 1.0
    return net


def write_colour_folder(root, per_class: int = 3, seed: int = 0, misfiled: dict[str, str] | None = None) -> list:
    """An ImageFolder of coloured patches (brightest at their centre) on grey noise at the normalisation's mean
    (``root/<colour>/<i>.png``), photos of a few sizes.

    ``misfiled``: colour → folder: one extra patch of that colour filed under another colour's folder.
    """
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    written = []

    def patch(rgb, path):
        h, w = int(rng.choice([40, 48, 64])), int(rng.choice([40, 56, 64]))
        mean = np.array([0.485, 0.456, 0.406])  # the normalisation's mean: the background's features are near 0
        im = (rng.normal(mean, 0.03, (h, w, 3)).clip(0, 1) * 255).astype(np.uint8)
        y, x = int(rng.integers(0, h - 16)), int(rng.integers(0, w - 16))
        yy, xx = np.mgrid[-7.5:8, -7.5:8]
        bump = 0.6 + 0.4 * np.exp(-(yy**2 + xx**2) / 20)[..., None]  # one brightest point: the maps have one peak
        im[y:y + 16, x:x + 16] = np.array(rgb) * bump * 255
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(im).save(path)
        written.append(path)

    for name, rgb in COLOURS.items():
        for i in range(per_class):
            patch(rgb, root / name / f"{name}_{i}.png")
    for colour, folder in (misfiled or {}).items():
        patch(COLOURS[colour], root / folder / f"misfiled_{colour}.png")
    return written
