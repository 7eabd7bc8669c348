"""The results of a batch run on disk: ``OUT/results.parquet`` (one row per file), ``OUT/run.json``.

Columns of ``results.parquet`` (the contract; see the design notes and the README):

============== ================ =======================================================================
column         type             meaning
============== ================ =======================================================================
path           string           the file, absolute
label          int32            its class from the folder name (null without ``--labels-from-folders``)
label_name     string           that class's name
pred           int32            the top-1 class
pred_name      string           its name
prob_pred      float32          its softmax probability
prob_label     float32          the probability of the true class (null without a label)
correct        bool             pred == label (null without a label)
top5_ids       list<int32>      the five most probable classes, best first
top5_probs     list<float32>    their probabilities
entropy        float32          of the softmax, in nats (0: certain; ln C: uniform)
class_ids      list<int32>      the explained classes (K; ``pred,label`` gives one when they agree)
class_probs    list<float32>    the softmax probability of each explained class
map_<method>   list<float32>    the K raw signed maps at the layer's resolution, flattened (K·h·w)
map_shape      list<int32>      [K, h, w] (h, w vary with the aspect ratio under the ``whole`` fit)
pos_mass       list<float32>    per method (run.json's order), then per class: share of the map's absolute
                                mass that is positive (``diagnose.positive_share``)
relu_survival  list<float32>    same order: share of the map's cells left after ReLU (``positive_area``)
blank          list<bool>       same order: blank after ReLU (``diagnose.blank_after_relu``)
error          string           why the file has no results (null when fine)
============== ================ =======================================================================

With ground truth (``batch --boxes``; :mod:`cam_core.analysis.localisation`), five more columns, before ``error``:

============== ================ =======================================================================
boxes          list<float32>    the file's objects, x0, y0, x1, y1 each (4·n), in the original image's pixels
                                (x1, y1 exclusive; a mask's bounding box); null: the source names no such file
box_labels     list<int32>      each box's class id (−1: unknown, or a name that matched no class)
point_hit      list<bool>       per method (run.json's order), then per explained class, as ``pos_mass``: the
                                pointing game (the ReLU'd map's maximum within 15 px of the object); null
                                inside where the class has no (visible) object
box_energy     list<float32>    same order: share of the ReLU'd map's mass on the object (0..1)
box_cut        bool             the fit's crop cut part of an object away (that part is not scored)
============== ================ =======================================================================

Writing (why a crash loses at most one batch, a killed process one second): the rows are written
every second (and when a run stops) as their own Parquet file under ``OUT/.parts/`` (written to a
temporary name, then renamed, so a part is whole or absent); at the end, and at the start of any
rerun, the parts are *compacted* with the previous ``results.parquet`` into a new one (again
written aside and renamed), keeping the newest row per path, sorted by path. The files' identities
(size, mtime) travel in the parts as two extra columns and in ``results.parquet`` as file
metadata, which is what a rerun compares. Beside it, compaction writes ``results.light.parquet``
(:data:`LIGHT_COPY`: every column but the maps and the top-5 lists, for the Dataset page; a convenience, not
part of the contract: a reader may ignore it, and it is ignored once ``results.parquet`` changes).
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import CamError
from .job import Row

__all__ = [
    "LIGHT_COPY",
    "NOT_COPIED",
    "PARTS",
    "RESULTS",
    "RUN",
    "LightWriter",
    "ResultStore",
    "light_copy",
    "map_column",
    "part_schema",
    "read_results",
    "read_run",
    "results_schema",
    "rows_table",
]

RESULTS = "results.parquet"
RUN = "run.json"
PARTS = ".parts"
LIGHT_COPY = "results.light.parquet"
"""Beside ``results.parquet``: its columns but the maps and the top-5 lists, in row groups of 128k rows (the maps'
1024-row groups made reading these for a million rows over twice as slow): what the Dataset page loads. It
names the version of ``results.parquet`` it copies (size and mtime) and is ignored once they differ."""
NOT_COPIED = ("top5_ids", "top5_probs")  # besides the maps: what only an export reads
_COPY_OF = b"cam_core.copy_of"
_KEYS = ("_size", "_mtime_ns")
_META = b"cam_core.files"
_F32, _I32 = pa.float32(), pa.int32()


def _stamp(results: Path) -> bytes:
    st = results.stat()
    return f"{st.st_size}:{st.st_mtime_ns}".encode()


class LightWriter:
    """Writes :data:`LIGHT_COPY` of ``out``'s ``results.parquet`` as its rows are written (``write(table)``, the
    same tables in the same order); :meth:`close`, once ``results.parquet`` is in place, stamps the copy with that
    file's version and moves it beside it. Also a context manager (a failure inside discards the copy)."""

    def __init__(self, out: Path, schema: pa.Schema) -> None:
        self.out, self._tmp = out, out / f".{LIGHT_COPY}.tmp"
        self.columns = [n for n in schema.names
                        if n not in NOT_COPIED and (n == "map_shape" or not n.startswith("map_"))]
        self._writer = pq.ParquetWriter(self._tmp, pa.schema([schema.field(n) for n in self.columns]))

    def write(self, table: pa.Table) -> None:
        self._writer.write_table(table.select(self.columns).replace_schema_metadata(None), row_group_size=128 * 1024)

    def close(self) -> None:
        self._writer.add_key_value_metadata({_COPY_OF: _stamp(self.out / RESULTS)})
        self._writer.close()
        os.replace(self._tmp, self.out / LIGHT_COPY)

    def __enter__(self) -> LightWriter:
        return self

    def __exit__(self, kind: object, *_: object) -> None:
        if kind is None:
            self.close()
        else:
            self._writer.close()
            self._tmp.unlink(missing_ok=True)


