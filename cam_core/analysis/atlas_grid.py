"""A batch run's maps on one common grid, read in batches: what the atlas clusters.

Under the ``whole`` fit rows differ in their map's (h, w), so every explained map is brought to a
``grid × grid`` picture by area averaging (each grid cell is the mean of the map cells it covers, in
proportion to the overlap). Maps are ReLU'd first (the atlas groups by where the *positive* evidence
lies) and then divided by their sum: each row becomes a distribution of mass over the grid, so a
strong and a weak map that look at the same place are alike. Blank maps (the run's ``blank`` flag:
nothing left after ReLU) have no distribution and are kept apart.

The files are the query engine's (:func:`~cam_core.batch.scan.parquet_files`), read here in one pass of
record batches rather than through :class:`~cam_core.batch.query.ResultsQuery`, whose maps are fetched a page
of rows at a time: the atlas needs every map once, in bulk. Only the columns needed are read (``path``, the
class columns, ``class_ids``, ``map_shape``, the method's maps, ``blank``, ``error`` and loc's
``box_energy`` when present), one record batch at a time, and each batch is reduced to its grid before
the next is read: a 100 000-row results file never sits in memory whole.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..batch.results import RESULTS, map_column, read_run
from ..batch.scan import parquet_files
from ..errors import CamError

__all__ = ["GRID", "WHOSE", "GridMaps", "area_matrix", "read_grid_maps", "to_grid"]

GRID = 16  # cells a side: fine enough for a corner (4 × 4 cells) and a border ring (2 cells) to be told apart
WHOSE = ("pred", "label")  # whose map a row contributes: its predicted class's (default) or its true class's
_BATCH_ROWS = 8192
BOX_ENERGY = "box_energy"  # loc's column (per method, then per explained class; null where the class has no box)


@dataclass
class GridMaps:
    """One method's maps of a run, one row per image whose asked class was explained.

    Attributes:
        paths: (n,) file paths.
        class_ids: (n,) the class whose map it is.
        grids: (n, grid, grid) float32 mass distributions (each sums to 1; zeros where ``blank``).
        blank: (n,) the map is blank after ReLU (no distribution).
        box_energy: (n,) share of the map's mass in the class's box (NaN: no box, or no such column).
    """

    paths: np.ndarray
    class_ids: np.ndarray
    grids: np.ndarray
    blank: np.ndarray
    box_energy: np.ndarray


def area_matrix(size: int, grid: int) -> np.ndarray:
    """(grid, size) weights: row g averages the input cells that cell g covers, by overlap (rows sum to 1)."""
    edges_in = np.arange(size + 1) / size
    edges_out = np.arange(grid + 1) / grid
    lo = np.maximum(edges_out[:-1, None], edges_in[None, :-1])
    hi = np.minimum(edges_out[1:, None], edges_in[None, 1:])
    overlap = np.clip(hi - lo, 0.0, None)
    return (overlap / overlap.sum(axis=1, keepdims=True)).astype(np.float32)


def to_grid(maps: np.ndarray, grid: int = GRID) -> np.ndarray:
    """(n, h, w) maps → (n, grid, grid) by area averaging (a mass share is kept wherever it falls)."""
    _, h, w = maps.shape
    return area_matrix(h, grid) @ maps @ area_matrix(w, grid).T


def _starts(column: pa.Array) -> np.ndarray:
    """Per row, where its list starts in the flattened values (nulls count as empty)."""
    lengths = pc.fill_null(pc.list_value_length(column), 0).to_numpy(zero_copy_only=False).astype(np.int64)
    return np.concatenate([[0], np.cumsum(lengths)[:-1]]) if len(lengths) else lengths


def _slots(class_ids: pa.Array, want: np.ndarray) -> np.ndarray:
    """Per row, the position of class ``want[row]`` in its ``class_ids`` list (-1: not explained)."""
    flat = pc.list_flatten(class_ids).to_numpy(zero_copy_only=False)
    parent = pc.list_parent_indices(class_ids).to_numpy(zero_copy_only=False)
    pos = np.arange(len(flat)) - _starts(class_ids)[parent]
    hit = flat == want[parent]
    slots = np.full(len(class_ids), -1, dtype=np.int64)
    slots[parent[hit][::-1]] = pos[hit][::-1]  # reversed: the first occurrence is written last and wins
    return slots


def _ints(column: pa.Array) -> np.ndarray:
    """An int column with nulls as -1."""
    return pc.fill_null(column, -1).to_numpy(zero_copy_only=False).astype(np.int64)


def _list_values(column: pa.Array, rows: np.ndarray, index: np.ndarray, fill: float) -> np.ndarray:
    """Element ``index[i]`` of list ``column[rows[i]]`` (null elements as ``fill``)."""
    flat = pc.list_flatten(column)
    values = pc.fill_null(flat.cast(pa.float64()), fill).to_numpy(zero_copy_only=False)
    return values[_starts(column)[rows] + index]


def _batch_grids(batch: pa.RecordBatch, method: str, m: int, whose: str, grid: int, with_box: bool,
                 ) -> tuple[np.ndarray, ...]:
    """One record batch → (rows kept, class ids, grids, blank, box energy) for ``method`` (the m-th of the run)."""
    want = _ints(batch.column(whose))
    slots = _slots(batch.column("class_ids"), want)
    maps = batch.column(map_column(method))
    ok = (slots >= 0) & pc.is_null(batch.column("error")).to_numpy(zero_copy_only=False)
    ok &= pc.is_valid(maps).to_numpy(zero_copy_only=False)
    rows = np.flatnonzero(ok)
    shapes = pc.list_flatten(batch.column("map_shape")).to_numpy(zero_copy_only=False).reshape(-1, 3)
    shape_of = np.full((len(batch), 3), 0, dtype=np.int64)
    shape_of[pc.is_valid(batch.column("map_shape")).to_numpy(zero_copy_only=False)] = shapes
    k = shape_of[rows, 0]
    blank = _list_values(batch.column("blank"), rows, m * k + slots[rows], 0.0) > 0
    energy = (_list_values(batch.column(BOX_ENERGY), rows, m * k + slots[rows], np.nan) if with_box
              else np.full(len(rows), np.nan))
    values = pc.list_flatten(maps).to_numpy(zero_copy_only=False)
    starts = _starts(maps)
    out = np.zeros((len(rows), grid, grid), dtype=np.float32)
    hw = shape_of[rows, 1:]
    for h, w in {(int(a), int(b)) for a, b in hw}:
        sel = np.flatnonzero((hw[:, 0] == h) & (hw[:, 1] == w))
        r = rows[sel]
        begin = starts[r] + slots[r] * h * w
        cams = values[begin[:, None] + np.arange(h * w)].reshape(-1, h, w)
        out[sel] = to_grid(np.maximum(cams, 0.0, dtype=np.float32), grid)
    mass = out.sum(axis=(1, 2))
    blank |= ~(mass > 0)
    out[~blank] /= mass[~blank, None, None]
    out[blank] = 0.0
    return rows, want[rows], out, blank, energy


def read_grid_maps(out: str | os.PathLike[str], method: str | None = None, whose: str = "pred",
                   grid: int = GRID) -> tuple[str, GridMaps]:
    """Every row's map of ``whose`` class (``pred`` or ``label``) for ``method`` (default: the run's first).

    The rows are the folder's Parquet files as the query engine finds them (:func:`~cam_core.batch.scan.parquet_files`:
    ``results.parquet``, or the parts of a run still going or written by Ray); a path in several files keeps its
    newest row.

    Returns:
        (the method, its :class:`GridMaps`).

    Raises:
        CamError: Not a results folder, an unknown method, or no map of ``whose`` class in the run.
    """
    if whose not in WHOSE:
        raise CamError(f"whose map: choose from {', '.join(WHOSE)}, got {whose!r}")
    folder = Path(out)
    run = read_run(folder)
    methods = list(run.get("methods") or [])
    method = method or (methods[0] if methods else None)
    if method not in methods:
        raise CamError(f"the run has no {method!r} maps; it has: {', '.join(methods) or 'none'}")
    files = parquet_files(folder)
    if not files:
        raise CamError(f"{folder} holds no {RESULTS} and no Parquet parts (run `python -m cam_core batch` first)")
    parts = [part for f in files for part in _read_file(f, method, methods.index(method), whose, grid)]
    if not parts or not sum(len(p[0]) for p in parts):
        raise CamError(f"no {whose} class's {method} map in {folder}"
                       + (" (the run explains other classes: try the true class's maps)" if whose == "pred" else ""))
    paths, ids, grids, blank, energy = (np.concatenate(c) for c in zip(*parts, strict=True))
    _, last = np.unique(paths[::-1], return_index=True)  # a path's newest row is its last
    keep = np.sort(len(paths) - 1 - last)
    return method, GridMaps(paths[keep], ids[keep], grids[keep], blank[keep], energy[keep])


def _read_file(file: Path, method: str, m: int, whose: str, grid: int) -> list[tuple[np.ndarray, ...]]:
    """One Parquet file's rows on the grid, a record batch at a time."""
    try:
        reader = pq.ParquetFile(file)
    except (OSError, pa.ArrowInvalid) as exc:
        raise CamError(f"{file.name} cannot be read as Parquet: {exc}") from exc
    names = reader.schema_arrow.names
    with_box = BOX_ENERGY in names
    columns = ["path", whose, "class_ids", "map_shape", map_column(method), "blank", "error"]
    missing = [c for c in columns if c not in names]
    if missing:
        raise CamError(f"{file.name} lacks the column(s) {', '.join(missing)}: not a batch results file")
    parts = []
    for batch in reader.iter_batches(batch_size=_BATCH_ROWS, columns=columns + ([BOX_ENERGY] if with_box else [])):
        rows, *rest = _batch_grids(batch, method, m, whose, grid, with_box)
        parts.append((batch.column("path").to_numpy(zero_copy_only=False)[rows], *rest))
    return parts
