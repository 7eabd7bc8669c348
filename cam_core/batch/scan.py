"""Finding and checking a results folder's Parquet files, and loading their light columns into DuckDB.

A results folder is ``run.json`` plus its rows in Parquet: ``results.parquet`` (a finished run), the
parts under ``.parts/`` (a run still going, stopped, or written by Ray on many machines), or, for a
folder Ray wrote directly, any Parquet files below it, hive-partitioned (``key=value/`` folders) or not.
Rows are read where they lie, never compacted first; a path found in several files keeps its newest row
(the order compaction uses: ``results.parquet``, then the parts oldest first).

The check reads the footers (the schema) and the light columns the engine loads anyway, plus the maps
of the first rows only; a map that does not match its shape further on is reported when it is shown.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pyarrow.compute as pc
import pyarrow.parquet as pq
from torchvision.transforms import InterpolationMode

from ..engine.methods import METHODS
from ..errors import CamError
from ..models.preprocess import FITS, Preprocess
from .results import LIGHT_COPY, NOT_COPIED, PARTS, RESULTS, light_copy, map_column

__all__ = [
    "IN_FILES",
    "LIGHT",
    "Progress",
    "bad",
    "by_rid",
    "check_rows",
    "check_run",
    "check_schema",
    "footers",
    "light_sources",
    "load_rows",
    "parquet_files",
    "preprocess_of",
    "results_stamp",
]

# The columns every results table has besides the maps: what the page sorts, filters and counts (loaded), and
# what only an export reads (left in the files: the top-5 lists took a quarter of the loading).
LIGHT = ("path", "label", "label_name", "pred", "pred_name", "prob_pred", "prob_label", "correct", "entropy",
         "class_ids", "map_shape", "blank", "error")
IN_FILES = NOT_COPIED
_IDS = ("label", "pred")
_ID_LISTS = ("class_ids", "top5_ids")
_PRE_KEYS = ("crop_size", "resize_size", "mean", "std", "interpolation", "fit")
_OTHER_TABLES = frozenset({"atlas.parquet", "compare.parquet", LIGHT_COPY})  # other tables beside the results
_IDENTITY = ("_size", "_mtime_ns")  # the files' identities in parts (what a rerun compares), not results
_SAMPLE = 2048  # rows whose maps are checked against their shapes when the folder opens
CHUNK_ROWS = 1_000_000  # rows loaded (uncompressed) at a time in a larger folder (see load_rows), which also
# keeps its rows in a database file rather than in memory (see ResultsQuery.open)

Progress = Callable[[float, float | None], None]  # (share done 0..1, seconds left or None while unknown)


def bad(what: str) -> CamError:
    """The one line a results folder the page cannot show gets."""
    return CamError(f"these results cannot be shown: {what} (not what `python -m cam_core batch` writes)")


def parquet_files(folder: Path) -> list[Path]:
    """The folder's Parquet files holding rows, oldest first (a path's newest row is in the last file naming it)."""
    def by_age(paths: Sequence[Path]) -> list[Path]:
        return sorted(paths, key=lambda p: (p.stat().st_mtime_ns, str(p)))

    files = [folder / RESULTS] if (folder / RESULTS).is_file() else []
    parts = folder / PARTS
    if parts.is_dir():
        files += by_age([p for p in parts.rglob("*.parquet") if p.is_file()])
    if not files:
        files = by_age([p for p in folder.rglob("*.parquet") if p.is_file() and p.name not in _OTHER_TABLES
                        and not any(s.startswith(".") and s != PARTS for s in p.relative_to(folder).parts)])
    return files


def results_stamp(folder: Path) -> tuple[int, int, int]:
    """(files, newest mtime, total bytes) of the folder's rows: changes whenever a row is written."""
    files = parquet_files(folder)
    stats = [f.stat() for f in files]
    return len(stats), max((s.st_mtime_ns for s in stats), default=0), sum(s.st_size for s in stats)


def preprocess_of(run: dict[str, Any]) -> Preprocess:
    """The run's preprocessing, rebuilt from ``run.json`` (so thumbnails match what the model saw)."""
    p = run["preprocessing"]
    return Preprocess(
        crop_size=tuple(p["crop_size"]), resize_size=int(p["resize_size"]), mean=tuple(p["mean"]),
        std=tuple(p["std"]), interpolation=InterpolationMode(p["interpolation"]), fit=p["fit"],
    )


