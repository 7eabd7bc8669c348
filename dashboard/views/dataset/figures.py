"""The confusion matrix as a Plotly heatmap whose cells can be clicked; one class's atlas layout as a scatter.

Streamlit's ``on_select`` returns nothing for clicks on a plain heatmap (streamlit#8760), so an
invisible scatter grid lies over it (as :func:`dashboard.views.image.debug.figures.point_figure` does): one
marker per cell, carrying the cell's (row, column) in ``customdata``.
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from cam_core.batch.query import Confusion
from dashboard.text import plotly_text

__all__ = ["atlas_layout_figure", "confusion_figure"]

_SHORT = 18


def _short(name: str) -> str:
    return name if len(name) <= _SHORT else name[: _SHORT - 1] + "…"


def _count(n: int) -> str:
    """A cell's count in at most four characters (a million images put five-digit counts in 22-pixel cells)."""
    if not n:
        return ""
    if n < 1000:
        return str(n)
    for unit, size in (("M", 1e6), ("k", 1e3)):
        if n >= size * 0.9995:
            value = n / size
            return f"{value:.1f}".rstrip("0").rstrip(".") + unit if value < 10 else f"{value:.0f}{unit}"
    return str(n)


def confusion_figure(conf: Confusion, selected: tuple[int, int] | None = None) -> go.Figure:
    """Rows: true classes; columns: predicted classes; the diagonal holds the correct answers.

    Args:
        conf: From :meth:`cam_core.batch.query.ResultsQuery.confusion`.
        selected: (row, column) of the cell the gallery is filtered to, outlined.
    """
    n_rows, n_cols = conf.counts.shape
    xs, ys = list(range(n_cols)), list(range(n_rows))
    share = conf.counts / np.maximum(conf.counts.sum(axis=1, keepdims=True), 1)
    text = [[_count(v) for v in row] for row in conf.counts]
    hover = [
        [f"true {plotly_text(conf.row_names[i])}<br>predicted {plotly_text(conf.col_names[j])}<br>"
         f"{conf.counts[i, j]} images "
         f"({share[i, j]:.0%} of the class)<br>click to show them" for j in xs]
        for i in ys
    ]
    fig = go.Figure(
        go.Heatmap(
            z=share, x=xs, y=ys, text=text, texttemplate="%{text}", colorscale="Blues", zmin=0, zmax=1,
            showscale=False, hoverinfo="skip", xgap=1, ygap=1,
        )
    )
    gx, gy = np.meshgrid(xs, ys)
    clear = "rgba(0,0,0,0)"
    fig.add_trace(
        go.Scatter(
            x=gx.ravel(), y=gy.ravel(), mode="markers", name="cells", showlegend=False,
            marker={"size": 28, "color": clear, "symbol": "square"},
            customdata=np.stack([gy.ravel(), gx.ravel()], axis=1),
            hovertext=[hover[i][j] for i, j in zip(gy.ravel(), gx.ravel(), strict=True)],
            hovertemplate="%{hovertext}<extra></extra>",
            selected={"marker": {"opacity": 0}}, unselected={"marker": {"opacity": 0}},
        )
    )
    if selected is not None:
        i, j = selected
        fig.add_shape(type="rect", x0=j - 0.5, x1=j + 0.5, y0=i - 0.5, y1=i + 0.5,
                      line={"color": "#e4572e", "width": 3})
    cell = 34 if max(n_rows, n_cols) <= 12 else 22
    fig.update_layout(
        height=max(260, 110 + cell * n_rows), margin={"l": 10, "r": 10, "t": 10, "b": 10},
        xaxis={"title": "predicted", "tickvals": xs, "ticktext": [plotly_text(_short(n)) for n in conf.col_names],
               "tickangle": -40, "side": "bottom", "fixedrange": True},
        yaxis={"title": "true class", "tickvals": ys, "ticktext": [plotly_text(_short(n)) for n in conf.row_names],
               "autorange": "reversed", "fixedrange": True},
        dragmode=False, clickmode="event+select", plot_bgcolor="white",
    )
    return fig


_CLUSTER_COLOURS = ("#1f77b4", "#2ca02c", "#9467bd", "#8c564b", "#17becf", "#7f7f7f", "#bcbd22")


def atlas_layout_figure(x: np.ndarray, y: np.ndarray, cluster: np.ndarray, names: list[str],
                        labels: dict[int, str], flagged: set[int]) -> go.Figure:
    """One class's maps at their atlas coordinates (the class's first two principal components), a colour per
    cluster; flagged clusters in red, their legend entry saying why.

    Args:
        names: Each point's file name (hover).
        labels: Cluster id → legend text.
    """
    fig = go.Figure()
    for i, c in enumerate(sorted(labels)):
        at = cluster == c
        colour = "#d62728" if c in flagged else _CLUSTER_COLOURS[i % len(_CLUSTER_COLOURS)]
        fig.add_trace(go.Scattergl(
            x=x[at], y=y[at], mode="markers", name=plotly_text(labels[c]),
            marker={"size": 7, "color": colour, "opacity": 0.75, "line": {"width": 0}},
            hovertext=[plotly_text(names[j]) for j in np.flatnonzero(at)], hovertemplate="%{hovertext}<extra></extra>",
        ))
    fig.update_layout(
        height=380, margin={"l": 10, "r": 10, "t": 10, "b": 10}, plot_bgcolor="white", dragmode="pan",
        xaxis={"showticklabels": False, "zeroline": False, "title": "where the maps look (1st component)"},
        yaxis={"showticklabels": False, "zeroline": False, "title": "2nd component"},
        legend={"orientation": "h", "y": -0.12},
    )
    return fig
