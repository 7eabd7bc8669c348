"""The server's data root: the only folders a visitor of the Dataset page can reach.

The operator sets it when starting the dashboard (``camdash --data-root DIR`` or the environment
variable ``CAMDASH_DATA_ROOT``); by default it is a folder in the user's cache holding variants of
the shipped sample photos in an ImageFolder layout (``samples/<class>/``). Every path a visitor
names (a folder to run, ``?folder=`` in a link, an image of a results table) is resolved, symlinks
included, and refused unless it lies inside the root. Runs started from the page write under
``runs/``, uploaded zips are extracted under ``uploads/``: both inside the root, so their results
can be opened again (and shared by link) like any other folder. A zip is a session's own: unpacked under
``uploads/<session>/``, listed and opened only for that session (its runs go under ``uploads/<session>/runs/``),
deleted when the session ends, unless the operator shares zip uploads with everyone
(``CAMDASH_SHARED_UPLOADS=yes``).
All zip uploads together are held to a quota (``CAMDASH_UPLOAD_QUOTA``).

No Streamlit here: plain functions, tested on their own.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from cam_core.batch.compare_table import COMPARE, COMPARE_JSON
from cam_core.batch.results import PARTS, RESULTS, RUN
from cam_core.errors import CamError
from cam_core.io import zips
from cam_core.io.images import IMAGE_EXTENSIONS
from cam_core.io.samples import write_sample_folder
from cam_core.limits import (
    MAX_DATA_ROOT_UPLOAD_BYTES,
    MAX_ZIP_BYTES,
    MAX_ZIP_FILES,
    MAX_ZIP_NAME_CHARS,
    MAX_ZIP_PATH_CHARS,
)

__all__ = [
    "ENV",
    "ENV_QUOTA",
    "ENV_SHARED_UPLOADS",
    "MAX_ZIP_BYTES",
    "MAX_ZIP_FILES",
    "RUNS",
    "UPLOADS",
    "Listed",
    "Survey",
    "data_root",
    "default_root",
    "extract_zip",
    "image_folders",
    "owner_folder",
    "relative",
    "resolve_under",
    "results_folders",
    "run_folder",
    "shared_uploads",
    "truth_sources",
    "upload_quota",
    "uploads_place",
    "used_bytes",
    "visible",
    "walk",
]

ENV = "CAMDASH_DATA_ROOT"
ENV_SHARED_UPLOADS = "CAMDASH_SHARED_UPLOADS"  # yes: every session sees every zip upload (default: its own only)
ENV_QUOTA = "CAMDASH_UPLOAD_QUOTA"  # bytes (or 500M, 20G) all zip uploads of the data root may hold
_YES, _NO = {"yes", "true", "1", "on"}, {"no", "false", "0", "off"}
RUNS = "runs"
UPLOADS = "uploads"
SAMPLES = "samples"
_SUFFIXES = tuple(f".{e}" for e in IMAGE_EXTENSIONS)
_DEPTH = 3  # how deep the page looks for folders to offer


def _default_path() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "camdash" / "data"


def default_root() -> Path:
    """``$XDG_CACHE_HOME/camdash/data`` (or ``~/.cache/...``), with the sample folder written on first use."""
    root = _default_path()
    samples = root / SAMPLES
    if not samples.is_dir():
        tmp = root / f".{SAMPLES}.tmp"
        write_sample_folder(tmp, per_photo=6)
        os.replace(tmp, samples)  # whole or absent, even with two sessions racing
    return root


def data_root() -> Path:
    """The data root, resolved: the operator's (``CAMDASH_DATA_ROOT``) or :func:`default_root`.

    Raises:
        CamError: The operator's root does not exist.
    """
    given = os.environ.get(ENV)
    root = Path(given).expanduser() if given else default_root()
    if not root.is_dir():
        raise CamError(f"the data root {root} ({ENV} / camdash --data-root) is not a folder")
    return root.resolve()


def resolve_under(root: Path, text: str | os.PathLike[str]) -> Path:
    """``text`` (relative to ``root``, or absolute) resolved, if it lies inside ``root``.

    Raises:
        CamError: It leads outside the root (``..``, an absolute path elsewhere, a symlink out).
    """
    shown = os.fspath(text)
    shown = shown if len(shown) <= 80 else shown[:77] + "…"
    name = os.fspath(text)
    # No folder has such a name: say so before the file system raises on it (a NUL byte, a name too long).
    too_long = len(name) > MAX_ZIP_PATH_CHARS or any(len(part) > MAX_ZIP_NAME_CHARS for part in Path(name).parts)
    if "\0" in name or too_long:
        raise CamError(f"{shown!r} is not a folder name this server can open")
    try:
        candidate = (root / Path(name).expanduser()).resolve()
    except (OSError, RuntimeError) as exc:  # a symlink loop, an unreadable parent
        raise CamError(f"{shown!r} cannot be opened: {exc.strerror or 'a symlink loop'}") from exc
    if not candidate.is_relative_to(root.resolve()):
        raise CamError(f"{shown!r} is outside the data root; only folders under it can be opened")
    return candidate


def relative(root: Path, path: Path) -> str:
    """``path`` as the page shows it and links carry it: relative to the root, with ``/``."""
    rel = path.resolve().relative_to(root.resolve())
    return rel.as_posix() if rel.parts else "."


def _listed_rel(root: Path, path: Path) -> str:
    """:func:`relative` of a walked folder: by its name alone when it lies under ``root`` by name (the walks follow
    no folder symlinks, so that is where it is), resolving it only otherwise."""
    if path.is_relative_to(root):
        rel = path.relative_to(root)
        return rel.as_posix() if rel.parts else "."
    return relative(root, path)


@dataclass(frozen=True)
class Listed:
    """A walked folder as the listings need it: what its files are, not their names (it may hold a million)."""

    path: Path
    level: int  # below the folder the walk started from
    images: bool  # holds image files
    marks: frozenset[str]  # which of run.json, results.parquet, compare.parquet, compare.json it holds
    tables: tuple[str, ...]  # its *.json and *.csv files (ground truth, maybe)
    masks: bool  # holds *.xml or *.png files (Pascal VOC boxes or masks, maybe)


_MARKS = frozenset({RUN, RESULTS, COMPARE, COMPARE_JSON})
Walk = Callable[[Path, int], Iterable[Listed]]  # (start, depth) → its folders to that depth


def _listed(folder: Path, level: int, depth: int) -> tuple[Listed, list[Path]] | None:
    """One folder summarised in one pass over its entries, with the folders below it to walk next."""
    images = masks = False
    marks: set[str] = set()
    tables: list[str] = []
    below: list[Path] = []
    try:
        with os.scandir(folder) as entries:
            for e in entries:
                if e.is_file():
                    low = e.name.lower()
                    images = images or low.endswith(_SUFFIXES)
                    masks = masks or low.endswith((".xml", ".png"))
                    if low.endswith((".json", ".csv", ".parquet")):
                        tables += [e.name] if low.endswith((".json", ".csv")) else []
                        marks.update({e.name} & _MARKS)
                elif level < depth and e.is_dir(follow_symlinks=False) and not e.name.startswith("."):
                    below.append(Path(e.path))
    except OSError:
        return None
    return Listed(folder, level, images, frozenset(marks), tuple(tables), masks), below


def walk(start: Path, depth: int = _DEPTH) -> Iterator[Listed]:
    """Folders under ``start`` to ``depth`` (dot folders left out, folder symlinks not followed), summarised."""
    stack = [(start, 0)]
    while stack:
        folder, level = stack.pop()
        found = _listed(folder, level, depth)
        if found is not None:
            stack += [(p, level + 1) for p in found[1]]
            yield found[0]


class Survey:
    """Walks of the data root kept ``ttl`` seconds, then walked again in the background while the last walk is
    still served: a root holding a million images takes seconds to walk, which no page view should wait for
    (only the very first one does). One per process, shared by every session."""

    def __init__(self, ttl: float = 20.0) -> None:
        self._ttl = ttl
        self._lock = threading.Lock()
        self._walks: dict[tuple[Path, int], tuple[float, list[Listed]]] = {}
        self._busy: set[tuple[Path, int]] = set()

    def walk(self, start: Path, depth: int = _DEPTH) -> list[Listed]:
        """The folders :func:`walk` finds, as of at most ``ttl`` seconds ago (or of the last walk, while the next
        one runs)."""
        key = (start, depth)
        with self._lock:
            found = self._walks.get(key)
            if found is not None and time.monotonic() - found[0] > self._ttl and key not in self._busy:
                self._busy.add(key)
                threading.Thread(target=self._walk, args=(key,), name="data-root-walk", daemon=True).start()
        return found[1] if found is not None else self._walk(key)

    def _walk(self, key: tuple[Path, int]) -> list[Listed]:
        try:
            walked = list(walk(*key))
            with self._lock:
                self._walks[key] = (time.monotonic(), walked)
            return walked
        finally:
            with self._lock:
                self._busy.discard(key)

    def clear(self, start: Path | None = None) -> None:
        """Forget the walks from ``start`` (``None``: every walk): the next listing walks again (a run just wrote a
        results folder, a zip was just unpacked)."""
        with self._lock:
            for key in [k for k in self._walks if start is None or k[0] == start]:
                del self._walks[key]


def _upload_places(root: Path, owner: str | None) -> list[Path]:
    """The upload folders ``owner``'s session may see (every one for ``None``: the operator, tests)."""
    if owner is None or shared_uploads():
        return [root / UPLOADS]
    return [root / UPLOADS / owner]


