"""What comparing two models over a folder costs, against one ``batch`` run of the slower model, in one process.

The folder: variants of the labelled sample photos (as ``bench_batch.py``). Model A: the offline default
(EfficientNet-Lite0); model B: the same network with its classifier nudged (Gaussian noise on the last layer's
weights, saved as a state dict and loaded with ``--arch efficientnet_lite0``: a "fine-tuned" copy that flips some
predictions). Both cost the same, so either is "the slower model". Grad-CAM at the recommended layer, labels from
the folders (``pred,label``), the local engine as the CLI runs it on a CPU.

- ``batch``: ``run_local`` of model A into a fresh folder;
- ``compare``: ``run_compare`` into a fresh folder (A, B with A's classes, A again for the images where B explained
  a class A had not, then the join: every map brought over its photo and compared).

Both get the loaded models (loading is not timed), run once to warm up, then interleaved rounds; each one's best
round counts (the machine may be shared). The target: compare ≤ 2.1 × batch.
Run: ``python benchmarks/bench_compare.py [--images 200] [--noise 0.02] [--rounds 3]``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's cam_core, not an installed one

import cam_core
from cam_core.batch import BatchJob, run_local
from cam_core.batch.compare import run_compare
from cam_core.io import SAMPLE_CLASSES, write_sample_folder


def nudged_copy(folder: Path, noise: float) -> dict[str, object]:
    """Model B's ``load_model`` arguments: Lite0's state dict with noise on the classifier, saved in ``folder``."""
    torch.manual_seed(0)
    sd = cam_core.load_model().module.state_dict()
    last = [k for k in sd if k.endswith("weight") and sd[k].ndim == 2][-1]
    sd[last] = sd[last] + noise * sd[last].std() * torch.randn_like(sd[last]) * 10
    path = folder / "lite0_nudged.pth"
    torch.save(sd, path)
    return {"spec": str(path), "arch": "efficientnet_lite0"}


def steps_of(summary) -> str:  # a CompareSummary
    """The steps' times: A, B, A again, the join."""
    return ", B ".join(f"{r.seconds:.2f} s" for r in summary.runs[:2]) + (
        f", A again {summary.runs[2].seconds:.2f} s, join {summary.join_seconds:.2f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--noise", type=float, default=0.02, help="classifier noise, in tenths of its weights' std")
    parser.add_argument("--rounds", type=int, default=3, help="best of this many interleaved rounds")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="bench_compare_"))
    folder = tmp / "images"
    write_sample_folder(folder, per_photo=max(1, args.images // len(SAMPLE_CLASSES)))
    spec_b = nudged_copy(tmp, args.noise)
    model_a, model_b = cam_core.load_model(), cam_core.load_model(**spec_b)
    job_a = BatchJob(classes="pred,label", labels=True)
    job_b = BatchJob(model=spec_b, classes="pred,label", labels=True)
    runs = iter(range(10_000))

    def batch() -> None:
        run_local(job_a, folder, tmp / f"batch_{next(runs)}", model=model_a)

    def compare() -> None:
        return run_compare(job_a, job_b, folder, tmp / f"compare_{next(runs)}", model_a=model_a, model_b=model_b)

    summary = compare()  # warm-up (also of batch's path: the same engine)
    batch()
    c = summary.counts
    print(f"{c.images} images, torch threads {torch.get_num_threads()}: {c.flipped} predictions flipped, A again for "
          f"{summary.runs[2].computed}, median map shift {c.median_shift:.3f}")
    best = {"batch": float("inf"), "compare": float("inf")}
    for r in range(args.rounds):
        for name, fn in (("batch", batch), ("compare", compare)):
            t0 = time.perf_counter()
            done = fn()
            best[name] = min(best[name], time.perf_counter() - t0)
            steps = f" (A {steps_of(done)})" if done is not None else ""
            print(f"  round {r + 1}: {name}: {time.perf_counter() - t0:.2f} s{steps}", flush=True)
    ratio = best["compare"] / best["batch"]
    print(f"batch (model A) {best['batch']:.2f} s ({c.images / best['batch']:.1f} images/s); compare "
          f"{best['compare']:.2f} s: {ratio:.2f}× one batch run (target ≤ 2.1×)")


if __name__ == "__main__":
    main()
