"""The pieces every report is made of: escaped text, embedded pictures, tables, colour scales, the page itself.

A report is one HTML file that must open offline in any browser, years from now, on a stakeholder's laptop:
so no script, no font, stylesheet or picture fetched from anywhere (pictures are ``data:`` URIs, the CSS is
inline, the fonts the system's), and every piece of text that came from outside (file, class and model names)
goes through :func:`esc`. Printing is part of the design: each section starts a page, and a figure or a
table row is never cut in two.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime

import numpy as np
from PIL import Image

from ..render import View, heat_scale, image_uri

__all__ = [
    "cards",
    "colour_scale",
    "document",
    "esc",
    "figure",
    "pct",
    "picture",
    "prose",
    "section",
    "table",
]

_CSS = """
:root { color-scheme: light; --ink: #1d232b; --muted: #5b6570; --line: #d9dee4; --warn: #b4530a; --accent: #2458a6; }
* { box-sizing: border-box; }
body { margin: 0 auto; max-width: 1100px; padding: 24px 28px 48px; color: var(--ink); background: #fff;
  font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
h1 { font-size: 1.6rem; margin: 0 0 4px; overflow-wrap: anywhere; }
h2 { font-size: 1.25rem; margin: 0 0 10px; padding-bottom: 4px; border-bottom: 2px solid var(--line); }
h3 { font-size: 1.02rem; margin: 14px 0 6px; overflow-wrap: anywhere; }
p { margin: 6px 0; }
.sub { color: var(--muted); margin: 0 0 14px; overflow-wrap: anywhere; }
section { margin: 26px 0 0; }
code { font: 0.9em ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; background: #f1f3f5; padding: 0 3px;
  border-radius: 3px; overflow-wrap: anywhere; }
table { border-collapse: collapse; margin: 6px 0 10px; font-size: 0.9rem; }
th, td { padding: 4px 9px; border-bottom: 1px solid var(--line); text-align: left; vertical-align: top;
  overflow-wrap: anywhere; }
th { background: #f4f6f8; font-weight: 600; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tr.hi td { background: #fff6db; }
.cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(150px, 1fr)); gap: 10px; margin: 8px 0 14px; }
.card { border: 1px solid var(--line); border-radius: 6px; padding: 8px 12px; }
.card b { display: block; font-size: 1.45rem; font-variant-numeric: tabular-nums; }
.card span { color: var(--muted); font-size: 0.85rem; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(var(--fig, 260px), 1fr)); gap: 14px; }
figure { margin: 0; break-inside: avoid; page-break-inside: avoid; }
figure img { display: block; width: 100%; height: auto; border-radius: 4px; background: #eee; }
figcaption { font-size: 0.85rem; margin-top: 4px; overflow-wrap: anywhere; }
figcaption .muted, .muted { color: var(--muted); }
.pair { display: flex; gap: 6px; }
.pair > div { flex: 1; min-width: 0; }
.scale { display: flex; align-items: center; gap: 6px; font-size: 0.75rem; color: var(--muted); margin-top: 3px; }
.scale i { flex: 1; height: 9px; border-radius: 2px; border: 1px solid var(--line); }
.finding { border-left: 4px solid var(--accent); padding: 4px 10px; margin: 6px 0; background: #f6f8fb;
  break-inside: avoid; page-break-inside: avoid; }
.finding.warning { border-color: var(--warn); background: #fdf5ec; }
.finding .fix { color: var(--muted); }
.lead { display: grid; grid-template-columns: minmax(0, 1.1fr) minmax(0, 1fr); gap: 18px; align-items: start; }
footer { margin-top: 30px; color: var(--muted); font-size: 0.8rem; }
* { -webkit-print-color-adjust: exact; print-color-adjust: exact; }
@media (max-width: 700px) { .lead { grid-template-columns: 1fr; } }
@media print {
  @page { size: A4; margin: 14mm; }
  body { max-width: none; padding: 0; font-size: 11pt; }
  section { break-before: page; page-break-before: always; margin: 0; }
  section.first { break-before: auto; page-break-before: auto; }
  h2, h3 { break-after: avoid; page-break-after: avoid; }
  tr, .card { break-inside: avoid; page-break-inside: avoid; }
  thead { display: table-header-group; }
  .grid { grid-template-columns: repeat(3, minmax(0, 1fr)); }
  .grid.wide { grid-template-columns: repeat(2, minmax(0, 1fr)); }
  figure img { max-height: 95mm; width: auto; margin: 0 auto; }
}
"""


def esc(value: object) -> str:
    """Any value as HTML text: ``<``, ``>``, ``&`` and both quotes escaped (names come from outside)."""
    return html.escape(str(value), quote=True)


_CODE = re.compile(r"`([^`]+)`")


def prose(text: str) -> str:
    """The engine's plain-words text (findings, fixes) as HTML: escaped, with its `backticked` names as code."""
    return _CODE.sub(r"<code>\1</code>", esc(text))


def picture(rgb: np.ndarray | Image.Image, *, side: int, alt: str, quality: int = 82) -> str:
    """An ``<img>`` holding ``rgb`` as a JPEG ``data:`` URI, shrunk so its longer side is at most ``side``
    pixels (what keeps a report of many pictures to a few megabytes), with its size given so the layout
    does not move while it decodes."""
    im = rgb if isinstance(rgb, Image.Image) else Image.fromarray(np.asarray(rgb, dtype=np.uint8))
    im = im.convert("RGB")
    scale = side / max(im.size)
    if scale < 1:
        im = im.resize((max(1, round(im.width * scale)), max(1, round(im.height * scale))), Image.Resampling.LANCZOS)
    uri = image_uri(im, "JPEG", quality=quality, optimize=True)
    return f'<img src="{uri}" width="{im.width}" height="{im.height}" alt="{esc(alt)}">'


def colour_scale(top: float, view: View, cmap: str | None = None) -> str:
    """The map's colour scale as a CSS gradient between its end values (0 … top, or −top … top signed), drawn
    from :func:`cam_core.render.heat_scale`, the rule every overlay follows; a blank map (``top`` 0) says so
    instead."""
    if not top > 0:
        return '<div class="scale"><b>blank: no positive evidence</b></div>' if view == "relu" else \
            '<div class="scale"><b>zero everywhere</b></div>'
    stops = ", ".join(f"rgb({r},{g},{b}) {t:.0%}" for t, (r, g, b), _ in heat_scale(cmap or _default(view), view, 9))
    low = "0" if view == "relu" else f"{-top:.3g}"
    return f'<div class="scale"><span>{low}</span><i style="background: linear-gradient(90deg, {stops})"></i>' \
           f"<span>{top:.3g}</span></div>"


def _default(view: View) -> str:
    return "bwr" if view == "signed" else "jet"


def figure(img: str, caption: str) -> str:
    """A picture with its caption (``caption``: HTML, already escaped), kept together on a printed page."""
    return f"<figure>{img}<figcaption>{caption}</figcaption></figure>"


def table(
    header: Sequence[str] | None,
    rows: Iterable[Sequence[object]],
    *,
    numeric: Sequence[int] = (),
    marked: Sequence[int] = (),
) -> str:
    """A table of plain values (each escaped); columns in ``numeric`` right-aligned, rows in ``marked``
    highlighted; ``header`` ``None``: none (a table of labelled values)."""
    num, hi = set(numeric), set(marked)

    def cell(tag: str, j: int, value: object) -> str:
        return f'<{tag} class="num">{esc(value)}</{tag}>' if j in num else f"<{tag}>{esc(value)}</{tag}>"

    head = "<thead><tr>" + "".join(cell("th", j, h) for j, h in enumerate(header)) + "</tr></thead>" if header else ""
    body = "".join(
        f'<tr{" class=hi" if i in hi else ""}>' + "".join(cell("td", j, v) for j, v in enumerate(row)) + "</tr>"
        for i, row in enumerate(rows)
    )
    return f"<table>{head}<tbody>{body}</tbody></table>"


def pct(part: int, whole: int) -> str:
    """``part`` of ``whole`` as a percentage with one decimal ("–" of nothing)."""
    return f"{part / whole:.1%}" if whole else "–"


def cards(items: Sequence[tuple[str, str]]) -> str:
    """Headline numbers as cards: (value, what it counts), both plain text."""
    return '<div class="cards">' + "".join(f'<div class="card"><b>{esc(v)}</b><span>{esc(t)}</span></div>'
                                           for v, t in items) + "</div>"


def section(title: str, body: str, *, first: bool = False) -> str:
    """A section (``title``: plain text; ``body``: HTML): printed from the top of a new page but for the first."""
    return f'<section{" class=first" if first else ""}><h2>{esc(title)}</h2>{body}</section>'


def document(title: str, subtitle: str, sections: Sequence[str], versions: dict[str, str]) -> str:
    """The whole file: ``title`` and ``subtitle`` (plain text), the sections (HTML), and a footer naming the
    versions that produced it and when."""
    made = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    used = ", ".join(f"{esc(k)} {esc(v)}" for k, v in versions.items())
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        # Nothing may be fetched: the policy makes a browser refuse any request the file might still make.
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; img-src data:; "
        "style-src 'unsafe-inline'\">"
        f"<title>{esc(title)}</title><style>{_CSS}</style></head><body>"
        f"<h1>{esc(title)}</h1><p class=\"sub\">{esc(subtitle)}</p>"
        + "".join(sections)
        + f"<footer>Made {made} by cam_core ({used}). One self-contained file: no script, nothing fetched.</footer>"
        "</body></html>\n"
    )
