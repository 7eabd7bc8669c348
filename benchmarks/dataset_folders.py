"""Large results folders made from a real batch run, for the Dataset page's tests and benchmark.

A real run's rows are replicated to any size with what a real large run has: many classes (each copy's
class ids shifted, names following), mistakes, probabilities that differ row to row, blank maps, failed
files and distinct paths (optionally hard links to the real images, so thumbnails decode real photos).
Written as ``results.parquet`` (what a finished run leaves) or as a folder of Parquet parts (what Ray
leaves before compaction), hive-partitioned or not. The maps are the real run's maps.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from cam_core.batch.results import PARTS, RESULTS, RUN, LightWriter

__all__ = ["replicate"]

_SHIFTS = 40  # each copy's classes move by one of this many offsets: about 40 × (the run's classes) classes


def _shift_ids(column: pa.ChunkedArray | pa.Array, shift: np.ndarray, n_classes: int) -> pa.Array:
    """Class ids (scalars or lists) moved by ``shift`` per row, modulo the class count; nulls stay null."""
    column = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if pa.types.is_list(column.type):
        lengths = pc.list_value_length(column).fill_null(0).to_numpy(zero_copy_only=False)
        flat = pc.list_flatten(column).to_numpy(zero_copy_only=False).astype(np.int64)
        moved = (flat + np.repeat(shift, lengths)) % n_classes
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
        return pa.ListArray.from_arrays(pa.array(offsets), pa.array(moved.astype(np.int32)), mask=column.is_null())
    values = column.to_numpy(zero_copy_only=False)
    present = ~np.isnan(values.astype(np.float64))
    moved = np.where(present, (np.nan_to_num(values).astype(np.int64) + shift) % n_classes, 0).astype(np.int32)
    return pa.array(moved, pa.int32(), mask=~present)


def _chunk(src: pa.Table, start: int, rows: int, names: list[str], rng: np.random.Generator,
           path_of) -> pa.Table:
    """Rows ``start`` .. ``start + rows`` of the replicated table."""
    idx = (np.arange(start, start + rows) + rng.integers(0, 7, rows)) % src.num_rows
    t = src.take(pa.array(idx))
    n = len(names)
    shift = (rng.integers(0, _SHIFTS, rows) * (n // _SHIFTS + 7)) % n
    label, pred = _shift_ids(t["label"], shift, n), _shift_ids(t["pred"], shift, n)

    def name_of(ids: pa.Array) -> pa.Array:
        return pc.take(pa.array(names), ids)

    wrong = rng.random(rows) < 0.08  # a few more mistakes: another copy's class, confidently
    pred_np = pred.to_numpy(zero_copy_only=False).astype(np.float64)
    moved = np.where(wrong & ~np.isnan(pred_np), (np.nan_to_num(pred_np) + 1) % n, np.nan_to_num(pred_np))
    pred = pa.array(moved.astype(np.int32), pa.int32(), mask=np.isnan(pred_np))
    correct = pc.equal(label, pred)
    jitter = (0.55 + 0.45 * rng.random(rows)).astype(np.float32)
    prob_pred = pc.multiply(t["prob_pred"].combine_chunks(), pa.array(jitter))
    prob_label = pc.if_else(correct, prob_pred, pc.multiply(t["prob_label"].combine_chunks(), pa.array(jitter)))
    tie = rng.random(rows) < 0.02  # exact ties: the order must then come from the path
    prob_pred = pc.if_else(pa.array(tie), pa.scalar(0.5, pa.float32()), prob_pred)
    blank = t["blank"].combine_chunks()
    flags = pc.list_flatten(blank).to_numpy(zero_copy_only=False)
    flags = flags ^ (rng.random(len(flags)) < 0.05)
    blank = pa.ListArray.from_arrays(blank.offsets, pa.array(flags), mask=blank.is_null())
    failed = rng.random(rows) < 0.01
    out = t.set_column(t.schema.get_field_index("path"), "path", pa.array([path_of(start + i, p) for i, p in
                                                                          enumerate(t["path"].to_pylist())]))
    columns = {
        "label": label, "label_name": name_of(label), "pred": pred, "pred_name": name_of(pred),
        "prob_pred": prob_pred, "prob_label": prob_label, "correct": correct,
        "top5_ids": _shift_ids(t["top5_ids"], shift, n), "class_ids": _shift_ids(t["class_ids"], shift, n),
        "entropy": pc.multiply(t["entropy"].combine_chunks(), pa.array(jitter)), "blank": blank,
    }
    for name, values in columns.items():
        out = out.set_column(out.schema.get_field_index(name), name, values.cast(out.schema.field(name).type))
    mask = pa.array(failed)
    for name in out.column_names:
        if name not in ("path", "label", "label_name", "error"):
            out = out.set_column(out.schema.get_field_index(name), name,
                                 pc.if_else(mask, pa.nulls(rows, out.schema.field(name).type), out[name]))
    error = pc.if_else(mask, pa.scalar("cannot read the image: truncated file"), out["error"])
    return out.set_column(out.schema.get_field_index("error"), "error", error.cast(pa.string()))


def replicate(src: Path, out: Path, rows: int, *, seed: int = 0, parts: int = 0, hive: bool = False,
              links: Path | None = None, chunk: int = 100_000) -> Path:
    """Write a results folder of ``rows`` rows made from the run in ``src`` into ``out`` (replaced).

    Args:
        src: A batch results folder (``results.parquet`` + ``run.json``).
        out: The new folder.
        rows: How many rows.
        seed: The random choices (mistakes, jitter, blank flips, failed files).
        parts: 0: one ``results.parquet`` (row groups of 1024 rows, as compaction writes); N: N Parquet parts
            under ``.parts/`` as Ray writes them (no ``results.parquet``).
        hive: With ``parts``, the parts go into ``shard=<i>/`` folders (hive partitioning).
        links: A folder to hard-link each row's image into (distinct files, as a real large run has);
            ``None``: distinct paths that do not exist.
        chunk: Rows built at a time (memory stays at one chunk's maps).
    """
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    run = json.loads((src / RUN).read_text())
    names = list(run["class_names"])
    table = pq.read_table(src / RESULTS).replace_schema_metadata(None)
    rng = np.random.default_rng(seed)
    sources: dict[str, str] = {}  # a real image → the file its links are made to now

    def path_of(i: int, real: str) -> str:
        name = f"{i:08d}_{Path(real).name}"
        if links is None:
            return str(out / "images" / f"{i // 1000:05d}" / name)
        target = links / f"{i // 1000:05d}" / name
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(sources.get(real, real), target)
            except OSError as exc:  # a file takes at most ~65 000 links (ext4): link to a fresh copy from now on
                if exc.errno != errno.EMLINK:
                    raise
                copy = links / "copies" / f"{i:08d}_{Path(real).name}"
                copy.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(real, copy)
                sources[real] = str(copy)
                os.link(copy, target)
        return str(target)

    (out / RUN).write_text(json.dumps(run))
    per_part = -(-rows // parts) if parts else rows
    writers: dict[int, pq.ParquetWriter] = {}

    def writer_for(part: int, schema: pa.Schema) -> pq.ParquetWriter:
        if part not in writers:
            for w in writers.values():
                w.close()
            writers.clear()
            if not parts:
                writers[part] = pq.ParquetWriter(out / RESULTS, schema)
            else:
                folder = out / PARTS / (f"shard={part}" if hive else "ray-0")
                folder.mkdir(parents=True, exist_ok=True)
                writers[part] = pq.ParquetWriter(folder / f"{part:06d}_000000.parquet", schema)
        return writers[part]

    light: LightWriter | None = None  # results.parquet's light copy, as compaction writes it
    for start in range(0, rows, chunk):  # the same chunks whatever the parts: the same rows
        t = _chunk(table, start, min(chunk, rows - start), names, rng, path_of)
        at = start
        while at < start + t.num_rows:
            part = at // per_part
            end = min(start + t.num_rows, (part + 1) * per_part)
            writer_for(part, t.schema).write_table(t.slice(at - start, end - at),
                                                   row_group_size=8192 if parts else 1024)
            at = end
        if not parts:
            light = light or LightWriter(out, t.schema)
            light.write(t)
    for w in writers.values():
        w.close()
    if light is not None:
        light.close()
    return out
