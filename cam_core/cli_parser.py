"""The command line's arguments: one parser per subcommand, and the checks argparse runs on each value.

Kept apart from :mod:`cam_core.cli` (what each subcommand does) and free of torch, so ``--help`` (of every
subcommand) and argument mistakes answer at once (:func:`precheck`: what can be checked without the model). The
method names and the ``--model`` help are written out here; tests keep them equal to the registries'.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

from .errors import CamError, choices_hint
from .limits import MAX_FORWARD_BATCH, MAX_INPUT_SIDE, MAX_VIDEO_FRAMES, MIN_INPUT_SIDE

__all__ = ["EXIT_USAGE", "METHOD_NAMES", "SPEC_HELP", "build_parser", "precheck", "spec_help_from_registry"]

EXIT_USAGE = 2

# The registry's method names (cam_core.engine.methods.METHODS), here without torch so that a mistyped method is
# answered at once; a test keeps the two in step.
METHOD_NAMES = (
    "cam", "gradcam", "gradcampp", "xgradcam", "hirescam", "layercam", "gradcam_elementwise", "eigengradcam",
    "finercam", "shapleycam", "eigencam", "kpcacam", "randomcam", "legrad", "smoothgradcampp", "scorecam", "sscam",
    "iscam", "ablationcam",
)


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


def spec_help_from_registry() -> str:
    """The ``--model`` help as the model-source registry gives it (imports the sources, so torchvision)."""
    from .models.sources import registered_sources, spec_forms

    code = ", ".join(s.label for s in registered_sources() if s.code_bearing)
    return f"{spec_forms()}. Sources that run code (full pickles need --trust-checkpoint): {code}"


# The same, written out so that ``explain --help`` imports no torch; a test keeps it equal to the registry's.
SPEC_HELP = (
    "'timm:NAME', 'hf:FOLDER', an exported program (a .pt2 file from torch.export), a TorchScript archive (.pt), a "
    ".pt/.pth/.ckpt/.safetensors file (a state dict with an architecture), a factory 'package.module:function', "
    "'efficientnet_lite0' (offline default), or a torchvision model name such as 'resnet50' (or a video model such "
    "as 'r3d_18'). Sources that run code (full pickles need --trust-checkpoint): Exported program, TorchScript "
    'archive, Python factory, Pickled model'
)


def _add_model_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model")
    g.add_argument(
        "--model",
        default="efficientnet_lite0",
        help=SPEC_HELP.replace("%", "%%"),
    )
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
    g.add_argument(
        "--input-size", type=_count(MIN_INPUT_SIDE, MAX_INPUT_SIDE), help="square input size (default: the model's)"
    )
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
    for add in (_add_layers, _add_explain, _add_video, _add_sweep, _add_trust, _add_batch, _add_compare, _add_atlas,
                _add_report):
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
    p_explain.add_argument(
        "--colorbar", action="store_true", help="add a colour bar with the map's scale to the overlay PNGs"
    )
    p_explain.add_argument("--label", action="store_true", help="burn the class, its probability and the method in")
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
    p_video.add_argument(
        "--scale", choices=["frame", "clip"], default="frame",
        help="the films' colour scale: frame (default: each frame its own, so every frame shows where the model "
        "looks) or clip (one for the whole clip: fading evidence looks faded)",
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
    _add_batch_engine_args(p_batch)
    p_batch.add_argument("--classes", default="pred", help="explained per image: pred | label | pred,label | topK")
    p_batch.add_argument(
        "--boxes", metavar="FILE_OR_DIR",
        help="ground truth for the pointing game and the energy in the box: COCO *.json, *.csv "
        "(path,x0,y0,x1,y1[,label]), Pascal VOC *.xml or their folder, or a folder of mask *.png",
    )
    p_batch.add_argument("--method", action="append", help="CAM method (repeatable; default gradcam)")
    p_batch.add_argument("--layer", help="dotted layer name (default: the recommended layer)")
    p_batch.add_argument("--out", required=True, help="output folder (results.parquet, run.json)")


def _add_batch_engine_args(p: argparse.ArgumentParser) -> None:
    """The options of the folder engine that ``batch`` and ``compare`` share."""
    p.add_argument("--images", required=True, help="a folder (walked recursively), an image or a glob")
    p.add_argument(
        "--labels-from-folders", action="store_true",
        help="true classes from the class folders (ImageFolder): class names (any case) or indices",
    )
    p.add_argument(
        "--batch-size", type=_BATCH, help="images per forward/backward (default: 32 on a GPU, 4 on a CPU)"
    )
    p.add_argument(
        "--workers", type=_count(0, 256),
        help="decoding processes (local engine; 0: none; default none on a CPU, 2 with a GPU) or actors (Ray "
        "engine; default 2)",
    )
    p.add_argument("--engine", choices=["local", "ray"], default="local", help="local (default) or ray")
    p.add_argument("--ray-address", help="an existing Ray cluster (default: start a local one)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | mps")


def _add_compare(sub: argparse._SubParsersAction) -> None:
    """``compare``: two models over one folder into OUT/compare.parquet."""
    p = sub.add_parser(
        "compare", help="two models over one folder: each model's batch run (OUT/a, OUT/b) and per image what "
        "changed (OUT/compare.parquet; a rerun resumes)",
    )
    _add_model_args(p)
    g = p.add_argument_group("model B (its other options are model A's unless given here)")
    g.add_argument("--model-b", required=True, help="the second model, in any form --model takes")
    g.add_argument("--weights-b", help="model B's torchvision or timm weights")
    g.add_argument("--arch-b", help="model B's architecture, for a state dict")
    g.add_argument("--checkpoint-b", help="model B's state dict, for a factory or timm model (not inherited)")
    g.add_argument("--labels-b", help="model B's class names (a text file or a JSON list)")
    g.add_argument(
        "--input-size-b", type=_count(MIN_INPUT_SIDE, MAX_INPUT_SIDE), help="model B's square input size"
    )
    g.add_argument("--fit-b", choices=["whole", "crop", "squash", "letterbox"], help="model B's fit (not inherited)")
    g.add_argument("--layer-b", help="model B's layer (default: its recommended layer)")
    _add_batch_engine_args(p)
    p.add_argument(
        "--classes", help="explained per image for both models, matched by class name: pred | label | pred,label | "
        "topK (default pred,label with --labels-from-folders, else pred); each model also explains the other's",
    )
    p.add_argument("--method", help="CAM method (one; default gradcam)")
    p.add_argument("--layer", help="model A's layer (default: its recommended layer)")
    p.add_argument(
        "--photo-side", type=_count(16, 2048), default=112,
        help="the longer side of the photo grid the two maps are compared on (default 112; peak shifts are in the "
        "photo's own pixels)",
    )
    p.add_argument("--out", required=True, help="output folder (a/, b/, compare.parquet, compare.json)")


def _add_atlas(sub: argparse._SubParsersAction) -> None:
    """``atlas``: a results folder's maps clustered per class (no model needed)."""
    p = sub.add_parser("atlas", help="cluster a batch run's maps per class by where they look; flag shortcuts")
    p.add_argument("--results", required=True, help="a batch results folder (results.parquet, run.json)")
    p.add_argument("--method", action="append", help="whose maps (repeatable; default: the run's first method)")
    p.add_argument("--clusters", default="auto", help="clusters per class: auto (by silhouette) or a number 1-50")
    p.add_argument("--of", choices=["pred", "label"], default="pred",
                   help="each image's map of its predicted class (default) or of its true class")
    p.add_argument("--sheet", action="store_true", help="also draw the atlas as a PNG sheet (OUT/atlas.png)")


