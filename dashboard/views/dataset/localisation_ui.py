"""The Dataset page's ground-truth parts, for runs made with ``batch --boxes``: does the map point at the object?

Per class, the pointing-game accuracy and the mean energy in the box; the filters "right for the wrong
reasons" and "pointing game missed" (declared in :data:`cam_core.batch.query.FILTERS`, the sort by
energy in :data:`~cam_core.batch.query.SORTS`); each thumbnail's boxes (the shown class's solid green,
the others dashed white) and a line with its energy and hit. The numbers come from
:class:`~cam_core.batch.query.ResultsQuery`; nothing here computes them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import streamlit as st

from cam_core.analysis.localisation import TOLERANCE_PX, WRONG_REASONS_ENERGY, boxes_on_input
from cam_core.batch.query import FILTERS, ResultsQuery
from cam_core.models.preprocess import Placement
from dashboard.text import plain

__all__ = ["FLAGS", "decorate_item", "filters_ui", "truth_ui"]

FLAGS = "ds_truth_flags"  # session-state key of the ground-truth filters switched on
_WRONG = f"the map has less than {WRONG_REASONS_ENERGY:.0%} of its mass in the object"
_COLUMNS = {
    "class": st.column_config.TextColumn("Class", width="medium", help="The explained class."),
    "maps": st.column_config.NumberColumn("Maps", width="small", help="Maps of this class that have an object."),
    "pointing": st.column_config.ProgressColumn(
        "Pointing", format="percent", min_value=0, max_value=1, width="small",
        help=f"Pointing game: the share of maps whose maximum lies on the object (within {TOLERANCE_PX:g} px).",
    ),
    "energy": st.column_config.ProgressColumn(
        "In box", format="percent", min_value=0, max_value=1, width="small",
        help="Energy in the box: the mean share of the ReLU'd map's mass that lies on the object.",
    ),
    "wrong reasons": st.column_config.NumberColumn(
        "Wrong reasons", width="small", help=f"Correct predictions for which {_WRONG}.",
    ),
}


def truth_ui(results: ResultsQuery, method: str) -> None:
    """The localisation summary and the per-class table (nothing for a run without ground truth)."""
    if not results.has_boxes:
        return
    totals = results.localisation_totals(method)
    source = results.run.get("boxes", {})
    st.markdown("**Does the map point at the object?** · ground truth from "
                f"`{plain(str(source.get('source', '?')).rsplit('/', 1)[-1])}` ({plain(source.get('format', '?'))}, "
                f"{int(source.get('boxes', 0)):,} boxes on {int(source.get('images', 0)):,} images)")
    if not totals["maps"]:
        st.info("No map has an object to be scored against: the boxes name other classes than those explained "
                "(explain the true class too: --classes pred,label).", icon=":material/crop_free:")
        return
    cols = st.columns(3)
    cols[0].metric("Pointing game", f"{totals['pointing']:.1%}",
                   help=f"The share of the {totals['maps']:,} maps with an object whose maximum lies on it "
                   f"(within {TOLERANCE_PX:g} pixels of the original image).")
    cols[1].metric("Energy in the box", f"{totals['energy']:.1%}",
                   help="The mean share of the ReLU'd map's mass that lies on the object (Quantus' attribution "
                   "localisation).")
    if results.has_labels:
        cols[2].metric("Right for the wrong reasons", f"{int(totals['wrong reasons']):,}",
                       help=f"Correct predictions for which {_WRONG}. Switch on the filter below to see them.")
    table = results.localisation_by_class(method)
    st.dataframe(table, hide_index=True, width="stretch", column_config=_COLUMNS,
                 height=min(35 * (table.num_rows + 1) + 3, 320))
    tip = (" With *Map of: True class*, every thumbnail scores its true class's map against its boxes."
           if "label" in str(results.run.get("classes")) and source.get("labelled") else "")
    st.caption(f"Classes localised worst first. *Right for the wrong reasons*: a correct prediction for which "
               f"{_WRONG}.{tip}")


def filters_ui(results: ResultsQuery, container: Any, on_change: Callable[[], None]) -> tuple[str, ...]:
    """The ground-truth filters switched on (names of :data:`FILTERS`), drawn in ``container``; ``on_change``
    runs when they change (the gallery goes back to its first page)."""
    offered = [k for k in ("wrong_reasons", "missed") if results.has_boxes and results.offers_filter(k)]
    if not offered:
        st.session_state.pop(FLAGS, None)
        return ()
    if any(f not in offered for f in st.session_state.get(FLAGS, [])):
        st.session_state[FLAGS] = [f for f in st.session_state[FLAGS] if f in offered]
    titles = {"wrong_reasons": f"{FILTERS['wrong_reasons'].title} (< {WRONG_REASONS_ENERGY:.0%} in the box)"}
    chosen = container.pills(
        "Ground truth", offered, selection_mode="multi", key=FLAGS,
        format_func=lambda k: titles.get(k, FILTERS[k].title),
        on_change=on_change,
        help=f"Right for the wrong reasons: correct predictions for which {_WRONG}. Pointing game missed: the "
        f"map's maximum lies more than {TOLERANCE_PX:g} pixels from the object.",
    )
    return tuple(chosen or ())


def decorate_item(item: dict[str, Any], truth: dict[str, Any] | None, place: Placement | None,
                  labelled: bool) -> None:
    """Add the row's boxes (in the thumbnail's input pixels) and a line with its energy and hit to a gallery item.

    Args:
        item: The gallery item.
        truth: :meth:`ResultsQuery.truth_of`'s entry for the row (``None``: the run has no ground truth).
        place: Where the image lies in the thumbnail's input.
        labelled: Whether the boxes source names classes (then only the shown class's boxes are its object).
    """
    if truth is None:
        return
    flat = truth.get("boxes")
    if flat is None:
        item["lines"] = [*item["lines"], "no ground truth"]
        return
    if truth.get("energy") is None:
        what = "object cut away by the crop" if truth.get("box_cut") else "no box of this class"
    else:
        what = f"in box {truth['energy']:.0%} · " + ("hit" if truth["hit"] else "missed")
        if truth.get("box_cut"):
            what += " · cut"
    item["lines"] = [*item["lines"], what]
    if place is None:
        return
    boxes = [tuple(flat[i : i + 4]) for i in range(0, len(flat), 4)]
    labels = truth.get("box_labels") or [-1] * len(boxes)
    rects = []
    for box, label in zip(boxes_on_input(boxes, place), labels, strict=False):
        if box is not None:
            own = not labelled or label == truth.get("shown_class")
            rects.append([round(v, 1) for v in box] + [own])
    item["boxes"] = {"w": place.size[1], "h": place.size[0], "rects": rects}
