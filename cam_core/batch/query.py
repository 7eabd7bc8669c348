"""The embedded analytical engine over a batch run's results: DuckDB over the Parquet files where they lie.

A results folder of a million rows is too much for pandas in memory (every sort a pass in Python, the
maps converted to objects). Here the light columns (everything but the maps) are loaded once into a
DuckDB table of the folder's own database (in memory; beyond a million rows, a temporary file paged in and
out); counts, accuracy, the per-class table, the confusion matrix, sorting, filtering and paging are SQL over
it, and only the rows on screen leave it.
Maps are read from the Parquet files for the requested rows alone (their row groups, one column).

Sorts and filters are data: :data:`SORTS` and :data:`FILTERS` map a name to a SQL expression over the
rows, so a new one is one entry. Expressions see the contract's columns (``path``, ``label``, ``pred``,
``prob_pred``, ``correct``, ``class_ids``, ``blank``, ...), any extra column of the run (``box_energy``,
``point_hit``, ...), and, for the map shown: ``method_index`` (0-based, run.json's order), ``slot`` (0-based
index of the shown class in ``class_ids``), ``shown_index`` (1-based index into the per-method-then-class
lists such as ``blank``, ``pos_mass``, ``box_energy``) and ``shown_blank``. A filter's ``$value`` is its
value (a list of class ids, say). Every gallery order ends with ``path`` then ``rid`` (the row's position),
so ties are stable.

One connection per opened folder; each call runs on its own cursor, so browser sessions (threads)
share an opened folder safely.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..analysis.localisation import WRONG_REASONS_ENERGY
from ..errors import CamError
from ..limits import QUERY_MEMORY_BYTES
from ..models.preprocess import Preprocess
from . import database, scan
from .results import map_column, read_run

__all__ = ["FILTERS", "SORTS", "Confusion", "Filter", "Filters", "ResultsQuery", "Sort", "Summary"]

T = TypeVar("T")


@dataclass(frozen=True)
class Sort:
    """A gallery order: its title and a SQL ``ORDER BY`` list (``needs``: columns only some runs have)."""

    title: str
    order: str
    needs_labels: bool = False
    needs: tuple[str, ...] = ()


@dataclass(frozen=True)
class Filter:
    """A gallery filter: its title and a SQL condition (``$value``: the filter's value, where it takes one)."""

    title: str
    where: str
    needs_labels: bool = False
    needs: tuple[str, ...] = ()


# Wrong first puts the confident mistakes at the top (a row without a label counts as right).
SORTS: dict[str, Sort] = {
    "wrong": Sort("Wrong first", "coalesce(correct, true) ASC, prob_pred DESC NULLS LAST", needs_labels=True),
    "low_true": Sort("Lowest p(true class) first", "prob_label ASC NULLS LAST", needs_labels=True),
    "low_conf": Sort("Least confident first", "prob_pred ASC NULLS LAST"),
    "high_conf": Sort("Most confident first", "prob_pred DESC NULLS LAST"),
    "entropy": Sort("Highest entropy first", "entropy DESC NULLS LAST"),
    "blank": Sort("Blank maps first", "shown_blank DESC, prob_pred DESC NULLS LAST"),
    "path": Sort("By file name", "path ASC"),
    "energy": Sort("Least energy in the box first", "box_energy[shown_index] ASC NULLS LAST, prob_pred DESC NULLS LAST",
                   needs=("box_energy",)),
}

FILTERS: dict[str, Filter] = {
    "true": Filter("True class", "list_contains($value, label)", needs_labels=True),
    "pred": Filter("Predicted class", "list_contains($value, pred)"),
    "correct": Filter("Correct", "coalesce(correct, false)", needs_labels=True),
    "wrong": Filter("Wrong", "NOT coalesce(correct, true)", needs_labels=True),
    "blank": Filter("Blank map", "shown_blank"),
    "paths": Filter("Files", "path IN (SELECT unnest($value))"),  # e.g. an atlas cluster's images
    # Ground truth (batch --boxes): the shown map against the object
    "wrong_reasons": Filter(
        "Right for the wrong reasons",
        f"coalesce(correct, false) AND box_energy[shown_index] < {WRONG_REASONS_ENERGY}",
        needs_labels=True, needs=("box_energy",),
    ),
    "missed": Filter("Pointing game missed", "NOT coalesce(point_hit[shown_index], true)", needs=("point_hit",)),
}


@dataclass(frozen=True)
class Filters:
    """What the gallery shows: true classes, predicted classes (ids; empty: any), all/correct/wrong, any
    other :data:`FILTERS` entry by name (``flags``: those that take no value, switched on), and only these files
    (``paths``; empty: any)."""

    true: tuple[int, ...] = ()
    pred: tuple[int, ...] = ()
    outcome: str = "all"
    flags: tuple[str, ...] = ()
    paths: tuple[str, ...] = ()

    def active(self) -> dict[str, object]:
        """Filter name → value, for the filters that narrow anything."""
        out: dict[str, object] = {}
        if self.true:
            out["true"] = [int(c) for c in self.true]
        if self.pred:
            out["pred"] = [int(c) for c in self.pred]
        if self.outcome in ("correct", "wrong"):
            out[self.outcome] = True
        out.update(dict.fromkeys(self.flags, True))
        if self.paths:
            out["paths"] = list(self.paths)
        return out


@dataclass(frozen=True)
class Summary:
    """The folder's counts: files with maps, failed files, labelled files and how many of those are right."""

    images: int
    failed: int
    labelled: int
    right: int

    @property
    def accuracy(self) -> float | None:
        return self.right / self.labelled if self.labelled else None


@dataclass
class Confusion:
    """Counts of (true class, predicted class); ``cols`` may end with an "other classes" column."""

    rows: list[int]
    cols: list[tuple[int, ...]]
    row_names: list[str]
    col_names: list[str]
    counts: np.ndarray
    hidden_rows: int = 0
    notes: list[str] = field(default_factory=list)


# What a gallery row carries out of the engine (no maps, no top-5).
_PAGE_COLUMNS = ("rid", "path", "label", "label_name", "pred", "pred_name", "prob_pred", "prob_label", "correct",
                 "entropy", "class_ids", "slot", "shown_blank")
_WHOSE = {
    "pred": "coalesce(list_position(class_ids, pred) - 1, 0)",
    "label": "coalesce(list_position(class_ids, label) - 1, 0)",
}


class ResultsQuery:
    """One opened results folder. Build with :meth:`open`; :meth:`close` (or dropping it) frees its database."""

    def __init__(self, folder: Path, run: dict[str, Any], con: duckdb.DuckDBPyConnection, files: list[Path],
                 loaded: scan.Loaded, columns: set[str], stamp: tuple[int, int, int],
                 place: Path | None = None) -> None:
        self.folder, self.run, self.files = folder, run, files
        self.stamp = stamp  # the version of the rows opened (:func:`.scan.results_stamp`)
        self.columns = columns
        self._con, self._loaded = con, loaded
        self._memo: dict[tuple[object, ...], object] = {}
        self._lock = threading.Lock()
        self._meta: dict[int, pq.FileMetaData] = {}
        self.database = place / "rows.duckdb" if place else None  # the database's file (None: in memory)
        self._finalizer = weakref.finalize(self, database.drop, con, place)

    @classmethod
    def open(cls, folder: str | Path, progress: scan.Progress | None = None, *,
             memory_bytes: int = QUERY_MEMORY_BYTES, threads: int | None = None) -> ResultsQuery:
        """Open a results folder (``run.json`` + ``results.parquet`` or Parquet parts), checked.

        Args:
            folder: The folder.
            progress: Called about five times a second while the rows are first scanned: (share done, seconds
                left or ``None``).
            memory_bytes: DuckDB's memory limit for this folder (beyond it, it spills to a temporary folder).
            threads: DuckDB's threads (default: the cores, at most 4).

        Raises:
            CamError: No results there, unreadable, or not what a batch run writes (one line saying what).
        """
        folder = Path(folder)
        run = read_run(folder)
        names = scan.check_run(run)
        methods = list(run["methods"])
        files = scan.parquet_files(folder)
        stamp = scan.results_stamp(folder)
        if not files:
            raise CamError(f"{folder} holds no results.parquet and no Parquet parts (run a batch first)")
        metas = scan.footers(files)
        counts = [m.num_rows for m in metas]
        con, place = database.open_database(sum(counts) > scan.CHUNK_ROWS, memory_bytes, threads)
        try:
            types = scan.column_types(con, files)
            scan.check_schema(types, methods)
            sources = scan.light_sources(folder, files, counts, types, methods)
            loaded = scan.load_rows(con, sources, counts, types, methods, progress)
            scan.check_rows(con, files, metas, names, methods)
        except BaseException:
            database.drop(con, place)
            raise
        opened = cls(folder, run, con, files, loaded, set(types), stamp, place)
        opened._meta.update(enumerate(metas))
        return opened

    def close(self) -> None:
        """Free the folder's database (and delete its file, if it has one)."""
        self._finalizer()

    # ---- what the run says ---------------------------------------------------------------------------------

    @property
    def methods(self) -> list[str]:
        return list(self.run.get("methods", []))

    @property
    def class_names(self) -> list[str]:
        return list(self.run.get("class_names", []))

    @property
    def fit(self) -> str:
        return str(self.run.get("preprocessing", {}).get("fit", "whole"))

    @property
    def preprocess(self) -> Preprocess:
        """The run's preprocessing, rebuilt from ``run.json`` (so thumbnails match what the model saw)."""
        return scan.preprocess_of(self.run)

    @property
    def has_labels(self) -> bool:
        return self.summary().labelled > 0 or self._remember(
            ("any_label",), lambda: bool(self._one("SELECT count(*) FROM rows WHERE label IS NOT NULL")))

    def sorts(self) -> list[str]:
        """The :data:`SORTS` this folder offers (those needing labels only with labels, extra columns only here)."""
        return [k for k, s in SORTS.items() if self._offers(s.needs_labels, s.needs)]

    def offers_filter(self, name: str) -> bool:
        f = FILTERS[name]
        return self._offers(f.needs_labels, f.needs)

    def _offers(self, needs_labels: bool, needs: Sequence[str]) -> bool:
        return (self.has_labels or not needs_labels) and all(c in self.columns for c in needs)

    # ---- SQL plumbing --------------------------------------------------------------------------------------

    def _remember(self, key: tuple[object, ...], build: Callable[[], T]) -> T:
        """``build()`` once per key (what does not depend on the sort, the filters or the page)."""
        with self._lock:
            if key in self._memo:
                return self._memo[key]  # type: ignore[return-value]
        value = build()
        with self._lock:
            self._memo[key] = value
        return value

    def _fetch(self, sql: str, params: Mapping[str, object] | Sequence[object] | None = None) -> list[tuple]:
        with self._con.cursor() as cur:
            return cur.execute(sql, params).fetchall()

    def _arrow(self, sql: str, params: Mapping[str, object] | None = None) -> pa.Table:
        with self._con.cursor() as cur:
            return cur.sql(sql, params=params).to_arrow_table()

    def _one(self, sql: str, params: Mapping[str, object] | None = None) -> Any:
        return self._fetch(sql, params)[0][0]

    def _shown(self, method: str, whose: str, rows: str = "true") -> str:
        """The rows with maps, with the shown map's slot, list index and blank flag (see the module's notes)."""
        if whose not in _WHOSE:
            raise CamError(f"whose map: pred or label, not {whose!r}")
        m = self.methods.index(method)
        return (f"(SELECT *, {m} AS method_index, {m} * len(class_ids) + slot + 1 AS shown_index, "
                f"coalesce(blank[{m} * len(class_ids) + slot + 1], false) AS shown_blank "
                f"FROM (SELECT *, {_WHOSE[whose]} AS slot FROM rows WHERE error IS NULL AND {rows}))")

    def _where(self, filters: Filters | Mapping[str, object]) -> tuple[str, dict[str, object]]:
        active = filters.active() if isinstance(filters, Filters) else dict(filters)
        clauses, params = [], {}
        for name, value in active.items():
            if name not in FILTERS:
                raise CamError(f"unknown filter {name!r} (known: {', '.join(FILTERS)})")
            clauses.append("(" + FILTERS[name].where.replace("$value", f"$f_{name}") + ")")
            if "$value" in FILTERS[name].where:
                params[f"f_{name}"] = value
        return (" AND ".join(clauses) or "true"), params

    # ---- numbers -------------------------------------------------------------------------------------------

    def summary(self) -> Summary:
        """Files with maps, failed, labelled and right."""
        def build() -> Summary:
            row = self._fetch(
                "SELECT count(*) FILTER (error IS NULL), count(*) FILTER (error IS NOT NULL), "
                "count(*) FILTER (error IS NULL AND label IS NOT NULL), "
                "count(*) FILTER (error IS NULL AND label IS NOT NULL AND correct) FROM rows")[0]
            return Summary(*(int(v) for v in row))

        return self._remember(("summary",), build)

    @property
    def rows(self) -> int:
        """Every row, failed files included."""
        s = self.summary()
        return s.images + s.failed

    def count(self, filters: Filters | Mapping[str, object] = Filters(), method: str | None = None,
              whose: str = "pred") -> int:
        """How many rows with maps pass ``filters``."""
        where, params = self._where(filters)
        return int(self._one(f"SELECT count(*) FROM {self._shown(method or self.methods[0], whose)} "
                             f"WHERE {where}", params))

    def class_options(self, column: str) -> list[int]:
        """The classes in ``label`` or ``pred``, most frequent first (what the filters offer)."""
        if column not in ("label", "pred"):
            raise CamError(f"class options of label or pred, not {column!r}")
        return self._remember(("options", column), lambda: [int(c) for (c,) in self._fetch(
            f"SELECT {column} FROM rows WHERE {column} IS NOT NULL GROUP BY {column} ORDER BY count(*) DESC, "
            f"{column}")])

    def blank_by_class(self, method: str) -> tuple[int, int, list[tuple[str, int]]]:
        """(blank maps, maps, [(class name, blank maps)] most first) over every explained class of ``method``."""
        m = self.methods.index(method)

        def build() -> tuple[int, int, list[tuple[str, int]]]:
            names = self.class_names
            done = "FROM rows WHERE blank IS NOT NULL AND class_ids IS NOT NULL"
            total = int(self._one(f"SELECT coalesce(sum(len(class_ids)), 0) {done}"))
            blank = f"list_filter(class_ids, lambda x, i: blank[{m} * len(class_ids) + i])"
            per_id = self._fetch(f"SELECT cid, count(*), min(rid) FROM (SELECT rid, unnest({blank}) AS cid {done}) "
                                 "GROUP BY cid")
            counts: dict[str, list[int]] = {}
            for cid, n, first in per_id:  # by name, as people read them (two ids may share a name)
                entry = counts.setdefault(names[int(cid)], [0, first])
                entry[0] += int(n)
                entry[1] = min(entry[1], first)
            ranked = sorted(counts.items(), key=lambda kv: (-kv[1][0], kv[1][1]))
            return sum(n for n, _ in counts.values()), total, [(name, n) for name, (n, _) in ranked]

        return self._remember(("blank_by_class", method), build)

    def confusion(self, limit: int = 25) -> Confusion | None:
        """The confusion matrix of the labelled rows (``None`` without labels).

        Rows: the true classes present (the ``limit`` most frequent). Columns: those classes in the same
        order (the diagonal is the correct answers), then the other predicted classes by frequency, the
        rest in one column.
        """
        return self._remember(("confusion", limit), lambda: self._confusion(limit))

    def _confusion(self, limit: int) -> Confusion | None:
        names = self.class_names
        done = "FROM rows WHERE error IS NULL AND label IS NOT NULL"
        trues = self._fetch(f"SELECT label FROM (SELECT label, count(*) AS n, min(rid) AS first {done} "
                            f"GROUP BY label) ORDER BY n DESC, first")
        if not trues:
            return None
        rows = sorted(int(c) for (c,) in trues[:limit])
        rows.sort(key=lambda c: names[c].lower())
        preds = [int(c) for (c,) in self._fetch(f"SELECT pred FROM (SELECT pred, count(*) AS n, min(rid) AS first "
                                                 f"{done} GROUP BY pred) ORDER BY n DESC, first")]
        others = [c for c in preds if c not in set(rows)]
        cols: list[tuple[int, ...]] = [(c,) for c in rows] + [(c,) for c in others[: max(0, limit - len(rows))]]
        rest = tuple(others[max(0, limit - len(rows)):])
        if rest:
            cols.append(rest)
        col_of = {c: j for j, ids in enumerate(cols) for c in ids}
        row_of = {c: i for i, c in enumerate(rows)}
        counts = np.zeros((len(rows), len(cols)), dtype=np.int64)
        for t, p, n in self._fetch(f"SELECT label, pred, count(*) {done} AND list_contains($rows, label) "
                                   f"GROUP BY label, pred", {"rows": rows}):
            counts[row_of[int(t)], col_of[int(p)]] += int(n)
        col_names = [names[ids[0]] if len(ids) == 1 else f"{len(ids)} other classes" for ids in cols]
        return Confusion(rows, cols, [names[c] for c in rows], col_names, counts, len(trues) - len(rows))

    def per_class(self, method: str, whose: str = "pred") -> pa.Table:
        """Per true class (by name): images, accuracy, mean probability of the true class, blank maps shown."""
        def build() -> pa.Table:
            return self._arrow(
                'SELECT label_name AS "class", count(*) AS images, avg(CAST(correct AS DOUBLE)) AS accuracy, '
                'avg(prob_label) AS "mean p(true)", CAST(sum(CAST(shown_blank AS INTEGER)) AS BIGINT) AS '
                f'"blank maps" FROM {self._shown(method, whose)} WHERE label IS NOT NULL GROUP BY label_name '
                "ORDER BY label_name")

        return self._remember(("per_class", method, whose), build)

    # ---- rows ----------------------------------------------------------------------------------------------

    def _ordered(self, sort: str, filters: Filters | Mapping[str, object], method: str | None, whose: str,
                 columns: str) -> tuple[str, dict[str, object]]:
        if sort not in SORTS:
            raise CamError(f"unknown sort {sort!r} (known: {', '.join(SORTS)})")
        where, params = self._where(filters)
        return (f"SELECT {columns} FROM {self._shown(method or self.methods[0], whose)} WHERE {where} "
                f"ORDER BY {self._order(sort)}"), params

    @staticmethod
    def _order(sort: str) -> str:
        return f"{SORTS[sort].order}, path ASC, rid ASC"

    def page(self, sort: str, filters: Filters | Mapping[str, object] = Filters(), offset: int = 0, limit: int = 24,
             method: str | None = None, whose: str = "pred") -> list[dict[str, Any]]:
        """The rows on one page of the gallery, in order: the light columns, ``slot`` and ``shown_blank``."""
        sql, params = self._ordered(sort, filters, method, whose, "rid")
        rids = [r for (r,) in self._fetch(f"{sql} LIMIT {int(limit)} OFFSET {int(offset)}", params)]
        if not rids:
            return []
        # Sorting the row ids alone keeps the sort's payload small; the page's columns come after, for its rows.
        shown = self._shown(method or self.methods[0], whose, rows="rid IN (SELECT unnest($rids))")
        rows = self._arrow(f"SELECT {', '.join(_PAGE_COLUMNS)} FROM {shown}", {"rids": rids}).to_pylist()
        at = {r["rid"]: r for r in rows}
        return [at[r] for r in rids]

    def table(self, sort: str, filters: Filters | Mapping[str, object] = Filters(), method: str | None = None,
              whose: str = "pred") -> pa.Table:
        """Every row passing ``filters``, in order, without maps (what a CSV export writes); top-5 as
        ``id:prob`` pairs joined by ``;``."""
        cols = "rid, path, label, label_name, pred, pred_name, prob_pred, prob_label, correct, entropy, error"
        if self.has_boxes:  # the ground truth, and the shown map's pointing game and energy
            cols += (", boxes, box_labels, point_hit[shown_index] AS point_hit, box_energy[shown_index] AS box_energy, "
                     "box_cut")
        sql, params = self._ordered(sort, filters, method, whose, f"{cols}, row_number() OVER "
                                    f"(ORDER BY {self._order(sort)}) AS place")
        top5 = ("array_to_string(list_transform(list_zip(t.top5_ids, t.top5_probs), "
                "lambda x: CAST(x[1] AS VARCHAR) || ':' || printf('%.4f', x[2])), ';') AS top5")
        in_files = scan.by_rid(self.files, self._loaded.offsets, ", ".join(scan.IN_FILES))
        return self._arrow(  # the top-5 lists stay in the files: read here, for the rows exported
            f"SELECT s.* EXCLUDE (rid, place), {top5} FROM ({sql}) s LEFT JOIN ({in_files}) t USING (rid) "
            "ORDER BY s.place", params)

    # ---- ground truth (batch --boxes) ------------------------------------------------------------------------

    @property
    def has_boxes(self) -> bool:
        """Whether the run was given ground truth (its rows carry boxes, pointing game and energy)."""
        return {"boxes", "box_labels", "point_hit", "box_energy", "box_cut"} <= self.columns

    def truth_of(self, rids: Sequence[int], method: str, whose: str = "pred") -> dict[int, dict[str, Any]]:
        """For the rows ``rids``: ``boxes`` (flat x0, y0, x1, y1), ``box_labels``, ``box_cut``, the shown class
        (``shown_class``) and its map's ``hit`` and ``energy`` (``None`` where it has no object)."""
        if not self.has_boxes or not rids:
            return {}
        shown = self._shown(method, whose, rows="rid IN (SELECT unnest($rids))")
        rows = self._arrow(f"SELECT rid, boxes, box_labels, box_cut, class_ids[slot + 1] AS shown_class, "
                           f"point_hit[shown_index] AS hit, box_energy[shown_index] AS energy FROM {shown}",
                           {"rids": [int(r) for r in rids]}).to_pylist()
        return {int(r["rid"]): r for r in rows}

    def localisation_by_class(self, method: str) -> pa.Table:
        """Per explained class (by name, every map of ``method`` that has an object): maps scored, pointing
        accuracy, mean energy in the box, and the correct predictions whose map lies mostly outside the object
        ("right for the wrong reasons"); the classes localised worst first."""
        m = self.methods.index(method)

        def build() -> pa.Table:
            part = f"list_slice({{}}, {m} * len(class_ids) + 1, {m + 1} * len(class_ids))"
            each = (f"SELECT unnest(class_ids) AS cid, unnest({part.format('point_hit')}) AS hit, "
                    f"unnest({part.format('box_energy')}) AS energy, pred, correct "
                    "FROM rows WHERE error IS NULL AND point_hit IS NOT NULL")
            found = self._fetch(
                f"SELECT cid, count(*), sum(CAST(hit AS INTEGER)), sum(energy), "
                f"count(*) FILTER (correct AND cid = pred AND energy < {WRONG_REASONS_ENERGY}) "
                f"FROM ({each}) WHERE hit IS NOT NULL GROUP BY cid")
            by_name: dict[str, list[float]] = {}
            for cid, n, hits, energy, wrong in found:  # by name, as people read them (two ids may share a name)
                entry = by_name.setdefault(self.class_names[int(cid)], [0, 0, 0.0, 0])
                for k, v in enumerate((n, hits, energy, wrong)):
                    entry[k] += v
            names = sorted(by_name, key=lambda c: (by_name[c][2] / by_name[c][0], c))
            return pa.table({
                "class": names,
                "maps": pa.array([int(by_name[c][0]) for c in names], pa.int64()),
                "pointing": [by_name[c][1] / by_name[c][0] for c in names],
                "energy": [by_name[c][2] / by_name[c][0] for c in names],
                "wrong reasons": pa.array([int(by_name[c][3]) for c in names], pa.int64()),
            })

        return self._remember(("localisation_by_class", method), build)

    def localisation_totals(self, method: str) -> dict[str, float]:
        """Over every scored map of ``method``: ``maps``, ``pointing`` accuracy, mean ``energy``, ``wrong reasons``."""
        t = self.localisation_by_class(method).to_pydict()
        n = sum(t["maps"])
        if not n:
            return {"maps": 0, "pointing": float("nan"), "energy": float("nan"), "wrong reasons": 0}
        return {"maps": n, "pointing": sum(a * b for a, b in zip(t["maps"], t["pointing"], strict=True)) / n,
                "energy": sum(a * b for a, b in zip(t["maps"], t["energy"], strict=True)) / n,
                "wrong reasons": sum(t["wrong reasons"])}

    def failed(self, limit: int = 1000) -> pa.Table:
        """The failed files (path, true class, why), by path, at most ``limit``."""
        return self._arrow(f"SELECT path, label_name, error FROM rows WHERE error IS NOT NULL ORDER BY path "
                           f"LIMIT {int(limit)}")

    def row(self, rid: int) -> dict[str, Any] | None:
        """One row's light columns (``None`` when there is no such row)."""
        rows = self._arrow("SELECT * FROM rows WHERE rid = $rid", {"rid": int(rid)}).to_pylist()
        return rows[0] if rows else None

    # ---- maps ----------------------------------------------------------------------------------------------

    def maps(self, rids: Sequence[int], method: str) -> dict[int, np.ndarray | None]:
        """The raw signed maps (K, h, w) of ``rids``, read from their row groups only (``None``: a failed file,
        or maps that do not match their shape)."""
        offsets = np.asarray(self._loaded.offsets, dtype=np.int64)
        out: dict[int, np.ndarray | None] = {}
        by_file: dict[int, list[int]] = {}
        for rid in rids:
            by_file.setdefault(int(np.searchsorted(offsets, rid, side="right") - 1), []).append(int(rid))
        for f, wanted in by_file.items():
            local = np.asarray(wanted, dtype=np.int64) - offsets[f]
            out.update(zip(wanted, self._read_maps(f, local, method), strict=True))
        return out

    def _read_maps(self, f: int, local: np.ndarray, method: str) -> list[np.ndarray | None]:
        meta = self._meta.get(f)
        if meta is None:
            meta = self._meta[f] = pq.read_metadata(self.files[f])
        starts = np.cumsum([0] + [meta.row_group(i).num_rows for i in range(meta.num_row_groups)])
        groups = np.searchsorted(starts, local, side="right") - 1
        wanted = sorted(set(groups.tolist()))
        table = pq.ParquetFile(self.files[f], metadata=meta).read_row_groups(
            wanted, columns=[map_column(method), "map_shape"])
        sizes = [int(starts[g + 1] - starts[g]) for g in wanted]
        shift = {g: int(starts[g]) - before for g, before in zip(wanted, np.cumsum([0, *sizes[:-1]]), strict=True)}
        values, shapes = table.column(0), table.column(1)
        out: list[np.ndarray | None] = []
        for row, g in zip(local.tolist(), groups.tolist(), strict=True):
            i = row - shift[g]
            shape = shapes[i].as_py()
            flat = values[i]
            if not flat.is_valid or shape is None or len(flat.values) != int(np.prod(shape)):
                out.append(None)
                continue
            out.append(flat.values.to_numpy(zero_copy_only=False).reshape(shape))
        return out

    def map_of(self, rid: int, method: str, slot: int) -> np.ndarray | None:
        """The raw signed map (h, w) of class slot ``slot`` of row ``rid`` (``None`` for a failed file)."""
        maps = self.maps([rid], method)[rid]
        return None if maps is None else maps[min(slot, len(maps) - 1)]
