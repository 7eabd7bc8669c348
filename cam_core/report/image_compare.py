"""A second model on the image report's photo (the image page's *Model A vs model B*): both models' maps of each
explained class, B − A, and one line per class (map shift, peak shift, probability change), from
:func:`cam_core.analysis.compare_photo.compare_classes`'s rows: the page's numbers, not recomputed."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from ..analysis.compare_photo import ClassComparison, map_difference
from ..engine.methods import METHODS
from ..render import overlay
from .html import colour_scale, esc, figure, picture, section

__all__ = ["SecondModel", "comparison_section"]

SIDE = 300  # each of the three pictures' longer side, pixels


@dataclass(frozen=True)
class SecondModel:
    """Model B beside the report's model A.

    Attributes:
        model, layer, fit: What B is and how it met the photo.
        method: The method both maps are of.
        rows: One per explained class of A (:func:`~cam_core.analysis.compare_photo.compare_classes`).
        top_a, top_b: Each model's top class and its probability.
        shared: Both maps on one colour scale (the larger maximum), as the page's *Same colour scale*.
    """

    model: str
    layer: str
    fit: str
    method: str
    rows: Sequence[ClassComparison]
    top_a: tuple[str, float]
    top_b: tuple[str, float]
    shared: bool = False


def _line(row: ClassComparison, kind: str) -> str:
    """One line for a class, as the page words it."""
    if row.id_b is None:
        return f"not in model B (no class of that name); A's p {row.prob_a:.2%}"
    prob = f"{kind} p {row.prob_a:.2%} → {row.prob_b:.2%} ({row.prob_change:+.1%})"
    if row.shift is None:
        return f"no map to compare; {prob}"
    peak = "no peak (a blank map)" if math.isnan(row.shift.peak_px) else f"peak shift {row.shift.peak_px:.0f} px"
    return f"map shift {row.shift.shift:.2f} (r = {row.shift.correlation:.2f}), {peak}, {prob}"


def _pictures(background: np.ndarray, row: ClassComparison, shared: bool) -> str:
    """A's map, B's map (ReLU'd) and B − A (signed) over the photo, each with its colour scale."""
    a, b = np.asarray(row.map_a, dtype=np.float32), np.asarray(row.map_b, dtype=np.float32)
    tops = [max(float(a.max()), float(b.max()))] * 2 if shared else [float(a.max()), float(b.max())]
    cells = []
    for who, cam, top in (("A", a, tops[0]), ("B", b, tops[1])):
        rgb = overlay(background, cam, view="relu", top=top if top > 0 else None)
        cells.append(f"<div>{picture(rgb, side=SIDE, alt=f'{who} map of {row.name}')}"
                     f"{colour_scale(max(top, 0.0), 'relu')}<span class=muted>{who}</span></div>")
    diff = map_difference(a, b, shared)
    rgb = overlay(background, diff, view="signed", top=1.0)
    cells.append(f"<div>{picture(rgb, side=SIDE, alt=f'B minus A for {row.name}')}{colour_scale(1.0, 'signed')}"
                 "<span class=muted>B − A: red where B looks more</span></div>")
    return f"<div class=pair>{''.join(cells)}</div>"


def comparison_section(photo: Image.Image, second: SecondModel, probs_kind: str) -> str:
    """The report's section for model B beside model A on ``photo``."""
    rows = list(second.rows)
    grid = next((r.map_a.shape for r in rows if r.map_a is not None), None)
    background = None if grid is None else np.asarray(
        photo.convert("RGB").resize((grid[1], grid[0]), Image.Resampling.BILINEAR))
    (name_a, p_a), (name_b, p_b) = second.top_a, second.top_b
    flip = "the same top class" if name_a.casefold() == name_b.casefold() else "<b>the top class changed</b>"
    intro = (f"<p>Model B: <b>{esc(second.model)}</b> at <code>{esc(second.layer)}</code> ({esc(second.fit)} fit), "
             f"{esc(METHODS[second.method].title if second.method in METHODS else second.method)}. A predicts "
             f"{esc(name_a)} ({p_a:.2%}), B {esc(name_b)} ({p_b:.2%}): {flip}. Map shift: 1 − the correlation of "
             "the two ReLU'd maps over the photo (0 the same place, 1 unrelated, up to 2 opposite).</p>")
    figs = []
    for row in rows:
        caption = f"<b>{esc(row.name)}</b> ({row.id_a}): {esc(_line(row, probs_kind))}"
        body = _pictures(background, row, second.shared) if row.shift is not None and background is not None else ""
        figs.append(figure(body, caption) if body else f"<p>{caption}</p>")
    return section("Model A vs model B", intro + "".join(figs))
