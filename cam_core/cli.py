"""Command line: ``python -m cam_core layers|explain|video|sweep|trust|batch``.

User mistakes (unknown model, layer, class or method; unreadable image) end
with one line on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn

import numpy as np
import torch

from .errors import CamError
from .io.folders import output_folder
from .limits import MAX_FORWARD_BATCH

__all__ = ["build_parser", "main"]

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report Ctrl-C


class _Parser(argparse.ArgumentParser):
    """argparse with its mistakes as one line (not the usage block), exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"error: {message} (see {self.prog} --help)\n")


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def _fraction(text: str) -> float:
    """A number from 0 to 1 (an opacity)."""
    value = _number(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text} is not between 0 and 1")
    return value


def _positive(text: str) -> float:
    """A finite number above 0 (a standard deviation)."""
    value = _number(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text} is not above 0")
    return value


def _count(low: int, high: int) -> Callable[[str], int]:
    """A whole number from ``low`` to ``high``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value} is not between {low} and {high}")
        return value

    parse.__name__ = "whole number"
    return parse


_BATCH = _count(1, MAX_FORWARD_BATCH)


class _SpecForms:
    """The ``--model`` help: the spec forms, read from the model-source registry when a help text is shown
    (argparse fills ``%(spec_forms)s`` from the action's attributes). Importing the sources imports
    torchvision, which parsing arguments and ``python -m cam_core --help`` do not need."""

    def __str__(self) -> str:
        from .models.sources import registered_sources, spec_forms

        code = ", ".join(s.label for s in registered_sources() if s.code_bearing)
        return f"{spec_forms()}. Sources that run code (full pickles need --trust-checkpoint): {code}"


def _add_model_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model")
    g.add_argument(
        "--model",
        default="efficientnet_lite0",
        help="%(spec_forms)s",
    ).spec_forms = _SpecForms()
    g.add_argument("--weights", default="DEFAULT", help="torchvision or timm weights: DEFAULT, an enum name, or none")
    g.add_argument("--arch", help="architecture of a state dict: a torchvision name, efficientnet_lite0, timm:NAME")
    g.add_argument("--checkpoint", help="state dict (.pt/.pth/.safetensors) to load into a factory's or timm model")
    g.add_argument(
        "--output", metavar="KEY_OR_INDEX",
        help="for a model returning a tuple or dict: the key, attribute or index of its logits (default: "
        "'logits', else the first (N, classes) tensor)",
    )
    g.add_argument("--labels", help="class names: a text file (one per line) or a JSON list")
    g.add_argument("--trust-checkpoint", action="store_true", help="allow full pickled modules (runs their code)")
    g.add_argument("--import-path", action="append", default=[], metavar="DIR", help="folder added to sys.path")
    g.add_argument("--input-size", type=_count(8, 4096), help="square input size (default: the model's)")
    g.add_argument("--mean", type=_number, nargs=3, help="normalisation mean (RGB)")
    g.add_argument("--std", type=_positive, nargs=3, help="normalisation std (RGB)")
    g.add_argument(
        "--fit",
        choices=["whole", "crop", "squash", "letterbox"],
        help="how an image meets the model's size: whole (short side resized, nothing cropped; the default for "
        "models that take any size), crop (the weights' centre crop), squash, letterbox (padded; the default for "
        "fixed-size models such as ViT)",
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for all subcommands."""
    parser = _Parser(prog="python -m cam_core", description="Class activation maps for PyTorch.")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in (_add_layers, _add_explain, _add_video, _add_sweep, _add_trust, _add_batch):
        add(sub)
    return parser


def _add_layers(sub: argparse._SubParsersAction) -> None:
    """``layers``: the model's options only."""
    p_layers = sub.add_parser("layers", help="print the model's layer tree with shapes and hints")
    _add_model_args(p_layers)


def _add_explain(sub: argparse._SubParsersAction) -> None:
    """``explain``: maps and overlays of images."""
    p_explain = sub.add_parser("explain", help="write maps (.npz) and overlays (.png) for images")
    _add_model_args(p_explain)
    p_explain.add_argument("--image", nargs="+", required=True, help="image files")
    p_explain.add_argument("--layer", help="dotted layer name (default: the recommended layer)")
    p_explain.add_argument("--classes", default="top3", help='top3 | 281,285 | "tabby,Egyptian cat"')
    p_explain.add_argument(
        "--method", action="append", help="CAM method (repeatable; default gradcam; `list` shows them all)"
    )
    p_explain.add_argument(
        "--target", default="logit", choices=["logit", "softmax", "sigmoid"],
        help="score explained (sigmoid: multi-label models)",
    )
    p_explain.add_argument(
        "--probs", choices=["softmax", "sigmoid"],
        help="probabilities written and printed (default: sigmoid with --target sigmoid, else softmax)",
    )
    p_explain.add_argument("--aug-smooth", action="store_true", help="average with the flipped image's map")
    p_explain.add_argument(
        "--eigen-smooth", action="store_true", help="first principal component of each map's channel terms"
    )
    p_explain.add_argument(
        "--samples", type=_count(1, 1000),
        help="noisy/scaled samples of SmoothGrad-CAM++, SS-CAM and IS-CAM (default: theirs)",
    )
    p_explain.add_argument("--device", default="auto", help="auto | cpu | cuda | mps")
    p_explain.add_argument("--batch-size", type=_BATCH, default=64, help="forward batch of Score-/Ablation-CAM")
    p_explain.add_argument("--cmap", default=None, help="overlay colormap (default jet; signed: bwr)")
    p_explain.add_argument("--alpha", type=_fraction, default=0.6, help="overlay opacity, 0 to 1")
    p_explain.add_argument("--out", default="out", help="output folder (default: ./out)")


def _add_video(sub: argparse._SubParsersAction) -> None:
    """``video``: maps of a video's frames."""
    p_video = sub.add_parser("video", help="maps of every frame of a video: overlay MP4s, .npz and .csv")
    _add_model_args(p_video)
    p_video.add_argument("--video", required=True, help="video file (MP4, MOV, WebM, MKV, AVI, animated GIF)")
    p_video.add_argument("--layer", help="dotted layer name (default: the recommended layer)")
    p_video.add_argument(
        "--classes", default="top1",
        help='top1 | top3 (the clip\'s, by mean probability) | per-frame (each frame\'s top-1) | 281,285 | '
        '"tabby,Egyptian cat"',
    )
    p_video.add_argument("--method", action="append", help="CAM method (repeatable; default gradcam)")
    every = p_video.add_mutually_exclusive_group()
    every.add_argument("--every", type=int, default=1, metavar="N", help="explain every N-th frame")
    every.add_argument("--fps", type=float, metavar="F", help="explain frames at about F per second")
    p_video.add_argument("--max-frames", type=int, metavar="N", help="explain at most the first N (sampled) frames")
    p_video.add_argument(
        "--smooth", type=float, default=0.0, metavar="S",
        help="temporal smoothing of the films' maps, 0 (off) to 1 (display only: the .npz keeps raw maps)",
    )
    p_video.add_argument("--batch-size", type=int, default=16, help="frames per forward/backward batch")
    p_video.add_argument("--window", type=int, help="video models: frames per input (default: the model's)")
    p_video.add_argument("--stride", type=int, help="video models: frames between windows (default: the window)")
    p_video.add_argument("--device", default="auto", help="auto | cpu | cuda | mps")
    p_video.add_argument("--alpha", type=float, default=0.5, help="overlay opacity of the strongest evidence")
    p_video.add_argument("--out", default="out", help="output folder (default: ./out)")


def _add_sweep(sub: argparse._SubParsersAction) -> None:
    """``sweep``: one class at every stage."""
    p_sweep = sub.add_parser("sweep", help="maps of one class at every stage output, from one forward/backward")
    _add_model_args(p_sweep)
    p_sweep.add_argument("--image", nargs="+", required=True, help="image files")
    p_sweep.add_argument("--class", dest="class_id", help="class index or name (default: the top class)")
    p_sweep.add_argument("--layer", action="append", default=[], help="extra layer to add (repeatable)")
    p_sweep.add_argument("--method", action="append", help="gradient method (repeatable; default gradcam, hirescam)")
    p_sweep.add_argument("--target", default="logit", choices=["logit", "softmax"], help="score explained")
    p_sweep.add_argument("--device", default="auto", help="auto | cpu | cuda | mps")
    p_sweep.add_argument("--alpha", type=_fraction, default=0.5, help="overlay opacity, 0 to 1")
    p_sweep.add_argument("--out", required=True, help="output folder")


def _add_trust(sub: argparse._SubParsersAction) -> None:
    """``trust``: deletion/insertion, ROAD and the randomisation check."""
    p_trust = sub.add_parser("trust", help="deletion/insertion curves and the model-randomisation check")
    _add_model_args(p_trust)
    p_trust.add_argument("--image", nargs="+", required=True, help="image files")
    p_trust.add_argument("--class", dest="class_id", help="class index or name (default: the top class)")
    p_trust.add_argument("--method", default="gradcam", help="CAM method (default gradcam)")
    p_trust.add_argument("--layer", help="dotted layer name (default: the recommended layer)")
    p_trust.add_argument("--steps", type=_count(2, 256), default=24, help="deletion/insertion steps")
    p_trust.add_argument(
        "--baseline", default="blur", choices=["blur", "mean", "zero"], help="what deleted pixels become"
    )
    p_trust.add_argument("--batch-size", type=_BATCH, default=16, help="perturbed images per forward")
    p_trust.add_argument(
        "--no-road", action="store_true",
        help="skip ROAD (remove-and-debias: removed pixels imputed from their neighbours, most and least "
        "relevant first, against Random-CAM)",
    )
    p_trust.add_argument(
        "--randomise-units", type=_count(0, 100_000), default=None, metavar="N",
        help="randomisation check: randomise the top N units (default all; 0 skips the check)",
    )
    p_trust.add_argument("--device", default="auto", help="auto | cpu | cuda | mps")
    p_trust.add_argument("--out", required=True, help="output folder")


def _add_batch(sub: argparse._SubParsersAction) -> None:
    """``batch``: a folder into results.parquet."""
    p_batch = sub.add_parser(
        "batch", help="explain every image of a folder or glob into OUT/results.parquet (a rerun resumes)"
    )
    _add_model_args(p_batch)
    p_batch.add_argument("--images", required=True, help="a folder (walked recursively), an image or a glob")
    p_batch.add_argument(
        "--labels-from-folders", action="store_true",
        help="true classes from the class folders (ImageFolder): class names (any case) or indices",
    )
    p_batch.add_argument("--classes", default="pred", help="explained per image: pred | label | pred,label | topK")
    p_batch.add_argument("--method", action="append", help="CAM method (repeatable; default gradcam)")
    p_batch.add_argument("--layer", help="dotted layer name (default: the recommended layer)")
    p_batch.add_argument(
        "--batch-size", type=_BATCH, help="images per forward/backward (default: 32 on a GPU, 4 on a CPU)"
    )
    p_batch.add_argument(
        "--workers", type=_count(0, 256),
        help="decoding processes (local engine; 0: none; default none on a CPU, 2 with a GPU) or actors (Ray "
        "engine; default 2)",
    )
    p_batch.add_argument("--engine", choices=["local", "ray"], default="local", help="local (default) or ray")
    p_batch.add_argument("--ray-address", help="an existing Ray cluster (default: start a local one)")
    p_batch.add_argument("--device", default="auto", help="auto | cpu | cuda | mps")
    p_batch.add_argument("--out", required=True, help="output folder (results.parquet, run.json)")

def _model_args(args: argparse.Namespace) -> dict[str, object]:
    """The ``load_model`` keyword arguments the options give (what ``_load`` passes, as plain values)."""
    from .models.outputs import parse_output

    weights = None if str(args.weights).lower() in ("none", "") else args.weights
    return {
        "spec": args.model, "weights": weights, "arch": args.arch, "checkpoint": args.checkpoint, "labels": args.labels,
        "trust_checkpoint": args.trust_checkpoint, "import_paths": list(args.import_path),
        "input_size": args.input_size, "mean": args.mean, "std": args.std, "fit": args.fit,
        "output": parse_output(args.output),
    }


def _load(args: argparse.Namespace):  # -> LoadedModel
    from .models.load import load_model

    return load_model(**_model_args(args))


def _prepare(model, image):  # (LoadedModel, PIL image) -> (x (1, 3, H, W), region or None)
    """The model's input for one image at the chosen fit, and the image's region when the rest is pad."""
    x, place = model.prepare(image)
    return x.unsqueeze(0), (place.content if place.padded else None)


def _cmd_layers(args: argparse.Namespace) -> int:
    from .models.layers import format_tree, list_layers

    model = _load(args)
    clips = f", clips of {model.clip_len} frames (t: the time axis)" if model.clip_len else ""
    print(f"# {model.name}: input {model.input_size[0]}×{model.input_size[1]}{clips}, {len(model.class_names)} classes")
    print(format_tree(list_layers(model)))
    return 0


def _unique_stems(paths: Sequence[str]) -> list[str]:
    stems: list[str] = []
    for p in paths:
        stem, n = Path(p).stem, 1
        while stem in stems:
            n += 1
            stem = f"{Path(p).stem}_{n}"
        stems.append(stem)
    return stems


def _cmd_explain(args: argparse.Namespace) -> int:
    from .engine.explainer import explain
    from .engine.methods import check_methods
    from .io.images import load_image
    from .render import COLORMAPS, model_view, overlay, save_png

    if args.method == ["list"]:
        return _list_methods()
    methods = check_methods(args.method or ["gradcam"])
    if args.cmap is not None and args.cmap not in COLORMAPS:
        raise CamError(f"unknown colormap {args.cmap!r}; choose from: {', '.join(COLORMAPS)}")
    images = [load_image(p) for p in args.image]  # all checked before the model loads
    out = output_folder(args.out)
    model = _load(args)
    for path, stem, img in zip(args.image, _unique_stems(args.image), images, strict=True):
        x, region = _prepare(model, img)
        res = explain(
            model, x, layer=args.layer, classes=args.classes, methods=methods, device=args.device,
            target=args.target, batch_size=args.batch_size, region=region, aug_smooth=args.aug_smooth,
            eigen_smooth=args.eigen_smooth, samples=args.samples, probs=args.probs,
        )
        arrays: dict[str, np.ndarray] = {
            "logits": res.logits[0].numpy(),
            "probs": res.probs[0].numpy(),
            "class_ids": res.class_ids[0].numpy(),
            "class_names": np.array(res.class_names[0]),
            "layer": np.array(res.layer),
        }
        view = model_view(x[0], model.mean, model.std)
        for m in res.methods:
            up = res.upsampled(m)[0].numpy()
            arrays[f"maps_{m}"] = res.maps[m][0].numpy()
            arrays[f"up_{m}"] = up
            for k, cid in enumerate(res.class_ids[0].tolist()):
                save_png(overlay(view, up[k], cmap=args.cmap, alpha=args.alpha), out / f"{stem}_{m}_{cid}.png")
        np.savez_compressed(out / f"{stem}.npz", **arrays)
        _write_json(out / f"{stem}.json", _diagnosis_json(model, x, res, path, img))
        top = ", ".join(
            f"{n} ({p:.1%})" for n, p in zip(res.class_names[0], res.probs[0, res.class_ids[0]].tolist(), strict=True)
        )
        untrained = "" if getattr(model, "pretrained", True) else " [untrained weights]"
        print(f"{path}: {top} at {res.layer}{untrained} → {out / stem}.npz")
    return 0


def _list_methods() -> int:
    from .engine.methods import METHODS

    width = max(len(m) for m in METHODS)
    for name, spec in METHODS.items():
        print(f"{name:<{width}}  {spec.title:<22}  {spec.cost}")
    return 0


def _write_json(path: Path, data: object) -> None:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _diagnosis_json(model, x: torch.Tensor, res, path: str, image) -> dict[str, object]:  # model: LoadedModel
    """The diagnosis of every class and method for one image, with the head probe."""
    from .analysis.diagnose import diagnose, layer_context, probe_head

    info, rec = layer_context(model, res.layer)
    head = probe_head(model, x, rec) if rec else None
    classes = []
    for k, cid in enumerate(res.class_ids[0].tolist()):
        classes.append({
            "class_id": cid,
            "class_name": res.class_names[0][k],
            "logit": float(res.logits[0, cid]),
            "prob": float(res.probs[0, cid]),
            "diagnosis": {m: diagnose(res, 0, k, m, info, rec, head).to_dict() for m in res.methods},
        })
    place = model.place(image)
    return {
        "image": str(path),
        "model": model.name,
        "pretrained": bool(model.pretrained),
        "fit": place.fit,
        "input": place.describe(*image.size),
        "layer": res.layer,
        "recommended": rec,
        "layer_hints": list(info.hints) if info else [],
        "target": res.target,
        "head": None if head is None else {
            "layer": head.layer, "factor": head.factor, "change": head.change, "scale_invariant": head.scale_invariant,
        },
        "classes": classes,
    }


def _cmd_video(args: argparse.Namespace) -> int:
    from .engine.clip import explain_clip
    from .engine.methods import check_methods
    from .film import write_films
    from .io.video import Sampling, probe_video

    methods = check_methods(args.method or ["gradcam"])
    sampling = Sampling(every=args.every, fps=args.fps, max_frames=args.max_frames)
    if not 0.0 <= args.smooth < 1.0:
        raise CamError(f"--smooth must be at least 0 and below 1, got {args.smooth}")
    if args.batch_size < 1:
        raise CamError(f"--batch-size must be at least 1, got {args.batch_size}")
    if not 0.0 < args.alpha <= 1.0:
        raise CamError(f"--alpha must be above 0 and at most 1, got {args.alpha}")
    info = probe_video(args.video, sampling)  # the video is checked before the model loads
    out = output_folder(args.out)
    model = _load(args)
    print(f"{args.video}: {info.describe()}", file=sys.stderr)

    def progress(done: int, total: int | None, seconds: float) -> None:
        print(f"\r  {done}/{total or '?'} frames, {done / max(seconds, 1e-9):.1f} frames/s", end="", file=sys.stderr)

    res = explain_clip(
        model, args.video, layer=args.layer, classes=args.classes, methods=methods, sampling=sampling,
        batch_size=args.batch_size, device=args.device, fit=args.fit, window=args.window, stride=args.stride,
        progress=progress,
    )
    print(file=sys.stderr)
    stem = Path(args.video).stem
    slots = range(res.class_ids.shape[-1])
    names = {k: f"top{k + 1}" if res.per_frame else str(int(res.class_ids[k])) for k in slots}
    films = write_films(
        args.video, res, {(m, k): out / f"{stem}_{m}_{names[k]}.mp4" for m in methods for k in slots},
        smooth=args.smooth, alpha=args.alpha,
    )
    np.savez_compressed(out / f"{stem}.npz", **res.arrays())
    (out / f"{stem}.csv").write_text(res.csv_text(), encoding="utf-8")
    _write_json(out / f"{stem}.json", _video_json(model, res, args.smooth, films))
    shown = "each frame's top-1" if res.per_frame else ", ".join(res.names[c] for c in res.class_ids.tolist())
    untrained = "" if res.pretrained else " [untrained weights]"
    print(
        f"{args.video}: {res.frames} frames, {shown} at {res.layer} ({res.place.fit}){untrained}, "
        f"{res.frames / max(res.seconds['total'], 1e-9):.1f} frames/s → {out / stem}.npz, {len(films.paths)} film(s)"
    )
    return 0


def _video_json(model, res, smooth: float, films) -> dict[str, object]:  # (LoadedModel, ClipResult, float, Films)
    """What a video run did: model, how frames met it, sampling, classes, timings, and the films' colour scales."""
    return {
        "video": res.source,
        "header": res.info.describe(),
        "model": model.name,
        "pretrained": bool(model.pretrained),
        "fit": res.place.fit,
        "input": res.place.describe(*res.frame_size),
        "layer": res.layer,
        "methods": list(res.methods),
        "frames": res.frames,
        "rate": res.rate,
        "sampling": {"every": res.sampling.every, "fps": res.sampling.fps, "max_frames": res.sampling.max_frames},
        "window": res.window,
        "stride": res.stride,
        "classes": "per-frame" if res.per_frame else [
            {"class_id": int(c), "class_name": res.names[c], "mean_prob": float(res.probs[:, c].mean())}
            for c in res.class_ids.tolist()
        ],
        "smooth": smooth,
        "films": [
            {"file": path.name, "method": m, "slot": k, "colour_scale": films.scales[(m, k)]}
            for (m, k), path in films.paths.items()
        ],
        "seconds": {**{k: round(v, 3) for k, v in res.seconds.items()}, "films": round(films.seconds["total"], 3)},
    }


def _cmd_sweep(args: argparse.Namespace) -> int:
    from .analysis.sweep import check_sweep_methods, sweep
    from .io.images import load_image
    from .render import model_view, overlay, save_png

    methods = check_sweep_methods(args.method or ["gradcam", "hirescam"])
    images = [load_image(p) for p in args.image]
    out = output_folder(args.out)
    model = _load(args)
    for path, stem, img in zip(args.image, _unique_stems(args.image), images, strict=True):
        x, _ = _prepare(model, img)
        res = sweep(model, x, args.class_id, extra=args.layer, methods=methods, target=args.target, device=args.device)
        np.savez_compressed(out / f"{stem}_sweep.npz", **res.arrays())
        _write_json(out / f"{stem}_sweep.json", {"image": str(path), **res.to_dict()})
        view = model_view(x[0], model.mean, model.std)
        ups = res.arrays()[f"up_{methods[0]}"]
        # Filmstrip: one column per layer, shallow → deep; top row ReLU'd, bottom row signed.
        rows = [np.concatenate([overlay(view, up, view=v, alpha=args.alpha) for up in ups], axis=1)
                for v in ("relu", "signed")]
        save_png(np.concatenate(rows, axis=0), out / f"{stem}_sweep.png")
        print(f"{path}: '{res.class_name}' (logit {float(res.logits[res.class_id]):.4g}) → {out / stem}_sweep.json")
        for la in res.layers:
            d = la.diagnosis[methods[0]]
            print(f"  {la.name:<40} {la.grid[0]}×{la.grid[1]:<4} {d.summary}")
    return 0


def _cmd_trust(args: argparse.Namespace) -> int:
    from .analysis.sweep import SWEEP_METHODS
    from .analysis.trust import deletion_insertion, randomisation_check, road
    from .engine.explainer import explain
    from .engine.methods import check_methods
    from .io.images import load_image

    check_methods([args.method])
    if args.randomise_units != 0 and args.method not in SWEEP_METHODS:
        raise CamError(
            f"the randomisation check recomputes {args.method!r} once per unit, which is too costly; use one of "
            f"{', '.join(SWEEP_METHODS)}, or --randomise-units 0 to skip the check"
        )
    images = [load_image(p) for p in args.image]
    out = output_folder(args.out)
    model = _load(args)
    for path, stem, img in zip(args.image, _unique_stems(args.image), images, strict=True):
        x, _ = _prepare(model, img)
        classes = "top1" if args.class_id is None else [args.class_id]
        res = explain(model, x, layer=args.layer, classes=classes, methods=[args.method], device=args.device)
        cid = int(res.class_ids[0, 0])
        curves = deletion_insertion(
            model, x, res.upsampled(args.method)[0, 0], cid, steps=args.steps, baseline=args.baseline,
            batch_size=args.batch_size, with_random=True, device=args.device,
        )
        arrays = {f"curve_{k}": v for k, v in curves.arrays().items()}
        data: dict[str, object] = {
            "image": str(path), "layer": res.layer, "method": args.method, "class_id": cid,
            "class_name": res.class_names[0][0], "curves": curves.to_dict(), "sanity": None,
        }
        v = curves.verdicts
        line = (f"deletion AUC {curves.deletion.auc:.3f} (random map {curves.random_deletion.auc:.3f}: "
                f"{v['deletion']}), insertion AUC {curves.insertion.auc:.3f} "
                f"(random map {curves.random_insertion.auc:.3f}: {v['insertion']})")
        if curves.flat:
            low, high = curves.score_range
            line += f" (FLAT: the probability stays in {low:.3f}…{high:.3f}; the curves cannot judge the map)"
        if not args.no_road:
            roads = road(
                model, x, res.upsampled(args.method)[0, 0], cid, with_random=True, layer=res.layer,
                batch_size=args.batch_size, device=args.device,
            )
            data["road"] = roads.to_dict()
            arrays.update(roads.arrays())
            line += (f"; ROAD {roads.combined:.3f} (Random-CAM {roads.random_combined:.3f}; higher is better: "
                     "removing the most relevant pixels hurts more than removing the least)")
        if args.randomise_units != 0:
            sanity = randomisation_check(
                model, x, res.layer, cid, methods=[args.method], max_units=args.randomise_units, device=args.device
            )
            data["sanity"] = sanity.to_dict()
            arrays.update(sanity.arrays())
            corr = sanity.rank_corr[args.method]
            verdict = "FLAGGED: barely changes" if sanity.flagged[args.method] else "changes"
            line += (f"; randomised {len(sanity.units)} units: rank corr {corr[0]:.2f} after the first, "
                     f"median {np.nanmedian(corr):.2f} ({verdict})")
        np.savez_compressed(out / f"{stem}_trust.npz", **arrays)
        _write_json(out / f"{stem}_trust.json", data)
        print(f"{path}: '{res.class_names[0][0]}' {args.method} at {res.layer}: {line} → {out / stem}_trust.json")
    return 0


def _cmd_batch(args: argparse.Namespace) -> int:
    from .batch import BatchJob, discover, run_local

    if args.ray_address and args.engine != "ray":
        raise CamError("--ray-address goes with --engine ray")
    job = BatchJob(
        model=_model_args(args), layer=args.layer, methods=tuple(args.method or ["gradcam"]), classes=args.classes,
        labels=args.labels_from_folders, fit=args.fit, device=args.device, batch_size=args.batch_size,
    )
    found = discover(args.images)  # all checked before the model loads
    out = output_folder(args.out)
    if args.engine == "ray":
        from .batch.ray import import_ray, run_ray

        import_ray()
        actors = 2 if args.workers is None else args.workers
        summary = run_ray(job, found, out, workers=actors, address=args.ray_address)
    else:
        summary = run_local(job, found, out, workers=args.workers, bar=True)
    print(summary.line())
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status.

    A user's mistake is one line and status 2; Ctrl-C one line and 130; running out of memory one line
    and 1; a closed pipe (``| head``) ends quietly. Anything else is a bug and keeps its traceback.
    """
    args = build_parser().parse_args(argv)
    try:
        commands = {
            "layers": _cmd_layers, "explain": _cmd_explain, "video": _cmd_video, "sweep": _cmd_sweep,
            "trust": _cmd_trust, "batch": _cmd_batch,
        }
        return commands[args.command](args)
    except CamError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except MemoryError:
        print("error: out of memory: explain fewer or smaller images, or fewer classes at a time", file=sys.stderr)
        return 1
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        return 0
