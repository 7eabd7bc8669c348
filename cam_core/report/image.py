"""The report of one image: the photo, the maps over it, the scores, the findings in plain words, and what made them.

:class:`ImageReport` holds plain values (the image page fills it from what it shows; :func:`explain_image` from
a model and a file, for the command line), and :func:`image_report` lays it out as one HTML file.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..analysis.diagnose import diagnose, layer_context, probe_head
from ..analysis.diagnosis import Diagnosis, Finding
from ..engine.explainer import explain
from ..engine.methods import METHODS
from ..engine.result import ExplainResult
from ..errors import CamError
from ..io.images import load_image
from ..models.preprocess import Placement
from ..render import View
from ..versions import versions
from .html import colour_scale, document, esc, figure, picture, prose, section, table
from .image_compare import SecondModel, comparison_section
from .pictures import map_over_photo

__all__ = ["ImageReport", "diagnose_maps", "explain_image", "finding_html", "image_report"]

PHOTO_SIDE = 720  # the photo's longer side in the report, pixels
MAP_SIDE = 440  # each overlay's
SCORE_ROWS = 5  # the top classes listed (explained classes below them are added)


@dataclass(frozen=True)
class ImageReport:
    """What an image report shows, as plain values.

    Attributes:
        name: The image's name (a file name: shown as text, never trusted).
        photo: The image itself, at its own size.
        place: How it met the model (the fit), to lay the maps over it.
        class_names: Every class's name, by id.
        logits, probs: (C,) the model's outputs and their probabilities (``probs_kind``).
        class_ids: The explained classes, in order.
        methods: The methods, in order.
        maps: (method, class id) → raw signed map (h, w), at the layer's grid or the input's.
        diagnoses: (method, class id) → its diagnosis (numbers and findings); may lack some.
        model, pretrained, layer: What explained it; ``recommended``: the model's recommended layer.
        probs_kind: ``softmax`` or ``sigmoid``; ``target``: the explained score.
        views, cmap, signed_cmap, alpha: How the maps are drawn (the page's display).
        second: A second model beside this one on the photo (the page's *Model A vs model B*), when shown.
    """

    name: str
    photo: Image.Image
    place: Placement
    class_names: Sequence[str]
    logits: np.ndarray
    probs: np.ndarray
    class_ids: tuple[int, ...]
    methods: tuple[str, ...]
    maps: Mapping[tuple[str, int], np.ndarray]
    diagnoses: Mapping[tuple[str, int], Diagnosis]
    model: str
    pretrained: bool
    layer: str
    recommended: str | None = None
    probs_kind: str = "softmax"
    target: str = "logit"
    views: tuple[View, ...] = ("relu",)
    cmap: str | None = None
    signed_cmap: str | None = None
    alpha: float = 0.6
    second: SecondModel | None = None


def _title(method: str) -> str:
    return METHODS[method].title if method in METHODS else method


def _class(r: ImageReport, cid: int) -> str:
    return f"{r.class_names[cid]} ({cid})"


def _scores(r: ImageReport) -> str:
    order = np.argsort(-np.asarray(r.probs), kind="stable")
    shown = [int(c) for c in order[:SCORE_ROWS]] + [c for c in r.class_ids if c not in order[:SCORE_ROWS]]
    rank = {int(c): i + 1 for i, c in enumerate(order)}
    rows = [(rank[c], r.class_names[c], c, f"{float(r.probs[c]):.2%}", f"{float(r.logits[c]):.4g}",
             "shown" if c in r.class_ids else "") for c in shown]
    marked = [i for i, c in enumerate(shown) if c in r.class_ids]
    return table(["rank", "class", "id", f"p ({r.probs_kind})", "logit", "maps"], rows, numeric=(0, 2, 3, 4),
                 marked=marked)


def _prediction(r: ImageReport) -> str:
    top = int(np.argmax(r.probs))
    w, h = r.photo.size
    photo = figure(picture(r.photo, side=PHOTO_SIDE, alt=r.name),
                   f'{esc(r.name)} <span class="muted">· {esc(r.place.describe(w, h))}</span>')
    words = (f"<p>The model predicts <b>{esc(r.class_names[top])}</b> with p = {float(r.probs[top]):.2%} "
             f"({esc(r.probs_kind)}, logit {float(r.logits[top]):.4g}).</p>")
    return section("Prediction", f'<div class="lead">{photo}<div>{words}{_scores(r)}</div></div>', first=True)


_VIEW_NAMES = {"relu": "ReLU'd", "signed": "signed"}
_VIEW_WORDS = {
    "relu": "ReLU'd: positive evidence only, each map scaled to its own largest value (the bar's top, in the "
            "map's units); an all-negative map shows nothing.",
    "signed": "Signed: red for evidence for the class, blue against it, scaled to the largest magnitude.",
}


def _maps(r: ImageReport) -> str:
    parts = []
    for m in r.methods:
        for view in r.views:
            cmap = r.signed_cmap if view == "signed" else r.cmap
            figs = []
            for c in r.class_ids:
                if (m, c) not in r.maps:
                    continue
                rgb, top = map_over_photo(r.photo, r.maps[(m, c)], r.place, side=MAP_SIDE, view=view, cmap=cmap,
                                          alpha=r.alpha)
                caption = f"<b>{esc(r.class_names[c])}</b> ({c}) · p = {float(r.probs[c]):.2%}" + colour_scale(
                    top, view, cmap)
                figs.append(figure(picture(rgb, side=MAP_SIDE, alt=f"{_title(m)} map of {_class(r, c)}"), caption))
            parts.append(f"<h3>{esc(_title(m))} <span class=muted>· {_VIEW_NAMES[view]}</span></h3>"
                         f"<p class=muted>{esc(_VIEW_WORDS[view])}</p><div class=grid>{''.join(figs)}</div>")
    return section(f"Maps at {r.layer}", "".join(parts))


def finding_html(f: Finding) -> str:
    """One finding as a boxed paragraph: what was found (its headline bold), then the fix."""
    head, sep, rest = f.text.partition(": ")
    text = f"<b>{prose(head)}:</b> {prose(rest)}" if sep and len(head) < 40 else prose(f.text)
    return f'<div class="finding {esc(f.severity)}">{text} <span class="fix">Fix: {prose(f.fix)}.</span></div>'


def _findings(r: ImageReport) -> str:
    parts = []
    for m in r.methods:
        for c in r.class_ids:
            d = r.diagnoses.get((m, c))
            if d is None:
                continue
            numbers = (f"{d.pos_mass_share:.0%} of the map's mass is positive (what ReLU keeps), "
                       f"{d.pos_area:.0%} of its cells; the map runs from {d.map_min:.3g} to {d.map_max:.3g}.")
            body = "".join(finding_html(f) for f in d.findings) or "<p>No problems found.</p>"
            parts.append(f"<h3>{esc(_title(m))} · {esc(_class(r, c))}</h3><p>{esc(numbers)}</p>{body}")
    intro = ("<p>What the debug section of the dashboard says about each map: why it looks as it does and whether "
             "its display can mislead, with the fix.</p>")
    return section("Findings", intro + ("".join(parts) or "<p>No diagnosis was made.</p>"))


def _about(r: ImageReport) -> str:
    w, h = r.photo.size
    layer = r.layer + (" (the recommended layer)" if r.layer == r.recommended else
                       f" (recommended: {r.recommended})" if r.recommended else "")
    rows = [
        ("model", r.model), ("weights", "trained" if r.pretrained else "untrained (random): maps mean little"),
        ("layer", layer), ("methods", ", ".join(_title(m) for m in r.methods)),
        ("explained score", r.target), ("probabilities", r.probs_kind), ("image", f"{r.name}, {w}×{h}"),
        ("input", r.place.describe(w, h)),
    ]
    return section("How this was made", table(None, rows))


def image_report(r: ImageReport) -> str:
    """The whole HTML file for one image."""
    top = int(np.argmax(r.probs))
    subtitle = f"{r.model} · {r.class_names[top]} ({float(r.probs[top]):.1%}) · {r.layer}"
    second = [comparison_section(r.photo, r.second, r.probs_kind)] if r.second is not None else []
    return document(f"CAM report: {r.name}", subtitle, [_prediction(r), _maps(r), *second, _findings(r), _about(r)],
                    versions())


def _diagnose_all(model: object, x: torch.Tensor, res: ExplainResult) -> dict[tuple[str, int], Diagnosis]:
    """Every map of ``res`` diagnosed as the debug section does (the layer's facts and the head probe)."""
    info, rec = layer_context(model, res.layer)
    try:
        head = probe_head(model, x, rec) if rec else None
    except (CamError, RuntimeError):  # optional: a head that cannot be probed gets no scale finding
        head = None
    ids = [int(c) for c in res.class_ids[0].tolist()]
    return {(m, c): diagnose(res, 0, k, m, info, rec, head) for m in res.methods for k, c in enumerate(ids)}


def diagnose_maps(
    model: object,
    x: torch.Tensor,
    layer: str,
    maps: Mapping[tuple[str, int], np.ndarray],
    *,
    region: tuple[int, int, int, int] | None = None,
) -> dict[tuple[str, int], Diagnosis]:
    """The findings of maps computed elsewhere (the image page's): one Grad-CAM pass gives the layer's statistics
    the rules read, and each map is diagnosed as it is.

    Args:
        model: A :class:`~cam_core.models.LoadedModel`.
        x: (1, 3, H, W) the model's input for the image.
        layer: The maps' layer.
        maps: (method, class id) → raw signed map (h, w) at the layer's grid, every method for the same classes.
        region: The image's box in a letterboxed input.
    """
    ids = list(dict.fromkeys(c for _, c in maps))
    methods = list(dict.fromkeys(m for m, _ in maps))
    res = explain(model, x, layer=layer, classes=ids, methods=["gradcam"], region=region)
    stacked = {m: torch.from_numpy(np.stack([np.asarray(maps[(m, c)], dtype=np.float32) for c in ids]))[None]
               for m in methods}
    return _diagnose_all(model, x, replace(res, maps=stacked, methods=tuple(methods)))


def explain_image(
    model: object,
    path: str | Path,
    *,
    layer: str | None = None,
    classes: str | Sequence[int | str] = "top3",
    methods: Sequence[str] = ("gradcam",),
    device: str = "auto",
) -> ImageReport:
    """Explain one image file and diagnose every map, as the image page would: the report's values.

    Args:
        model: A :class:`~cam_core.models.LoadedModel`.
        path: The image file.
        layer, classes, methods, device: As for :func:`cam_core.explain` (default the recommended layer).
    """
    photo = load_image(path)
    x, place = model.prepare(photo)  # type: ignore[attr-defined]
    x = x.unsqueeze(0)
    res = explain(model, x, layer=layer, classes=classes, methods=list(methods), device=device,
                  region=place.content if place.padded else None)
    ids = tuple(int(c) for c in res.class_ids[0].tolist())
    return ImageReport(
        name=Path(path).name, photo=photo, place=place, class_names=list(model.class_names),  # type: ignore[attr-defined]
        logits=res.logits[0].numpy(), probs=res.probs[0].numpy(), class_ids=ids, methods=tuple(res.methods),
        maps={(m, c): res.maps[m][0, k].numpy() for m in res.methods for k, c in enumerate(ids)},
        diagnoses=_diagnose_all(model, x, res), model=str(model.name),  # type: ignore[attr-defined]
        pretrained=bool(model.pretrained), layer=res.layer,  # type: ignore[attr-defined]
        recommended=layer_context(model, res.layer)[1], probs_kind=res.probs_kind, target=res.target,
    )
