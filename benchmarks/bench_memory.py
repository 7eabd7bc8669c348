"""Server memory over a long session: 300 reruns (image switches, class toggles, layer picks, uploads).

A fresh server, one Chromium session cycling through what a user does, the server's resident
memory read from ``/_camdash/stats`` every 10 reruns. Prints the curve and its maximum; the
caches are bounded (cam_core/limits.py), so after the first minutes (models, maps and figures
filling up) the curve must flatten.

Run: ``python benchmarks/bench_memory.py [--reruns 300]``.
"""

from __future__ import annotations

import argparse
import io
import random
import shutil
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image
from playwright.sync_api import sync_playwright

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_load import stats
from bench_ui import ARGS, IDLE, server

ROOT = Path(__file__).resolve().parents[1]
LAYERS = ["_blocks.15", "_head_act", "_blocks.14", "_blocks.12", "_head_act"]
SAMPLES = ["coffee", "astronaut", "rocket", "motorcycle", "chelsea"]
CLASSES = ["goldfish", "lemon", "teapot", "tabby", "espresso", "balloon"]


def _photo(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (300, 400, 3), dtype=np.uint8)).save(buf, format="JPEG")
    return buf.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reruns", type=int, default=300)
    args = parser.parse_args()
    curve: list[tuple[int, float]] = []
    with sync_playwright() as p, server(ROOT) as url:
        browser = p.chromium.launch(executable_path=shutil.which("chromium"), args=ARGS)
        page = browser.new_page(viewport={"width": 1600, "height": 1100})
        page.set_default_timeout(300_000)
        page.goto(url)
        page.wait_for_selector(IDLE)
        page.locator(".st-key-overlay_gradcam_0").wait_for()
        rng = random.Random(0)
        uploads = 0
        start = time.perf_counter()
        for i in range(args.reruns):
            kind = i % 4
            if kind == 0:
                page.locator(".st-key-samples button", has_text=SAMPLES[(i // 4) % len(SAMPLES)]).click()
            elif kind == 1:
                box = page.locator(".st-key-class_find input")
                box.fill(rng.choice(CLASSES))
                box.press("Enter")
            elif kind == 2:
                page.locator(f"[data-layer='{LAYERS[(i // 4) % len(LAYERS)]}']").click()
            elif uploads < 20:
                uploads += 1
                page.locator("[data-testid='stFileUploaderDropzoneInput']").first.set_input_files(
                    files=[{"name": f"upload_{uploads}.jpg", "mimeType": "image/jpeg", "buffer": _photo(uploads)}]
                )
            else:
                page.locator("[class*='st-key-views'] button", has_text="Signed").click()
            page.wait_for_timeout(150)
            page.wait_for_selector(IDLE)
            if i % 10 == 9:
                curve.append((i + 1, stats(url)["rss_bytes"] / 2**20))
                print(f"rerun {i + 1:4d}: {curve[-1][1]:7.0f} MB  ({time.perf_counter() - start:.0f} s)", flush=True)
        last = stats(url)
        browser.close()
    values = [mb for _, mb in curve]
    third = max(1, len(values) // 3)
    print(f"RSS: start {values[0]:.0f} MB, max {max(values):.0f} MB, end {values[-1]:.0f} MB; "
          f"last two thirds range {min(values[third:]):.0f}–{max(values[third:]):.0f} MB")
    print(f"the server at the end: {last}")


if __name__ == "__main__":
    main()
