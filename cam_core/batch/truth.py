"""Ground truth for a run: a boxes source (:mod:`cam_core.io.boxes`) matched to the run's files and classes.

An entry names its image as the source does (COCO's ``file_name``, VOC's ``<filename>``, a CSV's
``path``, a mask's own name). It is matched, in this order, as an absolute path; as a path relative
to ``--images``; relative to the boxes file's folder; by its trailing folders and file name (a
COCO ``file_name`` of ``train2017/x.jpg`` finds ``photos/train2017/x.jpg``); then by file name
alone, when one image has it. Masks match the image with the same name whatever its extension
(``masks/cats/1.png`` ↔ ``photos/cats/1.jpg``). Entries that match no image are counted (a COCO
file of a larger set is normal); a name that matches several images is an error naming them.
Class names match the model's as :func:`~cam_core.io.boxes.class_key` normalises them (or an index).
"""

from __future__ import annotations

import hashlib
import os
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import Any

from ..errors import choices_hint
from ..io.boxes import Annotations, BoxesError, Entry, Truth, class_key, read_boxes
from .files import Found, ImageFile

__all__ = ["GroundTruth", "load_truth"]


@dataclass(frozen=True)
class GroundTruth:
    """A boxes source matched to a run: ``truth`` per file path, and what did not match.

    Attributes:
        annotations: What was read.
        truth: Absolute path → the file's :class:`~cam_core.io.boxes.Truth` (only files the source names).
        unmatched: Entries that match no image of the run.
        unknown_names: Class names of the source that match no class of the model (their boxes count for none).
        digest: A hash of the matched truth: part of the run's identity, so a changed boxes file is noticed.
    """

    annotations: Annotations
    truth: dict[str, Truth]
    unmatched: int = 0
    unknown_names: list[str] = field(default_factory=list)
    digest: str = ""

    def identity(self) -> dict[str, Any]:
        """What ``run.json`` records of the source (its ``job`` part: a rerun must match it)."""
        return {"source": os.path.abspath(self.annotations.source), "format": self.annotations.format,
                "sha256": self.digest}

    def describe(self) -> dict[str, Any]:
        """``run.json``'s ``boxes``: the identity plus counts."""
        boxes = sum(len(t.boxes) for t in self.truth.values())
        return {**self.identity(), "images": len(self.truth), "boxes": boxes, "labelled": self.annotations.labelled,
                "unmatched_entries": self.unmatched, "unknown_class_names": self.unknown_names[:50]}

    @staticmethod
    def line(described: dict[str, Any]) -> str:
        """One line for the command line from :meth:`describe`'s record (``run.json``'s ``boxes``)."""
        parts = [f"ground truth: {described.get('boxes', 0):,} boxes on {described.get('images', 0):,} images "
                 f"({described.get('format')})"]
        if described.get("unmatched_entries"):
            parts.append(f"{described['unmatched_entries']:,} entries match no image")
        if described.get("unknown_class_names"):
            parts.append("class names that match no class of the model (their boxes count for none): "
                         + choices_hint(described["unknown_class_names"], 5))
        return "; ".join(parts)

    def attach(self, files: Sequence[ImageFile]) -> list[ImageFile]:
        """``files`` with their truth (files the source does not name get none: their localisation is null)."""
        return [replace(f, truth=self.truth.get(f.path)) for f in files]


def _parts(path: str) -> tuple[str, ...]:
    return PurePosixPath(path.replace("\\", "/")).parts


