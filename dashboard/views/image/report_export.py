"""The image page's report downloads: what the page shows (photo, maps in its views, scores, the debug section's
findings, and model B beside it when compared) as one self-contained HTML file, built by :mod:`cam_core.report`
when a button is clicked."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import streamlit as st

from cam_core.report import ImageReport, SecondModel, diagnose_maps, image_report
from dashboard.display import Display
from dashboard.model import Bundle, ImageItem
from dashboard.views.image.compute import ViewResult, map_cache

__all__ = ["comparison_button", "report_html"]


def report_html(
    bundle: Bundle,
    item: ImageItem,
    view: ViewResult,
    ids: Sequence[int],
    methods: Sequence[str],
    layer: str,
    display: Display,
    second: SecondModel | None = None,
) -> str:
    """The report of the view on screen (``second``: model B beside it). Runs on Streamlit's download thread (no
    session state): the findings cost one Grad-CAM pass for the layer's statistics, the maps are the page's own."""
    maps = {(m, c): view.maps[(m, c)].raw for m in methods for c in ids if (m, c) in view.maps}
    shown = tuple(m for m in methods if all((m, c) in maps for c in ids))
    maps = {k: v for k, v in maps.items() if k[0] in shown}
    inp = map_cache().model_input(bundle, item)
    diagnoses = diagnose_maps(bundle.model, inp.x, layer, maps, region=inp.region) if maps else {}
    return image_report(ImageReport(
        name=item.label, photo=item.image, place=view.place, class_names=list(bundle.model.class_names),
        logits=view.logits, probs=view.probs, class_ids=tuple(int(c) for c in ids), methods=shown, maps=maps,
        diagnoses=diagnoses, model=bundle.model.name, pretrained=bool(bundle.model.pretrained), layer=layer,
        recommended=bundle.recommended, probs_kind=view.probs_kind, views=tuple(display.views), cmap=display.cmap,
        signed_cmap=display.signed_cmap, alpha=display.opacity, second=second,
    ))


def comparison_button(build: Callable[[], str]) -> None:
    """The comparison's download: ``build`` gives the image report of model A with model B's section (a
    :func:`report_html` with its ``second``), run when clicked."""
    st.download_button(
        "Report with model B (HTML)",
        build,
        file_name="comparison_report.html",
        mime="text/html",
        icon=":material/description:",
        on_click="ignore",
        key="compare_report",
        help="The image report (photo, maps, scores, findings) with this comparison: both models' maps of each "
        "class, B − A and the shifts; one self-contained file that opens offline and prints well.",
    )
