"""Score-CAM on a busy machine: its time next to CPU burners as a ratio to its time alone, at the old background
priority (nice 19) and the new one (:data:`cam_core.engine.priority.BACKGROUND_NICE`), in the same run.

The burners are ``--burners`` processes (default 2, one per core here) spinning a busy loop at nice 0: other
people's work on a shared machine. Score-CAM's masked batches run on its background thread
(:func:`cam_core.engine.priority.background`) at the priority under test; ``--before`` sets the old one.
The progress callback's last texts are printed too (the time estimate, "about N s left").

Run: ``python benchmarks/bench_scorecam_load.py [--model resnet18] [--input-size 112] [--layer layer4]``.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import time

import torch

import cam_core
from cam_core.engine import priority


def _burn(stop) -> None:  # a busy loop at nice 0 (what another person's work looks like to the scheduler)
    while not stop.is_set():
        sum(i * i for i in range(10_000))


def _score_cam(model, x, layer: str, batch_size: int, texts: list[str]) -> float:
    start = time.perf_counter()
    cam_core.explain(model, x, layer=layer, classes=[0], methods=["scorecam"], batch_size=batch_size,
                     progress=lambda _f, text: texts.append(text))
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--layer", default="layer4")
    parser.add_argument("--input-size", type=int, default=112)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--burners", type=int, default=2)
    parser.add_argument("--before", type=int, default=19, help="the old background nice value")
    args = parser.parse_args()
    model = cam_core.load_model(args.model, weights=None)
    x = torch.rand(1, 3, args.input_size, args.input_size)
    _score_cam(model, x, args.layer, args.batch_size, [])  # warm-up
    print(f"{args.model} at {args.layer}, {args.input_size}², batch {args.batch_size}, {os.cpu_count()} CPUs, "
          f"torch threads {torch.get_num_threads()}, {args.burners} burners at nice 0")
    after = priority.BACKGROUND_NICE
    for label, nice in (("before", args.before), ("after", after)):
        priority.BACKGROUND_NICE = nice
        alone = _score_cam(model, x, args.layer, args.batch_size, [])
        stop = mp.Event()
        burners = [mp.Process(target=_burn, args=(stop,), daemon=True) for _ in range(args.burners)]
        for b in burners:
            b.start()
        texts: list[str] = []
        try:
            time.sleep(0.5)
            loaded = _score_cam(model, x, args.layer, args.batch_size, texts)
        finally:
            stop.set()
            for b in burners:
                b.join()
        print(f"{label:<7} nice {nice:>2}: alone {alone:6.1f} s, next to the burners {loaded:6.1f} s, "
              f"ratio {loaded / alone:5.1f}×; progress: {texts[len(texts) // 2] if texts else '-'}")
    priority.BACKGROUND_NICE = after


if __name__ == "__main__":
    main()