class _Matcher:
    """Finds the image an entry names (see the module's docstring for the order)."""

    def __init__(self, found: Found, base: Path, by_stem: bool) -> None:
        self.root, self.base, self.by_stem = found.root, base, by_stem
        self.absolute = {f.path: f.path for f in found.files}
        # file name → (its folders below the root, all its folders, its path)
        self.tails: dict[str, list[tuple[tuple[str, ...], tuple[str, ...], str]]] = defaultdict(list)
        for f in found.files:
            rel = _parts(os.path.relpath(f.path, self.root))
            self.tails[self._key(rel[-1])].append((rel[:-1], Path(f.path).parent.parts, f.path))

    def _key(self, name: str) -> str:
        return os.path.splitext(name)[0] if self.by_stem else name

    def find(self, ref: str) -> str | None:
        """The absolute path of the image ``ref`` names; ``None`` when none; a :class:`BoxesError` when several."""
        if not self.by_stem:
            for candidate in (Path(ref), self.root / ref, self.base / ref):
                hit = self.absolute.get(os.path.abspath(candidate))
                if hit is not None:
                    return hit
        parts = _parts(ref)
        if not parts:
            return None
        folders = tuple(p for p in parts[:-1] if p not in ("", ".", "/"))
        candidates = self.tails.get(self._key(parts[-1]), [])
        found = [path for _, dirs, path in candidates if not folders or dirs[-len(folders):] == folders]
        if len(found) > 1:  # the same tail in several folders: the one at exactly that place below the root
            exact = [path for rel, _, path in candidates if rel == folders]
            if len(exact) == 1:
                return exact[0]
            raise BoxesError(
                f"{ref!r} in {self.base} names {len(found)} images ({choices_hint(found, 3)}); "
                "give paths relative to --images"
            )
        return found[0] if found else None


def _class_index(class_names: Sequence[str]) -> dict[str, int]:
    index: dict[str, int] = {}
    for i, name in enumerate(class_names):
        index.setdefault(class_key(name), i)
    return index


def _label(name: str | None, index: dict[str, int], count: int, unknown: set[str]) -> int:
    if name is None:
        return -1
    if name.isdigit() and int(name) < count:
        return int(name)
    found = index.get(class_key(name))
    if found is None:
        unknown.add(name)
        return -1
    return found


def _digest(truth: dict[str, Truth]) -> str:
    h = hashlib.sha256()
    for path in sorted(truth):
        t = truth[path]
        h.update(repr((path, t.boxes, t.labels, t.labelled, t.mask, t.size)).encode())
    return h.hexdigest()


def load_truth(source: str | os.PathLike[str], found: Found, class_names: Sequence[str]) -> GroundTruth:
    """Read ``source`` and match it to the run's files (``found``) and the model's classes.

    Raises:
        BoxesError: An unreadable source, a name that matches several images, or a source none of whose
            entries matches an image of the run.
    """
    ann = read_boxes(source)
    matcher = _Matcher(found, ann.base, by_stem=ann.format == "masks")
    index = _class_index(class_names)
    grouped: dict[str, list[Entry]] = defaultdict(list)
    unmatched = 0
    found_for: dict[str, str | None] = {}  # COCO names a file once per box
    for entry in ann.entries:
        if entry.ref not in found_for:
            found_for[entry.ref] = matcher.find(entry.ref)
        path = found_for[entry.ref]
        if path is None:
            unmatched += 1
        else:
            grouped[path].append(entry)
    if not grouped:
        examples = choices_hint([repr(e.ref) for e in ann.entries[:3]], 3)
        raise BoxesError(
            f"--boxes {source}: none of its {len(ann.entries)} entries names an image under {found.root} "
            f"(it names e.g. {examples}); give paths relative to --images, or file names"
        )
    unknown: set[str] = set()
    truth = {}
    for path, entries in grouped.items():
        boxed = [e for e in entries if e.box is not None]
        masks = [e.mask for e in entries if e.mask is not None]
        truth[path] = Truth(
            boxes=tuple(e.box for e in boxed),  # type: ignore[misc]
            labels=tuple(_label(e.label, index, len(class_names), unknown) for e in boxed),
            labelled=ann.labelled,
            mask=masks[0] if masks else None,
            size=next((e.size for e in entries if e.size is not None), None),
        )
    return GroundTruth(ann, truth, unmatched, sorted(unknown), _digest(truth))
