"""Downloadable files from plain values: overlay PNGs (zipped), maps (.npz), scores (JSON/CSV).

The .npz has the same keys as the CLI's (``logits``, ``probs``, ``class_ids``,
``class_names``, ``layer``, ``maps_<method>`` (K, h, w), ``up_<method>`` (K, H, W)),
so a file saved from the page and one written by ``python -m cam_core explain``
are read the same way.
"""

from __future__ import annotations

import csv
import io
import json
import re
import zipfile
from collections.abc import Mapping, Sequence

import numpy as np
from PIL import Image

from cam_core.models.preprocess import Placement
from cam_core.render import maps_on_image, photo_overlay, to_png_bytes
from dashboard.display import Display

__all__ = ["maps_npz", "overlays_zip", "safe_stem", "scores_csv", "scores_json"]


def safe_stem(text: str) -> str:
    """A file-name-safe version of ``text`` (letters, digits, ``-_.``)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "image"


def overlays_zip(
    background: np.ndarray,
    maps: Mapping[tuple[str, int], np.ndarray],
    class_names: Sequence[str],
    *,
    stem: str,
    display: Display,
    meta: Mapping[str, object] | None = None,
    photo: Image.Image | None = None,
    place: Placement | None = None,
) -> bytes:
    """One PNG per (method, class, view) as the page shows it (its views, colormaps and opacity), in a zip.

    Each PNG carries what produced it as PNG text (model, weights trained or not, fit, layer, method,
    class, view, opacity), and the zip holds the same in ``meta.json``, so a picture that travels on
    its own can still say where it came from.

    Args:
        background: (H, W, 3) uint8 image as the model saw it (used without ``photo``).
        maps: (method, class id) → (H, W) upsampled signed map.
        class_names: all class names (indexed by id).
        stem: file-name prefix (the image's name).
        display: the on-screen views (in their row order), colormaps and opacity.
        meta: the view's settings (model, fit, layer, …), written to every PNG and to ``meta.json``.
        photo: the original image; with ``place`` (how it met the model), the PNGs are at its own size (the maps
            carried back through the fit), else at the model's input size over ``background``.
    """
    meta = dict(meta or {})
    if photo is not None and place is not None:
        background = np.asarray(photo.convert("RGB"))
        maps = {key: maps_on_image(cam[None], place, photo.size)[0] for key, cam in maps.items()}
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:  # PNGs are compressed already
        for (method, cid), cam in maps.items():
            for view in display.views:
                cmap = display.signed_cmap if view == "signed" else display.cmap
                rgb = photo_overlay(background, cam, view=view, cmap=cmap, alpha=display.opacity)
                text = {**_texts(meta), "method": method, "class": f"{class_names[cid]} ({cid})", "view": view}
                name = f"{stem}_{method}_{cid}_{safe_stem(class_names[cid])}_{view}.png"
                zf.writestr(name, to_png_bytes(rgb, text))
        zf.writestr("meta.json", json.dumps(meta, indent=1))
    return buf.getvalue()


def _texts(meta: Mapping[str, object]) -> dict[str, str]:
    return {k: v if isinstance(v, str) else json.dumps(v) for k, v in meta.items()}


def maps_npz(
    *,
    logits: np.ndarray,
    probs: np.ndarray,
    class_ids: Sequence[int],
    class_names: Sequence[str],
    layer: str,
    methods: Sequence[str],
    raw: Mapping[tuple[str, int], np.ndarray],
    up: Mapping[tuple[str, int], np.ndarray],
    meta: Mapping[str, object] | None = None,
) -> bytes:
    """Maps and scores in the CLI's .npz layout (maps stacked over the selected classes); ``meta`` (model,
    fit, …) goes in as a JSON string under ``meta``."""
    arrays: dict[str, np.ndarray] = {
        "logits": np.asarray(logits, dtype=np.float32),
        "probs": np.asarray(probs, dtype=np.float32),
        "class_ids": np.asarray(class_ids, dtype=np.int64),
        "class_names": np.array([class_names[i] for i in class_ids]),
        "layer": np.array(layer),
    }
    if meta:
        arrays["meta"] = np.array(json.dumps(dict(meta)))
    for m in methods:
        arrays[f"maps_{m}"] = np.stack([raw[(m, c)] for c in class_ids]).astype(np.float32)
        arrays[f"up_{m}"] = np.stack([up[(m, c)] for c in class_ids]).astype(np.float32)
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return buf.getvalue()


def _rows(
    class_names: Sequence[str], logits: np.ndarray, probs: np.ndarray, selected: Sequence[int]
) -> list[dict[str, object]]:
    chosen = set(selected)
    order = np.argsort(-np.asarray(probs), kind="stable")
    return [
        {
            "rank": rank + 1,
            "class_id": int(i),
            "class_name": class_names[i],
            "prob": float(probs[i]),
            "logit": float(logits[i]),
            "selected": int(i) in chosen,
        }
        for rank, i in enumerate(order)
    ]


def scores_json(
    class_names: Sequence[str],
    logits: np.ndarray,
    probs: np.ndarray,
    selected: Sequence[int],
    *,
    meta: Mapping[str, object],
) -> str:
    """Every class's probability and logit (ranked), with the view's settings in ``meta``."""
    return json.dumps({**meta, "scores": _rows(class_names, logits, probs, selected)}, indent=1)


def scores_csv(class_names: Sequence[str], logits: np.ndarray, probs: np.ndarray, selected: Sequence[int]) -> str:
    """Every class's probability and logit as CSV, ranked by probability."""
    rows = _rows(class_names, logits, probs, selected)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()
