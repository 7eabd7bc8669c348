"""The Dataset page's former table (pandas over the whole results table), kept as a reference only.

The page now reads through :mod:`cam_core.batch.query` (DuckDB). This is the implementation it replaced,
unchanged in what it computes: ``tests/test_results_query.py`` checks that the engine gives the same
counts, accuracy, per-class table, confusion matrix and pages, and ``benchmarks/bench_dataset.py`` times
both side by side. Nothing of the product imports it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from torchvision.transforms import InterpolationMode

from cam_core.batch.results import map_column, read_results, read_run
from cam_core.engine.methods import METHODS
from cam_core.errors import CamError
from cam_core.models.preprocess import FITS, Preprocess
from dashboard.views.dataset.table import shown_path

__all__ = [
    "SORTS",
    "Confusion",
    "Filters",
    "Results",
    "blank_by_class",
    "blank_flags",
    "check_results",
    "confusion",
    "export_csv",
    "failed_files",
    "filter_frame",
    "load_results",
    "map_of",
    "per_class",
    "slots",
    "sort_frame",
]

# Sort keys: name → (title, columns, ascending). Wrong first puts confident mistakes at the top.
SORTS: dict[str, tuple[str, list[str], list[bool]]] = {
    "wrong": ("Wrong first", ["_right", "prob_pred"], [True, False]),
    "low_true": ("Lowest p(true class) first", ["prob_label"], [True]),
    "low_conf": ("Least confident first", ["prob_pred"], [True]),
    "high_conf": ("Most confident first", ["prob_pred"], [False]),
    "entropy": ("Highest entropy first", ["entropy"], [False]),
    "blank": ("Blank maps first", ["_not_blank", "prob_pred"], [True, False]),
    "path": ("By file name", ["path"], [True]),
}
NEEDS_LABELS = ("wrong", "low_true")
T = TypeVar("T")


@dataclass
class Results:
    """One results folder: its ``run.json``, the Arrow table (maps included) and the light ``frame``.

    ``frame`` has one row per file, indexed by the row's position in ``table``, with ``name`` (file
    name), ``label``/``pred`` as nullable ints, ``correct`` as nullable bool, and ``slots``: the
    explained class ids.
    """

    folder: Path
    run: dict[str, Any]
    table: pa.Table
    frame: pd.DataFrame
    mtime_ns: int
    memo: dict[tuple[object, ...], object] = field(default_factory=dict, repr=False)

    def remember(self, key: tuple[object, ...], build: Callable[[], T]) -> T:
        """``build()`` once per key: what every rerun derives from the table (per-row slots, blank flags)."""
        if key not in self.memo:
            self.memo[key] = build()
        return self.memo[key]  # type: ignore[return-value]

    @property
    def methods(self) -> list[str]:
        return list(self.run.get("methods", []))

    @property
    def class_names(self) -> list[str]:
        return list(self.run.get("class_names", []))

    @property
    def has_labels(self) -> bool:
        return bool(self.frame.label.notna().any())

    @property
    def fit(self) -> str:
        return str(self.run.get("preprocessing", {}).get("fit", "whole"))

    @property
    def preprocess(self) -> Preprocess:
        """The run's preprocessing, rebuilt from ``run.json`` (so thumbnails match what the model saw)."""
        p = self.run["preprocessing"]
        return Preprocess(
            crop_size=tuple(p["crop_size"]), resize_size=int(p["resize_size"]), mean=tuple(p["mean"]),
            std=tuple(p["std"]), interpolation=InterpolationMode(p["interpolation"]), fit=p["fit"],
        )


_LIGHT = ["path", "label", "label_name", "pred", "pred_name", "prob_pred", "prob_label", "correct", "entropy",
          "class_ids", "top5_ids", "top5_probs", "error"]
_ID_COLUMNS = ("label", "pred")
_ID_LISTS = ("class_ids", "top5_ids")
_PRE_KEYS = ("crop_size", "resize_size", "mean", "std", "interpolation", "fit")


