"""Which files a batch run covers, what identifies each one, and their ImageFolder labels.

A run takes a folder (walked recursively, symlinked folders not followed) or a glob
(``photos/**/*.jpg``). Files whose extension is not an image format are skipped and counted;
a file with an image extension that cannot be decoded still gets a row (with its error).
Each file is identified by (path, size, mtime): a rerun skips the files whose identity is
unchanged, and recomputes those that changed.
"""

from __future__ import annotations

import glob
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from ..errors import CamError, choices_hint
from ..io.boxes import Truth, class_key
from ..io.images import IMAGE_EXTENSIONS

__all__ = ["Found", "ImageFile", "discover", "is_glob", "labels_from_folders"]

_SUFFIXES = tuple(f".{e}" for e in IMAGE_EXTENSIONS)


@dataclass(frozen=True)
class ImageFile:
    """One input file: its absolute ``path``, identity (``size`` in bytes, ``mtime_ns``), ImageFolder label and
    ground truth (``batch --boxes``).

    ``extra``: classes to explain besides the job's (a comparison gives each model the other's classes).
    """

    path: str
    size: int
    mtime_ns: int
    label: int | None = None
    truth: Truth | None = None
    extra: tuple[int, ...] = ()

    @property
    def key(self) -> tuple[str, int, int]:
        """What a rerun compares to decide whether the file is done."""
        return self.path, self.size, self.mtime_ns


@dataclass(frozen=True)
class Found:
    """The result of :func:`discover`.

    Attributes:
        source: The folder, file or glob given.
        files: Image files, sorted by path.
        root: The folder walked, or the fixed part of the glob (labels are read below it).
        skipped: Files left out because their extension is not an image format.
        outside: Files left out because they resolve outside ``within`` (a symlink out of a data root).
    """

    source: str
    files: list[ImageFile]
    root: Path
    skipped: int = 0
    outside: int = 0


def is_glob(text: str) -> bool:
    """Whether ``text`` is a glob pattern rather than a path."""
    return any(ch in text for ch in "*?[")


def _hidden(path: Path, root: Path) -> bool:
    """Dot files and folders (``.DS_Store``, ``.git``, a run's own ``.parts``) are never inputs."""
    return any(part.startswith(".") or part == "__MACOSX" for part in path.relative_to(root).parts)


def _candidates(images: str) -> tuple[Path, list[Path]]:
    if is_glob(images):
        prefix = re.split(r"[*?\[]", images, maxsplit=1)[0]  # "photos/**/*.jpg" → "photos/"
        root = Path(prefix) if prefix.endswith(("/", os.sep)) else Path(prefix).parent
        paths = [Path(p) for p in glob.glob(images, recursive=True)]
        return root, [p for p in paths if p.is_file()]
    root = Path(images)
    if root.is_file():
        return root.parent, [root]
    if not root.is_dir():
        raise CamError(f"--images {images}: no such folder (give a folder, an image file or a glob: 'photos/*.jpg')")
    found = []
    for folder, dirs, names in os.walk(root):  # followlinks=False: a symlinked folder is not walked into
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d != "__MACOSX")
        found += [Path(folder) / n for n in names]
    return root, found


def discover(images: str | os.PathLike[str], *, within: str | os.PathLike[str] | None = None) -> Found:
    """The image files of a folder (recursively), a single file, or a glob.

    Args:
        images: A folder, an image file, or a glob pattern (``**`` matches folders recursively).
        within: If given, files that resolve outside this folder (through symlinks) are left out.

    Returns:
        The files with their identity (no labels yet), sorted by path.

    Raises:
        CamError: The folder does not exist, or holds no image files.
    """
    text = os.fspath(images)
    root, paths = _candidates(text)
    limit = Path(within).resolve() if within is not None else None
    files, skipped, outside = [], 0, 0
    for p in sorted(paths):
        absolute = Path(os.path.abspath(p))
        if root in p.parents and _hidden(p, root):
            continue
        if p.suffix.lower() not in _SUFFIXES:
            skipped += 1
            continue
        if limit is not None and not absolute.resolve().is_relative_to(limit):
            outside += 1
            continue
        st = absolute.stat()
        files.append(ImageFile(str(absolute), st.st_size, st.st_mtime_ns))
    if not files:
        what = f"{skipped} other file(s)" if skipped else "nothing"
        raise CamError(f"no image files in {text} (found {what}; image extensions: {', '.join(IMAGE_EXTENSIONS)})")
    return Found(text, files, Path(os.path.abspath(root)), skipped, outside)


def _folder_of(path: str, root: Path) -> str | None:
    """The class folder of ``path``: its first folder below ``root`` (``root/tabby/x/1.jpg`` → ``tabby``)."""
    try:
        parts = Path(path).relative_to(root).parts
    except ValueError:
        return Path(path).parent.name or None
    return parts[0] if len(parts) > 1 else None


def labels_from_folders(found: Found, class_names: Sequence[str]) -> list[ImageFile]:
    """Label each file by its class folder (ImageFolder): a class name (any case, ``_`` for a space) or an index.

    Files directly in the root have no folder and stay unlabelled.

    Raises:
        CamError: Folder names that are neither a class of the model nor a valid index (all listed in one line).
    """
    index = {}
    for i, name in enumerate(class_names):
        index.setdefault(class_key(name), i)
    c = len(class_names)
    labels: dict[str, int] = {}
    unknown: list[str] = []
    for folder in sorted({f for f in (_folder_of(f.path, found.root) for f in found.files) if f is not None}):
        if folder.isdigit() and int(folder) < c:
            labels[folder] = int(folder)
        elif class_key(folder) in index:
            labels[folder] = index[class_key(folder)]
        else:
            unknown.append(folder)
    if unknown:
        examples = choices_hint([class_names[i] for i in range(min(c, 3))], limit=3)
        raise CamError(
            f"{len(unknown)} folder name(s) under {found.root} match no class of the model: "
            f"{choices_hint(repr(u) for u in unknown)}; name class folders by class name (any case, e.g. {examples}) "
            f"or by index 0..{c - 1}"
        )
    out = []
    for f in found.files:
        folder = _folder_of(f.path, found.root)
        out.append(replace(f, label=labels[folder] if folder is not None else None))
    return out