def _offer_walks(root: Path, owner: str | None, root_walk: Walk) -> Iterator[Listed]:
    """The folders image and ground-truth listings look at: the root and the session's upload folder, each to
    :data:`_DEPTH`, through ``root_walk`` (maybe a :class:`Survey`'s: two walks, the root's and ``uploads/``'s,
    whatever the number of sessions)."""
    yield from (f for f in root_walk(root, _DEPTH + 1) if f.level <= _DEPTH)
    for place in _upload_places(root, owner):
        below = len(place.relative_to(root / UPLOADS).parts)  # 0: uploads/ itself; 1: uploads/<owner>
        yield from (f for f in root_walk(root / UPLOADS, _DEPTH + 1)
                    if f.path.is_relative_to(place) and f.level - below <= _DEPTH)


def image_folders(root: Path, owner: str | None = None, root_walk: Walk = walk) -> list[str]:
    """Folders (relative) that hold images directly or one level down (ImageFolder classes), outside ``runs/``;
    of ``uploads/``, only those :func:`visible` to ``owner``'s session."""
    holding: set[Path] = set()
    for f in _offer_walks(root, owner, root_walk):
        if f.images:
            holding.add(f.path)
            if f.path != root:
                holding.add(f.path.parent)
    shown = {_listed_rel(root, f) for f in holding if f.is_relative_to(root)}
    return sorted(s for s in shown if _offered(s) and visible(s, owner))