def load_results(folder: Path) -> Results:
    """Read a results folder (``results.parquet`` + ``run.json``), checked by :func:`check_results`.

    Raises:
        CamError: No results there, unreadable, or not what a batch run writes (one line saying what).
    """
    run = read_run(folder)
    table = read_results(folder)
    check_results(run, table)
    light = table.select(_LIGHT).to_pandas(
        types_mapper={pa.int32(): pd.Int32Dtype(), pa.bool_(): pd.BooleanDtype()}.get
    )
    light["name"] = [Path(p).name for p in light.path]
    return Results(folder, run, table, light, (folder / "results.parquet").stat().st_mtime_ns)


def _bad(what: str) -> CamError:
    return CamError(f"these results cannot be shown: {what} (not what `python -m cam_core batch` writes)")


def _check_run(run: object) -> list[str]:
    """``run.json``'s fields the page reads; returns its class names."""
    if not isinstance(run, dict):
        raise _bad("run.json is not a JSON object")
    methods = run.get("methods")
    if not isinstance(methods, list) or not methods or not all(isinstance(m, str) for m in methods):
        raise _bad("run.json names no methods")
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise _bad(f"run.json names an unknown method ({str(unknown[0])[:40]!r})")
    names = run.get("class_names")
    if not isinstance(names, list) or not names or not all(isinstance(n, str) and n.strip() for n in names):
        raise _bad("run.json's class_names are missing, empty or not strings")
    if not isinstance(run.get("layer"), str):
        raise _bad("run.json names no layer")
    pre = run.get("preprocessing")
    if not isinstance(pre, dict) or any(k not in pre for k in _PRE_KEYS) or pre.get("fit") not in FITS:
        raise _bad("run.json's preprocessing is incomplete")
    try:
        Results(Path(), run, pa.table({}), pd.DataFrame(), 0).preprocess  # noqa: B018 (built to be checked)
    except (TypeError, ValueError, KeyError) as exc:
        raise _bad("run.json's preprocessing is not a valid recipe") from exc
    return names


def _flat_ints(column: pa.ChunkedArray) -> np.ndarray:
    values = pc.list_flatten(column) if pa.types.is_list(column.type) else column
    return np.asarray(values.drop_null().to_numpy(zero_copy_only=False))


def check_results(run: object, table: pa.Table) -> None:
    """Refuse a results folder the page cannot show, with one line: a ``run.json`` that is not an object or
    lacks what the page reads, missing columns, an unknown method, class ids that are not integers or out of
    range (NaN included), or a ``map_shape`` that does not match the maps.

    Raises:
        CamError: What is wrong, in one line.
    """
    names = _check_run(run)
    methods = run["methods"]  # type: ignore[index]
    needed = [*_LIGHT, "map_shape", "blank", *(map_column(m) for m in methods)]
    missing = [c for c in needed if c not in table.column_names]
    if missing:
        raise _bad(f"results.parquet lacks the column{'s' if len(missing) > 1 else ''} {', '.join(missing[:4])}")
    for col in (*_ID_COLUMNS, *_ID_LISTS):
        typ = table.schema.field(col).type
        inner = typ.value_type if pa.types.is_list(typ) else typ
        if not pa.types.is_integer(inner):
            raise _bad(f"the column {col} holds {inner}, not class ids")
        ids = _flat_ints(table.column(col))
        if ids.size and (ids.min() < 0 or ids.max() >= len(names)):
            raise _bad(f"the column {col} holds class ids outside 0-{len(names) - 1}")
    shapes = table.column("map_shape").to_pylist()
    ks = table.column("class_ids").to_pylist()
    errors = table.column("error").to_pylist()
    preds = table.column("pred").to_pylist()
    lengths = {m: pc.list_value_length(table.column(map_column(m))).to_pylist() for m in methods}
    blanks = pc.list_value_length(table.column("blank")).to_pylist()
    for i, (shape, ids, error) in enumerate(zip(shapes, ks, errors, strict=True)):
        if error is not None:
            continue
        if preds[i] is None:  # a file explained without error has a prediction
            raise _bad(f"row {i} has no prediction and no error")
        ok = isinstance(shape, list) and len(shape) == 3 and all(isinstance(v, int) and v > 0 for v in shape)
        ok = ok and ids is not None and shape[0] == len(ids)
        if not ok or any(lengths[m][i] != shape[0] * shape[1] * shape[2] for m in methods):
            raise _bad(f"row {i}'s map_shape does not match its maps")
        if blanks[i] != len(methods) * len(ids):
            raise _bad(f"row {i}'s blank flags do not match its maps")


