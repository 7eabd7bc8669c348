"""Uploaded files the engine reads from disk (weights, class names), one folder per browser session,
deleted when the session ends.

The engine loads models from paths, so uploads are written under
``<tmp>/cam_dashboard_uploads/server-<pid>-<random>/<session>/<content hash>/<name>``; the hash keeps the
path (and so the model's cache key) the same for the same bytes within a session. Each server process has a
folder of its own, holding a ``.lock`` file it keeps locked (``flock``) while it runs: two servers on one
machine never touch each other's uploads, and the lock is released by the kernel however a server ends.

:func:`sweep` removes the folders of sessions that ended: gone from the server, and not seen for
``server.disconnectedSessionTTL`` seconds (a reloading tab reconnects to its session within that time),
in this server's folder and in the other places registered with :func:`sweep_also` (the data root's
zip uploads). At start-up (``everything``) it removes the folders of servers that are no longer running
(their lock is free), never a running server's. The page calls it at most every ``CAMDASH_SWEEP_SECONDS``
(30), and the server on that schedule too (:func:`sweep_forever`), so a server nobody visits still cleans up.
Messages name an upload by its file name, never by this path (:func:`redact`).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import fcntl
import hashlib
import os
import re
import secrets
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import streamlit as st
from streamlit.runtime import Runtime
from streamlit.runtime.scriptrunner import get_script_run_ctx

__all__ = [
    "UPLOAD_ROOT",
    "redact",
    "release",
    "save_folder",
    "save_upload",
    "server_folder",
    "session_owner",
    "sweep",
    "sweep_also",
    "sweep_forever",
]

UPLOAD_ROOT = Path(tempfile.gettempdir()) / "cam_dashboard_uploads"
SERVER_PREFIX = "server-"
_SERVER = f"{SERVER_PREFIX}{os.getpid()}-{secrets.token_hex(4)}"  # this process's folder under UPLOAD_ROOT
_LOCK = ".lock"
_NEW_SERVER_S = 60.0  # a server folder without its lock file yet is being made, for this long at most
_NO_SESSION = "no-session"  # AppTest and scripts outside a server
_last_sweep = [0.0]
_last_seen: dict[str, float] = {}  # session folder → when its session was last active
_sweep_lock = threading.Lock()
_held: dict[str, int] = {}  # server folder → the descriptor of its locked .lock (kept open while we run)
_also: dict[str, Callable[[], Path | None]] = {}  # more places with one folder per session


def _every() -> float:
    return float(os.environ.get("CAMDASH_SWEEP_SECONDS", "30"))


_UPLOADED = re.compile(
    re.escape(str(UPLOAD_ROOT)) + r"/(?:" + SERVER_PREFIX + r"[^/\s'\"]+/)?[^/\s'\"]+/[0-9a-f]{16}/([^/\s'\"]+)"
)


def session_owner() -> str:
    """This browser session's id as a folder name (``no-session`` outside a server)."""
    ctx = get_script_run_ctx()
    return re.sub(r"[^A-Za-z0-9_-]", "_", ctx.session_id) if ctx is not None else _NO_SESSION


_session = session_owner


def server_folder() -> Path:
    """This server's folder of uploads, made (and its lock taken) on first use."""
    folder = UPLOAD_ROOT / _SERVER
    if str(folder) not in _held:
        with _sweep_lock:
            if str(folder) not in _held:
                folder.mkdir(parents=True, exist_ok=True)
                fd = os.open(folder / _LOCK, os.O_CREAT | os.O_RDWR, 0o600)
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                os.write(fd, f"{os.getpid()}\n".encode())
                _held[str(folder)] = fd
                atexit.register(release)  # a process that is not a server (a test, a script) cleans up too
    return folder


def _server_running(folder: Path) -> bool:
    """Whether the server owning ``folder`` still runs: its lock is held (or it is being made right now)."""
    if str(folder) in _held:
        return True
    try:
        fd = os.open(folder / _LOCK, os.O_RDWR)
    except FileNotFoundError:
        with contextlib.suppress(OSError):
            return time.time() - folder.stat().st_mtime < _NEW_SERVER_S
        return False
    except OSError:
        return True  # cannot tell: leave it
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # releases the lock we may have taken
    return False