def light_copy(out: Path) -> pq.FileMetaData | None:
    """The footer of ``out``'s :data:`LIGHT_COPY`, when it copies the ``results.parquet`` there now (``None``: no
    copy, or a stale one)."""
    try:
        meta = pq.read_metadata(out / LIGHT_COPY)
        return meta if (meta.metadata or {}).get(_COPY_OF) == _stamp(out / RESULTS) else None
    except (OSError, ValueError):  # absent, or not Parquet
        return None


def map_column(method: str) -> str:
    """The column holding ``method``'s maps."""
    return f"map_{method}"


_TRUTH = [("boxes", pa.list_(_F32)), ("box_labels", pa.list_(_I32)), ("point_hit", pa.list_(pa.bool_())),
          ("box_energy", pa.list_(_F32)), ("box_cut", pa.bool_())]


def results_schema(methods: Sequence[str], boxes: bool = False) -> pa.Schema:
    """The columns of ``results.parquet`` for a run of ``methods`` (with ground truth: ``boxes``)."""
    fields = [
        pa.field("path", pa.string(), nullable=False),
        ("label", _I32), ("label_name", pa.string()), ("pred", _I32), ("pred_name", pa.string()),
        ("prob_pred", _F32), ("prob_label", _F32), ("correct", pa.bool_()),
        ("top5_ids", pa.list_(_I32)), ("top5_probs", pa.list_(_F32)), ("entropy", _F32),
        ("class_ids", pa.list_(_I32)), ("class_probs", pa.list_(_F32)),
        *[(map_column(m), pa.list_(_F32)) for m in methods],
        ("map_shape", pa.list_(_I32)),
        ("pos_mass", pa.list_(_F32)), ("relu_survival", pa.list_(_F32)), ("blank", pa.list_(pa.bool_())),
        *(_TRUTH if boxes else []),
        ("error", pa.string()),
    ]
    return pa.schema(fields)


def part_schema(methods: Sequence[str], boxes: bool = False) -> pa.Schema:
    """``results_schema`` plus the files' identities (the columns of a part file)."""
    schema = results_schema(methods, boxes)
    return schema.append(pa.field(_KEYS[0], pa.int64())).append(pa.field(_KEYS[1], pa.int64()))


def _lists(values: Sequence[Any], typ: pa.DataType, dtype: type) -> pa.Array:
    """A list column from per-row arrays (``None``: null), built from one flat buffer (not value by value)."""
    present = [np.asarray(v, dtype=dtype).ravel() for v in values if v is not None]
    lengths = iter(len(p) for p in present)
    offsets = np.zeros(len(values) + 1, dtype=np.int32)
    np.cumsum([0 if v is None else next(lengths) for v in values], out=offsets[1:])
    flat = np.concatenate(present) if present else np.zeros(0, dtype=dtype)
    mask = pa.array([v is None for v in values], pa.bool_())
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(flat, typ), type=pa.list_(typ), mask=mask)