def _check_atlas(args: argparse.Namespace) -> None:
    if not (Path(args.results) / "results.parquet").is_file():
        raise CamError(f"{args.results} holds no results.parquet (run `python -m cam_core batch ... --out "
                       f"{args.results}` first)")
    text = str(args.clusters).strip().lower()
    if text != "auto" and not (text.isdigit() and 1 <= int(text) <= 50):
        raise CamError(f"--clusters takes auto or a whole number from 1 to 50, got {args.clusters!r}")


def _add_report(sub: argparse._SubParsersAction) -> None:
    """``report``: one self-contained HTML file of an image, a batch run or a comparison."""
    p = sub.add_parser(
        "report", help="one self-contained HTML file (pictures embedded, nothing fetched) of an image, a batch "
        "run (--results) or a comparison (--compare)",
    )
    _add_model_args(p)
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--image", help="an image file: explained with --model (the photo, maps, scores, findings)")
    what.add_argument("--results", metavar="OUT", help="a batch results folder (python -m cam_core batch --out OUT)")
    what.add_argument("--compare", metavar="OUT", help="a comparison folder (python -m cam_core compare --out OUT)")
    p.add_argument("--layer", help="--image: dotted layer name (default: the recommended layer)")
    p.add_argument("--classes", default="top3", help='--image: top3 | 281,285 | "tabby,Egyptian cat"')
    p.add_argument("--method", action="append", help="--image: CAM method (repeatable; default gradcam); "
                   "--results/--compare: the method whose maps to show (default the run's first)")
    p.add_argument(
        "--top", type=_count(1, 200),
        help="--results: images of each kind of odd prediction (default 8); --compare: largest map shifts drawn "
        "(default 12)",
    )
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | mps")
    p.add_argument("--out", default="report.html", help="the HTML file to write (default: ./report.html)")