def release() -> None:
    """At shutdown: delete this server's uploads and let go of its lock."""
    folder = UPLOAD_ROOT / _SERVER
    shutil.rmtree(folder, ignore_errors=True)
    fd = _held.pop(str(folder), None)
    if fd is not None:
        os.close(fd)


def sweep_also(name: str, place: Callable[[], Path | None]) -> None:
    """Register another place with one folder per session (``place()``: the folder, ``None`` while absent)."""
    _also[name] = place


def save_upload(data: bytes, filename: str, suffixes: Sequence[str] = ()) -> str:
    """Write an uploaded file into this session's folder, under a folder named by its hash; return the path.

    A name without one of the expected ``suffixes`` gets the first of them.
    """
    digest = hashlib.sha1(data).hexdigest()[:16]
    folder = server_folder() / _session() / digest
    folder.mkdir(parents=True, exist_ok=True)
    name = Path(filename).name or "upload"
    if suffixes and not name.lower().endswith(tuple(suffixes)):
        name += suffixes[0]
    path = folder / name
    if not path.exists():
        path.write_bytes(data)
    return str(path)


def save_folder(files: Sequence[tuple[str, bytes]], name: str = "hf_model") -> str:
    """Write files uploaded together (name, bytes) into one folder of this session; return the folder.

    For sources that are a folder (a Hugging Face model: config.json, model.safetensors,
    preprocessor_config.json): ``<session>/<joint hash>/<name>/``, so :func:`redact` shows ``name``.
    File names are reduced to their last part.
    """
    digest = hashlib.sha1()
    for filename, data in sorted(files):
        digest.update(Path(filename).name.encode() + b"\0" + hashlib.sha1(data).digest())
    folder = server_folder() / _session() / digest.hexdigest()[:16] / name
    folder.mkdir(parents=True, exist_ok=True)
    for filename, data in files:
        path = folder / (Path(filename).name or "upload")
        if not path.exists():
            path.write_bytes(data)
    return str(folder)


def _stale_servers() -> int:
    """Remove the folders of servers that no longer run (never a running one's); returns how many."""
    removed = 0
    if not UPLOAD_ROOT.is_dir():
        return 0
    for folder in UPLOAD_ROOT.iterdir():
        if folder.is_dir() and folder.name.startswith(SERVER_PREFIX) and not _server_running(folder):
            shutil.rmtree(folder, ignore_errors=True)
            removed += 1
    return removed


def _session_folders(places: Iterable[Path]) -> Iterable[Path]:
    for place in places:
        if place.is_dir():
            yield from (f for f in place.iterdir() if f.is_dir() and f.name != _NO_SESSION and f.name != _LOCK)


def sweep(*, everything: bool = False, force: bool = False) -> int:
    """Delete the upload folders of sessions that ended (``everything``, at start-up: also the folders of
    servers that no longer run); returns how many.

    Cheap and rate-limited (``CAMDASH_SWEEP_SECONDS``) unless ``force`` or ``everything``.
    """
    with _sweep_lock:
        now = time.monotonic()
        if not (force or everything) and now - _last_sweep[0] < _every():
            return 0
        _last_sweep[0] = now
    removed = _stale_servers() if everything else 0
    places = [UPLOAD_ROOT / _SERVER]
    for place in list(_also.values()):
        with contextlib.suppress(Exception):  # a place that cannot be found now is swept next time
            found = place()
            if found is not None:
                places.append(found)
    runtime = Runtime.instance() if Runtime.exists() else None
    grace = float(st.get_option("server.disconnectedSessionTTL"))
    for folder in _session_folders(places):
        if runtime is not None and runtime.is_active_session(folder.name):
            _last_seen[str(folder)] = now
            continue
        if now - _last_seen.setdefault(str(folder), now) >= grace:
            shutil.rmtree(folder, ignore_errors=True)
            _last_seen.pop(str(folder), None)
            removed += 1
    return removed


async def sweep_forever() -> None:
    """Sweep every ``CAMDASH_SWEEP_SECONDS`` for as long as the server runs (a task of its lifespan)."""
    while True:
        await asyncio.sleep(max(1.0, _every()))
        with contextlib.suppress(Exception):  # a failed sweep is tried again next time
            await asyncio.to_thread(sweep, force=True)


def redact(text: str) -> str:
    """``text`` with upload paths replaced by the file's name (visitors see what they uploaded, not where)."""
    return _UPLOADED.sub(lambda m: m.group(1), text)