def rows_table(
    rows: Sequence[Row], methods: Sequence[str], class_names: Sequence[str], boxes: bool = False
) -> pa.Table:
    """Rows as a table in :func:`part_schema` (the contract's columns and the identities)."""

    def scalars(values: list[Any], typ: pa.DataType) -> pa.Array:
        return pa.array(values, typ)

    def lists(attr: str, typ: pa.DataType, dtype: type) -> pa.Array:  # null for a file that failed
        return _lists([getattr(r, attr) if r.error is None else None for r in rows], typ, dtype)

    def names(ids: list[int | None]) -> pa.Array:
        return scalars([class_names[i] if i is not None else None for i in ids], pa.string())

    label = [r.file.label for r in rows]
    pred = [r.pred for r in rows]
    columns: dict[str, pa.Array] = {
        "path": scalars([r.file.path for r in rows], pa.string()),
        "label": scalars(label, _I32),
        "label_name": names(label),
        "pred": scalars(pred, _I32),
        "pred_name": names(pred),
        "prob_pred": scalars([r.prob_pred for r in rows], _F32),
        "prob_label": scalars([r.prob_label for r in rows], _F32),
        "correct": scalars([None if a is None or b is None else a == b for a, b in zip(label, pred, strict=True)],
                           pa.bool_()),
        "top5_ids": lists("top_ids", _I32, np.int32),
        "top5_probs": lists("top_probs", _F32, np.float32),
        "entropy": scalars([r.entropy for r in rows], _F32),
        "class_ids": lists("class_ids", _I32, np.int32),
        "class_probs": lists("class_probs", _F32, np.float32),
        **{map_column(m): _lists([r.maps.get(m) for r in rows], _F32, np.float32) for m in methods},
        "map_shape": _lists([list(next(iter(r.maps.values())).shape) if r.maps else None for r in rows],
                            _I32, np.int32),
        "pos_mass": lists("pos_mass", _F32, np.float32),
        "relu_survival": lists("relu_survival", _F32, np.float32),
        "blank": lists("blank", pa.bool_(), np.bool_),
        **({name: pa.array([getattr(r, name) if r.error is None else None for r in rows], typ)  # nulls inside
            for name, typ in _TRUTH} if boxes else {}),
        "error": scalars([r.error for r in rows], pa.string()),
        _KEYS[0]: scalars([r.file.size for r in rows], pa.int64()),
        _KEYS[1]: scalars([r.file.mtime_ns for r in rows], pa.int64()),
    }
    return pa.table(columns, schema=part_schema(methods, boxes))


def read_results(out: str | os.PathLike[str]) -> pa.Table:
    """``OUT/results.parquet`` as a pyarrow table (``.to_pandas()`` for a DataFrame).

    Raises:
        CamError: There is no (readable) results file in ``out``.
    """
    path = Path(out) / RESULTS
    if not path.is_file():
        raise CamError(f"{out} holds no {RESULTS} (run `python -m cam_core batch ... --out {out}` first)")
    try:
        return pq.read_table(path)
    except (OSError, pa.ArrowInvalid) as exc:
        raise CamError(f"{path} cannot be read as Parquet: {exc}") from exc


def read_run(out: str | os.PathLike[str]) -> dict[str, Any]:
    """``OUT/run.json`` (model, layer, methods, preprocessing, versions, times)."""
    path = Path(out) / RUN
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise CamError(f"{out} holds no {RUN}: not a batch results folder") from exc
    except (OSError, ValueError) as exc:
        raise CamError(f"{path} cannot be read: {exc}") from exc