def check_run(run: object) -> list[str]:
    """``run.json``'s fields the page reads, checked; returns its class names.

    Raises:
        CamError: What is missing or wrong, in one line.
    """
    if not isinstance(run, dict):
        raise bad("run.json is not a JSON object")
    methods = run.get("methods")
    if not isinstance(methods, list) or not methods or not all(isinstance(m, str) for m in methods):
        raise bad("run.json names no methods")
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise bad(f"run.json names an unknown method ({str(unknown[0])[:40]!r})")
    names = run.get("class_names")
    if not isinstance(names, list) or not names or not all(isinstance(n, str) and n.strip() for n in names):
        raise bad("run.json's class_names are missing, empty or not strings")
    if not isinstance(run.get("layer"), str):
        raise bad("run.json names no layer")
    pre = run.get("preprocessing")
    if not isinstance(pre, dict) or any(k not in pre for k in _PRE_KEYS) or pre.get("fit") not in FITS:
        raise bad("run.json's preprocessing is incomplete")
    try:
        preprocess_of(run)
    except (TypeError, ValueError, KeyError) as exc:
        raise bad("run.json's preprocessing is not a valid recipe") from exc
    return names


def _is_int(typ: str) -> bool:
    return typ in ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "UTINYINT", "USMALLINT", "UINTEGER", "UBIGINT")


def check_schema(types: dict[str, str], methods: Sequence[str]) -> None:
    """Refuse missing columns and class ids that are not integers, from the footers alone."""
    needed = [*LIGHT, *IN_FILES, *(map_column(m) for m in methods)]
    missing = [c for c in needed if c not in types]
    if missing:
        raise bad(f"results.parquet lacks the column{'s' if len(missing) > 1 else ''} {', '.join(missing[:4])}")
    for col in (*_IDS, *_ID_LISTS):
        typ = types[col]
        inner = typ[:-2] if typ.endswith("[]") else typ
        if not _is_int(inner):
            raise bad(f"the column {col} holds {inner.lower()}, not class ids")


def _source(files: Sequence[Path]) -> str:
    listed = ", ".join("'" + str(f).replace("'", "''") + "'" for f in files)
    return f"read_parquet([{listed}], filename = true, file_row_number = true, union_by_name = true)"


def column_types(con: duckdb.DuckDBPyConnection, files: Sequence[Path]) -> dict[str, str]:
    """Column name → DuckDB type of the files together (footers only)."""
    try:
        return {name: typ for name, typ, *_ in con.execute(f"DESCRIBE SELECT * FROM {_source(files)}").fetchall()}
    except duckdb.Error as exc:
        raise CamError(f"the results cannot be read as Parquet: {str(exc).splitlines()[0]}") from exc


@dataclass(frozen=True)
class Loaded:
    """What :func:`load_rows` made: the ``rows`` table (one per file's newest row) and where each file starts."""

    offsets: tuple[int, ...]  # global row id of each file's first row (``rid = offsets[file] + row in file``)
    extra: tuple[str, ...]  # optional columns beyond the contract that came along (boxes, energies, ...)
    sources: tuple[Path, ...] = ()  # the files they were read from (a light copy in results.parquet's place)


def _select(types: dict[str, str], methods: Sequence[str]) -> tuple[str, tuple[str, ...]]:
    """The light columns, cast to the contract's types (a hive partition column comes back as text or BIGINT)."""
    casts = {"label": "INTEGER", "pred": "INTEGER", "prob_pred": "FLOAT", "prob_label": "FLOAT", "entropy": "FLOAT",
             "correct": "BOOLEAN", "path": "VARCHAR", "label_name": "VARCHAR", "pred_name": "VARCHAR",
             "error": "VARCHAR"}
    maps = {map_column(m) for m in methods}
    skip = {*LIGHT, *IN_FILES, *maps, *_IDENTITY, "filename", "file_row_number"}
    extra = tuple(c for c in types if c not in skip and not c.startswith("map_"))
    cols = [f'CAST("{c}" AS {casts[c]}) AS "{c}"' if c in casts else f'"{c}"' for c in LIGHT]
    return ", ".join([*cols, *(f'"{c}"' for c in extra)]), extra


def footers(files: Sequence[Path]) -> list[pq.FileMetaData]:
    """Each file's footer (its rows, row groups and column statistics)."""
    try:
        return [pq.read_metadata(f) for f in files]
    except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError
        raise CamError(f"the results cannot be read as Parquet: {str(exc).splitlines()[0][:300]}") from exc


def by_rid(files: Sequence[Path], offsets: Sequence[int], columns: str) -> str:
    """SQL: ``rid`` (the row's global id) and ``columns`` (a select list over the scan ``s``) of every row of the
    files: what the engine loads, and what an export reads of the columns left in the files."""
    starts = ", ".join("('" + str(f).replace("'", "''") + f"', {o})" for f, o in zip(files, offsets, strict=True))
    return (f"SELECT starts.start + s.file_row_number AS rid, {columns} FROM {_source(files)} s "
            f"JOIN (VALUES {starts}) AS starts(name, start) ON s.filename = starts.name")


