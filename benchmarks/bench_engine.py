"""Engine speed against the physical floor, as ratios measured in one process.

Baseline (b) is one forward plus one ordinary backward of one logit (what any
gradient method must at least pay for, done the usual way with parameter
gradients). Everything is printed as a ratio to (b) so numbers compare across
machines. Run: ``python benchmarks/bench_engine.py [--peers] [--repeats 7]``.

(a) forward only, (b) forward + backward of one logit, (c) our Grad-CAM at
``layer4`` for 1, 3, 20 and 1000 classes, (d) a batch of 8 images, top-3 each
(per image); with ``--peers``: pytorch-grad-cam, captum and torchcam at 20 classes.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
import torchvision

import cam_core


def median_time(fn: Callable[[], object], repeats: int, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def peers(model: torch.nn.Module, x: torch.Tensor, classes: list[int]) -> dict[str, Callable[[], object]]:
    """How the peer libraries produce Grad-CAM for several classes (their documented usage)."""
    out: dict[str, Callable[[], object]] = {}
    try:
        from pytorch_grad_cam import GradCAM
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

        def pgc() -> None:
            with GradCAM(model=model, target_layers=[model.layer4]) as cam:
                for c in classes:
                    cam(input_tensor=x, targets=[ClassifierOutputTarget(c)])

        out["pytorch-grad-cam"] = pgc
    except ImportError:
        pass
    try:
        from captum.attr import LayerGradCam

        def captum() -> None:
            lgc = LayerGradCam(model, model.layer4)
            for c in classes:
                lgc.attribute(x, target=c)

        out["captum"] = captum
    except ImportError:
        pass
    try:
        from torchcam.methods import GradCAM as TCGradCAM

        def torchcam() -> None:
            with TCGradCAM(model, target_layer="layer4") as ext:
                scores = model(x)
                for i, c in enumerate(classes):
                    ext(c, scores, retain_graph=i < len(classes) - 1)

        out["torchcam"] = torchcam
    except ImportError:
        pass
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--peers", action="store_true", help="also time pytorch-grad-cam, captum, torchcam")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    torch.manual_seed(0)
    dev = torch.device(args.device)
    model = torchvision.models.resnet50(weights=None).eval().to(dev)
    x = torch.randn(1, 3, 224, 224, device=dev)
    x8 = torch.randn(8, 3, 224, 224, device=dev)

    def sync() -> None:
        if dev.type == "cuda":
            torch.cuda.synchronize()

    def forward() -> None:
        with torch.no_grad():
            model(x)
        sync()

    def forward_backward() -> None:
        model.zero_grad(set_to_none=True)
        model(x)[0, 281].backward()
        sync()

    def ours(classes: list[int] | str, inp: torch.Tensor = x) -> Callable[[], None]:
        def run() -> None:
            cam_core.explain(model, inp, layer="layer4", classes=classes, methods=["gradcam"], device=dev)
            sync()

        return run

    rows: list[tuple[str, float]] = [
        ("(a) forward only", median_time(forward, args.repeats)),
        ("(b) forward + backward, 1 logit [baseline]", median_time(forward_backward, args.repeats)),
    ]
    for k in (1, 3, 20, 1000):
        label = f"(c) ours Grad-CAM, {k} class{'es' if k > 1 else ''}"
        rows.append((label, median_time(ours(list(range(k))), args.repeats)))
    rows.append(("(d) ours Grad-CAM, batch of 8, top-3 each", median_time(ours("top3", x8), max(3, args.repeats // 2))))
    if args.peers:
        for name, fn in peers(model, x, list(range(20))).items():
            rows.append((f"(p) {name} Grad-CAM, 20 classes", median_time(fn, 3, warmup=1)))

    base = rows[1][1]
    print(f"resnet50, {args.device}, 224², torch {torch.__version__}, {torch.get_num_threads()} threads")
    for label, t in rows:
        print(f"{label:<48} {t * 1000:9.1f} ms   {t / base:6.2f}×")


if __name__ == "__main__":
    main()
