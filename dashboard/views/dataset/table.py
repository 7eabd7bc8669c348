"""What the Dataset page hands visitors from a results table: paths relative to the data root, the CSV export.

The numbers come from :mod:`cam_core.batch.query`; here only the server's paths are taken out of what a
visitor sees or downloads (a CSV that visitors download names no server path). No Streamlit here.
"""

from __future__ import annotations

import io
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.parquet as pq

__all__ = ["export_csv", "export_parquet", "failed_files", "shown_path", "shown_paths"]


def shown_path(path: str, root: Path | None) -> str:
    """A file's path as visitors see it: relative to the data root (its name alone when outside it)."""
    if root is None:
        return path
    try:
        return Path(path).relative_to(root).as_posix()
    except ValueError:
        return Path(path).name


def shown_paths(paths: pa.Array | pa.ChunkedArray, root: Path | None) -> pa.Array | pa.ChunkedArray:
    """:func:`shown_path` over a column at once (a million paths, no Python loop)."""
    if root is None:
        return paths
    prefix = str(root).rstrip("/") + "/"
    inside = pc.starts_with(paths, prefix)
    return pc.if_else(inside, pc.utf8_slice_codeunits(paths, len(prefix)),
                      pc.replace_substring_regex(paths, r"^.*/", ""))


def _shown_texts(texts: pa.Array | pa.ChunkedArray, root: Path | None) -> pa.Array | pa.ChunkedArray:
    """Error messages with the data root's path taken out."""
    if root is None:
        return texts
    texts = pc.replace_substring(texts, str(root).rstrip("/") + "/", "")
    return pc.replace_substring(texts, str(root), ".")


def _private(table: pa.Table, root: Path | None) -> pa.Table:
    for name, shown in (("path", shown_paths), ("error", _shown_texts)):
        if name in table.column_names:
            i = table.schema.get_field_index(name)
            table = table.set_column(i, name, shown(table.column(name), root))
    return table


def failed_files(table: pa.Table, root: Path | None) -> pa.Table:
    """The failed rows as the page lists them: file (relative to the data root), true class, why."""
    table = _private(table.select(["path", "label_name", "error"]), root)
    return table.rename_columns(["file", "label_name", "error"])


def export_csv(table: pa.Table, root: Path | None = None) -> str:
    """The rows as CSV (no maps: those stay in the Parquet files); top-5 as ``id:prob`` pairs; a list column
    (the boxes: x0 y0 x1 y1 per box) as its values joined by spaces.

    With ``root`` (the data root), paths are relative to it and error messages do not name it.
    """
    table = _private(table, root)
    for i, field in enumerate(table.schema):
        if pa.types.is_list(field.type):
            text = pc.binary_join(pc.cast(table.column(i), pa.list_(pa.string())), " ")
            table = table.set_column(i, field.name, text)
    buf = io.BytesIO()
    pcsv.write_csv(table, buf)
    return buf.getvalue().decode("utf-8")


def export_parquet(table: pa.Table, root: Path | None = None) -> bytes:
    """The rows as a Parquet file (lists kept as lists), paths and errors as :func:`export_csv` shows them."""
    buf = io.BytesIO()
    pq.write_table(_private(table, root), buf)
    return buf.getvalue()