def map_of(results: Results, row: int, method: str, slot: int) -> np.ndarray | None:
    """The raw signed map (h, w) of class slot ``slot`` of row ``row`` (``None`` for a failed file)."""
    values = results.table.column(map_column(method))[row]
    shape = results.table.column("map_shape")[row]
    if not values.is_valid:
        return None
    k, h, w = shape.as_py()
    return values.values.to_numpy(zero_copy_only=False).reshape(k, h, w)[min(slot, k - 1)]


def slots(frame: pd.DataFrame, which: str) -> np.ndarray:
    """Per row, the class slot whose map to show: ``pred`` (the prediction's) or ``label`` (the true class's).

    A row that did not explain the asked class shows its first map.
    """
    want = frame.pred if which == "pred" else frame.label
    out = np.zeros(len(frame), dtype=np.int64)
    for i, (ids, c) in enumerate(zip(frame.class_ids, want, strict=True)):
        if ids is not None and not pd.isna(c) and int(c) in list(ids):
            out[i] = list(ids).index(int(c))
    return out


def blank_flags(results: Results, method: str, slot_of: np.ndarray) -> np.ndarray:
    """Per row, whether the shown map is blank after ReLU (False for a failed file)."""
    m = results.methods.index(method)
    blank = results.table.column("blank").to_pylist()
    ids = results.frame.class_ids
    out = np.zeros(len(blank), dtype=bool)
    for i, (flags, k) in enumerate(zip(blank, ids, strict=True)):
        if flags is not None and k is not None:
            out[i] = bool(flags[m * len(k) + slot_of[i]])
    return out


@dataclass(frozen=True)
class Filters:
    """What the gallery shows: true classes, predicted classes (ids; empty: any), and all/correct/wrong."""

    true: tuple[int, ...] = ()
    pred: tuple[int, ...] = ()
    outcome: str = "all"


def filter_frame(frame: pd.DataFrame, f: Filters) -> pd.DataFrame:
    """The rows with maps that pass the filters (failed files are listed apart)."""
    keep = frame.error.isna()
    if f.true:
        keep &= frame.label.isin(f.true).fillna(False)
    if f.pred:
        keep &= frame.pred.isin(f.pred).fillna(False)
    if f.outcome in ("correct", "wrong"):
        keep &= (frame.correct == (f.outcome == "correct")).fillna(False)
    return frame[keep.astype(bool)]


def sort_frame(frame: pd.DataFrame, key: str, blank: np.ndarray | None = None) -> pd.DataFrame:
    """``frame`` in the order of :data:`SORTS` ``key`` (missing values last; ties by path)."""
    _, cols, ascending = SORTS[key]
    work = frame.assign(
        _right=frame.correct.fillna(True).astype(bool),
        _not_blank=~blank[frame.index] if blank is not None else True,
    )
    order = work.sort_values([*cols, "path"], ascending=[*ascending, True], na_position="last", kind="stable")
    return frame.loc[order.index]


@dataclass
class Confusion:
    """Counts of (true class, predicted class); ``cols`` may end with an "other classes" column."""

    rows: list[int]
    cols: list[tuple[int, ...]]
    row_names: list[str]
    col_names: list[str]
    counts: np.ndarray
    hidden_rows: int = 0
    notes: list[str] = field(default_factory=list)


