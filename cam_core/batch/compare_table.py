"""The join of two models' batch runs: ``OUT/compare.parquet`` (one row per image), the contract.

============== ================ =======================================================================
column         type             meaning
============== ================ =======================================================================
path           string           the file, absolute
label          int32            its class from the folder name, in model A's ids (null without labels)
label_name     string           that class's name
pred_a         int32            model A's top-1 class (A's ids)
pred_name_a    string           its name
prob_pred_a    float32          its probability under A
pred_b         int32            model B's top-1 class (B's ids)
pred_name_b    string           its name
prob_pred_b    float32          its probability under B
correct_a      bool             A's prediction is the label (null without a label)
correct_b      bool             B's prediction is the label
pred_changed   bool             B's top-1 is not A's top-1 (classes matched by name)
class_names    list<string>     the explained classes: A's, then B's that A has not explained
map_shift      list<float32>    per class: 1 − Pearson r of the two ReLU'd maps over the photo (null where a
                                model lacks the class; :func:`cam_core.analysis.compare.map_shift`)
peak_shift_px  list<float32>    per class: the distance of the two maps' peaks, in the photo's pixels (null
                                where a map is blank or a model lacks the class)
prob_a         list<float32>    per class: A's probability of it (null where A lacks the class)
prob_b         list<float32>    per class: B's probability of it
shift_max      float32          the row's largest map_shift (what the Dataset page sorts by)
error          string           why the image has no comparison (either model's error; null when fine)
============== ================ =======================================================================

The maps are compared on each photo's own grid: each model's map is brought over the photo with
:func:`cam_core.render.maps_on_image` and that model's placement (its fit undone), at a reduced size
(:data:`PHOTO_SIDE` = 112 pixels on the longer side; ``--photo-side`` changes it; ``peak_shift_px`` is still in the
photo's own pixels), so two models with other input sizes, fits or layers compare fairly.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..analysis.compare import PHOTO_SIDE, map_shift, match_classes, on_photo
from ..devices import one_intraop_thread
from ..models.preprocess import Placement, Preprocess
from .job import photo_size
from .results import RESULTS, map_column, read_run
from .scan import preprocess_of

__all__ = ["COMPARE", "COMPARE_JSON", "CompareCounts", "RunPlace", "compare_schema", "join_runs"]

COMPARE = "compare.parquet"
COMPARE_JSON = "compare.json"
# The photo grid's longer side: 8× a 14-cell layer grid (the usual CAM layer has 7-14 cells a side, ViT 14, HiResCAM
# at a stride-16 layer 14-28), so resampling does not decide the measure; 224 would cost three times as much.
_F32, _I32 = pa.float32(), pa.int32()
_ROW = ("path", "label", "label_name", "pred", "pred_name", "prob_pred", "correct", "class_ids", "class_probs",
        "map_shape", "error")


def compare_schema() -> pa.Schema:
    """The columns of ``compare.parquet``."""
    return pa.schema([
        pa.field("path", pa.string(), nullable=False), ("label", _I32), ("label_name", pa.string()),
        ("pred_a", _I32), ("pred_name_a", pa.string()), ("prob_pred_a", _F32),
        ("pred_b", _I32), ("pred_name_b", pa.string()), ("prob_pred_b", _F32),
        ("correct_a", pa.bool_()), ("correct_b", pa.bool_()), ("pred_changed", pa.bool_()),
        ("class_names", pa.list_(pa.string())), ("map_shift", pa.list_(_F32)), ("peak_shift_px", pa.list_(_F32)),
        ("prob_a", pa.list_(_F32)), ("prob_b", pa.list_(_F32)), ("shift_max", _F32), ("error", pa.string()),
    ])


@dataclass(frozen=True)
class CompareCounts:
    """The comparison in numbers: images compared, flipped predictions and, with labels, which way they went."""

    images: int
    failed: int
    flipped: int
    labelled: int
    a_right_b_wrong: int
    a_wrong_b_right: int
    median_shift: float

    def to_dict(self) -> dict[str, Any]:
        """For ``compare.json`` (NaN as null)."""
        return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in asdict(self).items()}


def _read(out: Path, method: str) -> tuple[dict[str, dict[str, Any]], dict[str, np.ndarray], dict[str, Any]]:
    """A run's rows by path (light columns), its maps by path (K, h, w), and its ``run.json``."""
    table = pq.read_table(out / RESULTS, columns=[*_ROW, map_column(method)])
    light = table.select(list(_ROW)).to_pylist()
    col = table.column(map_column(method))
    values = pa.concat_arrays(col.chunks) if col.num_chunks else pa.array([], col.type)
    offsets, flat = values.offsets.to_numpy(), values.values.to_numpy(zero_copy_only=False)
    maps = {
        r["path"]: flat[offsets[i]:offsets[i + 1]].reshape(r["map_shape"])
        for i, r in enumerate(light) if values[i].is_valid and r["map_shape"] is not None
    }
    return {r["path"]: r for r in light}, maps, read_run(out)


def _pairs(ids_a: list[int], ids_b: list[int], a_to_b: list[int | None], b_to_a: list[int | None],
           names_a: list[str], names_b: list[str]) -> list[tuple[str, int | None, int | None]]:
    """The explained classes as (name, slot in A's maps, slot in B's maps): A's, then B's that A has not."""
    pairs = [(names_a[c], k, ids_b.index(a_to_b[c]) if a_to_b[c] in ids_b else None) for k, c in enumerate(ids_a)]
    pairs += [(names_b[c], None, k) for k, c in enumerate(ids_b) if b_to_a[c] not in ids_a]
    return pairs


