"""The Dataset page's atlas of attention: per class, the clusters of where the maps look, flagged shortcuts first.

The atlas is ``cam_core.analysis.atlas``'s (``OUT/atlas.json`` and ``OUT/atlas.parquet``, the files the
``atlas`` command writes); a results folder without a fresh one offers to build it. Per class: each
cluster's mean map with its size, its flags and their reasons, a few example images with their own maps,
and a button that filters the gallery to the cluster; the whole atlas downloads as a PNG sheet.
The page calls :func:`atlas_ui` to draw it and :func:`cluster_filter` to narrow its gallery.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import streamlit as st
from PIL import Image

from cam_core.analysis.atlas import ATLAS_JSON, ATLAS_PARQUET, build_atlas, read_atlas, write_atlas
from cam_core.analysis.atlas_sheet import example_paths, mean_tile, sheet_png
from cam_core.batch.scan import results_stamp
from cam_core.engine.methods import METHODS
from dashboard.feedback import guarded
from dashboard.figures import PLOTLY_CONFIG
from dashboard.text import plain
from dashboard.views.dataset.figures import atlas_layout_figure

__all__ = ["AK", "ClusterFilter", "atlas_ui", "clear_cluster_filter", "cluster_filter"]

Examples = Callable[[list[str]], dict[str, np.ndarray]]
_PER_ROW = 4
_EXAMPLES = 3


class AK:
    """Session-state keys of the atlas."""

    CLASS = "ds_atlas_class"
    FILTER = "_ds_atlas_filter"  # the ClusterFilter the gallery is narrowed to


@dataclass(frozen=True)
class ClusterFilter:
    """The gallery narrowed to one cluster of the atlas of ``folder``."""

    folder: str
    method: str
    class_id: int
    cluster: int
    title: str


def _stamp(folder: Path, name: str) -> int:
    try:
        return (folder / name).stat().st_mtime_ns
    except OSError:
        return 0


@st.cache_data(max_entries=8, show_spinner=False)
def _doc(folder: str, stamp: int, rows: tuple[int, int, int]) -> dict[str, Any] | None:
    """``atlas.json`` when it was built from the results as they are now (``stamp`` and ``rows`` name the
    versions of the atlas and of the results)."""
    return read_atlas(folder)


@st.cache_data(max_entries=8, show_spinner=False)
def _members(folder: str, stamp: int) -> pd.DataFrame:
    """``atlas.parquet`` (path, method, class id, cluster, x, y)."""
    return pq.read_table(Path(folder) / ATLAS_PARQUET,
                         columns=["path", "method", "class_id", "cluster", "x", "y"]).to_pandas()


def cluster_filter(folder: Path) -> ClusterFilter | None:
    """The cluster the gallery is narrowed to, if it belongs to ``folder`` (a filter of another folder is dropped)."""
    f = st.session_state.get(AK.FILTER)
    if isinstance(f, ClusterFilter) and f.folder == str(folder):
        return f
    st.session_state.pop(AK.FILTER, None)
    return None


def clear_cluster_filter() -> None:
    st.session_state.pop(AK.FILTER, None)


def cluster_paths(f: ClusterFilter) -> set[str]:
    """The paths of the images in the filter's cluster."""
    folder = Path(f.folder)
    m = _members(f.folder, _stamp(folder, ATLAS_PARQUET))
    keep = (m.method == f.method) & (m.class_id == f.class_id) & (m.cluster == f.cluster)
    return set(m.path[keep])


def _build(folder: Path, methods: list[str]) -> None:
    atlases = [build_atlas(folder, m) for m in methods]
    write_atlas(folder, atlases)
    _doc.clear()
    _members.clear()


def _class_label(c: dict[str, Any]) -> str:
    flagged = sum(bool(k["flags"]) for k in c["clusters"])
    n = len(c["clusters"])
    head = f"⚑ {c['name']}" if flagged else c["name"]
    tail = f" · {flagged} flagged" if flagged else ""
    return f"{head} · {c['images']} images · {n} cluster{'s' if n != 1 else ''}{tail}"


