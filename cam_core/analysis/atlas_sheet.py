"""The atlas as one PNG sheet: a row per class, a tile per cluster (its mean map, size and flags).

Drawn from ``atlas.json``'s entry for one method (what :func:`.atlas.write_atlas` writes), so the
command line and the Dataset page draw the same sheet. Flagged clusters come first in their row,
framed in red with the flag's short name under the tile; flagged classes come first on the sheet.
``examples`` (optional) turns a cluster's example paths into small RGB pictures of those images with their own
maps (:mod:`.row_pictures`; the command line reads them through the query engine, the page from its cache),
drawn beside the mean map.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ..batch.query import ResultsQuery
from ..render import colorize, view_map
from .atlas import ATLAS_JSON, Atlas
from .row_pictures import picture, rows_with_maps

__all__ = ["MAX_SHEET_CLASSES", "SHEET", "example_paths", "mean_tile", "sheet_image", "sheet_png", "write_sheet"]

SHEET = "atlas.png"
MAX_SHEET_CLASSES = 60  # rows drawn; the rest are counted in the footer
TILE = 112
EXAMPLE = 72
_SHOWN_EXAMPLES = 3
_GAP, _LABEL_W, _TEXT_H = 10, 190, 30
_FLAG_COLOUR = (215, 38, 30)
Examples = Callable[[str], np.ndarray | None]


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def mean_tile(mean: Sequence[Sequence[float]] | np.ndarray, side: int = TILE) -> Image.Image:
    """A cluster's mean map (a mass distribution on the grid) as a coloured square: jet, scaled to its largest cell."""
    unit = view_map(np.asarray(mean, dtype=np.float32), "relu")
    return Image.fromarray(colorize(unit, "jet")).resize((side, side), Image.Resampling.BILINEAR)


def _cluster_width(cluster: dict[str, Any], examples: Examples | None) -> int:
    shown = min(len(cluster.get("examples", [])), _SHOWN_EXAMPLES) if examples else 0
    return TILE + shown * (EXAMPLE + 4)


def _ordered(classes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    def flagged(c: dict[str, Any]) -> bool:
        return any(k["flags"] for k in c["clusters"])

    return sorted(classes, key=lambda c: (not flagged(c), -c["images"], c["name"].lower()))


def sheet_image(entry: dict[str, Any], title: str, examples: Examples | None = None) -> Image.Image:
    """The sheet of one method's atlas (``atlas.json["methods"][method]``)."""
    classes = _ordered(list(entry.get("classes", [])))
    shown, hidden = classes[:MAX_SHEET_CLASSES], len(classes) - MAX_SHEET_CLASSES
    row_h = TILE + _TEXT_H + _GAP
    widths = [sum(_cluster_width(k, examples) + _GAP for k in c["clusters"]) for c in shown]
    width = max([_LABEL_W + w for w in widths] + [640])
    height = 46 + row_h * max(1, len(shown)) + (24 if hidden > 0 else 0)
    sheet = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    draw.text((_GAP, 10), title, font=_font(18), fill=(20, 20, 20))
    small, tiny = _font(13), _font(11)
    y = 46
    for c in shown:
        draw.text((_GAP, y + 4), c["name"][:26], font=_font(15), fill=(20, 20, 20))
        draw.text((_GAP, y + 26), f"{c['images']} images · {len(c['clusters'])} cluster(s)", font=tiny,
                  fill=(90, 90, 90))
        if c["blank"]:
            draw.text((_GAP, y + 42), f"{c['blank']} blank map(s)", font=tiny, fill=(90, 90, 90))
        x = _LABEL_W
        for k in sorted(c["clusters"], key=lambda k: (not k["flags"], k["id"])):
            _draw_cluster(sheet, draw, k, x, y, examples, small, tiny)
            x += _cluster_width(k, examples) + _GAP
        y += row_h
    if hidden > 0:
        draw.text((_GAP, y), f"{hidden} more class(es) not drawn (the sheet shows {MAX_SHEET_CLASSES})", font=small,
                  fill=(90, 90, 90))
    return sheet


def _draw_cluster(sheet: Image.Image, draw: ImageDraw.ImageDraw, k: dict[str, Any], x: int, y: int,
                  examples: Examples | None, small: Any, tiny: Any) -> None:
    sheet.paste(mean_tile(k["mean_map"]), (x, y))
    if k["flags"]:
        draw.rectangle((x - 3, y - 3, x + TILE + 2, y + TILE + 2), outline=_FLAG_COLOUR, width=3)
    draw.text((x, y + TILE + 3), f"#{k['id']} · {k['size']} images", font=small, fill=(20, 20, 20))
    if k["flags"]:
        codes = ", ".join(f["code"].replace("_", " ") for f in k["flags"])
        draw.text((x, y + TILE + 17), f"flagged: {codes}", font=tiny, fill=_FLAG_COLOUR)
    if examples is None:
        return
    ex_x = x + TILE + 4
    for path in k.get("examples", [])[:_SHOWN_EXAMPLES]:
        picture = examples(path)
        if picture is None:
            continue
        im = Image.fromarray(picture)
        im.thumbnail((EXAMPLE, EXAMPLE))
        sheet.paste(im, (ex_x, y + (TILE - im.height) // 2))
        ex_x += EXAMPLE + 4


def sheet_png(entry: dict[str, Any], title: str, examples: Examples | None = None) -> bytes:
    """:func:`sheet_image` as PNG bytes (a download)."""
    buffer = io.BytesIO()
    sheet_image(entry, title, examples).save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def example_paths(entry: dict[str, Any]) -> list[str]:
    """The example images the sheet draws: three a cluster, of the classes it shows."""
    return sorted({p for c in _ordered(list(entry.get("classes", [])))[:MAX_SHEET_CLASSES]
                   for k in c["clusters"] for p in k.get("examples", [])[:_SHOWN_EXAMPLES]})


def _example_pictures(out: str | os.PathLike[str], entry: dict[str, Any], method: str, whose: str,
                      ) -> dict[str, np.ndarray]:
    """The sheet's example images (the classes drawn, three a cluster) with their own maps, read through the query
    engine in one query and one pass over the maps; a file that is gone or unreadable is left out."""
    paths = example_paths(entry)
    if not paths:
        return {}
    q = ResultsQuery.open(out)
    try:
        return rows_with_maps(q, paths, method, whose, lambda p: picture(p, q.preprocess, q.fit))
    finally:
        q.close()


def write_sheet(out: str | os.PathLike[str], atlases: list[Atlas]) -> Path:
    """``OUT/atlas.png``: the sheets of ``atlases`` (one method each) one under the other, with example images."""
    doc = json.loads((Path(out) / ATLAS_JSON).read_text(encoding="utf-8"))
    images = []
    for a in atlases:
        entry = doc["methods"][a.method]
        pictures = _example_pictures(out, entry, a.method, a.whose)
        whose = "prediction" if a.whose == "pred" else "true class"
        images.append(sheet_image(entry, f"Atlas of attention · {a.method} · map of each image's {whose}",
                                  pictures.get))
    sheet = Image.new("RGB", (max(i.width for i in images), sum(i.height for i in images)), (255, 255, 255))
    y = 0
    for im in images:
        sheet.paste(im, (0, y))
        y += im.height
    path = Path(out) / SHEET
    sheet.save(path, format="PNG", optimize=True)
    return path
