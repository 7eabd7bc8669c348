"""The atlas of a large run: ``python benchmarks/bench_atlas.py [--rows 100000] [--classes 10 1000]``.

Writes synthetic results (tests/synthetic_results.py: jittered central blobs, a quarter of one class's maps in a
corner) to a temporary folder, then times :func:`cam_core.analysis.atlas.build_atlas` + :func:`write_atlas`
(reading the Parquet in batches, the grid, PCA, k-means with k chosen by silhouette, the flags), and, as the
baseline in the same process, reading the same file's columns whole with ``pyarrow.parquet.read_table``.
The issue's target: 100 000 rows within 60 s on 2 cores.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cam_core.analysis.atlas import build_atlas, write_atlas
from tests.synthetic_results import write_results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--classes", type=int, nargs="+", default=[10, 1000])
    args = parser.parse_args()
    print(f"{os.cpu_count()} cores visible")
    for classes in args.classes:
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp)
            t = time.perf_counter()
            write_results(out, n=args.rows, classes=classes, shortcut_class=0, share=0.25)
            made = time.perf_counter() - t
            t = time.perf_counter()
            pq.read_table(out / "results.parquet", columns=["path", "pred", "class_ids", "map_gradcam"])
            base = time.perf_counter() - t
            t = time.perf_counter()
            atlas = build_atlas(out)
            write_atlas(out, [atlas])
            took = time.perf_counter() - t
            flagged = len(atlas.flagged())
            print(f"{args.rows:,} rows, {len(atlas.classes)} classes: atlas {took:.1f} s "
                  f"({took / base:.0f}× reading the columns whole, {base:.2f} s; synthetic data {made:.0f} s); "
                  f"{flagged} flagged cluster(s); target ≤ 60 s: {'met' if took <= 60 else 'MISSED'}")


if __name__ == "__main__":
    main()