def _check_files(paths: list[str], what: str) -> None:
    for p in paths:
        if not Path(p).is_file():
            raise CamError(f"no such {what} file: {p}")


def precheck(args: argparse.Namespace) -> None:
    """The mistakes found without torch (missing files, unknown methods, numbers out of range), before any
    heavy import: the command line answers them at once. The commands check them again, with the rest.

    Raises:
        CamError: the first mistake, as one line.
    """
    methods = getattr(args, "method", None)
    if args.command == "explain" and methods == ["list"]:
        return  # `explain --method list` lists the methods, whatever the rest says
    for name in [methods] if isinstance(methods, str) else methods or []:
        if name not in METHOD_NAMES:
            raise CamError(f"unknown method {name!r}; choose from: {choices_hint(METHOD_NAMES)}")
    if args.command in ("explain", "sweep", "trust"):
        _check_files(args.image, "image")
    if args.command == "report":
        _check_report(args)
    if args.command == "batch" and args.boxes is not None and not Path(args.boxes).exists():
        raise CamError(f"--boxes {args.boxes}: no such file or folder")
    if args.command == "atlas":
        _check_atlas(args)
    if args.command == "video":
        _check_files([args.video], "video")
        if not 0.0 <= args.smooth < 1.0:
            raise CamError(f"--smooth must be at least 0 and below 1, got {args.smooth}")
        if args.batch_size < 1:
            raise CamError(f"--batch-size must be at least 1, got {args.batch_size}")
        if not 0.0 < args.alpha <= 1.0:
            raise CamError(f"--alpha must be above 0 and at most 1, got {args.alpha}")
        if args.every < 1:
            raise CamError(f"--every must be a whole number of at least 1, got {args.every!r}")
        if args.fps is not None and not args.fps > 0:
            raise CamError(f"--fps must be a positive number, got {args.fps!r}")
        if args.max_frames is not None and not 1 <= args.max_frames <= MAX_VIDEO_FRAMES:
            raise CamError(f"--max-frames must be between 1 and {MAX_VIDEO_FRAMES}, got {args.max_frames!r}")


def _check_report(args: argparse.Namespace) -> None:
    """``report``: the image or folder exists, the output is an HTML file in an existing folder."""
    if args.image is not None:
        _check_files([args.image], "image")
    folder = args.results or args.compare
    if folder is not None and not Path(folder).is_dir():
        raise CamError(f"no such folder: {folder}")
    out = Path(args.out)
    if out.suffix.lower() not in (".html", ".htm"):
        raise CamError(f"--out must name an .html file, got {args.out}")
    if not out.parent.is_dir():
        raise CamError(f"--out's folder does not exist: {out.parent}")
