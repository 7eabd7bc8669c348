"""The confusion matrix's data for the HTML matrix widget (:mod:`dashboard.widgets.matrix`: a Plotly heatmap
cost the browser over a second per draw); one class's atlas layout as a Plotly scatter."""

from __future__ import annotations

from typing import Any

import numpy as np
import plotly.graph_objects as go

from cam_core.batch.query import Confusion
from dashboard.text import plotly_text

__all__ = ["atlas_layout_figure", "confusion_data"]

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


def confusion_data(conf: Confusion, selected: tuple[int, int] | None = None) -> dict[str, Any]:
    """What the matrix widget draws (see dashboard/widgets/matrix.js): rows are true classes, columns predicted
    ones, the diagonal the correct answers; each cell's share of its row colours it.

    Args:
        conf: From :meth:`cam_core.batch.query.ResultsQuery.confusion`.
        selected: (row, column) of the cell the gallery is filtered to, outlined.
    """
    n_rows, n_cols = conf.counts.shape
    share = conf.counts / np.maximum(conf.counts.sum(axis=1, keepdims=True), 1)
    return {
        "rows": list(conf.row_names), "cols": list(conf.col_names),
        "row_labels": [_short(n) for n in conf.row_names], "col_labels": [_short(n) for n in conf.col_names],
        "counts": conf.counts.astype(int).tolist(), "text": [[_count(int(v)) for v in row] for row in conf.counts],
        "share": np.round(share, 4).tolist(), "selected": list(selected) if selected is not None else None,
        "cell": 34 if max(n_rows, n_cols) <= 12 else 22, "other": bool(conf.cols) and len(conf.cols[-1]) > 1,
    }


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
