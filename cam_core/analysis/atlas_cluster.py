"""The atlas' embedding and clustering in NumPy: PCA, k-means (k-means++ seeds), the mean silhouette.

Written out rather than taken from scikit-learn: an atlas clusters every class of a run on its own
(a thousand classes of a hundred maps each), and a library call's fixed overhead (thread pools,
checks: ~30 ms a call on a busy 2-core machine) then costs more than the arithmetic. The tests hold
these against scikit-learn's ``PCA``, ``KMeans`` and ``silhouette_score``.
"""

from __future__ import annotations

import numpy as np

__all__ = ["kmeans", "pca", "principal_axes", "silhouette", "sq_distances"]

_ITERATIONS = 100


def principal_axes(x: np.ndarray, dims: int) -> tuple[np.ndarray, np.ndarray]:
    """(mean (d,), axes (d, dims)) of the rows ``x`` (n, d): the top principal axes, each axis' sign fixed so
    that its largest loading is positive (the layout does not flip between runs); zero columns pad missing axes."""
    mean = x.mean(axis=0)
    xc = (x - mean).astype(np.float64)
    dims = max(1, min(dims, x.shape[1]))
    if len(x) < x.shape[1]:  # fewer rows than features: the thin SVD is the smaller problem
        _, _, vt = np.linalg.svd(xc, full_matrices=False)
        axes = vt[:dims].T
    else:
        values, vectors = np.linalg.eigh(xc.T @ xc)
        axes = vectors[:, np.argsort(-values, kind="stable")[:dims]]
    if axes.shape[1] < dims:
        axes = np.pad(axes, ((0, 0), (0, dims - axes.shape[1])))
    signs = np.sign(axes[np.abs(axes).argmax(axis=0), np.arange(axes.shape[1])])
    return mean, axes * np.where(signs == 0, 1.0, signs)


def pca(x: np.ndarray, dims: int) -> np.ndarray:
    """(n, d) → (n, dims): the centred rows projected on their top principal axes."""
    mean, axes = principal_axes(x, dims)
    return ((x - mean) @ axes).astype(np.float32)


def sq_distances(x: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """(n, k) squared Euclidean distances (clipped at 0 against rounding)."""
    d = (x * x).sum(axis=1)[:, None] - 2.0 * x @ centres.T + (centres * centres).sum(axis=1)[None, :]
    return np.maximum(d, 0.0)


def _seeds(x: np.ndarray, xx: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """k-means++ (Arthur & Vassilvitskii 2007): each next seed drawn in proportion to its squared distance."""
    centres = np.empty((k, x.shape[1]))
    centres[0] = x[rng.integers(len(x))]
    closest = _to(x, xx, centres[:1])[:, 0]
    for i in range(1, k):
        total = closest.sum()
        pick = rng.choice(len(x), p=closest / total) if total > 0 else rng.integers(len(x))
        centres[i] = x[pick]
        closest = np.minimum(closest, _to(x, xx, centres[i : i + 1])[:, 0])
    return centres


def _to(x: np.ndarray, xx: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """:func:`sq_distances` with the rows' squared norms ``xx`` computed once."""
    return np.maximum(xx[:, None] - 2.0 * x @ centres.T + (centres * centres).sum(axis=1)[None, :], 0.0)


def kmeans(x: np.ndarray, k: int, seed: int = 0, n_init: int = 3) -> tuple[np.ndarray, np.ndarray, float]:
    """Lloyd's k-means from ``n_init`` k-means++ starts: (labels (n,), centres (k, d), inertia) of the best."""
    x = np.asarray(x, dtype=np.float64)
    xx = (x * x).sum(axis=1)
    rng = np.random.default_rng(seed)
    rows = np.arange(len(x))
    best: tuple[np.ndarray, np.ndarray, float] = (np.zeros(len(x), dtype=np.int64), x[:1].copy(), np.inf)
    for _ in range(n_init):
        centres = _seeds(x, xx, k, rng)
        labels = np.full(len(x), -1)
        for _ in range(_ITERATIONS):
            new = _to(x, xx, centres).argmin(axis=1)
            if np.array_equal(new, labels):
                break
            labels = new
            onehot = np.zeros((len(x), k))
            onehot[rows, labels] = 1.0
            counts = onehot.sum(axis=0)
            filled = counts > 0
            centres[filled] = (onehot.T @ x)[filled] / counts[filled, None]  # an emptied cluster keeps its centre
        inertia = float(_to(x, xx, centres)[rows, labels].sum())
        if inertia < best[2] - 1e-12:
            best = (labels, centres, inertia)
    return best


def silhouette(x: np.ndarray, labels: np.ndarray) -> float:
    """The mean silhouette (Rousseeuw 1987) with Euclidean distances, as ``sklearn.metrics.silhouette_score``:
    s = (b − a) / max(a, b) per point, 0 for a point alone in its cluster."""
    x = np.asarray(x, dtype=np.float64)
    ids, lab = np.unique(labels, return_inverse=True)
    if len(ids) < 2:
        return 0.0
    d = np.sqrt(sq_distances(x, x))
    np.fill_diagonal(d, 0.0)
    onehot = np.eye(len(ids))[lab]
    sums = d @ onehot  # (n, k): summed distance to each cluster
    counts = onehot.sum(axis=0)
    own = counts[lab] - 1
    a = np.where(own > 0, sums[np.arange(len(x)), lab] / np.maximum(own, 1), 0.0)
    other = sums / counts
    other[np.arange(len(x)), lab] = np.inf
    b = other.min(axis=1)
    s = np.where(own > 0, (b - a) / np.maximum(np.maximum(a, b), 1e-300), 0.0)
    return float(s.mean())
