"""Reading ground-truth objects: COCO JSON, Pascal VOC XML, a CSV of boxes, or a folder of mask PNGs.

What comes out is format-free: :class:`Entry` rows (which file, which box in the original image's
pixels, which class name), matched to image files later (:mod:`cam_core.batch.truth`). Coordinates
are continuous pixels, ``x1``/``y1`` exclusive, as COCO's: a box ``(10, 0, 20, 5)`` covers the
pixels whose centres lie in it, columns 10..19. VOC's corners are 1-based and inclusive
(``xmin=1, xmax=10`` is the first ten columns), so they become ``(xmin - 1, ymin - 1, xmax, ymax)``.

Defensive like the image decoders (the files come from users): sizes are checked before a file is
read, XML with a DTD (entity expansion) is refused, and every problem is one :class:`BoxesError`
line naming the file (and the line or key).
"""

from __future__ import annotations

import csv
import json
import math
import os
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ..errors import CamError
from ..limits import MAX_BOXES, MAX_BOXES_FILE_BYTES, MAX_CONFIG_BYTES, mb

__all__ = ["BOX_FORMATS", "Annotations", "BoxesError", "Entry", "Truth", "class_key", "read_boxes"]

BOX_FORMATS = ("coco", "voc", "csv", "masks")
Box = tuple[float, float, float, float]


class BoxesError(CamError):
    """A boxes file or folder that cannot be read, worded for the user."""


def class_key(name: str) -> str:
    """A class name as matched against the model's: any case, ``_`` for a space, spaces collapsed."""
    return " ".join(name.replace("_", " ").lower().split())


@dataclass(frozen=True)
class Entry:
    """One annotation as the source gives it: a file reference and a box (or a mask file, or nothing).

    Attributes:
        ref: The image as the source names it (a path, relative or absolute, or a file name).
        box: (x0, y0, x1, y1) in the original image's pixels; ``None`` for an image listed without objects.
        label: The class as written (a name or an index); ``None`` where the source has no classes.
        mask: A mask PNG's path (masks only).
        size: (width, height) the source says the image has (COCO, VOC), to catch boxes of another image size.
    """

    ref: str
    box: Box | None = None
    label: str | None = None
    mask: str | None = None
    size: tuple[int, int] | None = None


@dataclass(frozen=True)
class Annotations:
    """What one source holds: its ``format``, its entries, and whether it names classes (``labelled``)."""

    source: str
    format: str
    entries: list[Entry]
    labelled: bool
    base: Path  # the folder relative references may be relative to (the file's folder, or the folder itself)


@dataclass(frozen=True)
class Truth:
    """One image's ground truth, matched: boxes in its original pixels, class ids (−1: unknown), or a mask.

    ``labelled`` says whether the source names classes at all: if it does, a class is scored on its own boxes
    only (a box whose name matched no class of the model counts for none); if not, every box counts for every
    explained class.
    """

    boxes: tuple[Box, ...] = ()
    labels: tuple[int, ...] = ()
    labelled: bool = False
    mask: str | None = None
    size: tuple[int, int] | None = None


def _number(text: object, where: str, what: str) -> float:
    try:
        value = float(text)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise BoxesError(f"{where}: {what} {text!r} is not a number") from None
    if not math.isfinite(value):
        raise BoxesError(f"{where}: {what} {text!r} is not a finite number")
    return value


def _box(x0: float, y0: float, x1: float, y1: float, where: str) -> Box:
    if not (x1 > x0 and y1 > y0):
        raise BoxesError(f"{where}: the box ({x0:g}, {y0:g}, {x1:g}, {y1:g}) is empty (x1 ≤ x0 or y1 ≤ y0)")
    return (x0, y0, x1, y1)


def _check_size(path: Path, limit: int) -> None:
    size = path.stat().st_size
    if size > limit:
        raise BoxesError(f"{path} is {mb(size)}, more than the {mb(limit)} a boxes file may be")


def _count(entries: list[Entry], source: object) -> None:
    if len(entries) > MAX_BOXES:
        raise BoxesError(f"{source} holds more than {MAX_BOXES:,} boxes; split it")


