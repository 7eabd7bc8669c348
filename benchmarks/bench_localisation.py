"""What ground truth costs a batch run: ``batch --boxes`` against the same run without, in one process.

The folder of sample-photo variants ``bench_batch`` uses (crops of four aspect ratios, flips, colour
jitter, as JPEGs; ``--side`` rescales them so their long side is that many pixels, to see the cost grow
with the photos), the offline default model (EfficientNet-Lite0) at its recommended layer, the methods
given (default Grad-CAM), ``--classes`` (default ``pred``), the whole-image fit, the local engine as the
CLI runs it on a CPU. The boxes are a CSV with two unlabelled boxes per image (so every explained class
is scored: each map is carried to the photo's pixels, its maximum found and its mass summed).

The two contenders run interleaved in rounds into fresh folders and each one's best round counts (the
machine may be shared); the ratio is the cost of localisation. Run:
``python benchmarks/bench_localisation.py [--images 100] [--rounds 3] [--side 0] [--method gradcam ...]``.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's cam_core, not an installed one

import cam_core
from benchmarks.bench_batch import best_of
from cam_core.batch import BatchJob, discover, run_local
from cam_core.batch import job as job_module
from cam_core.batch.streams import default_streams
from cam_core.io import SAMPLE_CLASSES, write_sample_folder


def _rescale(folder: Path, side: int) -> None:
    for path in folder.rglob("*.jpg"):
        with Image.open(path) as im:
            scale = side / max(im.size)
            im.convert("RGB").resize((round(im.width * scale), round(im.height * scale))).save(path, quality=90)


def _boxes(folder: Path, csv: Path) -> None:
    lines = []
    for f in discover(folder).files:
        with Image.open(f.path) as im:
            w, h = im.size
        rel = Path(f.path).relative_to(folder).as_posix()
        lines += [f"{rel},{w * 0.25:.1f},{h * 0.25:.1f},{w * 0.75:.1f},{h * 0.75:.1f}",
                  f"{rel},0,0,{w * 0.2:.1f},{h * 0.2:.1f}"]
    csv.write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--side", type=int, default=0, help="rescale the photos to this long side (0: as written)")
    parser.add_argument("--method", action="append", help="CAM method (repeatable; default gradcam)")
    parser.add_argument("--classes", default="pred")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="bench_loc_"))
    folder = tmp / "images"
    write_sample_folder(folder, per_photo=max(1, args.images // len(SAMPLE_CLASSES)))
    if args.side:
        _rescale(folder, args.side)
    csv = tmp / "boxes.csv"
    _boxes(folder, csv)
    found = discover(folder)
    model = cam_core.load_model()
    methods = tuple(args.method or ["gradcam"])
    sizes = sorted({Image.open(f.path).size for f in found.files})
    print(f"{len(found.files)} images ({sizes[0]} .. {sizes[-1]} px), {model.name}, {', '.join(methods)}, "
          f"classes {args.classes}, torch threads {torch.get_num_threads()}")
    runs = iter(range(10**6))

    def run(boxes: str | None) -> None:
        job = BatchJob(methods=methods, classes=args.classes, boxes=boxes)
        run_local(job, found, tmp / f"out{next(runs)}", model=model)

    spent = [0.0]
    localise = job_module._localise

    def timed(*a: object) -> None:  # the time inside localisation, summed over the streams' threads
        t0 = time.perf_counter()
        localise(*a)
        spent[0] += time.perf_counter() - t0

    job_module._localise = timed
    best = best_of(args.rounds, {"batch": lambda: run(None), "batch --boxes": lambda: run(str(csv))})
    n = len(found.files)
    for name, seconds in best.items():
        print(f"{name:>14}: {seconds:6.2f} s  ({n / seconds:5.1f} images/s)")
    per_image = spent[0] / (args.rounds * n)
    streams = default_streams("auto")
    print(f"inside localisation: {1000 * per_image:.2f} ms an image in one stream; with {streams} streams side by "
          f"side, {100 * per_image * n / streams / best['batch']:.1f} % of the plain run's best time")
    print(f"localisation adds {100 * (best['batch --boxes'] / best['batch'] - 1):+.1f} % to the run "
          f"(ratio {best['batch --boxes'] / best['batch']:.3f}; target ≤ 1.05)")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
