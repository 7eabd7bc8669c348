"""The report of a batch run over a folder (``python -m cam_core batch --out OUT``): the summary numbers, the
per-class table, the confusion matrix and the odd predictions (confident mistakes, the lowest probability of the
true class, blank maps) with their maps over the photos."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ..versions import versions
from .html import cards, document, esc, pct, section, table
from .runs import RunMaps

__all__ = ["dataset_report"]

THUMB_SIDE = 320  # each odd prediction's longer side, pixels
CONFUSION_CLASSES = 20  # true classes (rows) of the confusion matrix at most; the rest are counted
_LIGHT = ["path", "label", "label_name", "pred", "pred_name", "prob_pred", "prob_label", "correct", "class_ids",
          "blank", "error"]


def _frame(run: RunMaps, method: str) -> pd.DataFrame:
    """One light row per file, with ``name`` and ``blank_pred``: the prediction's map is blank after ReLU."""
    frame = run.table.select(_LIGHT).to_pandas()
    m = run.methods.index(method)
    blank = []
    for ids, flags, pred in zip(frame.class_ids, frame.blank, frame.pred, strict=True):
        ids = [] if ids is None else list(ids)
        k = ids.index(pred) if pred in ids else 0
        blank.append(bool(flags[m * len(ids) + k]) if flags is not None and ids else False)
    return frame.assign(name=[Path(p).name for p in frame.path], blank_pred=blank)


def _summary(frame: pd.DataFrame, run: RunMaps, method: str) -> str:
    done = frame[frame.error.isna()]
    labelled = done[done.label.notna()]
    items = [(f"{len(done)}", "images explained"), (f"{len(frame) - len(done)}", "failed")]
    if len(labelled):
        right = int(labelled.correct.fillna(False).astype(bool).sum())
        items.append((pct(right, len(labelled)), f"accuracy ({right} of {len(labelled)} labelled)"))
    items.append((f"{int(done.blank_pred.sum())}", "blank maps of the prediction"))
    r = run.run
    pre = r.get("preprocessing", {})
    about = table(None, [
        ("model", f"{r.get('model', '?')}" + ("" if r.get("pretrained", True) else " (untrained weights)")),
        ("layer", r.get("layer", "?")), ("methods", ", ".join(run.methods)), ("maps shown", method),
        ("classes explained", r.get("classes", "?")), ("input", pre.get("description", pre.get("fit", "?"))),
        ("images", r.get("images", "?")), ("run", f"{r.get('started', '?')} to {r.get('finished') or '?'}"),
    ])
    return section("Summary", cards(items) + about, first=True)


def _per_class(frame: pd.DataFrame) -> str:
    done = frame[frame.error.isna() & frame.label.notna()]
    if done.empty:
        return ""
    rows = []
    for name, g in done.groupby("label_name", sort=True):
        right = int(g.correct.fillna(False).astype(bool).sum())
        rows.append((name, len(g), pct(right, len(g)), f"{g.prob_label.mean():.1%}", int(g.blank_pred.sum())))
    body = table(["true class", "images", "accuracy", "mean p(true)", "blank maps"], rows, numeric=(1, 2, 3, 4))
    return section("Per class", body)


def _confusion(frame: pd.DataFrame, names: Sequence[str]) -> str:
    done = frame[frame.error.isna() & frame.label.notna()]
    if done.empty:
        return ""
    truth = done.label.astype(int).value_counts()
    rows = sorted(truth.index[:CONFUSION_CLASSES], key=lambda c: names[c].lower())
    others = [int(c) for c in done.pred.astype(int).value_counts().index if c not in rows]
    cols = rows + others[: max(0, CONFUSION_CLASSES - len(rows))]
    rest = set(others) - set(cols)
    counts = pd.crosstab(done.label.astype(int), done.pred.astype(int))
    grid = []
    for t in rows:
        line = counts.loc[t] if t in counts.index else pd.Series(dtype=int)
        grid.append([names[t], *(int(line.get(c, 0)) for c in cols),
                     *([int(sum(line.get(c, 0) for c in rest))] if rest else [])])
    header = ["true ↓ / predicted →", *(names[c] for c in cols), *([f"{len(rest)} other classes"] if rest else [])]
    hidden = len(truth) - len(rows)
    note = f"<p class=muted>{hidden} rarer true classes left out.</p>" if hidden else ""
    intro = "<p>Rows: the true class; columns: the prediction; the diagonal counts the correct answers.</p>"
    return section("Confusion matrix", intro + table(header, grid, numeric=range(1, len(header))) + note)


