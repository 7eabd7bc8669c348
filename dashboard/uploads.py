"""Uploaded files the engine reads from disk (weights, class names), one folder per browser session,
deleted when the session ends.

The engine loads models from paths, so uploads are written under
``<tmp>/cam_dashboard_uploads/<session>/<content hash>/<name>``; the hash keeps the path (and so the
model's cache key) the same for the same bytes within a session. :func:`sweep` removes the folders
of sessions that ended: gone from the server, and not seen for ``server.disconnectedSessionTTL``
seconds (a reloading tab reconnects to its session within that time); everything at start-up (a
previous server's leftovers). The page calls it at most every ``CAMDASH_SWEEP_SECONDS`` (30).
Messages name an upload by its file name, never by this path (:func:`redact`).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import streamlit as st
from streamlit.runtime import Runtime
from streamlit.runtime.scriptrunner import get_script_run_ctx

__all__ = ["UPLOAD_ROOT", "redact", "save_upload", "sweep"]

UPLOAD_ROOT = Path(tempfile.gettempdir()) / "cam_dashboard_uploads"
_NO_SESSION = "no-session"  # AppTest and scripts outside a server
_last_sweep = [0.0]
_last_seen: dict[str, float] = {}  # session folder → when its session was last active
_sweep_lock = threading.Lock()


def _every() -> float:
    return float(os.environ.get("CAMDASH_SWEEP_SECONDS", "30"))
_UPLOADED = re.compile(re.escape(str(UPLOAD_ROOT)) + r"/[^/\s'\"]+/[0-9a-f]{16}/([^/\s'\"]+)")


def _session() -> str:
    ctx = get_script_run_ctx()
    return re.sub(r"[^A-Za-z0-9_-]", "_", ctx.session_id) if ctx is not None else _NO_SESSION


def save_upload(data: bytes, filename: str, suffixes: Sequence[str] = ()) -> str:
    """Write an uploaded file into this session's folder, under a folder named by its hash; return the path.

    A name without one of the expected ``suffixes`` gets the first of them.
    """
    digest = hashlib.sha1(data).hexdigest()[:16]
    folder = UPLOAD_ROOT / _session() / digest
    folder.mkdir(parents=True, exist_ok=True)
    name = Path(filename).name or "upload"
    if suffixes and not name.lower().endswith(tuple(suffixes)):
        name += suffixes[0]
    path = folder / name
    if not path.exists():
        path.write_bytes(data)
    return str(path)


def sweep(*, everything: bool = False, force: bool = False) -> int:
    """Delete the upload folders of sessions that ended (``everything``: all of them); returns how many.

    Cheap and rate-limited (``CAMDASH_SWEEP_SECONDS``) unless ``force``.
    """
    with _sweep_lock:
        now = time.monotonic()
        if not (force or everything) and now - _last_sweep[0] < _every():
            return 0
        _last_sweep[0] = now
    if not UPLOAD_ROOT.is_dir():
        return 0
    runtime = Runtime.instance() if Runtime.exists() else None
    grace = float(st.get_option("server.disconnectedSessionTTL"))
    removed = 0
    for folder in UPLOAD_ROOT.iterdir():
        if not folder.is_dir() or folder.name == _NO_SESSION:
            continue
        if not everything and runtime is not None and runtime.is_active_session(folder.name):
            _last_seen[folder.name] = now
            continue
        if everything or now - _last_seen.setdefault(folder.name, now) >= grace:
            shutil.rmtree(folder, ignore_errors=True)
            _last_seen.pop(folder.name, None)
            removed += 1
    return removed


def redact(text: str) -> str:
    """``text`` with upload paths replaced by the file's name (visitors see what they uploaded, not where)."""
    return _UPLOADED.sub(lambda m: m.group(1), text)
