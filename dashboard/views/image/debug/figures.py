"""Plotly figures for "Debug this prediction": plain values in, figures out, no maths.

- :func:`stage_strip`: one stage of the layer sweep as an image (ReLU'd over signed);
- :func:`point_figure`: a map over the image with an invisible grid of points on
  top, because Streamlit's ``on_select`` returns nothing for a click on a plain
  heatmap (streamlit#8760) but does return scatter points (``customdata`` is
  ``[row, col]`` in input pixels);
- :func:`curves_figure`: deletion and insertion curves with their AUCs, the map's
  against the random reference;
- :func:`sanity_figure` / :func:`sanity_maps_figure`: the model-randomisation
  check (Spearman per step, the flag threshold; the map as the weights go).

Colours follow :mod:`dashboard.figures` (same colormaps and evidence alpha), so a
map looks the same here as in the overlays.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from cam_core.analysis.trust import PerturbationCurves, RoadResult, SanityResult
from cam_core.engine.methods import METHODS
from cam_core.render import overlay, plotly_colorscale
from dashboard.figures import SELECTED_COLOR, VIEW_LABELS, alpha_colorscale, colour_range, data_uri

__all__ = [
    "MUTED",
    "SANITY_COLORS",
    "curves_figure",
    "point_figure",
    "road_figure",
    "sanity_figure",
    "sanity_maps_figure",
    "short_unit",
    "stage_strip",
]

MUTED = "#8a8f9c"  # the random reference and other context lines
SANITY_COLORS = ("#e4572e", "#2e86ab", "#76b041", "#a23b72", "#f18f01", "#5c415d")
_FONT = {"size": 12}


def _map_traces(
    fig: go.Figure,
    uri: str,
    size: tuple[int, int],
    cam: np.ndarray,
    *,
    view: str,
    cmap: str,
    opacity: float,
    row: int,
    col: int,
    name: str,
) -> None:
    """The photo and one map over it; the map may be coarser than the photo (it is stretched to cover it)."""
    height, width = size
    cam = np.asarray(cam, dtype=np.float32)
    dy, dx = height / cam.shape[0], width / cam.shape[1]
    zmin, zmax = colour_range(cam, view)
    fig.add_trace(go.Image(source=uri, x0=0, y0=0, dx=1, dy=1, hoverinfo="skip"), row=row, col=col)
    fig.add_trace(
        go.Heatmap(
            z=cam,
            # Cell j covers pixels [j·dx, (j+1)·dx): its centre, in pixel-centre coordinates.
            x0=(dx - 1) / 2,
            dx=dx,
            y0=(dy - 1) / 2,
            dy=dy,
            zmin=zmin,
            zmax=zmax,
            colorscale=alpha_colorscale(cmap, signed=view == "signed"),
            showscale=False,
            opacity=opacity,
            name=name,
            meta=f"{name} · {VIEW_LABELS.get(view, view)}",
            hovertemplate="%{meta}<br>map value %{z:.4g}<extra></extra>",
        ),
        row=row,
        col=col,
    )


def _image_axes(fig: go.Figure, size: tuple[int, int], rows: int, cols: int) -> None:
    height, width = size
    for r in range(1, rows + 1):
        for c in range(1, cols + 1):
            n = (r - 1) * cols + c
            fig.update_yaxes(scaleanchor=f"x{'' if n == 1 else n}", row=r, col=c)
    fig.update_xaxes(visible=False, range=[-0.5, width - 0.5], constrain="domain")
    fig.update_yaxes(visible=False, range=[height - 0.5, -0.5], constrain="domain", constraintoward="top")


def stage_strip(
    background: np.ndarray,
    cam: np.ndarray,
    *,
    cmap: str = "jet",
    signed_cmap: str = "bwr",
    opacity: float = 0.6,
    gap: int = 6,
) -> np.ndarray:
    """One stage of the layer sweep as an image: the ReLU'd overlay above the signed one.

    An image, not a Plotly chart: Streamlit draws a chart at least 150 px wide, so six
    or seven charts side by side overflow the main column and are cut off; an image
    scales to any column. The overlays are :func:`cam_core.render.overlay`'s, as in
    the PNG exports.

    Args:
        background: (H, W, 3) uint8, the image as the model saw it.
        cam: The stage's signed map at the image's size.
        cmap, signed_cmap: Colormaps of the two views.
        opacity: The maps' opacity.
        gap: White rows between the two views.

    Returns:
        (2H + gap, W, 3) uint8.
    """
    cam = np.asarray(cam, dtype=np.float32)
    relu = overlay(background, cam, view="relu", cmap=cmap, alpha=opacity)
    signed = overlay(background, cam, view="signed", cmap=signed_cmap, alpha=opacity)
    white = np.full((gap, background.shape[1], 3), 255, dtype=np.uint8)
    return np.concatenate([relu, white, signed])


def short_unit(name: str) -> str:
    """A module name short enough for a tick label: its last two components (``7.2``, ``classifier.fc``)."""
    return ".".join(name.split(".")[-2:]) or "(whole model)"


def point_figure(
    background: np.ndarray,
    cam: np.ndarray,
    *,
    point: tuple[int, int],
    step: int = 8,
    view: str = "signed",
    cmap: str = "bwr",
    opacity: float = 0.6,
    title: str = "",
    height: int = 400,
) -> go.Figure:
    """A map over the image with a clickable grid and a marker at ``point``.

    Args:
        background: (H, W, 3) uint8.
        cam: (H, W) or coarser signed map.
        point: (row, col) in input pixels, marked with a cross.
        step: Spacing of the clickable grid in pixels (its points sit at cell centres).
        view: ``signed`` or ``relu``.
        cmap: Colormap of that view.
        opacity: The map's opacity.
        title: Above the figure.
        height: Pixel height.

    Returns:
        Traces: image, heatmap, the invisible grid (``customdata`` = ``[row, col]``), the marker.
    """
    size = background.shape[:2]
    fig = make_subplots(rows=1, cols=1)
    _map_traces(fig, data_uri(background), size, cam, view=view, cmap=cmap, opacity=opacity, row=1, col=1, name=title)
    rows = np.arange(step // 2, size[0], step)
    cols = np.arange(step // 2, size[1], step)
    rr, cc = np.meshgrid(rows, cols, indexing="ij")
    clear = "rgba(0,0,0,0)"
    fig.add_trace(
        go.Scatter(
            x=cc.ravel(),
            y=rr.ravel(),
            mode="markers",
            marker={"size": step + 4, "color": clear, "symbol": "square"},
            customdata=np.stack([rr.ravel(), cc.ravel()], axis=1),
            hovertemplate="row %{customdata[0]}, col %{customdata[1]}<br>click to inspect<extra></extra>",
            # Clicking selects a point; keep every point invisible whatever its selection state.
            selected={"marker": {"opacity": 0}},
            unselected={"marker": {"opacity": 0}},
            name="grid",
            showlegend=False,
        )
    )
    # A white cross over a dark ring: the point stays visible on light and dark regions alike.
    marks = (("point", 16, "x-thin", "white", 3), ("point outline", 18, "circle-open", "black", 2))
    for name, diameter, symbol, color, width in marks:
        fig.add_trace(
            go.Scatter(
                x=[point[1]],
                y=[point[0]],
                mode="markers",
                marker={"size": diameter, "symbol": symbol, "line": {"width": width, "color": color}},
                hoverinfo="skip",
                name=name,
                showlegend=False,
            )
        )
    _image_axes(fig, size, 1, 1)
    fig.update_layout(
        title={"text": title, "font": _FONT, "x": 0.5, "xanchor": "center"},
        height=height,
        margin={"l": 4, "r": 4, "t": 30 if title else 4, "b": 4},
        showlegend=False,
        dragmode=False,
        clickmode="event+select",
        hovermode="closest",
    )
    return fig


def curves_figure(curves: PerturbationCurves, class_label: str = "") -> go.Figure:
    """Deletion (left) and insertion (right): the map's curve against the random reference, AUCs in the legend.

    Args:
        curves: From :func:`cam_core.analysis.trust.deletion_insertion`.
        class_label: The tracked class, for the y axis.

    Returns:
        Two subplots; traces named ``map · AUC 0.123`` and ``random · AUC 0.456``.
    """
    fig = make_subplots(
        rows=1,
        cols=2,
        shared_yaxes=True,
        horizontal_spacing=0.06,
        subplot_titles=("Deletion: lower AUC is better", "Insertion: higher AUC is better"),
    )
    pairs = ((curves.deletion, curves.random_deletion), (curves.insertion, curves.random_insertion))
    for c, (mine, rand) in enumerate(pairs, start=1):
        fig.add_trace(
            go.Scatter(
                x=mine.fractions,
                y=mine.scores,
                mode="lines+markers",
                marker={"size": 4},
                line={"color": SELECTED_COLOR, "width": 3},
                fill="tozeroy",
                fillcolor="rgba(228,87,46,0.12)",
                name=f"map · AUC {mine.auc:.3f}",
                legendgroup=f"g{c}",
                legendgrouptitle={"text": mine.kind},
                hovertemplate="%{x:.0%} of pixels · p = %{y:.3f}<extra>map</extra>",
            ),
            row=1,
            col=c,
        )
        if rand is not None:
            fig.add_trace(
                go.Scatter(
                    x=rand.fractions,
                    y=rand.scores,
                    mode="lines",
                    line={"color": MUTED, "width": 2, "dash": "dash"},
                    name=f"random · AUC {rand.auc:.3f}",
                    legendgroup=f"g{c}",
                    hovertemplate="%{x:.0%} of pixels · p = %{y:.3f}<extra>random</extra>",
                ),
                row=1,
                col=c,
            )
    fig.update_xaxes(tickformat=".0%", range=[0, 1], title_text="pixels deleted", row=1, col=1)
    fig.update_xaxes(tickformat=".0%", range=[0, 1], title_text="pixels inserted", row=1, col=2)
    fig.update_yaxes(title_text=f"p({class_label})" if class_label else "probability", row=1, col=1, rangemode="tozero")
    fig.update_layout(
        height=340,
        margin={"l": 10, "r": 10, "t": 40, "b": 10},
        legend={"orientation": "v", "x": 1.01, "y": 1, "groupclick": "toggleitem"},
        hovermode="x unified",
    )
    return fig


def road_figure(result: RoadResult, class_label: str = "") -> go.Figure:
    """ROAD: the class probability as the most (MoRF) or least (LeRF) relevant pixels are removed and imputed.

    Solid: the map; dashed: Random-CAM (when computed); dotted: the unmodified image's probability.
    Trace names carry the combined score ((LeRF − MoRF) / 2, higher is better).
    """
    fig = go.Figure()
    styles = [("", "map", SELECTED_COLOR, "solid", result.combined)]
    if result.random_morf is not None:
        styles.append(("random_", "Random-CAM", MUTED, "dash", result.random_combined))
    for prefix, who, color, dash, score in styles:
        for order, symbol in (("morf", "circle"), ("lerf", "square")):
            words = "most relevant removed" if order == "morf" else "least relevant removed"
            fig.add_trace(
                go.Scatter(
                    x=result.fractions,
                    y=np.asarray(getattr(result, prefix + order), dtype=np.float32),
                    mode="lines+markers",
                    marker={"size": 6, "symbol": symbol},
                    line={"color": color, "width": 3 if not prefix else 2, "dash": dash},
                    opacity=1.0 if order == "morf" else 0.7,
                    name=f"{who}: {words}",
                    legendgroup=who,
                    legendgrouptitle={"text": f"{who} · ROAD {score:.3f}"},
                    hovertemplate="%{x:.0%} removed · p = %{y:.3f}<extra>" + f"{who}, {order.upper()}</extra>",
                )
            )
    fig.add_hline(y=result.base, line={"color": MUTED, "dash": "dot", "width": 1},
                  annotation_text="unmodified", annotation_position="top left")
    fig.update_xaxes(tickformat=".0%", range=[0.05, 0.95], title_text="pixels removed (imputed from neighbours)")
    fig.update_yaxes(title_text=f"p({class_label})" if class_label else "probability", rangemode="tozero")
    fig.update_layout(
        height=340,
        margin={"l": 10, "r": 10, "t": 20, "b": 10},
        legend={"orientation": "v", "x": 1.01, "y": 1, "groupclick": "toggleitem"},
        hovermode="x unified",
    )
    return fig


def sanity_figure(result: SanityResult) -> go.Figure:
    """Spearman rank correlation of each method's map with the original, per randomisation step.

    Solid: signed maps; dotted: absolute values. The dashed line is the flag
    threshold (a method whose median over the steps is above it is flagged).
    Trace names end with ``(flagged)`` for flagged methods.
    """
    steps = list(range(1, len(result.units) + 1))
    labels = [f"{s}. {u or '(whole model)'}" for s, u in zip(steps, result.units, strict=True)]
    fig = go.Figure()
    for j, m in enumerate(result.methods):
        color = SANITY_COLORS[j % len(SANITY_COLORS)]
        title = METHODS[m].title if m in METHODS else m
        flag = " (flagged)" if result.flagged.get(m) else ""
        fig.add_trace(
            go.Scatter(
                x=steps,
                y=np.asarray(result.rank_corr[m], dtype=np.float32),
                customdata=labels,
                mode="lines+markers",
                line={"color": color, "width": 3},
                name=f"{title}{flag}",
                hovertemplate="after randomising %{customdata}<br>ρ = %{y:.2f}<extra>" + title + "</extra>",
            )
        )
        fig.add_trace(
            go.Scatter(
                x=steps,
                y=np.asarray(result.rank_corr_abs[m], dtype=np.float32),
                customdata=labels,
                mode="lines",
                line={"color": color, "width": 1.5, "dash": "dot"},
                name=f"{title} |map|",
                hovertemplate="after randomising %{customdata}<br>ρ(|map|) = %{y:.2f}<extra>" + title + "</extra>",
            )
        )
    fig.add_hline(
        y=result.threshold,
        line={"color": "#c0392b", "dash": "dash", "width": 1.5},
        annotation_text=f"flag above {result.threshold:g} (median)",
        annotation_position="top left",
        annotation_font={"size": 11, "color": "#c0392b"},
    )
    fig.add_hline(y=0, line={"color": "#cccccc", "width": 1})
    fig.update_xaxes(
        tickmode="array",
        tickvals=steps,
        ticktext=[short_unit(u) for u in result.units],
        tickangle=-45,
        title_text="randomised, cumulatively from the head down to",
    )
    fig.update_yaxes(range=[-1.05, 1.05], title_text="Spearman ρ with the original map")
    fig.update_layout(
        height=380,
        margin={"l": 10, "r": 10, "t": 20, "b": 10},
        legend={"orientation": "h", "y": 1.12, "x": 0},
        hovermode="closest",
    )
    return fig


def sanity_maps_figure(
    maps: np.ndarray, labels: Sequence[str], *, cmap: str = "bwr", panel_size: int = 110
) -> go.Figure:
    """Signed maps side by side (the original, then after some randomisation steps), each scaled to itself.

    Args:
        maps: (S, h, w) maps at the layer's resolution.
        labels: One caption per map.
        cmap: Diverging colormap.
        panel_size: Pixel size of one panel.

    Returns:
        One row of heatmaps (no photo: these are at the layer's resolution).
    """
    n = len(maps)
    fig = make_subplots(rows=1, cols=n, subplot_titles=list(labels), horizontal_spacing=0.01)
    scale = plotly_colorscale(cmap, steps=17)  # opaque: no photo underneath; the pale centre reads as zero
    for j, cam in enumerate(maps, start=1):
        cam = np.asarray(cam, dtype=np.float32)
        zmin, zmax = colour_range(cam, "signed")
        fig.add_trace(
            go.Heatmap(
                z=cam,
                zmin=zmin,
                zmax=zmax,
                colorscale=scale,
                showscale=False,
                hovertemplate="%{z:.3g}<extra></extra>",
            ),
            row=1,
            col=j,
        )
        fig.update_yaxes(scaleanchor=f"x{'' if j == 1 else j}", autorange="reversed", row=1, col=j)
    fig.update_xaxes(visible=False, constrain="domain")
    fig.update_yaxes(visible=False, constrain="domain")
    fig.update_annotations(font={"size": 10})
    fig.update_layout(height=panel_size + 40, margin={"l": 2, "r": 2, "t": 34, "b": 2})
    return fig
