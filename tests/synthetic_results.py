"""Synthetic batch results (``results.parquet`` + ``run.json``) with planted maps, for the atlas' tests and benchmark.

Each row's map is a Gaussian blob (plus noise, signed) on its own (h, w) grid, as the ``whole`` fit
gives: most blobs sit near the middle, jittered; a chosen share of one class's maps peak in a corner
instead (the planted shortcut). The truth comes back so a test can score the clusters.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from cam_core.batch.results import RESULTS, RUN, map_column, results_schema

NAMES = ["cat", "dog", "bird", "fish", "frog", "horse", "ship", "truck"]
SHAPES = ((7, 7), (7, 10), (10, 7), (6, 8))
PREPROCESSING = {"crop_size": [224, 224], "resize_size": 256, "mean": [0.485, 0.456, 0.406],
                 "std": [0.229, 0.224, 0.225], "interpolation": "bilinear", "fit": "whole", "description": "whole"}


@dataclass
class Planted:
    """What was planted: the rows' paths, predicted class, and which ones peak in the corner."""

    paths: list[str]
    pred: np.ndarray
    shortcut: np.ndarray


def blob(h: int, w: int, cy: float, cx: float, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """A signed map: a Gaussian at (cy, cx) in cell units, a little noise, a slight negative offset."""
    yy, xx = np.mgrid[0:h, 0:w]
    g = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * sigma**2))
    return (g + rng.normal(0, 0.05, (h, w)) - 0.1).astype(np.float32)


def synthetic_maps(n: int, classes: int, shortcut_class: int | None, share: float, seed: int = 0,
                   ) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """(pred (n,), shortcut (n,) bool, maps: one (1, h, w) array per row)."""
    rng = np.random.default_rng(seed)
    pred = rng.integers(0, classes, n)
    shortcut = np.zeros(n, dtype=bool)
    if shortcut_class is not None:
        mine = np.flatnonzero(pred == shortcut_class)
        shortcut[rng.choice(mine, round(share * len(mine)), replace=False)] = True
    maps = []
    for i in range(n):
        h, w = SHAPES[rng.integers(len(SHAPES))]
        if shortcut[i]:
            cy, cx, sigma = rng.uniform(0, 0.6), rng.uniform(0, 0.6), rng.uniform(0.6, 1.0)
        else:
            cy = (h - 1) / 2 + rng.uniform(-0.15, 0.15) * h
            cx = (w - 1) / 2 + rng.uniform(-0.15, 0.15) * w
            sigma = rng.uniform(1.0, 1.8)
        maps.append(blob(h, w, cy, cx, sigma, rng)[None])
    return pred, shortcut, maps


def _list(arrays: list[np.ndarray], typ: pa.DataType) -> pa.Array:
    offsets = np.zeros(len(arrays) + 1, dtype=np.int32)
    np.cumsum([a.size for a in arrays], out=offsets[1:])
    flat = np.concatenate([a.ravel() for a in arrays]) if arrays else np.zeros(0)
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(flat, typ))


def write_results(out: Path, n: int = 400, classes: int = 3, shortcut_class: int | None = 0, share: float = 0.25,
                  seed: int = 0, box_energy: np.ndarray | None = None, blank_rows: int = 0) -> Planted:
    """A results folder with ``n`` rows of method ``gradcam`` (pred explained); returns what was planted.

    ``box_energy`` (n,) adds loc's column (NaN: no box); the first ``blank_rows`` rows get all-negative maps.
    """
    out.mkdir(parents=True, exist_ok=True)
    pred, shortcut, maps = synthetic_maps(n, classes, shortcut_class, share, seed)
    blank = np.zeros(n, dtype=bool)
    for i in range(blank_rows):
        maps[i] = -np.abs(maps[i]) - 0.01
        blank[i] = True
    names = NAMES if classes <= len(NAMES) else [f"class {i}" for i in range(classes)]
    paths = [f"/data/{names[p]}/{i:06d}.jpg" for i, p in enumerate(pred)]
    label = pred.copy()
    i32, f32 = pa.int32(), pa.float32()
    cols = {
        "path": pa.array(paths, pa.string()), "label": pa.array(label, i32),
        "label_name": pa.array([names[c] for c in label]), "pred": pa.array(pred, i32),
        "pred_name": pa.array([names[c] for c in pred]), "prob_pred": pa.array(np.full(n, 0.9), f32),
        "prob_label": pa.array(np.full(n, 0.9), f32), "correct": pa.array(np.ones(n, dtype=bool)),
        "top5_ids": _list([np.array([p]) for p in pred], i32), "top5_probs": _list([np.array([0.9])] * n, f32),
        "entropy": pa.array(np.full(n, 0.3), f32), "class_ids": _list([np.array([p]) for p in pred], i32),
        "class_probs": _list([np.array([0.9])] * n, f32),
        map_column("gradcam"): _list(maps, f32),
        "map_shape": _list([np.array(m.shape) for m in maps], i32),
        "pos_mass": _list([np.array([0.8])] * n, f32), "relu_survival": _list([np.array([0.5])] * n, f32),
        "blank": _list([np.array([b]) for b in blank], pa.bool_()), "error": pa.array([None] * n, pa.string()),
    }
    table = pa.table(cols, schema=results_schema(["gradcam"]))
    if box_energy is not None:
        mask = ~np.isfinite(box_energy)
        values = pa.array(np.nan_to_num(box_energy).astype(np.float32), f32, mask=mask)
        offsets = pa.array(np.arange(n + 1, dtype=np.int32))
        table = table.append_column("box_energy", pa.ListArray.from_arrays(offsets, values))
    pq.write_table(table, out / RESULTS, row_group_size=1024)
    run = {"methods": ["gradcam"], "class_names": names, "layer": "features",
           "model": "synthetic", "classes": "pred", "preprocessing": PREPROCESSING}
    (out / RUN).write_text(json.dumps(run), encoding="utf-8")
    return Planted(paths, pred, shortcut)