def confusion(frame: pd.DataFrame, class_names: Sequence[str], limit: int = 25) -> Confusion | None:
    """The confusion matrix of the labelled rows (``None`` without labels).

    Rows: the true classes present (the ``limit`` most frequent). Columns: those classes in the same
    order (the diagonal is the correct answers), then the other predicted classes by frequency, the
    rest in one column.
    """
    done = frame[frame.error.isna() & frame.label.notna()]
    if done.empty:
        return None
    true_counts = Counter(int(v) for v in done.label)
    rows = sorted(c for c, _ in true_counts.most_common(limit))
    rows.sort(key=lambda c: class_names[c].lower())
    pred_counts = Counter(int(v) for v in done.pred)
    others = [c for c, _ in pred_counts.most_common() if c not in rows]
    cols: list[tuple[int, ...]] = [(c,) for c in rows] + [(c,) for c in others[: max(0, limit - len(rows))]]
    rest = tuple(others[max(0, limit - len(rows)):])
    if rest:
        cols.append(rest)
    col_of = {c: j for j, ids in enumerate(cols) for c in ids}
    counts = np.zeros((len(rows), len(cols)), dtype=np.int64)
    row_of = {c: i for i, c in enumerate(rows)}
    for t, p in zip(done.label, done.pred, strict=True):
        if int(t) in row_of:
            counts[row_of[int(t)], col_of[int(p)]] += 1
    names = [class_names[ids[0]] if len(ids) == 1 else f"{len(ids)} other classes" for ids in cols]
    return Confusion(rows, cols, [class_names[c] for c in rows], names, counts, len(true_counts) - len(rows))


def per_class(frame: pd.DataFrame, blank: np.ndarray) -> pd.DataFrame:
    """Per true class: images, accuracy, mean probability of the true class, blank maps (``blank``: per row of
    the results, as :func:`blank_flags` gives)."""
    done = frame[frame.error.isna() & frame.label.notna()]
    done = done.assign(blank=blank[done.index])
    if done.empty:
        return pd.DataFrame(columns=["class", "images", "accuracy", "mean p(true)", "blank maps"])
    grouped = done.groupby("label_name", sort=True)
    out = pd.DataFrame({
        "images": grouped.size(),
        "accuracy": grouped.correct.apply(lambda s: float(s.astype(bool).mean())),
        "mean p(true)": grouped.prob_label.mean(),
        "blank maps": grouped.blank.sum(),
    })
    return out.rename_axis("class").reset_index()


def blank_by_class(results: Results, method: str) -> tuple[int, int, list[tuple[str, int]]]:
    """(blank maps, maps, [(class name, blank maps)] most first) over every explained class of ``method``."""
    m = results.methods.index(method)
    names = results.class_names
    total, counts = 0, Counter()
    for flags, ids in zip(results.table.column("blank").to_pylist(), results.frame.class_ids, strict=True):
        if flags is None or ids is None:
            continue
        k = len(ids)
        total += k
        for j, cid in enumerate(ids):
            if flags[m * k + j]:
                counts[names[int(cid)]] += 1
    return sum(counts.values()), total, counts.most_common()


def _shown_text(text: object, root: Path | None) -> object:
    """``text`` (an error message) with the data root's path taken out."""
    if root is None or not isinstance(text, str):
        return text
    return text.replace(str(root).rstrip("/") + "/", "").replace(str(root), ".")


def failed_files(frame: pd.DataFrame, root: Path | None) -> pd.DataFrame:
    """The failed rows as the page lists them: file (relative to the data root), true class, why."""
    return pd.DataFrame({
        "file": [shown_path(p, root) for p in frame.path],
        "label_name": list(frame.label_name),
        "error": [_shown_text(e, root) for e in frame.error],
    })


def export_csv(frame: pd.DataFrame, root: Path | None = None) -> str:
    """The rows as CSV (no maps: those stay in ``results.parquet``); top-5 as ``id:prob`` pairs.

    With ``root`` (the data root), paths are relative to it and error messages do not name it: a CSV that
    visitors download names no server path.
    """
    top5 = [
        ";".join(f"{int(i)}:{p:.4f}" for i, p in zip(ids, probs, strict=True)) if ids is not None else ""
        for ids, probs in zip(frame.top5_ids, frame.top5_probs, strict=True)
    ]
    cols = ["path", "label", "label_name", "pred", "pred_name", "prob_pred", "prob_label", "correct", "entropy",
            "error"]
    out = frame[cols].assign(top5=top5)
    if root is not None:
        out = out.assign(path=[shown_path(p, root) for p in frame.path],
                         error=[_shown_text(e, root) for e in frame.error])
    return out.to_csv(index=False)
