"""Video speed: frames per second end to end and for the maps alone, beside pytorch-grad-cam, in one process.

A synthetic clip (default 10 s, 30 fps, 640×360: the cat and the espresso photos gliding over a grass
texture) is written first (not timed). Then, with the offline default model (EfficientNet-Lite0) and
Grad-CAM of the clip's top class at the recommended layer:

- **ours, end to end**: ``explain_clip`` (decoding in a background thread, batches of frames, one forward
  and one batched backward each) and ``write_films`` (a second decode, the overlay with the clip's colour
  scale and the burnt-in label, H.264 encoding): the clip in, the overlay MP4 out;
- **ours, maps alone**: ``explain`` over the same frames already preprocessed in memory, in batches;
- **pytorch-grad-cam, per frame** (its users' way): one ``GradCAM`` call per frame, then its
  ``show_cam_on_image`` overlay, with the same decoding and the same encoder; and its maps alone;
- **decoding and encoding** on their own (a decode pass, an encode of 300 ready frames), as a share of
  our end-to-end time (we decode twice: the clip is never held in memory).

Prints frames per second and the ratios (targets: ours ≥ 3× the per-frame loop end to end; decoding +
encoding < 25% of our total). ``--device`` picks the GPU when there is one (``auto``).
Run: ``python benchmarks/bench_video.py [--seconds 10] [--batch-size 16] [--device auto]``.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import cam_core
from cam_core.devices import resolve_device
from cam_core.engine.clip import WORK_SHORT_SIDE, explain_clip
from cam_core.film import write_films
from cam_core.io.samples import load_sample
from cam_core.io.video import Sampling, VideoWriter, read_frames


def make_clip(path: Path, seconds: float, fps: int, size: tuple[int, int]) -> Path:
    """The cat glides left to right, the espresso right to left, over grass."""
    from skimage import data

    width, height = size
    grass = Image.fromarray(data.grass()).convert("RGB").resize(size)
    cat = load_sample("chelsea").resize((round(height * 0.6 * 451 / 300), round(height * 0.6)))
    cup = load_sample("coffee").resize((round(height * 0.45 * 600 / 400), round(height * 0.45)))
    frames = round(seconds * fps)
    with VideoWriter(path, fps, size) as writer:
        for i in range(frames):
            f = i / max(1, frames - 1)
            frame = grass.copy()
            frame.paste(cat, (round(f * (width - cat.width)), round(height * 0.05)))
            frame.paste(cup, (round((1 - f) * (width - cup.width)), height - cup.height - round(height * 0.05)))
            writer.write(np.asarray(frame))
    return path


def timed(fn):  # -> (seconds, result)
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def ours_end_to_end(model, clip: Path, out: Path, batch: int, device: str):
    def run():
        res = explain_clip(model, clip, classes="top1", methods=["gradcam"], batch_size=batch, device=device)
        films = write_films(clip, res, {("gradcam", 0): out})
        return res, films

    return timed(run)


def prepared(model, clip: Path) -> torch.Tensor:
    """Every frame as the model takes it (decoded as explain_clip decodes), in memory."""
    short = max(WORK_SHORT_SIDE, min(model.input_size))
    return torch.stack([model.preprocess(Image.fromarray(f.rgb), "whole") for f in read_frames(clip,
                        max_short_side=short)])


def ours_maps_alone(model, x: torch.Tensor, cid: int, batch: int, device: str) -> float:
    def run():
        for i in range(0, len(x), batch):
            cam_core.explain(model, x[i : i + batch], classes=[cid], methods=["gradcam"], device=device,
                             throughput=True)  # as explain_clip runs its batches

    return timed(run)[0]


def pytorch_grad_cam_loop(
    model, clip: Path, out: Path, cid: int, device: str, fps: int, frames: int | None
) -> tuple[int, float, float]:
    """(frames, end to end, maps alone) seconds of the per-frame loop: decode → GradCAM → show_cam_on_image →
    encode, over the first ``frames`` frames (all when ``None``: its cost per frame is the same throughout)."""
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.image import show_cam_on_image
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    dev = resolve_device(device)
    module = model.module.to(dev)
    layer = dict(module.named_modules())[cam_core.recommended_layer(model)]
    targets = [ClassifierOutputTarget(cid)]
    maps_time = 0.0
    start = time.perf_counter()
    writer = None
    short = max(WORK_SHORT_SIDE, min(model.input_size))
    with GradCAM(model=module, target_layers=[layer]) as cam:
        for frame in read_frames(clip, Sampling(max_frames=frames), max_short_side=short):
            image = Image.fromarray(frame.rgb)
            x = model.preprocess(image, "whole")[None].to(dev)
            tick = time.perf_counter()
            grayscale = cam(input_tensor=x, targets=targets)[0]
            maps_time += time.perf_counter() - tick
            rgb = np.asarray(image.resize((grayscale.shape[1], grayscale.shape[0])), dtype=np.float32) / 255
            shown = show_cam_on_image(rgb, grayscale, use_rgb=True)
            shown = np.asarray(Image.fromarray(shown).resize(image.size))
            if writer is None:
                writer = VideoWriter(out, fps, image.size)
            writer.write(shown)
    writer.close()
    return writer.frames, time.perf_counter() - start, maps_time


def decode_alone(clip: Path, short: int) -> float:
    return timed(lambda: sum(1 for _ in read_frames(clip, Sampling(), max_short_side=short)))[0]


def encode_alone(clip: Path, out: Path, short: int) -> float:
    frames = [f.rgb for f in read_frames(clip, max_short_side=short)]

    def run():
        with VideoWriter(out, 30, (frames[0].shape[1], frames[0].shape[0])) as writer:
            for frame in frames:
                writer.write(frame)

    return timed(run)[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--fps", type=int, default=30)
    parser.add_argument("--size", default="640x360")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--skip-peer", action="store_true", help="leave out pytorch-grad-cam")
    parser.add_argument(
        "--peer-frames", type=int, help="time pytorch-grad-cam's loop on the first N frames only (default: all)"
    )
    args = parser.parse_args()
    size = tuple(int(v) for v in args.size.split("x"))
    folder = Path(tempfile.mkdtemp(prefix="bench_video_"))
    clip = make_clip(folder / "clip.mp4", args.seconds, args.fps, size)
    model = cam_core.load_model()
    dev = resolve_device(args.device)
    threads = torch.get_num_threads()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"# {args.seconds:g} s at {args.fps} fps, {size[0]}×{size[1]}; {model.name}; device {dev}, "
          f"{threads} torch threads; load average {load:.2f} on {os.cpu_count()} CPUs before the run")
    # Warm-up (not timed): the layer analysis at this input size, first-call allocations.
    explain_clip(model, clip, classes="top1", sampling=Sampling(max_frames=args.batch_size), device=args.device)

    e2e, (res, films) = ours_end_to_end(model, clip, folder / "ours.mp4", args.batch_size, args.device)
    frames = res.frames
    cid = int(res.class_ids[0])
    short = max(WORK_SHORT_SIDE, min(model.input_size))
    x = prepared(model, clip)
    maps_alone = ours_maps_alone(model, x, cid, args.batch_size, args.device)
    dec = decode_alone(clip, short)
    enc = encode_alone(clip, folder / "plain.mp4", short)
    io_share = (2 * dec + enc) / e2e
    print(f"clip's top class: {res.names[cid]} ({cid}), layer {res.layer}, {frames} frames")
    print(f"ours end to end      {frames / e2e:7.2f} frames/s  ({e2e:.1f} s: engine {res.seconds['engine']:.1f} s, "
          f"waiting for frames {res.seconds['waiting']:.1f} s, film {films.seconds['total']:.1f} s)")
    print(f"ours maps alone      {frames / maps_alone:7.2f} frames/s  ({maps_alone:.1f} s)")
    print(f"decode pass {dec:.2f} s, encode pass {enc:.2f} s: decoding (twice) + encoding = {io_share:.1%} of our "
          f"end-to-end time (target < 25%)")
    if args.skip_peer:
        return
    peer_n, peer_e2e, peer_maps = pytorch_grad_cam_loop(
        model, clip, folder / "pgc.mp4", cid, args.device, args.fps, args.peer_frames
    )
    ours_fps, peer_fps = frames / e2e, peer_n / peer_e2e
    print(f"pytorch-grad-cam     {peer_fps:7.2f} frames/s end to end, {peer_n / peer_maps:.2f} frames/s maps alone "
          f"(one GradCAM call per frame, {peer_n} frames)")
    print(f"ratio end to end {ours_fps / peer_fps:.2f}× (target ≥ 3×), maps alone "
          f"{(frames / maps_alone) / (peer_n / peer_maps):.2f}×")


if __name__ == "__main__":
    main()