def light_sources(folder: Path, files: Sequence[Path], counts: Sequence[int], types: dict[str, str],
                  methods: Sequence[str]) -> list[Path]:
    """Where to load the light columns from: ``files``, with ``results.parquet`` replaced by its light copy
    (:data:`.results.LIGHT_COPY`: the same rows in the same order, in large row groups) where that copy is current,
    as long, and holds every column loaded."""
    meta = light_copy(folder) if files and files[0] == folder / RESULTS else None
    needed = {*LIGHT, *_select(types, methods)[1]}
    if meta is None or meta.num_rows != counts[0] or not needed <= set(meta.schema.to_arrow_schema().names):
        return list(files)
    return [folder / LIGHT_COPY, *files[1:]]


def load_rows(con: duckdb.DuckDBPyConnection, files: Sequence[Path], counts: Sequence[int], types: dict[str, str],
              methods: Sequence[str], progress: Progress | None = None) -> Loaded:
    """Create the table ``rows`` (light columns + ``rid``) from ``files``, reporting progress while DuckDB scans.

    A folder of more than :data:`CHUNK_ROWS` rows is loaded a chunk at a time, each compressed and written (a
    checkpoint) before the next: memory then holds at most one chunk uncompressed, and the compressed table
    (about a quarter of its size: the paths, names and lists compress well) lies in the database's file, paged
    in as queries need it. A smaller folder stays uncompressed in memory, which opens and sorts faster.

    Raises:
        CamError: A file cannot be read (one line).
    """
    offsets = [0]
    for n in counts[:-1]:
        offsets.append(offsets[-1] + n)
    cols, extra = _select(types, methods)
    scanned = by_rid(files, offsets, cols)
    chunks = _chunks(files, counts)
    for i, where in enumerate(chunks):
        into = "CREATE OR REPLACE TABLE rows AS" if i == 0 else "INSERT INTO rows"
        _run_with_progress(con, f"{into} {scanned} WHERE {where}", progress, i, len(chunks))
        if len(chunks) > 1:
            con.execute("CHECKPOINT")
    if len(files) > 1:  # a path in several files keeps its newest row
        con.execute("DELETE FROM rows WHERE rid IN (SELECT rid FROM rows "
                    "QUALIFY row_number() OVER (PARTITION BY path ORDER BY rid DESC) > 1)")
    if progress is not None:
        progress(1.0, 0.0)
    return Loaded(tuple(offsets), extra, tuple(files))


def _chunks(files: Sequence[Path], counts: Sequence[int]) -> list[str]:
    """Conditions on the scan (``s``) that cut it into pieces of at most :data:`CHUNK_ROWS` rows: whole files
    together, or a large file's row ranges (DuckDB reads only the row groups and files a piece names)."""
    if sum(counts) <= CHUNK_ROWS:
        return ["true"]

    def named(group: Sequence[Path]) -> str:
        return "s.filename IN (" + ", ".join("'" + str(f).replace("'", "''") + "'" for f in group) + ")"

    out: list[str] = []
    group: list[Path] = []
    size = 0
    for f, n in zip(files, counts, strict=True):
        if group and size + n > CHUNK_ROWS:
            out.append(named(group))
            group, size = [], 0
        if n > CHUNK_ROWS:
            out += [f"{named([f])} AND s.file_row_number >= {lo} AND s.file_row_number < {lo + CHUNK_ROWS}"
                    for lo in range(0, n, CHUNK_ROWS)]
        else:
            group.append(f)
            size += n
    return [*out, named(group)] if group else out


def _run_with_progress(con: duckdb.DuckDBPyConnection, sql: str, progress: Progress | None, part: int = 0,
                       parts: int = 1) -> None:
    """``sql`` (part ``part`` of ``parts`` of the scan) on a worker thread while this one reports DuckDB's
    progress (and a time left from its rate)."""
    done: dict[str, BaseException | None] = {"error": None}

    def work() -> None:
        try:
            con.execute(sql)
        except BaseException as exc:  # handed to the caller's thread
            done["error"] = exc

    thread = threading.Thread(target=work, name="results-scan", daemon=True)
    start = time.perf_counter()
    thread.start()
    while thread.is_alive():
        thread.join(0.2)
        if progress is not None and thread.is_alive():
            share = max(0.0, min(1.0, con.query_progress() / 100.0))
            elapsed = time.perf_counter() - start
            left = elapsed * (1 - share) / share + elapsed / share * (parts - part - 1) if share > 0.02 else None
            progress((part + share) / parts, left)
    if done["error"] is not None:
        exc = done["error"]
        if isinstance(exc, duckdb.Error):
            raise CamError(f"the results cannot be read: {str(exc).splitlines()[0][:300]}") from exc
        raise exc