def _odd_groups(frame: pd.DataFrame, top: int) -> list[tuple[str, str, pd.DataFrame]]:
    """(title, why, rows) for each kind of odd prediction, at most ``top`` rows each; an image shown in one kind
    is left out of the later ones (a confident mistake usually has a low p(true class) too)."""
    done = frame[frame.error.isna()]
    kinds = [
        ("Confident mistakes", "wrong, the most confident first",
         done[done.correct.eq(False).fillna(False).astype(bool)], ["prob_pred"], False),
        ("Lowest probability of the true class", "the lowest p(true class) first, beyond those above",
         done[done.prob_label.notna()], ["prob_label"], True),
        ("Blank maps", "the prediction's map is empty after ReLU, the most confident first",
         done[done.blank_pred], ["prob_pred"], False),
    ]
    groups, shown = [], set()
    for title, why, rows, by, ascending in kinds:
        rows = rows[~rows.path.isin(shown)].sort_values([*by, "path"], ascending=[ascending, True]).head(top)
        shown.update(rows.path)
        if len(rows):
            groups.append((title, why, rows))
    return groups


def _odd(frame: pd.DataFrame, run: RunMaps, method: str, top: int) -> str:
    parts = []
    for title, why, rows in _odd_groups(frame, top):
        figs = []
        for r in rows.itertuples():
            cam = run.map_of(r.path, method, int(r.pred))
            img = run.overlay(r.path, cam, side=THUMB_SIDE, alt=f"map of {r.pred_name} in {r.name}")
            truth = (f"true {esc(r.label_name)} (p {r.prob_label:.1%}) · " if isinstance(r.label_name, str) else "")
            caption = (f"<b>{esc(r.name)}</b><br><span class=muted>{truth}predicted {esc(r.pred_name)} "
                       f"(p {r.prob_pred:.1%})</span>")
            figs.append(f"<figure>{img}<figcaption>{caption}</figcaption></figure>")
        parts.append(f"<h3>{esc(title)} ({len(figs)})</h3><p class=muted>{esc(why)}; the map of the prediction.</p>"
                     f"<div class=grid style='--fig: 220px'>{''.join(figs)}</div>")
    return section("Odd predictions", "".join(parts) or "<p>Nothing odd: no mistakes and no blank maps.</p>")


def _failed(frame: pd.DataFrame) -> str:
    failed = frame[frame.error.notna()]
    if failed.empty:
        return ""
    return section(f"Files that failed ({len(failed)})", table(["file", "why"], failed[["name", "error"]].values))


def _relative(frame: pd.DataFrame, run: RunMaps, root: Path) -> None:
    """Paths under ``root`` shown from it (the dashboard's data root: a report leaves the server)."""
    prefix = str(root.resolve()).rstrip(os.sep) + os.sep
    frame["error"] = [e.replace(prefix, "") if isinstance(e, str) else e for e in frame.error]
    run.run = {**run.run, "images": str(run.run.get("images", "?")).replace(prefix, "")}


def dataset_report(
    folder: str | os.PathLike[str],
    *,
    method: str | None = None,
    top: int = 8,
    root: str | os.PathLike[str] | None = None,
) -> str:
    """The whole HTML file for a batch results folder.

    Args:
        folder: What ``python -m cam_core batch --out`` wrote.
        method: The method whose maps to draw (default the run's first).
        top: How many images of each kind of odd prediction to draw.
        root: Show paths under this folder from it (the dashboard's data root).

    Raises:
        CamError: Not a results folder, or it lacks the method.
    """
    run = RunMaps.open(folder)
    method = run.method(method)
    frame = _frame(run, method)
    if root is not None:
        _relative(frame, run, Path(root))
    names = run.class_names
    sections = [_summary(frame, run, method), _per_class(frame), _confusion(frame, names),
                _odd(frame, run, method, top), _failed(frame)]
    done = frame[frame.error.isna()]
    acc = done.correct.dropna()
    accuracy = f" · accuracy {np.mean(acc.astype(bool)):.1%}" if len(acc) else ""
    subtitle = f"{run.run.get('model', '?')} at {run.run.get('layer', '?')} · {len(done)} images{accuracy}"
    return document(f"Dataset report: {Path(folder).resolve().name}", subtitle, [s for s in sections if s],
                    versions())
