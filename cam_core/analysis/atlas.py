"""An atlas of attention: for each class, a batch run's maps grouped by where they look (SpRAy-style).

Per class (the class whose map it is: each row's prediction by default, see :data:`.atlas_grid.WHOSE`),
the ReLU'd maps on a common grid (:mod:`.atlas_grid`) are embedded and clustered:

- features: the square root of each map's mass distribution (Euclidean distances between them are
  then the Hellinger distance, which a single bright peak does not dominate);
- embedding: the features on the run's top :data:`PROJECT_DIMS` principal axes, then the class's own PCA
  (:data:`EMBED_DIMS` components); its first two give the 2-D layout ``x``, ``y`` (per class: coordinates of
  two classes are not comparable);
- clusters: k-means on the embedding (fixed seeds). ``clusters="auto"`` tries k = 2 … :data:`MAX_AUTO`
  and keeps the best mean silhouette (on a fixed sample of at most :data:`SILHOUETTE_SAMPLE` maps);
  a class whose best silhouette stays under :data:`MIN_SILHOUETTE`, or with fewer than
  :data:`MIN_CLASS` maps, is one cluster. Clusters are numbered by size, largest first.

Each cluster gets its mean map, its flags (:mod:`.atlas_flags`: mass in a corner, on the border or
outside the boxes, with the reason in words) and a few example images (the members nearest its centre).
Blank maps (nothing after ReLU) are cluster ``-1`` with no layout.

:func:`write_atlas` writes ``OUT/atlas.parquet`` (one row per image and method: ``path``, ``method``,
``class_id``, ``cluster``, ``x``, ``y``) and ``OUT/atlas.json`` (per method, class and cluster: size,
mean map, flags, examples).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from threadpoolctl import threadpool_limits

from ..batch.results import read_run
from ..batch.scan import results_stamp
from ..errors import CamError
from .atlas_cluster import kmeans, pca, principal_axes, silhouette, sq_distances
from .atlas_flags import Flag, border_mass, cluster_flags, corner_mass
from .atlas_grid import GRID, GridMaps, read_grid_maps

__all__ = [
    "ATLAS_JSON",
    "ATLAS_PARQUET",
    "EMBED_DIMS",
    "EXAMPLES",
    "MAX_AUTO",
    "MIN_CLASS",
    "MIN_SILHOUETTE",
    "Atlas",
    "ClassAtlas",
    "Cluster",
    "atlas_schema",
    "build_atlas",
    "cluster_class",
    "parse_clusters",
    "read_atlas",
    "write_atlas",
]

ATLAS_PARQUET = "atlas.parquet"
ATLAS_JSON = "atlas.json"
EMBED_DIMS = 8
PROJECT_DIMS = 32  # every map's features first go through the run's top principal axes (computed once)
PROJECT_SAMPLE = 20_000
MAX_AUTO = 6
MIN_CLASS = 8  # fewer maps than this: one cluster (nothing to separate reliably)
MIN_SILHOUETTE = 0.35  # under it no split is clear: the class stays one cluster
SILHOUETTE_SAMPLE = 2000
FIT_SAMPLE = 5000
EXAMPLES = 4
_SEED = 0


@dataclass
class Cluster:
    """One cluster of a class: its id, size, mean map (grid, grid), flags and example paths."""

    id: int
    size: int
    mean: np.ndarray
    flags: list[Flag]
    examples: list[str]
    box_energy: float | None = None

    def to_json(self) -> dict[str, Any]:
        where, corner = corner_mass(self.mean)
        return {
            "id": self.id, "size": self.size, "flags": [f.to_json() for f in self.flags], "examples": self.examples,
            "border_mass": round(border_mass(self.mean), 4), "corner": where, "corner_mass": round(corner, 4),
            "box_energy": None if self.box_energy is None else round(self.box_energy, 4),
            "mean_map": np.round(self.mean, 5).tolist(),
        }


@dataclass
class ClassAtlas:
    """One class: its clusters, blank maps, and how the number of clusters was chosen."""

    class_id: int
    name: str
    images: int
    blank: int
    clusters: list[Cluster]
    chosen: str

    def to_json(self) -> dict[str, Any]:
        return {"class_id": self.class_id, "name": self.name, "images": self.images, "blank": self.blank,
                "chosen": self.chosen, "clusters": [c.to_json() for c in self.clusters]}


@dataclass
class Atlas:
    """The atlas of one method: per class its clusters, and per image its cluster and layout."""

    method: str
    whose: str
    grid: int
    classes: list[ClassAtlas]
    paths: np.ndarray
    class_ids: np.ndarray
    cluster: np.ndarray
    xy: np.ndarray
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    def table(self) -> pa.Table:
        """The per-image rows (``atlas.parquet``'s columns)."""
        n = len(self.paths)
        return pa.table({
            "path": pa.array(self.paths.astype(object), pa.string()),
            "method": pa.array([self.method] * n, pa.string()),
            "class_id": pa.array(self.class_ids, pa.int32()),
            "cluster": pa.array(self.cluster, pa.int32()),
            "x": pa.array(self.xy[:, 0], pa.float32()),
            "y": pa.array(self.xy[:, 1], pa.float32()),
        }, schema=atlas_schema())

    def flagged(self) -> list[tuple[ClassAtlas, Cluster]]:
        return [(c, k) for c in self.classes for k in c.clusters if k.flags]


def atlas_schema() -> pa.Schema:
    """The columns of ``atlas.parquet``."""
    return pa.schema([("path", pa.string()), ("method", pa.string()), ("class_id", pa.int32()),
                      ("cluster", pa.int32()), ("x", pa.float32()), ("y", pa.float32())])


def parse_clusters(text: str | int) -> int | None:
    """``auto`` → ``None``; a whole number from 1 to 50 → itself."""
    if str(text).strip().lower() == "auto":
        return None
    try:
        k = int(text)
    except ValueError:
        raise CamError(f"--clusters takes auto or a whole number, got {text!r}") from None
    if not 1 <= k <= 50:
        raise CamError(f"--clusters must be auto or between 1 and 50, got {k}")
    return k


def _kmeans(emb: np.ndarray, k: int) -> np.ndarray:
    """k-means labels; a large class is fitted on a fixed sample of :data:`FIT_SAMPLE` maps, the rest assigned
    to the nearest centre (the centres of 5 000 maps are those of 50 000 to the eye, at a tenth of the cost)."""
    if len(emb) <= FIT_SAMPLE:
        return kmeans(emb, k, seed=_SEED)[0]
    sample = np.random.default_rng(_SEED).choice(len(emb), FIT_SAMPLE, replace=False)
    centres = kmeans(emb[sample], k, seed=_SEED)[1]
    return sq_distances(emb.astype(np.float64), centres).argmin(axis=1)


def cluster_class(features: np.ndarray, clusters: int | None) -> tuple[np.ndarray, np.ndarray, str]:
    """Cluster one class's features (n, d).

    Returns:
        (labels (n,) numbered by size, largest first; layout (n, 2); how k was chosen, in words).
    """
    n = len(features)
    emb = pca(features, EMBED_DIMS)
    xy = emb[:, :2].copy()
    if clusters is not None:
        k = min(clusters, n)
        labels, chosen = (_kmeans(emb, k) if k > 1 else np.zeros(n, dtype=np.int64)), f"{k} asked"
    elif n < MIN_CLASS:
        labels, chosen = np.zeros(n, dtype=np.int64), f"one cluster: fewer than {MIN_CLASS} maps"
    else:
        labels, chosen = _auto(emb)
    sizes = np.bincount(labels)
    order = np.argsort(-sizes, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    return rank[labels], xy, chosen


def _auto(emb: np.ndarray) -> tuple[np.ndarray, str]:
    """k by the best mean silhouette over 2 … MAX_AUTO (one cluster when no split is clear)."""
    n = len(emb)
    rng = np.random.default_rng(_SEED)
    sample = rng.choice(n, SILHOUETTE_SAMPLE, replace=False) if n > SILHOUETTE_SAMPLE else np.arange(n)
    best, best_k, best_labels = -1.0, 1, np.zeros(n, dtype=np.int64)
    for k in range(2, min(MAX_AUTO, n - 1) + 1):
        labels = _kmeans(emb, k)
        if len(np.unique(labels[sample])) < 2:
            continue
        score = silhouette(emb[sample], labels[sample])
        if score > best + 1e-9:
            best, best_k, best_labels = score, k, labels
    if best < MIN_SILHOUETTE:
        return np.zeros(n, dtype=np.int64), f"one cluster: no split is clear (best silhouette {max(best, 0):.2f})"
    return best_labels, f"{best_k} clusters by silhouette ({best:.2f})"


def _examples(features: np.ndarray, labels: np.ndarray, c: int, paths: np.ndarray) -> list[str]:
    members = np.flatnonzero(labels == c)
    centre = features[members].mean(axis=0)
    near = members[np.argsort(((features[members] - centre) ** 2).sum(axis=1), kind="stable")[:EXAMPLES]]
    return [str(p) for p in paths[near]]


def build_atlas(out: str | os.PathLike[str], method: str | None = None, clusters: int | None = None,
                whose: str = "pred", grid: int = GRID) -> Atlas:
    """The atlas of a results folder for one method (default: the run's first).

    Args:
        out: A batch results folder (``results.parquet``, ``run.json``).
        method: Whose maps.
        clusters: Clusters per class (``None``: chosen per class, see the module docstring).
        whose: ``pred`` (each row's predicted class's map) or ``label`` (its true class's).
        grid: Cells a side of the common grid.
    """
    with threadpool_limits(1):  # per class the linear algebra is tiny: a BLAS thread pool costs more than it brings
        return _build(out, method, clusters, whose, grid)


def _build(out: str | os.PathLike[str], method: str | None, clusters: int | None, whose: str, grid: int) -> Atlas:
    start = time.perf_counter()
    names = list(read_run(out).get("class_names") or [])
    method, maps = read_grid_maps(out, method, whose, grid)
    n = len(maps.paths)
    cluster = np.full(n, -1, dtype=np.int64)
    xy = np.full((n, 2), np.nan, dtype=np.float32)
    features = _features(maps)
    classes = []
    for cid in np.unique(maps.class_ids):
        rows = np.flatnonzero(maps.class_ids == cid)
        live = rows[~maps.blank[rows]]
        classes.append(_class_atlas(int(cid), names, maps, features, rows, live, clusters, cluster, xy))
    classes.sort(key=lambda c: (-c.images, c.name.lower()))
    return Atlas(method, whose, grid, classes, maps.paths, maps.class_ids, cluster, xy,
                 time.perf_counter() - start)


def _features(maps: GridMaps) -> np.ndarray:
    """(n, PROJECT_DIMS): the square-rooted distributions on the run's top principal axes (fitted on a fixed
    sample of the maps that are not blank), so each class's own PCA and k-means work on few dimensions."""
    root = np.sqrt(maps.grids.reshape(len(maps.grids), -1))
    live = np.flatnonzero(~maps.blank)
    if len(live) > PROJECT_SAMPLE:
        live = np.sort(np.random.default_rng(_SEED).choice(live, PROJECT_SAMPLE, replace=False))
    if not len(live):
        return np.zeros((len(root), PROJECT_DIMS), dtype=np.float32)
    mean, axes = principal_axes(root[live], PROJECT_DIMS)
    return ((root - mean) @ axes.astype(np.float32)).astype(np.float32)


def _class_atlas(cid: int, names: list[str], maps: GridMaps, all_features: np.ndarray, rows: np.ndarray,
                 live: np.ndarray,
                 clusters: int | None, cluster: np.ndarray, xy: np.ndarray) -> ClassAtlas:
    """One class's clusters; writes its rows' cluster and layout into ``cluster`` and ``xy``."""
    name = names[cid] if 0 <= cid < len(names) else str(cid)
    found: list[Cluster] = []
    chosen = "no map with positive evidence"
    if len(live):
        features = all_features[live]
        labels, layout, chosen = cluster_class(features, clusters)
        cluster[live], xy[live] = labels, layout
        for c in range(int(labels.max()) + 1):
            members = live[labels == c]
            mean = maps.grids[members].mean(axis=0)
            energy = maps.box_energy[members]
            boxed = energy[np.isfinite(energy)]
            found.append(Cluster(c, len(members), mean, cluster_flags(mean, energy),
                                 _examples(features, labels, c, maps.paths[live]),
                                 float(boxed.mean()) if boxed.size else None))
    return ClassAtlas(cid, name, len(rows), len(rows) - len(live), found, chosen)


def write_atlas(out: str | os.PathLike[str], atlases: list[Atlas]) -> tuple[Path, Path]:
    """Write ``OUT/atlas.parquet`` and ``OUT/atlas.json`` for one or more methods (each written aside, then
    renamed). The JSON records the results' stamp (files, newest mtime, bytes), so a reader can tell a stale atlas."""
    folder = Path(out)
    table = pa.concat_tables([a.table() for a in atlases]) if atlases else atlas_schema().empty_table()
    parquet, js = folder / ATLAS_PARQUET, folder / ATLAS_JSON
    tmp = folder / f".{ATLAS_PARQUET}.tmp"
    pq.write_table(table, tmp)
    os.replace(tmp, parquet)
    doc = {
        "version": 1, "results_stamp": list(results_stamp(folder)),
        "methods": {a.method: {"whose": a.whose, "grid": a.grid, "seconds": round(a.seconds, 3),
                               "classes": [c.to_json() for c in a.classes]} for a in atlases},
    }
    tmp = folder / f".{ATLAS_JSON}.tmp"
    tmp.write_text(json.dumps(doc, ensure_ascii=False, separators=(",", ":")) + "\n", encoding="utf-8")
    os.replace(tmp, js)
    return parquet, js


def read_atlas(out: str | os.PathLike[str]) -> dict[str, Any] | None:
    """``OUT/atlas.json`` if it exists and was built from the results as they are now (else ``None``)."""
    folder = Path(out)
    try:
        doc = json.loads((folder / ATLAS_JSON).read_text(encoding="utf-8"))
        fresh = doc.get("results_stamp") == list(results_stamp(folder))
    except (OSError, ValueError, AttributeError):
        return None
    return doc if fresh and isinstance(doc.get("methods"), dict) else None
