"""The server's data root: the only folders a visitor of the Dataset page can reach.

The operator sets it when starting the dashboard (``camdash --data-root DIR`` or the environment
variable ``CAMDASH_DATA_ROOT``); by default it is a folder in the user's cache holding variants of
the shipped sample photos in an ImageFolder layout (``samples/<class>/``). Every path a visitor
names (a folder to run, ``?folder=`` in a link, an image of a results table) is resolved, symlinks
included, and refused unless it lies inside the root. Runs started from the page write under
``runs/``, uploaded zips are extracted under ``uploads/``: both inside the root, so their results
can be opened again (and shared by link) like any other folder.

No Streamlit here: plain functions, tested on their own.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import shutil
import zipfile
from pathlib import Path, PurePosixPath

from cam_core.batch.results import RESULTS
from cam_core.errors import CamError
from cam_core.io.images import IMAGE_EXTENSIONS
from cam_core.io.samples import write_sample_folder
from cam_core.limits import MAX_ZIP_BYTES, MAX_ZIP_FILES

__all__ = [
    "ENV",
    "MAX_ZIP_BYTES",
    "MAX_ZIP_FILES",
    "RUNS",
    "UPLOADS",
    "data_root",
    "default_root",
    "extract_zip",
    "image_folders",
    "relative",
    "resolve_under",
    "results_folders",
    "run_folder",
]

ENV = "CAMDASH_DATA_ROOT"
RUNS = "runs"
UPLOADS = "uploads"
SAMPLES = "samples"
_SUFFIXES = tuple(f".{e}" for e in IMAGE_EXTENSIONS)
_DEPTH = 3  # how deep the page looks for folders to offer


def default_root() -> Path:
    """``$XDG_CACHE_HOME/camdash/data`` (or ``~/.cache/...``), with the sample folder written on first use."""
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    root = cache / "camdash" / "data"
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
    candidate = (root / Path(text).expanduser()).resolve()
    if not candidate.is_relative_to(root.resolve()):
        raise CamError(f"{os.fspath(text)!r} is outside the data root; only folders under it can be opened")
    return candidate


def relative(root: Path, path: Path) -> str:
    """``path`` as the page shows it and links carry it: relative to the root, with ``/``."""
    rel = path.resolve().relative_to(root.resolve())
    return rel.as_posix() if rel.parts else "."


def _walk(root: Path, depth: int = _DEPTH):
    """Folders under ``root`` to ``depth`` (dot folders left out), with their file names."""
    stack = [(root, 0)]
    while stack:
        folder, level = stack.pop()
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        yield folder, [e.name for e in entries if e.is_file()]
        if level < depth:
            stack += [(Path(e.path), level + 1) for e in entries
                      if e.is_dir(follow_symlinks=False) and not e.name.startswith(".")]


def image_folders(root: Path) -> list[str]:
    """Folders (relative) that hold images directly or one level down (ImageFolder classes), outside ``runs/``."""
    holding: set[Path] = set()
    for folder, names in _walk(root):
        if any(n.lower().endswith(_SUFFIXES) for n in names):
            holding.add(folder)
            if folder != root:
                holding.add(folder.parent)
    shown = [relative(root, f) for f in holding if f.is_relative_to(root)]
    return sorted(s for s in shown if s.split("/")[0] != RUNS and s != UPLOADS)


def results_folders(root: Path) -> list[str]:
    """Folders (relative) that hold a ``results.parquet``, newest first."""
    found = [folder for folder, names in _walk(root, _DEPTH + 1) if RESULTS in names]
    found.sort(key=lambda f: (f / RESULTS).stat().st_mtime, reverse=True)
    return [relative(root, f) for f in found]


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.") or "x"


def run_folder(root: Path, images: str, model: str, layer: str, method: str, classes: str) -> Path:
    """Where a run from the page writes: one folder per (images, model, layer, method, classes), so a rerun resumes."""
    name = "__".join(_slug(p) for p in (images.replace("/", "_"), model, layer, method, classes))
    return root / RUNS / name[:200]


def extract_zip(data: bytes, root: Path) -> Path:
    """Extract the images of an uploaded zip under ``root/uploads/<hash>/`` (once per content); return the folder.

    Safe for any upload: member names are checked (no absolute paths, no ``..``, no links), only image
    files are written, and the number of members and their total size are bounded before anything is written.

    Raises:
        CamError: Not a zip, too many members or too large, or no images in it.
    """
    digest = hashlib.sha1(data).hexdigest()[:16]
    dest = root / UPLOADS / digest
    if dest.is_dir():
        return dest
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile as exc:
        raise CamError("the upload is not a zip archive") from exc
    with archive:
        members = archive.infolist()
        if len(members) > MAX_ZIP_FILES:
            raise CamError(f"the zip has {len(members)} entries; at most {MAX_ZIP_FILES} are accepted")
        if sum(m.file_size for m in members) > MAX_ZIP_BYTES:
            raise CamError(f"the zip holds more than {MAX_ZIP_BYTES / 2**30:.0f} GB uncompressed; upload less")
        wanted = []
        for m in members:
            name = PurePosixPath(m.filename.replace("\\", "/"))
            is_link = (m.external_attr >> 16) & 0o170000 == 0o120000
            hidden = any(p.startswith(".") or p == "__MACOSX" for p in name.parts)
            if m.is_dir() or is_link or hidden or name.suffix.lower() not in _SUFFIXES:
                continue
            if name.is_absolute() or ".." in name.parts:
                continue
            wanted.append((m, name.parts))
        if not wanted:
            raise CamError(f"the zip holds no images ({', '.join(IMAGE_EXTENSIONS)})")
        tops = {parts[0] for _, parts in wanted}
        if len(tops) == 1 and all(len(parts) > 2 for _, parts in wanted):  # "photos/cat/1.jpg": the classes are below
            wanted = [(m, parts[1:]) for m, parts in wanted]
        tmp = root / UPLOADS / f".{digest}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            _write_members(archive, wanted, tmp)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    os.replace(tmp, dest)
    return dest


Members = list[tuple[zipfile.ZipInfo, tuple[str, ...]]]


def _write_members(archive: zipfile.ZipFile, members: Members, dest: Path) -> None:
    written = 0
    for m, parts in members:
        target = dest.joinpath(*parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        with archive.open(m) as src, target.open("wb") as out:
            while chunk := src.read(1 << 20):
                written += len(chunk)
                if written > MAX_ZIP_BYTES:  # the sizes in the zip's directory may lie
                    raise CamError(f"the zip holds more than {MAX_ZIP_BYTES / 2**30:.0f} GB uncompressed")
                out.write(chunk)