def _read_coco(path: Path) -> Annotations:
    _check_size(path, MAX_BOXES_FILE_BYTES)
    try:
        data = json.loads(path.read_bytes())
    except (ValueError, UnicodeDecodeError) as exc:
        raise BoxesError(f"{path} is not JSON: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise BoxesError(f"{path} is not COCO JSON: it needs 'images' (and 'annotations', 'categories')")
    try:
        names = {c["id"]: str(c["name"]) for c in data.get("categories") or []}
        images = {im["id"]: im for im in data["images"]}
        entries: list[Entry] = []
        seen: set[object] = set()
        for k, ann in enumerate(data.get("annotations") or []):
            where = f"{path}: annotations[{k}]"
            im = images.get(ann["image_id"])
            if im is None:
                raise BoxesError(f"{where}: image_id {ann['image_id']!r} is not in 'images'")
            x, y, w, h = (_number(v, where, "bbox value") for v in ann["bbox"])
            cat = ann.get("category_id")
            entries.append(Entry(str(im["file_name"]), _box(x, y, x + w, y + h, where),
                                 names.get(cat, None if cat is None else str(cat)), size=_coco_size(im)))
            seen.add(ann["image_id"])
            _count(entries, path)
        entries += [Entry(str(im["file_name"]), size=_coco_size(im)) for i, im in images.items() if i not in seen]
    except (KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, BoxesError):
            raise
        raise BoxesError(f"{path} is not COCO JSON as expected ({type(exc).__name__}: {exc})") from None
    return Annotations(str(path), "coco", entries, labelled=bool(names), base=path.parent)


def _coco_size(im: dict) -> tuple[int, int] | None:
    w, h = im.get("width"), im.get("height")
    return (int(w), int(h)) if isinstance(w, int | float) and isinstance(h, int | float) else None


def _voc_file(path: Path) -> list[Entry]:
    _check_size(path, MAX_CONFIG_BYTES)
    raw = path.read_bytes()
    if b"<!DOCTYPE" in raw or b"<!ENTITY" in raw:
        raise BoxesError(f"{path}: XML with a DTD or entities is refused (Pascal VOC files have none)")
    try:
        root = ET.fromstring(raw)
    except ET.ParseError as exc:
        raise BoxesError(f"{path} is not XML: {exc}") from None
    if root.tag != "annotation":
        raise BoxesError(f"{path} is not a Pascal VOC annotation (its root is <{root.tag}>, not <annotation>)")
    ref = (root.findtext("filename") or "").strip() or path.stem
    size = None
    if root.find("size") is not None:
        w, h = root.findtext("size/width"), root.findtext("size/height")
        if w and h:
            size = (round(_number(w, str(path), "width")), round(_number(h, str(path), "height")))
    entries = []
    for k, obj in enumerate(root.iter("object")):
        where = f"{path}: object {k + 1}"
        bb = obj.find("bndbox")
        if bb is None:
            raise BoxesError(f"{where} has no <bndbox>")
        x0, y0, x1, y1 = (_number(bb.findtext(t), where, t) for t in ("xmin", "ymin", "xmax", "ymax"))
        entries.append(Entry(ref, _box(x0 - 1, y0 - 1, x1, y1, where), (obj.findtext("name") or "").strip(),
                             size=size))
    return entries or [Entry(ref, size=size)]  # an image annotated without objects


def _files(folder: Path, suffix: str) -> Iterator[Path]:
    for here, dirs, names in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        yield from (Path(here) / n for n in sorted(names) if n.lower().endswith(suffix) and not n.startswith("."))


def _read_voc(path: Path) -> Annotations:
    xmls = [path] if path.is_file() else list(_files(path, ".xml"))
    entries: list[Entry] = []
    for xml in xmls:
        entries += _voc_file(xml)
        _count(entries, path)
    return Annotations(str(path), "voc", entries, labelled=True, base=path if path.is_dir() else path.parent)


def _read_csv(path: Path) -> Annotations:
    _check_size(path, MAX_BOXES_FILE_BYTES)
    entries: list[Entry] = []
    labelled = False
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            for n, row in enumerate(csv.reader(handle), start=1):
                cells = [c.strip() for c in row]
                if not any(cells) or cells[0].startswith("#"):
                    continue
                where = f"{path} line {n}"
                if n == 1 and cells[:2] == ["path", "x0"]:
                    continue  # the header
                if len(cells) not in (5, 6):
                    raise BoxesError(f"{where}: {len(cells)} fields; expected path,x0,y0,x1,y1[,label]")
                label = cells[5] if len(cells) == 6 and cells[5] else None
                labelled = labelled or len(cells) == 6
                if not any(cells[1:5]):
                    entries.append(Entry(cells[0]))  # an image without objects
                    continue
                x0, y0, x1, y1 = (_number(v, where, name) for v, name in zip(cells[1:5], ("x0", "y0", "x1", "y1"),
                                                                             strict=True))
                entries.append(Entry(cells[0], _box(x0, y0, x1, y1, where), label))
                _count(entries, path)
    except UnicodeDecodeError as exc:
        raise BoxesError(f"{path} is not UTF-8 text: {exc}") from None
    except csv.Error as exc:
        raise BoxesError(f"{path} is not a CSV file: {exc}") from None
    if not entries:
        raise BoxesError(f"{path} holds no boxes (expected lines path,x0,y0,x1,y1[,label])")
    return Annotations(str(path), "csv", entries, labelled=labelled, base=path.parent)


def _read_masks(folder: Path) -> Annotations:
    entries = [Entry(str(p.relative_to(folder)), mask=str(p)) for p in _files(folder, ".png")]
    _count(entries, folder)
    return Annotations(str(folder), "masks", entries, labelled=False, base=folder)


def read_boxes(source: str | os.PathLike[str]) -> Annotations:
    """Read a boxes file or folder, its format told by what it is.

    ``*.json``: COCO (``images``, ``annotations`` with ``bbox`` = [x, y, w, h], ``categories``);
    ``*.csv``: ``path,x0,y0,x1,y1[,label]`` (an optional header line; empty coordinates: an image without
    objects); ``*.xml`` or a folder holding ``*.xml``: Pascal VOC; a folder of ``*.png``: masks named like the
    images (any non-black pixel is the object).

    Raises:
        BoxesError: No such file, an unknown format, a malformed file (one line naming file and place).
    """
    path = Path(source)
    if path.is_dir():
        if next(_files(path, ".xml"), None) is not None:
            return _read_voc(path)
        if next(_files(path, ".png"), None) is not None:
            return _read_masks(path)
        raise BoxesError(f"--boxes {source}: the folder holds neither Pascal VOC *.xml files nor mask *.png files")
    if not path.is_file():
        raise BoxesError(f"--boxes {source}: no such file or folder")
    suffix = path.suffix.lower()
    readers = {".json": _read_coco, ".csv": _read_csv, ".xml": _read_voc}
    if suffix not in readers:
        raise BoxesError(
            f"--boxes {source}: unknown format; give COCO *.json, a *.csv (path,x0,y0,x1,y1[,label]), "
            "Pascal VOC *.xml (or their folder), or a folder of mask *.png"
        )
    return readers[suffix](path)
