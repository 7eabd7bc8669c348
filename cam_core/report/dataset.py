"""The report of a batch run over a folder (``python -m cam_core batch --out OUT``): the summary numbers, the
per-class table, the confusion matrix and the odd predictions (confident mistakes, the lowest probability of the
true class, blank maps) with their maps over the photos.

Every number comes from :class:`~cam_core.batch.query.ResultsQuery`, the engine the Dataset page reads through, so
the report and the page count alike (a folder of Ray's Parquet parts included).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..batch.query import ResultsQuery
from ..versions import versions
from .html import cards, document, esc, pct, section, table
from .pictures import map_on_file
from .runs import pick_method

__all__ = ["dataset_report"]

THUMB_SIDE = 320  # each odd prediction's longer side, pixels
CONFUSION_CLASSES = 20  # true classes (rows) of the confusion matrix at most; the rest are counted
FAILED_ROWS = 500  # failed files listed at most


def _summary(q: ResultsQuery, method: str, shown: Any) -> str:
    s = q.summary()
    blank, maps, _ = q.blank_by_class(method)
    items = [(f"{s.images}", "images explained"), (f"{s.failed}", "failed")]
    if s.labelled:
        items.append((pct(s.right, s.labelled), f"accuracy ({s.right} of {s.labelled} labelled)"))
    items.append((f"{blank} of {maps}", "maps blank after ReLU"))
    r = q.run
    pre = r.get("preprocessing", {})
    about = table(None, [
        ("model", f"{r.get('model', '?')}" + ("" if r.get("pretrained", True) else " (untrained weights)")),
        ("layer", r.get("layer", "?")), ("methods", ", ".join(q.methods)), ("maps shown", method),
        ("classes explained", r.get("classes", "?")), ("input", pre.get("description", pre.get("fit", "?"))),
        ("images", shown(r.get("images", "?"))), ("run", f"{r.get('started', '?')} to {r.get('finished') or '?'}"),
    ])
    return section("Summary", cards(items) + about, first=True)


def _per_class(q: ResultsQuery, method: str) -> str:
    rows = q.per_class(method).to_pylist()
    if not rows:
        return ""
    body = table(["true class", "images", "accuracy", "mean p(true)", "blank maps"], [
        (r["class"], r["images"], f"{r['accuracy']:.1%}", f"{r['mean p(true)']:.1%}", r["blank maps"]) for r in rows
    ], numeric=(1, 2, 3, 4))
    return section("Per class", body)


def _confusion(q: ResultsQuery) -> str:
    conf = q.confusion(CONFUSION_CLASSES)
    if conf is None:
        return ""
    header = ["true ↓ / predicted →", *conf.col_names]
    grid = [[name, *(int(v) for v in line)] for name, line in zip(conf.row_names, conf.counts, strict=True)]
    note = f"<p class=muted>{conf.hidden_rows} rarer true classes left out.</p>" if conf.hidden_rows else ""
    intro = "<p>Rows: the true class; columns: the prediction; the diagonal counts the correct answers.</p>"
    return section("Confusion matrix", intro + table(header, grid, numeric=range(1, len(header))) + note)


def _odd_groups(q: ResultsQuery, method: str, top: int) -> list[tuple[str, str, list[dict[str, Any]]]]:
    """(title, why, rows) for each kind of odd prediction, at most ``top`` rows each, in the page's sorts; an image
    shown in one kind is left out of the later ones (a confident mistake usually has a low p(true class) too)."""
    kinds = [
        ("Confident mistakes", "wrong, the most confident first", "wrong", {"wrong": True}),
        ("Lowest probability of the true class", "the lowest p(true class) first, beyond those above", "low_true", {}),
    ] if q.has_labels else []
    kinds.append(("Blank maps", "the prediction's map is empty after ReLU, the most confident first", "blank",
                  {"blank": True}))
    groups, seen = [], set()
    for title, why, sort, filters in kinds:
        rows = [r for r in q.page(sort, filters, 0, top + len(seen), method) if r["rid"] not in seen][:top]
        seen.update(r["rid"] for r in rows)
        if rows:
            groups.append((title, why, rows))
    return groups


def _odd(q: ResultsQuery, method: str, top: int) -> str:
    parts, pre = [], q.preprocess
    for title, why, rows in _odd_groups(q, method, top):
        maps = q.maps([r["rid"] for r in rows], method)
        figs = []
        for r in rows:
            name, cams = Path(r["path"]).name, maps[r["rid"]]
            cam = None if cams is None else cams[min(r["slot"], len(cams) - 1)]
            img = map_on_file(r["path"], cam, pre, side=THUMB_SIDE, alt=f"map of {r['pred_name']} in {name}")
            truth = (f"true {esc(r['label_name'])} (p {r['prob_label']:.1%}) · " if r["label_name"] is not None
                     else "")
            caption = (f"<b>{esc(name)}</b><br><span class=muted>{truth}predicted {esc(r['pred_name'])} "
                       f"(p {r['prob_pred']:.1%})</span>")
            figs.append(f"<figure>{img}<figcaption>{caption}</figcaption></figure>")
        parts.append(f"<h3>{esc(title)} ({len(figs)})</h3><p class=muted>{esc(why)}; the map of the prediction.</p>"
                     f"<div class=grid style='--fig: 220px'>{''.join(figs)}</div>")
    return section("Odd predictions", "".join(parts) or "<p>Nothing odd: no mistakes and no blank maps.</p>")


def _failed(q: ResultsQuery, shown: Any) -> str:
    failed = q.failed(FAILED_ROWS).to_pylist()
    if not failed:
        return ""
    more = q.summary().failed - len(failed)
    note = f"<p class=muted>The first {len(failed)} by path; {more} more.</p>" if more > 0 else ""
    rows = [(Path(r["path"]).name, shown(r["error"])) for r in failed]
    return section(f"Files that failed ({q.summary().failed})", table(["file", "why"], rows) + note)


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
        root: Show paths under this folder from it (the dashboard's data root: a report leaves the server).

    Raises:
        CamError: Not a results folder, or it lacks the method.
    """
    prefix = None if root is None else str(Path(root).resolve()).rstrip(os.sep) + os.sep

    def shown(text: object) -> object:
        return text.replace(prefix, "") if prefix and isinstance(text, str) else text

    q = ResultsQuery.open(folder)
    try:
        method = pick_method(q.methods, method, q.folder)
        sections = [_summary(q, method, shown), _per_class(q, method), _confusion(q), _odd(q, method, top),
                    _failed(q, shown)]
        s = q.summary()
        accuracy = f" · accuracy {s.accuracy:.1%}" if s.accuracy is not None else ""
        subtitle = f"{q.run.get('model', '?')} at {q.run.get('layer', '?')} · {s.images} images{accuracy}"
    finally:
        q.close()
    return document(f"Dataset report: {Path(folder).resolve().name}", subtitle, [x for x in sections if x],
                    versions())
