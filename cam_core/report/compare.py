"""The report of a comparison of two models over a folder (``python -m cam_core compare --out OUT``): both models,
how many predictions flipped, the flipped images, and the largest map shifts with both maps side by side.

Reads the comparison's contract: ``OUT/compare.parquet`` (one row per image: both predictions, ``pred_changed``,
per explained class ``class_names``, ``map_shift``, ``peak_shift_px``, ``prob_a``, ``prob_b``), ``OUT/compare.json``
and the two batch runs ``OUT/a`` and ``OUT/b`` (whose maps are drawn). The shift is the comparison's own number
(:func:`cam_core.analysis.compare.map_shift`), never recomputed here.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ..batch.compare_table import COMPARE, COMPARE_JSON
from ..errors import CamError
from ..versions import versions
from .html import cards, document, esc, pct, section, table
from .runs import RunMaps

__all__ = ["compare_report", "read_compare"]
PAIR_SIDE = 300  # each map's longer side, pixels
FLIP_ROWS = 200  # flipped images listed in the table at most
_COLUMNS = ("path", "pred_a", "pred_name_a", "prob_pred_a", "pred_b", "pred_name_b", "prob_pred_b", "pred_changed",
            "class_names", "map_shift", "error")


def read_compare(folder: str | os.PathLike[str]) -> tuple[pd.DataFrame, dict[str, Any]]:
    """``compare.parquet`` as a frame (with ``name``: the file name, and ``worst``: its largest map shift and
    that class) and ``compare.json`` (``{}`` when absent).

    Raises:
        CamError: No comparison there, or not what ``compare`` writes.
    """
    path = Path(folder) / COMPARE
    if not path.is_file():
        raise CamError(f"{folder} holds no {COMPARE} (run `python -m cam_core compare ... --out {folder}` first)")
    try:
        frame = pq.read_table(path).to_pandas()
    except (OSError, pa.ArrowInvalid) as exc:
        raise CamError(f"{path} cannot be read as Parquet: {exc}") from exc
    missing = [c for c in _COLUMNS if c not in frame.columns]
    if missing:
        raise CamError(f"{path} lacks the columns {', '.join(missing)}: not what `compare` writes")
    meta_path = Path(folder) / COMPARE_JSON
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8")) if meta_path.is_file() else {}
    except (OSError, ValueError) as exc:
        raise CamError(f"{meta_path} cannot be read: {exc}") from exc
    worst = [_worst(names, shifts) for names, shifts in zip(frame.class_names, frame.map_shift, strict=True)]
    frame = frame.assign(name=[Path(p).name for p in frame.path], shift=[w[0] for w in worst],
                         shift_class=[w[1] for w in worst])
    return frame, meta if isinstance(meta, dict) else {}


def _worst(names: Any, shifts: Any) -> tuple[float, str | None]:
    """The largest finite map shift of a row and its class (nan, None when there is none)."""
    pairs = [(float(s), str(n)) for n, s in zip(list(names) if names is not None else [],
                                                 list(shifts) if shifts is not None else [], strict=False)
             if s is not None and math.isfinite(float(s))]
    return max(pairs) if pairs else (math.nan, None)


def _model(run: RunMaps) -> str:
    fit = run.run.get("preprocessing", {}).get("fit", "?")
    return f"{run.run.get('model', '?')} at {run.run.get('layer', '?')} ({fit} fit)"


def _summary(frame: pd.DataFrame, a: RunMaps, b: RunMaps, method: str) -> str:
    done = frame[frame.error.isna()]
    flipped = int(done.pred_changed.fillna(False).astype(bool).sum())
    items = [(f"{len(done)}", "images compared"), (f"{len(frame) - len(done)}", "failed"),
             (f"{flipped}", f"predictions flipped ({pct(flipped, len(done))})")]
    if "correct_a" in done and done.correct_a.notna().any():
        labelled = done[done.correct_a.notna()]
        for side in ("a", "b"):
            right = int(labelled[f"correct_{side}"].fillna(False).astype(bool).sum())
            items.append((pct(right, len(labelled)), f"accuracy of {side.upper()} ({right} of {len(labelled)})"))
    shifts = done["shift"].dropna()
    if len(shifts):
        items.append((f"{shifts.median():.2f}", "median largest map shift (1 − r)"))
    models = table(None, [("A", _model(a)), ("B", _model(b)), ("maps", method),
                          ("map shift", "1 − the Pearson correlation of the two ReLU'd maps on the photo: 0 the "
                                        "same place, 1 unrelated, 2 opposite")])
    return section("Summary", cards(items) + models, first=True)


def _flips(frame: pd.DataFrame) -> str:
    flips = frame[frame.error.isna() & frame.pred_changed.fillna(False).astype(bool)]
    flips = flips.sort_values(["shift", "path"], ascending=[False, True], na_position="last")
    label = "label_name" in flips and bool(flips.label_name.notna().any())

    def row(r: Any) -> tuple[object, ...]:
        truth = (r.label_name if isinstance(r.label_name, str) else "",) if label else ()
        return (r.name, *truth, f"{r.pred_name_a} ({r.prob_pred_a:.1%})", f"{r.pred_name_b} ({r.prob_pred_b:.1%})",
                "" if math.isnan(r.shift) else f"{r.shift:.2f}")

    header = ["image", *(["true class"] if label else []), "A predicts", "B predicts", "largest map shift"]
    more = f"<p class=muted>The first {FLIP_ROWS} of {len(flips)}, by map shift.</p>" if len(flips) > FLIP_ROWS else ""
    body = table(header, [row(r) for r in flips.head(FLIP_ROWS).itertuples()], numeric=(len(header) - 1,))
    return section(f"Flipped predictions ({len(flips)})", (body + more) if len(flips) else "<p>None flipped.</p>")


def _shifts(frame: pd.DataFrame, a: RunMaps, b: RunMaps, method: str, top: int) -> str:
    done = frame[frame.error.isna() & frame["shift"].notna()]
    done = done.sort_values(["shift", "path"], ascending=[False, True]).head(top)
    figs = []
    for r in done.itertuples():
        cls = str(r.shift_class)
        sides = []
        for run, who in ((a, "A"), (b, "B")):
            cam = run.map_of(r.path, method, run.class_id(cls))
            sides.append(f"<div>{run.overlay(r.path, cam, side=PAIR_SIDE, alt=f'{who} map of {cls} in {r.name}')}"
                         f"<span class=muted>{who}</span></div>")
        flip = (f"{esc(r.pred_name_a)} → {esc(r.pred_name_b)}" if bool(r.pred_changed)
                else f"both {esc(r.pred_name_a)}")
        caption = (f"<b>{esc(r.name)}</b> · '{esc(cls)}' moved {r.shift:.2f}<br>"
                   f"<span class=muted>{flip} ({r.prob_pred_a:.1%} / {r.prob_pred_b:.1%})</span>")
        figs.append(f"<figure><div class=pair>{''.join(sides)}</div><figcaption>{caption}</figcaption></figure>")
    intro = (f"<p>The {len(figs)} images whose map of a class moved most from A to B (left: A, right: B; each "
             "map on its own scale).</p>")
    return section("Largest map shifts", intro + f"<div class='grid wide' style='--fig: 460px'>{''.join(figs)}</div>")


def compare_report(folder: str | os.PathLike[str], *, method: str | None = None, top: int = 12) -> str:
    """The whole HTML file for a comparison folder.

    Args:
        folder: What ``python -m cam_core compare --out`` wrote.
        method: The method whose maps to draw (default the runs' first).
        top: How many of the largest map shifts to draw.

    Raises:
        CamError: Not a comparison folder, or its runs lack the method.
    """
    frame, meta = read_compare(folder)
    a, b = RunMaps.open(Path(folder) / "a"), RunMaps.open(Path(folder) / "b")
    named = meta.get("method")
    method = a.method(method or (named if isinstance(named, str) else None))
    b.method(method)
    subtitle = f"A: {_model(a)} · B: {_model(b)} · {int(frame.error.isna().sum())} images · {method}"
    sections = [_summary(frame, a, b, method), _flips(frame), _shifts(frame, a, b, method, top)]
    return document(f"Comparison: {Path(folder).resolve().name}", subtitle, sections, versions())
