"""The DuckDB database an opened results folder's rows are loaded into: in memory, or beyond a million rows a
temporary file (paged in and out within a small memory limit), deleted when the folder closes.

Database files are named by process, so those of a process that ended without deleting its own (a crash) are
swept when another large folder opens.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import duckdb

from ..limits import QUERY_LARGE_MEMORY_BYTES
from . import scan

__all__ = ["drop", "open_database"]


def open_database(large: bool, memory_bytes: int, threads: int | None) -> tuple[duckdb.DuckDBPyConnection, Path | None]:
    """A DuckDB database for one folder's rows, and its folder on disk (``None``: in memory).

    A folder of more than :data:`.scan.CHUNK_ROWS` rows keeps them in a database file in the temporary folder,
    with :data:`QUERY_LARGE_MEMORY_BYTES` of memory: DuckDB pages the compressed table in and out as queries
    read it, so ten million rows need no more memory than one. A smaller folder stays in memory (faster).
    """
    spill = Path(tempfile.gettempdir()) / "cam_core-duckdb"
    place = Path(tempfile.mkdtemp(prefix=f"results-{os.getpid()}-", dir=_swept(spill))) if large else None
    memory = min(memory_bytes, QUERY_LARGE_MEMORY_BYTES) if large else memory_bytes
    con = duckdb.connect(str(place / "rows.duckdb") if place else ":memory:", config={
        "threads": threads or scan.default_threads(), "memory_limit": f"{memory // 2**20}MB",
        "preserve_insertion_order": False,
        # memory freed by compressing the rows goes back to the system, not kept for later
        "allocator_flush_threshold": "16MB", "allocator_background_threads": True,
        "temp_directory": str(place / "spill" if place else spill),
    })
    con.execute("SET enable_progress_bar = true; SET enable_progress_bar_print = false")
    return con, place


def _swept(folder: Path) -> Path:
    """``folder``, made, without the database files of processes that ended without deleting theirs (a crash)."""
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("results-*-*"):
        pid = old.name.split("-")[1]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(old, ignore_errors=True)
    return folder


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def drop(con: duckdb.DuckDBPyConnection, place: Path | None) -> None:
    """Close a folder's database and delete its file."""
    con.close()
    if place is not None:
        shutil.rmtree(place, ignore_errors=True)
