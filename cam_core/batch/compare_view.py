"""A comparison folder as a page reads it: the counts, the rows in the page's order, one row's two maps on its photo.

The page's order: flipped predictions first, then by how far the maps moved (``shift_max``, largest first). The
filters and the shown class are declared as data (:data:`FILTERS`, :data:`SHOWN`) so a page lists them and a
report can reuse them. The maps come from the two runs' own results (``OUT/a``, ``OUT/b``), brought over the
photo as the join did (:func:`.compare_table.on_photo`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..analysis.compare import normalise_class_name
from ..errors import CamError
from .compare_table import COMPARE, COMPARE_JSON, CompareCounts, RunPlace, compare_schema, on_photo
from .job import photo_size
from .results import map_column, read_results, read_run

__all__ = ["FILTERS", "SHOWN", "CompareRun", "is_compare"]

_Mask = Callable[[pa.Table], pa.ChunkedArray]


def _ok(t: pa.Table) -> pa.ChunkedArray:
    return pc.is_null(t["error"])


def _both(*masks: pa.ChunkedArray) -> pa.ChunkedArray:
    out = masks[0]
    for m in masks[1:]:
        out = pc.and_kleene(out, m)
    return pc.fill_null(out, False)


# name → (what the page says, which rows); "moved": a class whose map shift is at least 0.5
FILTERS: dict[str, tuple[str, _Mask]] = {
    "all": ("All images", _ok),
    "flipped": ("Flipped", lambda t: _both(_ok(t), t["pred_changed"])),
    "a_right_b_wrong": ("A right → B wrong", lambda t: _both(_ok(t), t["correct_a"], pc.invert(t["correct_b"]))),
    "a_wrong_b_right": ("A wrong → B right", lambda t: _both(_ok(t), pc.invert(t["correct_a"]), t["correct_b"])),
    "moved": ("Maps moved", lambda t: _both(_ok(t), pc.greater_equal(t["shift_max"], 0.5))),
}
# name → what the page says: whose class's maps a thumbnail shows
SHOWN = {"pred_a": "A's prediction", "pred_b": "B's prediction", "moved": "The class that moved most"}


def is_compare(folder: str | os.PathLike[str]) -> bool:
    """Whether ``folder`` holds a comparison (``compare.parquet``)."""
    return (Path(folder) / COMPARE).is_file()


@dataclass
class CompareRun:
    """One comparison folder: ``compare.json``, the joined table, and each model's run (for the maps)."""

    folder: Path
    info: dict[str, Any]
    table: pa.Table
    counts: CompareCounts
    _runs: dict[str, tuple[pa.Table, dict[str, int], RunPlace, list[str]]] = field(default_factory=dict, repr=False)

    @classmethod
    def open(cls, folder: str | os.PathLike[str]) -> CompareRun:
        """Read ``folder``'s ``compare.parquet`` and ``compare.json``.

        Raises:
            CamError: Either is missing or unreadable, or the table lacks the contract's columns.
        """
        folder = Path(folder)
        try:
            table = pq.read_table(folder / COMPARE)
            info = json.loads((folder / COMPARE_JSON).read_text(encoding="utf-8"))
        except (OSError, ValueError, pa.ArrowInvalid) as exc:
            raise CamError(f"{folder} is not a readable comparison ({COMPARE}, {COMPARE_JSON}): {exc}") from exc
        missing = [n for n in compare_schema().names if n not in table.column_names]
        if missing or not isinstance(info, dict) or not {"a", "b", "method", "counts"} <= set(info):
            raise CamError(f"{folder}: {COMPARE} or {COMPARE_JSON} lacks {', '.join(missing) or 'model details'}")
        counts = CompareCounts(**{k: (np.nan if v is None else v) for k, v in info["counts"].items()})
        return cls(folder, info, table, counts)

    def rows(self, which: str = "all") -> list[int]:
        """Row indices for filter ``which`` (:data:`FILTERS`): flipped first, then the most moved maps first."""
        if which not in FILTERS:
            raise CamError(f"unknown filter {which!r}; choose from {', '.join(FILTERS)}")
        keep = FILTERS[which][1](self.table)
        idx = pa.array(np.arange(self.table.num_rows))
        t = pa.table({"i": idx, "flip": pc.fill_null(self.table["pred_changed"], False),
                      "shift": pc.fill_null(self.table["shift_max"], -1.0)}).filter(keep)  # no shift: last
        order = pc.sort_indices(t, sort_keys=[("flip", "descending"), ("shift", "descending")])
        return t["i"].take(order).to_pylist()

    def row(self, i: int) -> dict[str, Any]:
        """Row ``i`` as a dict of the contract's columns."""
        return self.table.slice(i, 1).to_pylist()[0]

    @staticmethod
    def slot(row: dict[str, Any], shown: str) -> int:
        """Which of the row's explained classes a thumbnail shows (:data:`SHOWN`)."""
        names = row["class_names"] or []
        if shown == "moved":
            shifts = [-1.0 if s is None else s for s in row["map_shift"] or []]
            return int(np.argmax(shifts)) if shifts else 0
        want = row["pred_name_a"] if shown == "pred_a" else row["pred_name_b"]
        return names.index(want) if want in names else 0

    def _run(self, which: str) -> tuple[pa.Table, dict[str, int], RunPlace, list[str]]:
        """A model's results (maps included; read once), its rows by path, its placement and class names
        (normalised as the matching reads them)."""
        if which not in self._runs:
            out = self.folder / self.info[which].get("results", which)
            table, run = read_results(out), read_run(out)
            self._runs[which] = (table, {p: i for i, p in enumerate(table["path"].to_pylist())}, RunPlace.of(run),
                                 [normalise_class_name(n) for n in run["class_names"]])
        return self._runs[which]

    def maps(self, i: int, k: int, side: int) -> tuple[np.ndarray | None, np.ndarray | None]:
        """Row ``i``'s class ``k``: each model's map over the photo (longer side ``side``), ``None`` where the model
        did not explain it (or lacks it)."""
        row = self.row(i)
        name = normalise_class_name(row["class_names"][k])
        size = photo_size(row["path"])
        out: list[np.ndarray | None] = []
        for which in ("a", "b"):
            table, where, place, names = self._run(which)
            j = where.get(row["path"])
            if j is None or size is None:
                out.append(None)
                continue
            ids = table["class_ids"][j].as_py() or []
            slots = [s for s, c in enumerate(ids) if names[c] == name]
            if not slots:
                out.append(None)
                continue
            flat = table[map_column(self.info["method"])][j].values.to_numpy(zero_copy_only=False)
            cams = np.array(flat, dtype=np.float32).reshape(table["map_shape"][j].as_py())
            out.append(on_photo(cams[slots[:1]], place.place(*size), size, side)[0])
        return out[0], out[1]
