"""The seed question, reproduced: a confident, correct prediction with an empty Grad-CAM.

The seed user's model (``shared/fixtures/seed_net.py``: ResNet-50 trunk, L2-normalised
256-d embedding, cosine classifier) gets its head (embedding + classifier) trained
on a small synthetic 3-class task (coloured discs, squares and triangles on noisy
backgrounds) with the trunk frozen and random, as the seed's transfer learning
would freeze a pretrained one (only the trunk's BatchNorm statistics are measured on
the data, so that a random trunk still gives varied features). Pooled trunk features
are computed once, so the head trains in well under a second; then, for training
(fitted: cosine ≈ 1, as the seed's 0.9999) and held-out images, the Grad-CAM of
the predicted class is taken at ``extractor.extractor.7.2.conv3`` (the seed's
layer, inside the last bottleneck's residual branch, before bn3, the add and the
ReLU) and at the block output ``extractor.extractor.7`` (the recommended layer),
and diagnosed. It prints the numbers and findings and writes PNGs (photo, ReLU'd
and signed overlays at both layers) for the correct prediction with the highest logit
among those whose conv3 map is empty. It also saves the trained model's state dict, the
class names and that image, so the same case opens in the dashboard and the CLI
(the script prints how).

Run: ``python examples/seed_empty_map.py --out out/seed`` (under a minute on 2 CPU cores).
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw

import cam_core
from cam_core.analysis.diagnose import diagnose, layer_context, probe_head
from cam_core.render import overlay, save_png

CONV3 = "extractor.extractor.7.2.conv3"
BLOCK = "extractor.extractor.7"
CLASSES = ["disc", "square", "triangle"]
COLORS = [(220, 60, 50), (60, 200, 70), (60, 90, 220)]  # each class has its colour too: an easy task
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def find_fixtures() -> Path:
    """The folder holding seed_net.py (shared/fixtures next to or above the repository)."""
    repo = Path(__file__).resolve().parents[1]
    for folder in (repo / "shared" / "fixtures", repo.parent / "shared" / "fixtures", Path("/work/shared/fixtures")):
        if (folder / "seed_net.py").is_file():
            return folder
    raise SystemExit("seed_net.py not found; pass --fixtures DIR")


def shape_image(label: int, size: int, rng: np.random.Generator) -> Image.Image:
    """One shape of class ``label`` in a random colour, place and size on a noisy background."""
    noise = rng.integers(60, 140, size=(size, size, 3), dtype=np.uint8)
    img = Image.fromarray(noise)
    draw = ImageDraw.Draw(img)
    r = rng.uniform(0.18, 0.3) * size
    cx, cy = rng.uniform(r, size - r, size=2)
    base = np.array(COLORS[label], dtype=float)
    color = tuple(int(c) for c in np.clip(base + rng.normal(0, 20, size=3), 0, 255))
    if label == 0:
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=color)
    elif label == 1:
        draw.rectangle([cx - r, cy - r, cx + r, cy + r], fill=color)
    else:
        pts = [(cx + r * math.cos(a), cy + r * math.sin(a)) for a in (-math.pi / 2, math.pi / 6, 5 * math.pi / 6)]
        draw.polygon(pts, fill=color)
    return img


def to_tensor(img: Image.Image) -> torch.Tensor:
    x = torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0).permute(2, 0, 1)
    return (x - torch.tensor(MEAN).view(3, 1, 1)) / torch.tensor(STD).view(3, 1, 1)


def dataset(per_class: int, size: int, seed: int) -> tuple[list[Image.Image], torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(seed)
    labels = [c for _ in range(per_class) for c in range(len(CLASSES))]
    images = [shape_image(c, size, rng) for c in labels]
    return images, torch.stack([to_tensor(i) for i in images]), torch.tensor(labels)


@torch.no_grad()
def calibrate_batchnorm(net: torch.nn.Module, x: torch.Tensor) -> None:
    """Set the trunk's BatchNorm running statistics from the data (weights stay random and frozen).

    A random trunk with BatchNorm at its initial statistics (mean 0, variance 1) lets activations
    grow block after block until every image gives nearly the same features; statistics measured on
    the data keep the trunk's features as varied as a trained trunk's.
    """
    bns = [m for m in net.extractor.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # a cumulative average over the batches below
    net.extractor.train()
    net.extractor(x)
    net.extractor.eval()


@torch.no_grad()
def pooled_features(net: torch.nn.Module, x: torch.Tensor, batch: int = 16) -> torch.Tensor:
    return torch.cat([net.extractor(x[i : i + batch]) for i in range(0, len(x), batch)])


def train_head(net: torch.nn.Module, feats: torch.Tensor, y: torch.Tensor, steps: int) -> float:
    """Cross-entropy on the cosine logits (no scale, as in the seed), trunk frozen. Returns the last loss."""
    params = [*net.embedding.parameters(), *net.classifier.parameters()]
    opt = torch.optim.Adam(params, lr=1e-2)
    loss = torch.tensor(float("nan"))
    for _ in range(steps):
        opt.zero_grad()
        loss = F.cross_entropy(net.classifier(net.embedding(feats)), y)
        loss.backward()
        opt.step()
    return float(loss.detach())


def view_of(x: torch.Tensor) -> np.ndarray:
    rgb = x * torch.tensor(STD).view(3, 1, 1) + torch.tensor(MEAN).view(3, 1, 1)
    return (rgb.clamp(0, 1).permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="out/seed_empty_map", help="folder for the PNGs")
    p.add_argument("--fixtures", type=Path, default=None, help="folder with seed_net.py")
    p.add_argument("--per-class", type=int, default=12, help="training images per class")
    p.add_argument("--test-per-class", type=int, default=6, help="held-out images per class")
    p.add_argument("--size", type=int, default=224, help="image size")
    p.add_argument("--steps", type=int, default=400, help="training steps of the head")
    args = p.parse_args(argv)

    sys.path.insert(0, str(args.fixtures or find_fixtures()))
    import seed_net

    net = seed_net.build(len(CLASSES))  # eval mode: BatchNorm uses its (random-init) running statistics
    for q in net.extractor.parameters():
        q.requires_grad_(False)
    _, x_train, y_train = dataset(args.per_class, args.size, seed=0)
    _, x_test, y_test = dataset(args.test_per_class, args.size, seed=1)
    calibrate_batchnorm(net, x_train)
    loss = train_head(net, pooled_features(net, x_train), y_train, args.steps)
    with torch.no_grad():
        train_acc = float((net(x_train).argmax(1) == y_train).float().mean())
    print(f"head trained {args.steps} steps: loss {loss:.4f}, train accuracy {train_acc:.0%}")

    info3, rec = layer_context(net, CONV3, args.size)
    info7, _ = layer_context(net, BLOCK, args.size)
    head = probe_head(net, x_test[:1], BLOCK)
    print(
        f"head probe: doubling `{BLOCK}` changes the logits by {head.change:.2%} (scale-invariant: "
        f"{head.scale_invariant})"
    )
    # Training images (fitted: cosine ≈ 1, as the seed's 0.9999) and held-out ones, both diagnosed.
    x_all, y_all = torch.cat([x_train, x_test]), torch.cat([y_train, y_test])
    held_out = torch.arange(len(y_all)) >= len(y_train)
    res3 = cam_core.explain(net, x_all, layer=CONV3, classes="top1", methods=["gradcam", "hirescam"])
    res7 = cam_core.explain(net, x_all, layer=BLOCK, classes="top1", methods=["gradcam", "hirescam"])
    pred = res3.class_ids[:, 0]
    correct = pred == y_all
    print(f"test accuracy {float(correct[held_out].float().mean()):.0%} on {int(held_out.sum())} held-out images")
    d3 = [diagnose(res3, i, 0, "gradcam", info3, rec, head) for i in range(len(y_all))]
    d7 = [diagnose(res7, i, 0, "gradcam", info7, rec, head) for i in range(len(y_all))]
    for name, part in (("training", ~held_out), ("held-out", held_out)):
        idx = part.nonzero()[:, 0].tolist()
        top = res3.logits[idx].amax(1)
        print(
            f"{name} images: top logit {float(top.min()):.4f}..{float(top.max()):.4f}; predicted class's Grad-CAM "
            f"empty after ReLU at conv3 {sum(d3[i].empty_after_relu for i in idx)}/{len(idx)}, at the block "
            f"output {sum(d7[i].empty_after_relu for i in idx)}/{len(idx)}; mean positive share "
            f"{np.mean([d3[i].pos_mass_share for i in idx]):.0%} vs {np.mean([d7[i].pos_mass_share for i in idx]):.0%}"
        )
    # The seed's case: a correct prediction, the highest logit among those with an empty conv3 map.
    cands = [i for i in range(len(y_all)) if d3[i].empty_after_relu and bool(correct[i])]
    score = res3.logits.amax(1)
    pick = max(cands, key=lambda i: float(score[i])) if cands else int(np.argmin([d.pos_mass_share for d in d3]))
    logits = ", ".join(f"{v:+.4f}" for v in res3.logits[pick].tolist())
    print(f"\nimage {pick}: a {CLASSES[int(y_all[pick])]}, predicted {CLASSES[int(pred[pick])]}, logits [{logits}]")
    for name, d in ((CONV3, d3[pick]), (BLOCK, d7[pick])):
        print(
            f"\n== {name}: {d.pos_mass_share:.0%} positive mass, mean {d.map_mean:.3g}, std {d.map_std:.3g}, "
            f"activations {d.act_neg_frac:.0%} negative"
        )
        for f in d.findings:
            print(f"- [{f.severity}] {f.text}\n  fix: {f.fix}")

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    view = view_of(x_all[pick])
    tiles = [view]
    for res in (res3, res7):
        up = res.upsampled("gradcam")[pick, 0].numpy()
        tiles += [overlay(view, up, view="relu"), overlay(view, up, view="signed")]
    save_png(np.concatenate(tiles, axis=1), out / "seed_empty_map.png")
    print(f"\nwrote {out / 'seed_empty_map.png'}: photo | conv3 ReLU'd | conv3 signed | block ReLU'd | block signed")
    save_case(net, view, out, Path(seed_net.__file__).parent)
    return 0


def save_case(net: torch.nn.Module, image: np.ndarray, out: Path, fixtures: Path) -> None:
    """The trained model, its class names and the picked image, and how to open them elsewhere."""
    torch.save(net.state_dict(), out / "seed_net_trained.pt")
    (out / "labels.txt").write_text("\n".join(CLASSES) + "\n")
    save_png(image, out / "seed_case.png")
    print(
        f"\nsaved {out / 'seed_net_trained.pt'}, {out / 'labels.txt'} and {out / 'seed_case.png'}. The same case:\n"
        f"  dashboard: Model source 'Python factory' = seed_net:build, import folder {fixtures}, state dict "
        f"seed_net_trained.pt, class names labels.txt; upload seed_case.png; pick {CONV3} in the layer tree\n"
        f"  CLI: python -m cam_core explain --model seed_net:build --import-path {fixtures} "
        f"--checkpoint {out / 'seed_net_trained.pt'} --labels {out / 'labels.txt'} --image {out / 'seed_case.png'} "
        f"--layer {CONV3} --classes top1 --out {out / 'cli'}"
    )


if __name__ == "__main__":
    raise SystemExit(main())
