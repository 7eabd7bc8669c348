"""An overlay figure drawn as plain HTML: what a fresh browser shows while Plotly's script starts.

Why: a browser tab that opens the page for the first time runs Plotly's large script and draws the first figure
before any overlay appears. The still shows the same photos, maps, titles, row labels and colorbars at the same
places at once, drawn from the figure itself (its domains, margins, colour scales and opacity), and gives way to
the live figure, through a style, the moment that one has drawn its maps. Only the figures of a browser session's
first run get one; a later run that draws one of them again sends the same still (a reference: Streamlit's
message cache).
"""

from __future__ import annotations

import html

import numpy as np
import plotly.graph_objects as go
from PIL import Image

from cam_core.render import image_uri, scale_rgba

__all__ = ["STILL_CSS", "heat_image", "still_html"]

_XPAD = 10  # Plotly's default padding of a colorbar along its length (px)

# The still sits in the chart's place; the chart, until its maps are drawn, lies over it out of sight (same width,
# so Plotly lays it out as it will be seen). ``:has`` swaps them in one style change: nothing moves.
STILL_CSS = """
<style>
[class*="st-key-still_"] { position: relative; gap: 0 !important; }
[class*="st-key-still_"]:has(.js-plotly-plot g.hm image) .camdash-still { display: none; }
[class*="st-key-still_"]:not(:has(.js-plotly-plot g.hm image)) [class*="st-key-overlay_"] {
  position: absolute !important; inset: 0 0 auto 0; opacity: 0; pointer-events: none; }
/* Plotly's text: Streamlit's theme colours it a faded text colour (60% of it, whatever the theme). */
.camdash-still { position: relative; width: 100%; overflow: hidden; }
.camdash-still > span { color: inherit; opacity: 0.6; white-space: nowrap; }
.camdash-still > * { position: absolute; }
.camdash-still img { object-fit: contain; object-position: center bottom; }
.camdash-still .p { background: var(--photo) center bottom / contain no-repeat; }
.camdash-still .t { transform: translate(-50%, -100%); text-align: center; line-height: 1.25; font-size: 16px; }
.camdash-still .r { transform: translate(-50%, -50%) rotate(-90deg); line-height: 16px; font-size: 13px;
}
.camdash-still .k { transform: translateX(-50%); font-size: 10px; }
</style>
"""


def _rgba(colour: str) -> tuple[float, float, float, float]:
    """``rgba(r,g,b,a)`` → its four numbers (the overlay colour scales are written that way)."""
    r, g, b, a = (float(v) for v in colour[colour.index("(") + 1 : -1].split(","))
    return r, g, b, a


def heat_image(z: np.ndarray, zmin: float, zmax: float, colorscale: list) -> np.ndarray:
    """The heatmap's samples through its colour scale, as Plotly colours them: (h, w, 4) uint8 RGBA."""
    stops = [float(s) for s, _ in colorscale]
    colours = np.array([_rgba(c) for _, c in colorscale])  # (n, 4): r, g, b in 0…255, a in 0…1
    return scale_rgba((np.asarray(z, dtype=np.float64) - zmin) / ((zmax - zmin) or 1.0), stops, colours)


def _gradient(colorscale: list) -> str:
    return "linear-gradient(to right, " + ", ".join(f"{c} {100 * float(s):.1f}%" for s, c in colorscale) + ")"


def _colorbar(trace: go.Heatmap, left: int, plot_w: str, top: float) -> list[str]:
    """A horizontal colorbar under its subplot: the fill (its gradient) and its ticks along it.

    Its length (a fraction of the plot's width) holds the fill and a pad at either end; ``top`` is the
    subplot's bottom edge in px.
    """
    bar, scale = trace.colorbar, [list(s) for s in trace.colorscale]
    length, pad = float(bar.len), float(_XPAD if bar.xpad is None else bar.xpad)
    start = float(bar.x) - length / 2
    fill = f"({length:.5f} * {plot_w} - {2 * pad}px)"
    top += float(bar.ypad or 0)

    def along(frac: float) -> str:  # a fraction of the fill, from the figure's left edge
        return f"calc({left + pad}px + {start:.5f} * {plot_w} + {frac:.5f} * {fill})"

    parts = [f'<div style="left:{along(0)};width:calc{fill};top:{top:.1f}px;height:{bar.thickness}px;'
             f'background:{_gradient(scale)}"></div>']
    span = (trace.zmax - trace.zmin) or 1.0
    for value, text in zip(bar.tickvals, bar.ticktext, strict=True):
        parts.append(f'<span class="k" style="left:{along((float(value) - trace.zmin) / span)};'
                     f'top:{top + bar.thickness + 2:.1f}px">{html.escape(text)}</span>')
    return parts


def still_html(fig: go.Figure) -> str:
    """The overlay figure ``fig`` (from :func:`dashboard.figures.overlay_figure`) as positioned HTML.

    Positions follow Plotly's: a subplot's box is its domain of the plot area (the figure less its margins),
    the image inside it kept at its aspect, centred across and at the bottom (``constraintoward``), each
    heatmap's samples drawn as one small image the browser scales up over the same box, the photo under
    it as the box's background (one copy for every panel, not one per map).
    """
    layout = fig.layout
    m = layout.margin
    height, left, right, top, bottom = int(layout.height), int(m.l), int(m.r), int(m.t), int(m.b)
    plot_h = height - top - bottom
    plot_w = f"(100% - {left + right}px)"

    def x(frac: float) -> str:  # a fraction of the plot area's width, from the figure's left edge
        return f"calc({left}px + {frac:.5f} * {plot_w})"

    def y(frac: float) -> float:  # a paper fraction (0 bottom … 1 top), in px from the figure's top
        return top + (1.0 - frac) * plot_h

    parts: list[str] = []
    photo = ""
    for trace in fig.data:
        suffix = (trace.xaxis or "x")[1:]
        xdom = layout[f"xaxis{suffix}"].domain
        ydom = layout[f"yaxis{suffix}"].domain
        box = (f"left:{x(xdom[0])};width:calc({xdom[1] - xdom[0]:.5f} * {plot_w});"
               f"top:{y(ydom[1]):.1f}px;height:{(ydom[1] - ydom[0]) * plot_h:.1f}px")
        if trace.type == "image":  # the same photo under every map: sent once, as the still's style
            photo = trace.source
            parts.append(f'<div class="p" style="{box}"></div>')
            continue
        heat = heat_image(np.asarray(trace.z), trace.zmin, trace.zmax, [list(s) for s in trace.colorscale])
        src = image_uri(Image.fromarray(heat, "RGBA"), "PNG")
        parts.append(f'<img alt="" style="{box};opacity:{trace.opacity}" src="{src}">')
        parts += _colorbar(trace, left, plot_w, y(ydom[0]))
    for note in layout.annotations:
        if note.textangle == -90:  # a row's label, right of the left margin's edge
            parts.append(f'<span class="r" style="left:{left + (note.xshift or 0) - 8}px;top:{y(note.y):.1f}px">'
                         f"{note.text}</span>")
        else:  # a column's title, its bottom on the subplot's top
            parts.append(f'<span class="t" style="left:{x(note.x)};top:{y(note.y):.1f}px">{note.text}</span>')
    return f'<div class="camdash-still" style="height:{height}px;--photo:url({photo})">{"".join(parts)}</div>'
