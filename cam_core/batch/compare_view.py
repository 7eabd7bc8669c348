"""A comparison folder as a page reads it: the counts, the rows in the page's order, one row's two maps on its photo.

The page's order: flipped predictions first, then by how far the maps moved (``shift_max``, largest first). The
filters and the order are declared as data in the Dataset engine's form (:class:`.query.Filter`, :class:`.query.Sort`:
SQL over ``compare.parquet``'s columns, run by DuckDB where the file lies), the shown class too (:data:`SHOWN`), so a
page lists them and a report can reuse them. The maps come from the two runs' own results (``OUT/a``, ``OUT/b``),
brought over the photo as the join did (:func:`cam_core.analysis.compare.on_photo`).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..analysis.compare import normalise_class_name, on_photo
from ..errors import CamError
from .compare_table import COMPARE, COMPARE_JSON, CompareCounts, RunPlace, compare_schema
from .job import photo_size
from .query import Filter, Sort
from .results import map_column, read_results, read_run

__all__ = ["FILTERS", "ORDER", "SHOWN", "CompareRun", "is_compare"]

# name → which rows, as a condition in SQL over compare.parquet's columns (query.Filter: the Dataset engine's form)
FILTERS: dict[str, Filter] = {
    "all": Filter("All images", "error IS NULL"),
    "flipped": Filter("Flipped", "error IS NULL AND pred_changed"),
    "a_right_b_wrong": Filter("A right → B wrong", "error IS NULL AND correct_a AND NOT correct_b", needs_labels=True),
    "a_wrong_b_right": Filter("A wrong → B right", "error IS NULL AND NOT correct_a AND correct_b", needs_labels=True),
    "moved": Filter("Maps moved", "error IS NULL AND shift_max >= 0.5"),  # a class's map at least half unrelated
}
# The page's order: flipped predictions first, then the maps that moved most (ties: by file).
ORDER = Sort("Flipped first, then the most moved maps",
             "coalesce(pred_changed, false) DESC, shift_max DESC NULLS LAST, path ASC")
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
        """Row indices (positions in ``compare.parquet``) for filter ``which`` (:data:`FILTERS`), in :data:`ORDER`,
        from DuckDB over the file where it lies."""
        if which not in FILTERS:
            raise CamError(f"unknown filter {which!r}; choose from {', '.join(FILTERS)}")
        sql = (f"SELECT file_row_number FROM read_parquet($path, file_row_number = true) "
               f"WHERE {FILTERS[which].where} ORDER BY {ORDER.order}, file_row_number")
        with duckdb.connect() as con:
            return [int(r) for (r,) in con.execute(sql, {"path": str(self.folder / COMPARE)}).fetchall()]

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