def _offered(rel: str) -> bool:
    """Whether an image folder is offered to run: not a run's output, not the uploads' own folders."""
    parts = rel.split("/")
    if parts[0] == RUNS:
        return False
    if parts[0] == UPLOADS:
        return len(parts) >= (2 if shared_uploads() else 3) and RUNS not in parts[1:3]
    return True


def _mtime(path: Path) -> float | None:
    try:
        return path.stat().st_mtime
    except OSError:  # gone since the walk
        return None


def results_folders(root: Path, owner: str | None = None, root_walk: Walk = walk) -> list[str]:
    """Folders (relative) that hold a ``results.parquet``, or a ``run.json`` with Parquet parts (a run not yet
    compacted, Ray's), or a comparison's ``compare.parquet``, newest first (of ``uploads/``, only ``owner``'s)."""
    found: list[tuple[float, Path]] = []
    for f in root_walk(root, _DEPTH + 1):
        if f.marks & {RESULTS, COMPARE} or (RUN in f.marks and (f.path / PARTS).is_dir()):
            when = _mtime(f.path / next((n for n in (RESULTS, COMPARE) if n in f.marks), RUN))
            found += [(when, f.path)] if when is not None else []
    found.sort(key=lambda wf: wf[0], reverse=True)
    return [rel for rel in (_listed_rel(root, f) for _, f in found) if visible(rel, owner)]


def truth_sources(root: Path, owner: str | None = None, root_walk: Walk = walk) -> list[str]:
    """Ground truth a run may be given (``batch --boxes``), relative: COCO ``*.json`` and ``*.csv`` files, folders
    of Pascal VOC ``*.xml`` or of mask ``*.png``; outside runs and results folders, of ``uploads/`` only ``owner``'s."""
    found: set[str] = set()
    for f in _offer_walks(root, owner, root_walk):
        rel = _listed_rel(root, f.path)
        if f.marks & {RUN, COMPARE_JSON} or not _offered(rel) or not visible(rel, owner):
            continue
        found.update(f"{rel}/{n}".removeprefix("./") for n in f.tables)
        if f.path != root and f.masks:
            found.add(rel)
    return sorted(found)