def _shifts(path: str, pairs: list, cams: tuple[np.ndarray, np.ndarray], places: tuple[Any, Any], side: int,
            ) -> tuple[list[float | None], list[float | None]]:
    """Per class pair, the map shift and the peaks' distance (None where a model lacks the class)."""
    size = photo_size(path)
    both = [(ka, kb) for _, ka, kb in pairs if ka is not None and kb is not None]
    if size is None or not both:
        return [None] * len(pairs), [None] * len(pairs)
    width, height = size
    on_a = on_photo(cams[0][[ka for ka, _ in both]], places[0].place(width, height), size, side)
    on_b = on_photo(cams[1][[kb for _, kb in both]], places[1].place(width, height), size, side)
    found = {ab: map_shift(on_a[i], on_b[i], photo_size=(height, width)) for i, ab in enumerate(both)}
    shift = [found[(ka, kb)].shift if (ka, kb) in found else None for _, ka, kb in pairs]
    peak = [found[(ka, kb)].peak_px if (ka, kb) in found else None for _, ka, kb in pairs]
    return shift, [None if p is None or math.isnan(p) else p for p in peak]


@dataclass(frozen=True)
class RunPlace:
    """Where a run put a photo of a given size in its model's input (its preprocessing and fit, from ``run.json``)."""

    preprocess: Preprocess
    fit: str

    @classmethod
    def of(cls, run: dict[str, Any]) -> RunPlace:
        return cls(preprocess_of(run), run["preprocessing"]["fit"])

    def place(self, width: int, height: int) -> Placement:
        return self.preprocess.place(width, height, self.fit)  # type: ignore[arg-type]


def join_runs(
    out_a: str | os.PathLike[str], out_b: str | os.PathLike[str], method: str, *, photo_side: int = PHOTO_SIDE
) -> tuple[pa.Table, CompareCounts]:
    """Join two models' batch results (the images both ran on) into :func:`compare_schema`'s table.

    Everything comes from the two folders (class names, preprocessing and fit from their ``run.json``): no model
    is loaded, so a comparison can be joined again anywhere its folders are.
    """
    rows_a, maps_a, run_a = _read(Path(out_a), method)
    rows_b, maps_b, run_b = _read(Path(out_b), method)
    names_a, names_b = list(run_a["class_names"]), list(run_b["class_names"])
    a_to_b, b_to_a = match_classes(names_a, names_b), match_classes(names_b, names_a)
    places = (RunPlace.of(run_a), RunPlace.of(run_b))
    paths = sorted(set(rows_a) & set(rows_b))
    pairs = {p: _pairs(rows_a[p]["class_ids"], rows_b[p]["class_ids"], a_to_b, b_to_a, names_a, names_b)
             for p in paths if rows_a[p]["error"] is None and rows_b[p]["error"] is None}

    with one_intraop_thread():  # small operators, one after another: more threads only wait for each other
        moved = {p: _shifts(p, pairs[p], (maps_a[p], maps_b[p]), places, photo_side) for p in pairs}
    out = [_row(rows_a[p], rows_b[p], a_to_b, pairs.get(p), moved.get(p)) for p in paths]
    table = pa.Table.from_pylist(out, schema=compare_schema())
    return table, _counts(out)


def _row(a: dict[str, Any], b: dict[str, Any], a_to_b: list[int | None], pairs: list | None,
         moved: tuple[list, list] | None) -> dict[str, Any]:
    """One image's row of ``compare.parquet`` from its two results rows (``pairs``/``moved``: None on an error)."""
    row: dict[str, Any] = {
        "path": a["path"], "label": a["label"], "label_name": a["label_name"],
        "pred_a": a["pred"], "pred_name_a": a["pred_name"], "prob_pred_a": a["prob_pred"],
        "pred_b": b["pred"], "pred_name_b": b["pred_name"], "prob_pred_b": b["prob_pred"],
        "correct_a": a["correct"], "correct_b": b["correct"],
        "error": f"model A: {a['error']}" if a["error"] else f"model B: {b['error']}" if b["error"] else None,
    }
    if pairs is None or moved is None:
        return row
    shift, peak = moved
    live = [s for s in shift if s is not None]
    return row | {
        "pred_changed": a_to_b[a["pred"]] != b["pred"],
        "class_names": [n for n, _, _ in pairs], "map_shift": shift, "peak_shift_px": peak,
        "prob_a": [None if ka is None else a["class_probs"][ka] for _, ka, _ in pairs],
        "prob_b": [None if kb is None else b["class_probs"][kb] for _, _, kb in pairs],
        "shift_max": max(live) if live else None,
    }


def _counts(rows: list[dict[str, Any]]) -> CompareCounts:
    ok = [r for r in rows if r["error"] is None]
    labelled = [r for r in ok if r["correct_a"] is not None and r["correct_b"] is not None]
    shifts = [r["shift_max"] for r in ok if r.get("shift_max") is not None]
    return CompareCounts(
        images=len(ok), failed=len(rows) - len(ok), flipped=sum(bool(r["pred_changed"]) for r in ok),
        labelled=len(labelled),
        a_right_b_wrong=sum(r["correct_a"] and not r["correct_b"] for r in labelled),
        a_wrong_b_right=sum(not r["correct_a"] and r["correct_b"] for r in labelled),
        median_shift=float(np.median(shifts)) if shifts else math.nan,
    )