def check_rows(con: duckdb.DuckDBPyConnection, files: Sequence[Path], metas: Sequence[pq.FileMetaData],
               names: Sequence[str], methods: Sequence[str]) -> None:
    """Refuse class ids out of range, rows without a prediction or error, map shapes or blank flags that do not
    match the explained classes (in one pass over the loaded light columns; the top-5 ids from the footers'
    statistics), and maps of the first rows that do not match their shapes.

    Raises:
        CamError: What is wrong, in one line.
    """
    shape = "len(map_shape) = 3 AND map_shape[1] = len(class_ids) AND map_shape[2] > 0 AND map_shape[3] > 0"
    found = con.execute(
        "SELECT min(label), max(label), min(pred), max(pred), min(list_min(class_ids)), max(list_max(class_ids)), "
        "min(rid) FILTER (error IS NULL AND pred IS NULL), "
        f"min(rid) FILTER (error IS NULL AND NOT coalesce({shape}, false)), "
        f"min(rid) FILTER (error IS NULL AND coalesce(len(blank), -1) <> {len(methods)} * len(class_ids)) "
        "FROM rows").fetchall()[0]
    ranges = dict(zip((*_IDS, "class_ids"), zip(found[0:6:2], found[1:6:2], strict=True), strict=True))
    ranges["top5_ids"] = _id_range(con, files, metas, "top5_ids")
    n = len(names)
    for col in (*_IDS, *_ID_LISTS):
        lo, hi = ranges[col]
        if lo is not None and (lo < 0 or hi >= n):
            raise bad(f"the column {col} holds class ids outside 0-{n - 1}")
    no_pred, bad_shape, bad_blank = found[6:]
    if no_pred is not None:
        raise bad(f"row {no_pred} has no prediction and no error")
    if bad_shape is not None:
        raise bad(f"row {bad_shape}'s map_shape does not match its maps")
    if bad_blank is not None:
        raise bad(f"row {bad_blank}'s blank flags do not match its maps")
    row = _first_misshapen(files[0], metas[0], methods)
    if row is not None:
        raise bad(f"row {row}'s map_shape does not match its maps")


def _first_misshapen(file: Path, meta: pq.FileMetaData, methods: Sequence[str]) -> int | None:
    """The first of the file's first :data:`_SAMPLE` rows whose maps do not hold ``map_shape``'s values (read from
    their row groups alone, through the footer already read)."""
    groups, rows = [], 0
    while rows < _SAMPLE and len(groups) < meta.num_row_groups:
        rows += meta.row_group(len(groups)).num_rows
        groups.append(len(groups))
    columns = [*(map_column(m) for m in methods), "map_shape", "error"]
    t = pq.ParquetFile(file, metadata=meta).read_row_groups(groups, columns=columns).slice(0, _SAMPLE)
    shapes, errors = t["map_shape"].to_pylist(), t["error"].to_pylist()
    lengths = [pc.list_value_length(t[map_column(m)]).to_pylist() for m in methods]
    for i, (shape, error) in enumerate(zip(shapes, errors, strict=True)):
        if error is None and any(n[i] is None or n[i] != math.prod(shape or [-1]) for n in lengths):
            return i
    return None


def _id_range(con: duckdb.DuckDBPyConnection, files: Sequence[Path], metas: Sequence[pq.FileMetaData],
              column: str) -> tuple[Any, Any]:
    """(min, max) of a list column of ids left in the files: from the footers' statistics, or, where a row group
    has none (a writer that keeps none), a scan of that column."""
    lo = hi = None
    for meta in metas:
        leaf = next((i for i in range(meta.num_columns) if meta.schema.column(i).path.split(".")[0] == column), None)
        for g in range(meta.num_row_groups if leaf is not None else 0):
            chunk = meta.row_group(g).column(leaf)
            stats = chunk.statistics
            if stats is not None and stats.null_count == chunk.num_values:
                continue  # only failed files' rows
            if stats is None or not stats.has_min_max:
                return tuple(con.execute(f'SELECT min(v), max(v) FROM (SELECT unnest("{column}") AS v '
                                         f"FROM {_source(files)})").fetchall()[0])
            lo = stats.min if lo is None else min(lo, stats.min)
            hi = stats.max if hi is None else max(hi, stats.max)
    return lo, hi


def default_threads() -> int:
    """Threads a folder's queries use: the cores, at most 4 (a shared server has other sessions)."""
    return max(1, min(4, os.cpu_count() or 1))