class ResultStore:
    """The output folder of one run: parts, compaction, the done files and ``run.json``."""

    def __init__(self, out: str | os.PathLike[str], methods: Sequence[str], boxes: bool = False) -> None:
        self.out = Path(out)
        self.methods = tuple(methods)
        self.boxes = boxes
        self.schema = part_schema(self.methods, boxes)
        self.parts = self.out / PARTS
        self._seq = 0
        self.finished = False  # set by the run once its results are compacted: the folder is then left tidy

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the folder for one run; a second run into it at the same time is refused.

        A run that set :attr:`finished` leaves no ``.lock`` and no empty ``.parts/`` behind (removed while the
        lock is still held); a run that failed or was stopped leaves both, and its parts, for the next run to resume.
        """
        self.parts.mkdir(parents=True, exist_ok=True)
        try:
            import fcntl
        except ImportError:  # Windows: no advisory locks; runs into one folder must not overlap
            yield
            self._tidy(None)
            return
        lock = self.out / ".lock"
        with lock.open("w") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                raise CamError(f"another run is writing to {self.out}; wait for it or use another --out") from exc
            try:
                yield
                self._tidy(lock)
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _tidy(self, lock: Path | None) -> None:
        """After a finished run: the empty parts folder and the lock file go (nothing left to resume)."""
        if not self.finished:
            return
        with contextlib.suppress(OSError):
            self.parts.rmdir()  # only when empty: parts written after the last compaction stay
        if lock is not None:
            lock.unlink(missing_ok=True)

    def check_job(self, job: dict[str, Any]) -> None:
        """Refuse to mix runs: a folder that holds results of another model, layer, methods, classes or fit."""
        path = self.out / RUN
        if not path.is_file():
            return
        before = read_run(self.out).get("job", {})
        now = json.loads(json.dumps(job))
        differ = [k for k in sorted(set(before) | set(now)) if before.get(k) != now.get(k)]
        if differ:
            shown = "; ".join(f"{k}: {before.get(k)!r} then, {now.get(k)!r} now" for k in differ[:3])
            raise CamError(
                f"{self.out} holds results of another run ({shown}); a rerun resumes only the same job: "
                "use another --out"
            )

    def write_run(self, info: dict[str, Any]) -> None:
        """Write ``run.json`` (aside, then renamed)."""
        _replace_text(self.out / RUN, json.dumps(info, indent=2, ensure_ascii=False) + "\n")

    def write_part(self, table: pa.Table) -> Path:
        """Write one batch's rows at once, whole or not at all."""
        self._seq += 1
        path = self.parts / f"part-{time.time_ns():020d}-{self._seq:06d}.parquet"
        tmp = path.with_suffix(".tmp")
        pq.write_table(table, tmp)
        os.replace(tmp, path)
        return path

    def _read_parts(self) -> tuple[list[pa.Table], list[Path]]:
        """Every readable part, oldest first (a part cut short by a kill is dropped: its batch reruns)."""
        tables, seen = [], []
        for path in sorted(self.parts.rglob("*"), key=lambda p: (p.stat().st_mtime_ns, str(p))):
            if not path.is_file():
                continue
            seen.append(path)
            if path.suffix != ".parquet":
                continue
            try:
                table = pq.read_table(path)
            except (OSError, pa.ArrowInvalid):
                continue
            tables.append(table.select(self.schema.names).cast(self.schema))
        return tables, seen

    def _previous(self) -> pa.Table | None:
        path = self.out / RESULTS
        if not path.is_file():
            return None
        table = read_results(self.out)
        meta = json.loads((table.schema.metadata or {}).get(_META, b"{}"))
        n = table.num_rows
        keys = [meta.get(k[1:], []) for k in _KEYS]
        if any(len(k) != n for k in keys):  # rewritten by another tool: identities lost, every file reruns
            keys = [[-1] * n for _ in _KEYS]
        schema = results_schema(self.methods, self.boxes)
        for name in schema.names:  # a column added to the contract since (class_probs): null in older rows
            if name not in table.column_names:
                table = table.append_column(name, pa.nulls(n, schema.field(name).type))
        columns = [*table.select(schema.names).cast(schema).columns]
        return pa.table([*columns, *(pa.array(k, pa.int64()) for k in keys)], schema=self.schema)

    def compact(self) -> int:
        """Merge the parts into ``results.parquet`` (newest row per path, sorted by path); returns its rows."""
        tables, seen = self._read_parts()
        previous = self._previous()
        if not seen:
            return previous.num_rows if previous is not None else 0
        merged = pa.concat_tables(([previous] if previous is not None else []) + tables or [self.schema.empty_table()])
        paths = merged.column("path").to_pylist()
        newest = {p: i for i, p in enumerate(paths)}
        take = sorted(newest.values(), key=lambda i: paths[i])
        merged = merged.take(pa.array(take, pa.int64()))
        meta = {k[1:]: merged.column(k).to_pylist() for k in _KEYS}
        final = merged.drop_columns(list(_KEYS))
        final = final.replace_schema_metadata({_META: json.dumps(meta, separators=(",", ":")).encode()})
        tmp = self.out / f".{RESULTS}.tmp"
        with LightWriter(self.out, final.schema) as light:
            pq.write_table(final, tmp, row_group_size=1024)
            os.replace(tmp, self.out / RESULTS)
            light.write(final)
        for path in seen:
            path.unlink(missing_ok=True)
        for folder in sorted((p for p in self.parts.rglob("*") if p.is_dir()), reverse=True):
            with contextlib.suppress(OSError):
                folder.rmdir()
        return final.num_rows

    def done(self) -> dict[str, tuple[int, int]]:
        """path → (size, mtime_ns) of every file in ``results.parquet`` (call after :meth:`compact`)."""
        previous = self._previous()
        if previous is None:
            return {}
        return dict(zip(previous.column("path").to_pylist(),
                        zip(*(previous.column(k).to_pylist() for k in _KEYS), strict=True), strict=True))


def _replace_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