def _ordered(classes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(classes, key=lambda c: (not any(k["flags"] for k in c["clusters"]), -c["images"], c["name"].lower()))


def _show_cluster(folder: Path, method: str, c: dict[str, Any], k: dict[str, Any]) -> None:
    st.session_state[AK.FILTER] = ClusterFilter(str(folder), method, int(c["class_id"]), int(k["id"]),
                                                f"cluster #{k['id']} of {c['name']} ({k['size']} images)")


def _cluster_card(folder: Path, method: str, c: dict[str, Any], k: dict[str, Any], examples: Examples) -> None:
    share = k["size"] / max(1, c["images"])
    with st.container(border=True, key=f"ds_atlas_card_{c['class_id']}_{k['id']}"):
        st.image(mean_tile(k["mean_map"], 160), width=160)
        st.markdown(f"**Cluster #{k['id']}** · {k['size']} images ({share:.0%})")
        for f in k["flags"]:
            st.markdown(f":red[**⚑ {plain(f['code'].replace('_', ' '))}**]: {plain(f['reason'])}")
        pictures = examples(list(k["examples"][:_EXAMPLES]))
        shown = [pictures[p] for p in k["examples"][:_EXAMPLES] if p in pictures]
        if shown:
            st.image(_strip(shown), caption="typical images (nearest the cluster's centre)", width="stretch")
        st.button("Show in the gallery", key=f"ds_atlas_show_{c['class_id']}_{k['id']}", icon=":material/filter_alt:",
                  on_click=_show_cluster, args=(folder, method, c, k), width="stretch")


def _strip(pictures: list[np.ndarray], height: int = 120, gap: int = 4) -> np.ndarray:
    """Pictures side by side at one height, on white (one image: it keeps its place in a narrow card)."""
    scaled = [np.asarray(Image.fromarray(p).resize((max(1, round(p.shape[1] * height / p.shape[0])), height)))
              for p in pictures]
    width = sum(p.shape[1] for p in scaled) + gap * (len(scaled) - 1)
    strip = np.full((height, width, 3), 255, dtype=np.uint8)
    x = 0
    for p in scaled:
        strip[:, x : x + p.shape[1]] = p
        x += p.shape[1] + gap
    return strip


def _codes(k: dict[str, Any]) -> str:
    return ", ".join(f["code"].replace("_", " ") for f in k["flags"])


def _summary(classes: list[dict[str, Any]]) -> str:
    clusters = sum(len(c["clusters"]) for c in classes)
    flagged = [(c, k) for c in classes for k in c["clusters"] if k["flags"]]
    line = f"{len(classes)} classes, {clusters} clusters, {len(flagged)} flagged"
    if flagged:
        named = ", ".join(f"{plain(c['name'])} #{k['id']} ({_codes(k)})" for c, k in flagged[:5])
        line += f": {named}" + (" …" if len(flagged) > 5 else "")
    return line


def atlas_ui(folder: Path, run: dict[str, Any], method: str, examples: Examples) -> None:
    """The atlas of ``method``'s maps for the results in ``folder`` (built on request when missing or stale).

    Args:
        examples: paths → small RGB pictures of those images with their maps (the page's thumbnails).
    """
    doc = _doc(str(folder), _stamp(folder, ATLAS_JSON), results_stamp(folder))
    entry = (doc or {}).get("methods", {}).get(method)
    with st.expander("**Atlas of attention** · where the maps of each class look, in clusters",
                     expanded=entry is not None and any(k["flags"] for c in entry["classes"] for k in c["clusters"])):
        whose = "true class" if (entry or {}).get("whose") == "label" else "predicted class"
        st.caption(f"Each image's map of its {whose}, ReLU'd and brought to a 16×16 grid, grouped per class by "
                   "where it looks. A cluster whose mass piles up in a corner, on the border or outside the "
                   "objects' boxes is flagged: a shortcut a person should look at.")
        if entry is None:
            stale = doc is None and (folder / ATLAS_JSON).is_file()
            st.info(("The atlas was built from earlier results: build it again. " if stale else "")
                    + f"Building it reads every {METHODS[method].title} map once (about a second per 5 000 images).",
                    icon=":material/scatter_plot:")
            if st.button("Build the atlas", key="ds_atlas_build", icon=":material/hub:"):
                with st.spinner("Building the atlas…"):
                    guarded("building the atlas", _build, folder, list(run.get("methods") or [method]))
                st.rerun(scope="fragment")
            return
        classes = _ordered(entry["classes"])
        with st.container(key="ds_atlas_summary"):
            st.markdown(_summary(classes))
        ids = [int(c["class_id"]) for c in classes]
        by_id = {int(c["class_id"]): c for c in classes}
        if st.session_state.get(AK.CLASS) not in ids:
            st.session_state[AK.CLASS] = ids[0]
        left, right = st.columns([3, 1], vertical_alignment="bottom")
        cid = left.selectbox("Class", ids, format_func=lambda i: _class_label(by_id[i]), key=AK.CLASS,
                             help="Classes with a flagged cluster come first.")
        right.download_button(
            "Atlas sheet (PNG)", lambda: sheet_png(entry, f"Atlas of attention · {run.get('model', '')} · "
                                                          f"{METHODS[method].title}",
                                                   examples(example_paths(entry)).get),
            file_name="atlas.png", mime="image/png", icon=":material/download:", key="ds_atlas_sheet",
            help="Every class's clusters on one sheet (flagged classes first), with example images.",
        )
        c = by_id[cid]
        st.caption(plain(c["chosen"]) + (f" · {c['blank']} blank map(s) left out" if c["blank"] else ""))
        ordered = sorted(c["clusters"], key=lambda k: (not k["flags"], k["id"]))
        cards, per_row = st.container(), _PER_ROW
        if len(ordered) > 1:  # the layout on the left, the cards beside it
            left, cards = st.columns([1, 1.5], gap="medium")
            with left:
                _layout(folder, method, c)
            per_row = _PER_ROW // 2
        with cards:
            for start in range(0, len(ordered), per_row):
                for col, k in zip(st.columns(per_row), ordered[start : start + per_row], strict=False):
                    with col:
                        _cluster_card(folder, method, c, k, examples)


def _layout(folder: Path, method: str, c: dict[str, Any]) -> None:
    """The class's maps as points at their layout coordinates, coloured by cluster."""
    m = _members(str(folder), _stamp(folder, ATLAS_PARQUET))
    mine = m[(m.method == method) & (m.class_id == int(c["class_id"])) & (m.cluster >= 0)]
    labels = {int(k["id"]): f"#{k['id']} ({k['size']})" + (f" ⚑ {_codes(k)}" if k["flags"] else "")
              for k in c["clusters"]}
    flagged = {int(k["id"]) for k in c["clusters"] if k["flags"]}
    fig = atlas_layout_figure(mine.x.to_numpy(), mine.y.to_numpy(), mine.cluster.to_numpy(),
                              [Path(p).name for p in mine.path], labels, flagged)
    st.plotly_chart(fig, key=f"ds_atlas_layout_{c['class_id']}", config={**PLOTLY_CONFIG, "displayModeBar": False})