def truth_tag(source: Path) -> str:
    """A short name for a ground-truth file or folder as it is now: a changed file makes a new run folder."""
    stat = source.stat()
    return hashlib.sha1(f"{source}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:10]


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.") or "x"


def run_folder(root: Path, images: str, model: str, layer: str, method: str, classes: str,
               boxes: Path | None = None) -> Path:
    """Where a run from the page writes: one folder per (images, model, layer, method, classes, ground truth), so
    a rerun resumes."""
    name = "__".join(_slug(p) for p in (images.replace("/", "_"), model, layer, method, classes))
    tail = f"__boxes-{truth_tag(boxes)}" if boxes is not None else ""
    name = name[:200 - len(tail)] + tail
    parts = images.split("/")
    if parts[0] == UPLOADS and len(parts) > 2 and not shared_uploads():  # a session's own upload: its runs too
        return root / UPLOADS / parts[1] / RUNS / name
    return root / RUNS / name


def shared_uploads() -> bool:
    """Whether zip uploads are seen by every session (the operator's ``CAMDASH_SHARED_UPLOADS=yes``)."""
    word = os.environ.get(ENV_SHARED_UPLOADS, "").strip().lower()
    if word and word not in _YES | _NO:
        raise CamError(f"{ENV_SHARED_UPLOADS}={word!r}: use yes or no")
    return word in _YES


def upload_quota() -> int:
    """The most bytes the data root's zip uploads may hold together (``CAMDASH_UPLOAD_QUOTA``: bytes, or with a
    unit: ``500M``, ``20G``; default :data:`~cam_core.limits.MAX_DATA_ROOT_UPLOAD_BYTES`)."""
    given = os.environ.get(ENV_QUOTA, "").strip()
    if not given:
        return MAX_DATA_ROOT_UPLOAD_BYTES
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?", given.lower())
    if match is None:
        raise CamError(f"{ENV_QUOTA}={given!r}: give bytes, or a size such as 500M or 20G")
    return int(float(match.group(1)) * 1024 ** "_kmgt".index(match.group(2) or "_"))


def uploads_place() -> Path | None:
    """The data root's ``uploads/`` when it holds one folder per session (for the sweep), else ``None``.

    Never creates the default root (the sweep runs on every page)."""
    if shared_uploads():
        return None
    given = os.environ.get(ENV)
    place = (Path(given).expanduser() if given else _default_path()) / UPLOADS
    return place if place.is_dir() else None


def used_bytes(folder: Path) -> int:
    """Bytes of the files under ``folder`` (0 when absent)."""
    total = 0
    for dirpath, _dirs, files in os.walk(folder):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(dirpath, name)).st_size
    return total


def owner_folder(root: Path, owner: str | None) -> Path:
    """Where an upload of ``owner`` (a session) goes: ``uploads/<owner>/`` (``uploads/`` when shared)."""
    return root / UPLOADS / owner if owner else root / UPLOADS


def visible(rel: str, owner: str | None) -> bool:
    """Whether a folder (relative to the root) may be listed for and opened by ``owner``'s session: anything
    outside ``uploads/``, and in it only the session's own folder (every folder when uploads are shared)."""
    parts = rel.split("/")
    if parts[0] != UPLOADS or owner is None or shared_uploads():
        return True
    return len(parts) > 1 and parts[1] == owner


def extract_zip(data: bytes, root: Path, owner: str | None = None) -> Path:
    """Extract the images of an uploaded zip under ``root/uploads/[<owner>/]<hash>/`` (once per content).

    :func:`cam_core.io.zips.extract_zip` does the unpacking (bounded before it is parsed, checked entry by entry,
    written to a unique temporary folder and moved into place); here, the limits (this module's
    ``MAX_ZIP_FILES`` and ``MAX_ZIP_BYTES``) and the data root's quota (:func:`upload_quota`, over every
    session's uploads) are applied.

    Raises:
        CamError: Not a zip, beyond a limit or the quota, an entry that cannot be unpacked safely, no images.
    """
    uploads = root / UPLOADS
    dest = owner_folder(root, owner) / hashlib.sha1(data).hexdigest()[:16]
    if dest.is_dir():
        return dest
    room = upload_quota() - used_bytes(uploads)
    if room <= 0:
        raise CamError("the server's space for zip uploads is full; try again later (its operator sets the quota)")
    try:
        return zips.extract_zip(data, dest, suffixes=IMAGE_EXTENSIONS, what="images", strip_single_top=True,
                                max_files=MAX_ZIP_FILES, max_bytes=min(MAX_ZIP_BYTES, room))
    except zips.ZipError as exc:
        if room < MAX_ZIP_BYTES and "uncompressed" in str(exc):
            raise CamError("the zip does not fit in the server's space left for zip uploads; upload less") from exc
        raise
