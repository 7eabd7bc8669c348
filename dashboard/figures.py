"""Plotly figures from plain values: overlays (with an in-browser opacity slider) and scores.

Nothing here computes a map; it only draws arrays the engine produced. The
colour of a map pixel follows :mod:`cam_core.render` (same lookup tables, same
"colour weight grows with the value" rule as the PNG overlays), so what the page
shows and what the export writes agree.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import plotly.graph_objects as go
from PIL import Image
from plotly.subplots import make_subplots

from cam_core.render import heat_scale, image_uri
from dashboard.text import plotly_text

__all__ = [
    "MAX_COLUMNS",
    "MAX_SENT_SIDE",
    "MIN_IMAGE_PX",
    "OPACITY_STEPS",
    "PLOTLY_CONFIG",
    "Panel",
    "alpha_colorscale",
    "change_points",
    "columns_for",
    "format_prob",
    "overlay_figure",
    "panel_height",
    "scores_figure",
    "sent_grid",
    "snap_opacity",
    "timeline_figure",
]

# The in-figure slider's stops; the preferred opacity from Python is snapped to one of them.
OPACITY_STEPS: tuple[float, ...] = tuple(round(0.1 * i, 1) for i in range(11))
PLOTLY_CONFIG = {
    "displaylogo": False,
    "modeBarButtonsToRemove": ["lasso2d", "select2d", "autoScale2d"],
    "toImageButtonOptions": {"format": "png", "scale": 2},
}
# Shorter side, in samples, of a map sent to the browser: the samples are drawn as one small image that the
# browser scales up bilinearly (zsmooth "fast"), so a 224² map sent at 112² looks the same and costs a quarter of
# the bytes. ("best" interpolates the same way in Plotly's JavaScript at screen size: 2-3× slower to draw.)
MAX_SENT_SIDE = 112
# A map upsampled from a coarse layer (EfficientNet-Lite0's last block: 7 cells a side) is bilinear between cell
# centres 32 px apart: 8 samples a cell draw it the same (within 0.1% of its range on average, 6% at most on the
# kinks between cells), at a quarter of the bytes again.
SAMPLES_PER_CELL, MIN_SENT_SIDE = 8, 56
MAX_COLUMNS = 4  # panels per row of a figure; more classes wrap into another figure
SELECTED_COLOR = "#e4572e"
OTHER_COLOR = "#b8bcc6"
VIEW_LABELS = {"relu": "ReLU'd", "signed": "signed ±"}


@dataclass(frozen=True)
class Panel:
    """One map to draw over the image.

    Attributes:
        title: shown above the panel (class name, id, probability).
        cam: (H, W) float32 signed map at the background's resolution.
        name: short label for hover (class · method).
        top: a fixed colour scale (the ReLU'd view's 0…top, the signed view's ±top) instead of the map's own
            (a film's frames share one scale); ``None``: the map's own.
        cells: the shorter side of the layer's grid ``cam`` was upsampled from, when known (see
            :func:`sent_grid`).
        view: this panel's view whatever its row's (a signed difference beside ReLU'd maps); ``None``: the row's.
    """

    title: str
    cam: np.ndarray
    name: str
    top: float | None = None
    cells: int | None = None
    view: str | None = None


def format_prob(p: float) -> str:
    """A probability as people read it: 45.4%, 0.52%, 0.003%, and "< 0.001%" rather than "0%"."""
    p = float(p)
    if p >= 0.1:
        return f"{p:.1%}"
    if p >= 0.001:
        return f"{p:.2%}"
    if p >= 1e-5:
        return f"{p:.3%}"
    return "< 0.001%"


_MARGIN_L, _MARGIN_R = 34, 6  # the overlay figures' left (the rows' labels) and right margins (px)
_SPACING_X = 0.02  # between their columns, a fraction of the plot's width


MIN_IMAGE_PX = 110  # the least height a photo is shown at in an overlay figure (a 3:1 photo was 67 px tall)


def _image_px(size: tuple[int, int], columns: int, width: int) -> float:
    """The height one of ``columns`` panels shows an image of ``size`` (H, W) at, in a figure ``width`` px wide."""
    h, w = size
    cols = max(1, columns)
    cell = (width - _MARGIN_L - _MARGIN_R) * (1 - _SPACING_X * (cols - 1)) / cols
    return cell * h / max(1, w)


def columns_for(size: tuple[int, int], n: int, width: int = 766) -> int:
    """Panels per row for ``n`` classes of an image of ``size`` (H, W): at most :data:`MAX_COLUMNS`, fewer for a
    wide photo, so that each is shown at least :data:`MIN_IMAGE_PX` tall (the other classes wrap onto more rows).

    ``width``: the figure's width on a 1600-px screen; a 1024-px screen gives the overlays a little less (the
    right rail goes under them there).
    """
    fits = [c for c in range(1, min(max(1, n), MAX_COLUMNS) + 1) if _image_px(size, c, width) >= MIN_IMAGE_PX]
    return max(fits, default=1)


def panel_height(size: tuple[int, int], columns: int, width: int = 766) -> int:
    """Row height at which ``columns`` panels of an image of ``size`` (H, W) fill their cells exactly in a
    figure ``width`` pixels wide (the overlays' column on a 1600-px screen, measured in Chromium): 100…300 px.

    Narrower figures (a 1024-px screen: 564 px) show the images less tall than their rows, so each image sits
    on its colorbar (``constraintoward="bottom"``); wider ones show them less wide, centred.
    """
    return int(min(300, max(100, _image_px(size, columns, width))))


def _ticks(lo: float, hi: float, view: str) -> tuple[list[float], list[str]]:
    """Colorbar ticks in the raw map's units: 0 … max (ReLU'd), −max … 0 … +max (signed)."""
    values = [lo, 0.0, hi] if view == "signed" else [lo, hi]
    return values, [f"{v:.3g}" for v in values]


def snap_opacity(opacity: float) -> float:
    """The slider stop closest to ``opacity``."""
    return min(OPACITY_STEPS, key=lambda s: abs(s - opacity))


def alpha_colorscale(cmap: str, *, signed: bool, steps: int = 17) -> list[list[float | str]]:
    """A Plotly colour scale of the heat colour rule (:func:`cam_core.render.heat_color`), its alpha the cover.

    The trace opacity set by the slider multiplies this alpha, as ``alpha`` does in
    ``cam_core.render.overlay``, so the browser and the exported PNGs agree.
    """
    scale = heat_scale(cmap, "signed" if signed else "relu", steps)
    return [[t, f"rgba({r},{g},{b},{a:.3f})"] for t, (r, g, b), a in scale]


def data_uri(rgb: np.ndarray) -> str:
    """JPEG data URI of the background: compact, and sent once per panel."""
    return image_uri(Image.fromarray(np.asarray(rgb, dtype=np.uint8)), "JPEG", quality=90)


def colour_range(cam: np.ndarray, view: str, top: float | None = None) -> tuple[float, float]:
    """Colour range of a view: ReLU'd 0…max (an all-negative map stays blank), signed ±max|·|; ``top`` fixed."""
    if top is not None and top > 0:
        return (-top, top) if view == "signed" else (0.0, top)
    if view == "signed":
        top = float(np.abs(cam).max()) or 1.0
        return -top, top
    top = float(cam.max())
    return 0.0, top if top > 0 else 1.0


def sent_grid(cam: np.ndarray, cells: int | None = None) -> tuple[np.ndarray, int]:
    """The samples of ``cam`` sent to the browser and their spacing in pixels.

    Every ``step``-th pixel, starting at ``step // 2`` so each sample sits at the centre of
    the block it stands for; the maps are already smooth (upsampled from a coarse layer), so
    nothing is lost that the browser's interpolation does not restore. ``cells``: the shorter
    side of the layer's grid the map was upsampled from, when known (fewer samples for coarse ones).
    """
    side = MAX_SENT_SIDE if cells is None else min(MAX_SENT_SIDE, max(MIN_SENT_SIDE, SAMPLES_PER_CELL * cells))
    step = max(1, math.ceil(min(cam.shape) / side))
    return cam[step // 2 :: step, step // 2 :: step], step


def overlay_figure(
    background: np.ndarray,
    panels: Sequence[Panel],
    *,
    views: Sequence[str] = ("relu", "signed"),
    cmap: str = "jet",
    signed_cmap: str = "bwr",
    opacity: float = 0.5,
    panel_height: int = 300,
) -> go.Figure:
    """Maps over the image: one column per panel (class), one row per view.

    Each map is scaled to itself (ReLU'd: 0…max; signed: −max|·|…+max|·|), or to its panel's ``top``, and hover
    shows its raw value. A slider under the figure restyles every heatmap's opacity in
    the browser, starting from ``opacity``; no rerun is involved.

    Args:
        background: (H, W, 3) uint8, the image as the model saw it.
        panels: the maps, each (H, W) float32.
        views: ``relu`` and/or ``signed``.
        cmap: sequential colormap for the ReLU'd view; ``signed_cmap`` diverging one.
        opacity: starting opacity (snapped to the slider's stops).
        panel_height: pixel height of one row.

    Returns:
        The figure.
    """
    rows, cols = len(views), len(panels)
    extra_lines = max((p.title.count("<br>") for p in panels), default=0)  # titles over two lines need room
    top, bottom = 34 + 16 * extra_lines, 79 + _BAR_PX  # titles; the last row's colorbars and the slider
    plot = rows * panel_height + (rows - 1) * _BAR_PX  # each row exactly panel_height, colorbars between
    layout = _grid(rows, cols, min(0.3, _BAR_PX / plot) if rows > 1 else 0.0)
    for note, panel in zip(layout["annotations"], panels, strict=True):
        note["text"] = panel.title
    start = snap_opacity(opacity)
    uri = data_uri(background)
    height, width = background.shape[:2]
    data: list[dict] = []
    heat: list[int] = []
    for r, row_view in enumerate(views, start=1):
        for c, panel in enumerate(panels, start=1):
            view = panel.view or row_view
            scale = alpha_colorscale(signed_cmap if view == "signed" else cmap, signed=view == "signed")
            k = _axis((r - 1) * cols + c)
            _fit_axes(layout, k, height, width)
            x, y = f"x{k}", f"y{k}"
            data.append({"type": "image", "source": uri, "x0": 0, "y0": 0, "dx": 1, "dy": 1, "hoverinfo": "skip",
                         "xaxis": x, "yaxis": y})
            data.append(_heat_trace(panel, view, scale, start, layout[f"xaxis{k}"]["domain"],
                                    layout[f"yaxis{k}"]["domain"], x, y))
            heat.append(len(data) - 1)
    for r, view in enumerate(views, start=1):
        layout["annotations"].append(_row_label(view, layout[f"yaxis{_axis((r - 1) * cols + 1)}"]["domain"]))
    layout.update(
        height=plot + top + bottom,
        # The bottom margin holds the last row's colorbars and the slider: given whole, with no automatic
        # expansion, Plotly draws the figure once instead of again after measuring them.
        margin={"l": _MARGIN_L, "r": _MARGIN_R, "t": top, "b": bottom, "autoexpand": False},
        showlegend=False,
        sliders=[_opacity_slider(start, heat)],
    )
    # One validation of the finished dictionary, rather than building the figure call by call.
    return go.Figure({"data": data, "layout": layout})


_BAR_PX = 34  # under each row of an overlay figure: a thin colorbar per panel with its raw values


def _fit_axes(layout: dict, k: str, height: int, width: int) -> None:
    """Subplot ``k``'s axes show the image whole, at its aspect, on the subplot's bottom edge (its colorbar)."""
    layout[f"xaxis{k}"].update(visible=False, range=[-0.5, width - 0.5], constrain="domain")
    layout[f"yaxis{k}"].update(
        scaleanchor=f"x{k}", visible=False, range=[height - 0.5, -0.5], constrain="domain", constraintoward="bottom"
    )


def _heat_trace(
    panel: Panel, view: str, scale: list, opacity: float, xdom: list[float], ydom: list[float], x: str, y: str
) -> dict:
    """One panel's map in one view: its samples (see :func:`sent_grid`), colour range and colorbar under it."""
    cam = np.asarray(panel.cam, dtype=np.float32)
    zmin, zmax = colour_range(cam, view, panel.top)
    z, step = sent_grid(cam, panel.cells)
    tickvals, ticktext = _ticks(zmin, zmax, view)
    return {
        "type": "heatmap",
        "z": z,
        "x0": step // 2,
        "dx": step,
        "y0": step // 2,
        "dy": step,
        "zsmooth": "fast" if step > 1 else False,
        "zmin": zmin,
        "zmax": zmax,
        "colorscale": scale,
        "showscale": True,
        "colorbar": {
            "orientation": "h",
            "x": (xdom[0] + xdom[1]) / 2,
            "xanchor": "center",
            "y": ydom[0],
            "yanchor": "top",
            "ypad": 2,
            "len": 0.8 * (xdom[1] - xdom[0]),
            "lenmode": "fraction",
            "thickness": 7,
            "outlinewidth": 0,
            "tickvals": tickvals,
            "ticktext": ticktext,
            "tickfont": {"size": 10},
            "ticks": "",
        },
        "opacity": opacity,
        "name": plotly_text(panel.name),  # a class name is text: Plotly would draw its tags in the hover
        "meta": f"{plotly_text(panel.name)} · {VIEW_LABELS.get(view, view)}",
        "hovertemplate": "%{meta}<br>x %{x}, y %{y}<br>map value %{z:.4g}<extra></extra>",
        "xaxis": x,
        "yaxis": y,
    }


def _row_label(view: str, domain: list[float]) -> dict:
    """The view's name, turned on its side, left of its row."""
    return {
        "text": f"<b>{VIEW_LABELS.get(view, view)}</b>",
        "xref": "paper",
        "yref": "paper",
        "x": 0,
        "xshift": -6,
        "xanchor": "right",
        "y": (domain[0] + domain[1]) / 2,
        "textangle": -90,
        "showarrow": False,
        "font": {"size": 13},
    }


def _opacity_slider(start: float, heat: list[int]) -> dict:
    """The slider under the figure: each stop restyles the ``heat`` traces' opacity in the browser."""
    return {
        "active": OPACITY_STEPS.index(start),
        "currentvalue": {"prefix": "Overlay opacity: ", "font": {"size": 13}},
        "pad": {"t": _BAR_PX + 2, "b": 0},
        "x": 0.2,
        "len": 0.6,
        "y": 0,
        "yanchor": "top",
        "steps": [{"method": "restyle", "label": f"{v:.1f}", "args": [{"opacity": v}, heat]} for v in OPACITY_STEPS],
    }


def _axis(n: int) -> str:
    """Plotly's suffix for the axes of subplot ``n`` (1-based, row by row): none for the first."""
    return str(n) if n > 1 else ""


@functools.lru_cache(maxsize=64)
def _grid_layout(rows: int, cols: int, vertical_spacing: float) -> str:
    """make_subplots' axes (domains, anchors) and column titles for this grid, as JSON (computed once)."""
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=["·"] * cols, horizontal_spacing=_SPACING_X,
                        vertical_spacing=vertical_spacing)
    layout = fig.to_plotly_json()["layout"]
    layout.pop("template", None)
    return json.dumps(layout)


def _grid(rows: int, cols: int, vertical_spacing: float) -> dict:
    """A fresh copy of the grid's layout, to fill in."""
    return json.loads(_grid_layout(rows, cols, vertical_spacing))


def _short(name: str, limit: int = 22) -> str:
    """A class name cut to fit the scores' label column (the full name is in the hover)."""
    return name if len(name) <= limit else name[: limit - 1] + "…"


def _prob_ticks(top: float) -> str:
    """A tick format that tells tiny probabilities apart ("0.2%", not "0% 0% 0%")."""
    if top >= 0.2:
        return ".0%"
    if top >= 0.02:
        return ".1%"
    if top >= 0.002:
        return ".2%"
    return ".1e"


def scores_figure(
    class_ids: Sequence[int],
    class_names: Sequence[str],
    probs: np.ndarray,
    logits: np.ndarray,
    selected: Sequence[int],
    probs_kind: str = "softmax",
) -> go.Figure:
    """Probability (softmax, or sigmoid for multi-label models) and raw logit of ``class_ids`` (top first).

    Selected classes are drawn in the accent colour; each bar carries its class id in
    ``customdata`` so a click can toggle it.
    """
    chosen = set(selected)
    labels = [f"{plotly_text(_short(class_names[i]))} ({i})" for i in class_ids]
    colors = [SELECTED_COLOR if i in chosen else OTHER_COLOR for i in class_ids]
    p = np.asarray([probs[i] for i in class_ids], dtype=np.float32)
    z = np.asarray([logits[i] for i in class_ids], dtype=np.float32)
    title = "probability" if probs_kind == "softmax" else f"{probs_kind} probability"
    fig = make_subplots(rows=1, cols=2, shared_yaxes=True, horizontal_spacing=0.1, subplot_titles=(title, "logit"))
    common = {"y": labels, "orientation": "h", "marker_color": colors, "customdata": list(class_ids)}
    fig.add_trace(
        go.Bar(
            x=p,
            text=[format_prob(v) for v in p],
            hovertext=[f"{plotly_text(class_names[i])} ({i})" for i in class_ids],
            hovertemplate="%{hovertext}<br>p = %{text}<extra>click to toggle</extra>",
            **common,
        ),
        row=1,
        col=1,
    )
    fig.add_trace(
        go.Bar(
            x=z,
            text=[f"{v:.2f}" for v in z],
            hovertext=[f"{plotly_text(class_names[i])} ({i})" for i in class_ids],
            hovertemplate="%{hovertext}<br>logit = %{x:.3f}<extra>click to toggle</extra>",
            **common,
        ),
        row=1,
        col=2,
    )
    fig.update_traces(
        textposition="auto",
        cliponaxis=False,
        selected={"marker": {"opacity": 1}},
        unselected={"marker": {"opacity": 1}},
    )
    fig.update_yaxes(autorange="reversed", automargin=True)
    fig.update_xaxes(showgrid=True, zeroline=True, nticks=3)
    top = max(1e-9, float(p.max()))
    fig.update_xaxes(tickformat=_prob_ticks(top), range=[0, top * 1.15], row=1, col=1)
    fig.update_layout(
        height=60 + 26 * len(class_ids),
        margin={"l": 4, "r": 8, "t": 28, "b": 24},
        showlegend=False,
        bargap=0.25,
    )

    return fig


# Line colours of the timeline, one per explained class (Plotly's qualitative "D3" set, minus grey).
LINE_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf")
MAX_CHANGE_LABELS = 12  # top-1 changes named on the timeline; more are marked without a name
_CLICK_LEVELS = 12  # rows of the timeline's invisible click grid


def change_points(top1: Sequence[int]) -> list[int]:
    """Positions where the top-1 class differs from the frame before."""
    return [t for t in range(1, len(top1)) if top1[t] != top1[t - 1]]


def timeline_figure(
    times: np.ndarray,
    probs: np.ndarray,
    lines: Sequence[int],
    names: Sequence[str],
    top1: Sequence[int],
    cursor: int,
) -> go.Figure:
    """Probabilities of ``lines`` (class ids) over time, each frame's top-1 (dashed), a cursor at frame
    ``cursor``, and the top-1 changes marked (named where they are far enough apart to read).

    Every frame is a marker (``customdata`` its position), so a click on a line returns a point
    (Streamlit's ``on_select`` returns nothing for a click on a plain line); an invisible column of points at every
    frame, with no hover distance limit, makes a click anywhere on the plot pick the nearest frame.
    """
    fig = go.Figure()
    positions = list(range(len(times)))
    top_prob = probs[np.arange(len(times)), np.asarray(top1, dtype=int)]
    fig.add_trace(
        go.Scatter(
            x=times, y=top_prob, mode="lines+markers", marker={"size": 4, "color": OTHER_COLOR},
            line={"width": 1.5, "color": OTHER_COLOR, "dash": "dash"}, name="each frame's top-1",
            customdata=positions, text=[names[c] for c in top1],
            hovertemplate="top-1 %{text}<br>%{x:.2f} s: p = %{y:.1%}<extra>click to show this frame</extra>",
        )
    )
    for j, cid in enumerate(lines):
        fig.add_trace(
            go.Scatter(
                x=times,
                y=probs[:, cid],
                mode="lines+markers",
                marker={"size": 6},
                line={"width": 2, "color": LINE_COLORS[j % len(LINE_COLORS)]},
                name=f"{plotly_text(_short(names[cid], 28))} ({cid})",
                customdata=positions,
                hovertemplate=f"{plotly_text(names[cid]).replace('%{', '% {')}<br>%{{x:.2f}} s: p = %{{y:.1%}}"
                "<extra>click to show this frame</extra>",
            )
        )
    top = float(max(top_prob.max(initial=0.0), *(probs[:, c].max() for c in lines)))
    levels = np.linspace(0.0, 1.05 * top, _CLICK_LEVELS)
    fig.add_trace(
        go.Scatter(
            x=np.repeat(times, len(levels)), y=np.tile(levels, len(times)), mode="markers",
            marker={"size": 8, "opacity": 0}, customdata=np.repeat(positions, len(levels)), hoverinfo="none",
            showlegend=False, name="frames",
        )
    )
    span = float(times[-1] - times[0]) if len(times) > 1 else 1.0
    named, last = 0, -np.inf
    for t in change_points(top1):
        x = float(times[t])
        fig.add_vline(x=x, line={"color": "#999", "width": 1, "dash": "dot"})
        if named < MAX_CHANGE_LABELS and x - last >= 0.08 * span:
            fig.add_annotation(
                x=x, y=1.0, yref="paper", yanchor="bottom", xanchor="left", showarrow=False,
                text=f"→ {plotly_text(_short(names[top1[t]], 16))}", font={"size": 10, "color": "#555"},
            )
            named, last = named + 1, x
    if 0 <= cursor < len(times):
        fig.add_vline(x=float(times[cursor]), line={"color": SELECTED_COLOR, "width": 2})
    fig.update_layout(
        height=300,
        margin={"l": 8, "r": 8, "t": 30, "b": 8},
        xaxis={"title": {"text": "time (s)", "standoff": 2}, "showgrid": True},
        yaxis={"title": "probability", "tickformat": _prob_ticks(top), "rangemode": "tozero"},
        legend={"orientation": "h", "y": -0.3, "x": 0, "yanchor": "top"},
        showlegend=True,
        clickmode="event+select",
        hovermode="closest",
        hoverdistance=-1,  # the nearest point, however far: a click between two frames takes the nearer one
    )
    return fig
