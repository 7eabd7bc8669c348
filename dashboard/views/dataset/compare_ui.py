"""The Dataset page for a comparison folder (``python -m cam_core compare … --out OUT``): what changed between models.

Flipped predictions first, then by how far the maps moved; the counts (flipped, A right → B wrong, A wrong → B
right); each thumbnail shows one class's maps on the photo, model A's left and B's right, with the shift. A click
lists that image's classes below the gallery. Numbers, order and maps come from
:class:`cam_core.batch.compare_view.CompareRun`; this module only lays them out.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import streamlit as st
from PIL import Image

from cam_core.batch.compare_view import FILTERS, SHOWN, CompareRun, is_compare
from cam_core.errors import CamError
from cam_core.io.images import load_image
from cam_core.render import heat_rgba
from cam_core.report.compare import compare_report
from dashboard import dataroot, uploads
from dashboard.feedback import show_error
from dashboard.figures import format_prob, image_uri
from dashboard.text import plain
from dashboard.views.dataset.thumbs import file_stamp, heat_uri
from dashboard.views.image.exports import safe_stem
from dashboard.widgets.gallery import gallery_ui

__all__ = ["compare_ui", "shown_comparison"]

SIDE = 150  # each photo's longer side in a thumbnail (two side by side)
GAP = 4
COLUMNS = 4  # a thumbnail holds two photos: fewer a row than the run gallery's six
PAGE_SIZE = 24


class CMP:
    """Session-state keys of the comparison view."""

    FILTER = "cmp_filter"
    SHOWN = "cmp_shown"
    PAGE = "cmp_page"
    OPEN = "_cmp_open"
    OPACITY = "_cmp_opacity"


def shown_comparison(root: Path, rel: str | None) -> Path | None:
    """The folder ``rel`` (under the data root, visible to this session) if it holds a comparison, else ``None``."""
    if not rel:
        return None
    try:
        folder = dataroot.resolve_under(root, rel)
    except CamError:
        return None
    owner = None if dataroot.shared_uploads() else uploads.session_owner()  # whose zip uploads this session sees
    return folder if is_compare(folder) and dataroot.visible(dataroot.relative(root, folder), owner) else None


@st.cache_resource(max_entries=4, show_spinner=False)
def _comparison(folder: str, mtime_ns: int) -> CompareRun:
    """A comparison read once per version of its table (``mtime_ns`` names the version)."""
    return CompareRun.open(folder)


@st.cache_data(max_entries=2000, show_spinner=False)
def _pair(folder: str, mtime_ns: int, i: int, k: int, path: str, stamp: object) -> tuple[str, str, str]:
    """(photo pair, heat pair, problem) data URIs for row ``i``'s class ``k``: A's map left, B's right."""
    run = _comparison(folder, mtime_ns)
    try:
        photo = load_image(path)
    except CamError as exc:
        return "", "", str(exc)
    a, b = run.maps(i, k, SIDE)
    ref = a if a is not None else b
    if ref is None:
        return "", "", "no maps"
    h, w = ref.shape
    small = np.asarray(photo.convert("RGB").resize((w, h), Image.Resampling.LANCZOS))
    gap = np.full((h, GAP, 3), 255, np.uint8)
    base = Image.fromarray(np.concatenate([small, gap, small], axis=1))
    layers = [heat_rgba(m) if m is not None else np.zeros((h, w, 4), np.uint8) for m in (a, b)]
    heat = np.concatenate([layers[0], np.zeros((h, GAP, 4), np.uint8), layers[1]], axis=1)
    return image_uri(base, "JPEG", quality=85), heat_uri(heat), ""


def _fixed(x: float, digits: int) -> str:
    """``x`` with ``digits`` decimals, a rounding's −0 as 0 (a map compared with itself: 1 − r = −1e-16)."""
    return f"{round(x, digits) + 0.0:.{digits}f}"


def _metrics(run: CompareRun) -> None:
    c = run.counts
    a, b = run.info["a"], run.info["b"]
    st.markdown(f"**A** {plain(a['model_name'])} · {plain(a['layer'])}  \n**B** {plain(b['model_name'])} · "
                f"{plain(b['layer'])}  \n{plain(run.info['method'])}, classes matched by name "
                f"({run.info.get('class_matching', {}).get('matched', '?')} shared)")
    cols = st.columns(5)
    cols[0].metric("Images", f"{c.images:,}", help=f"{c.failed} could not be read" if c.failed else None)
    cols[1].metric("Flipped", f"{c.flipped:,}", help="Images whose top class differs between A and B.")
    if c.labelled:
        cols[2].metric("A right → B wrong", f"{c.a_right_b_wrong:,}", help="Among the labelled images.")
        cols[3].metric("A wrong → B right", f"{c.a_wrong_b_right:,}", help="Among the labelled images.")
    else:
        cols[2].metric("A right → B wrong", "–", help="No labels: compare with --labels-from-folders.")
        cols[3].metric("A wrong → B right", "–", help="No labels: compare with --labels-from-folders.")
    cols[4].metric("Median map shift", "–" if np.isnan(c.median_shift) else _fixed(c.median_shift, 3),
                   help="Per image the largest shift over its classes: 1 − the correlation of the two ReLU'd maps "
                   "on the photo (0: same place, 1: unrelated).")


def _item(run: CompareRun, folder: str, mtime: int, i: int, shown: str) -> dict:
    row = run.row(i)
    name = Path(row["path"]).name
    if row["error"]:
        return {"id": i, "title": name, "lines": [], "badge": "", "problem": row["error"]}
    k = CompareRun.slot(row, shown)
    shift, peak = row["map_shift"][k], row["peak_shift_px"][k]
    a = f"A {plain(row['pred_name_a'])} {format_prob(row['prob_pred_a'])}"
    b = f"B {plain(row['pred_name_b'])} {format_prob(row['prob_pred_b'])}"
    moved = "not in both models" if shift is None else f"shift {_fixed(shift, 2)}" + (
        f" · peak {peak:.0f} px" if peak is not None else "")
    lines = [f"{a} → {b}" if row["pred_changed"] else a.replace("A ", "A, B ", 1), f"{plain(row['class_names'][k])}: "
             f"{moved}"]
    badge = "right" if row["correct_b"] and not row["correct_a"] else "wrong" if row["pred_changed"] else ""
    stamp = file_stamp(row["path"])
    if stamp is None:
        return {"id": i, "title": name, "lines": lines, "badge": badge, "problem": "file not found"}
    base, heat, problem = _pair(folder, mtime, i, k, row["path"], stamp)
    return {"id": i, "title": name, "lines": lines, "badge": badge, "base": base, "heat": heat, "problem": problem}


def _details(run: CompareRun, i: int) -> None:
    row = run.row(i)
    st.markdown(f"**{plain(Path(row['path']).name)}** · label {plain(row['label_name'] or '–')}")
    st.dataframe(
        {
            "class": row["class_names"] or [],
            "map shift": row["map_shift"] or [],
            "peak shift (px)": row["peak_shift_px"] or [],
            "p under A": row["prob_a"] or [],
            "p under B": row["prob_b"] or [],
        },
        hide_index=True, width="stretch",
    )


def compare_ui(root: Path, folder: Path) -> None:
    """The comparison in ``folder``: models, counts, the filtered gallery of both maps, a clicked image's classes."""
    try:
        mtime = (folder / "compare.parquet").stat().st_mtime_ns
        run = _comparison(str(folder), mtime)
    except (CamError, OSError) as exc:
        show_error(exc if isinstance(exc, CamError) else CamError(str(exc)), "opening the comparison")
        return
    st.subheader(f"Comparison · {plain(dataroot.relative(root, folder))}", anchor=False)
    _metrics(run)
    c1, c2 = st.columns([3, 2], vertical_alignment="bottom")
    which = c1.segmented_control("Show", list(FILTERS), format_func=lambda f: FILTERS[f].title, key=CMP.FILTER,
                                 default="all", required=True)
    shown = c2.selectbox("Maps of", list(SHOWN), format_func=SHOWN.get, key=CMP.SHOWN,
                         help="Each thumbnail shows this class's map under A (left) and B (right).")
    rows = run.rows(which)
    pages = max(1, -(-len(rows) // PAGE_SIZE))
    page = int(st.number_input(f"Page (of {pages})", 1, pages, key=CMP.PAGE)) if pages > 1 else 1
    st.caption(f"{len(rows):,} image{'' if len(rows) == 1 else 's'} · flipped predictions first, then the maps that "
               "moved most · left: model A, right: model B")
    items = [_item(run, str(folder), mtime, i, shown) for i in rows[(page - 1) * PAGE_SIZE: page * PAGE_SIZE]]
    gallery_ui(
        items, opacity=float(st.session_state.get(CMP.OPACITY, 0.6)), columns=COLUMNS, key="cmp_gallery",
        on_open=lambda i: st.session_state.__setitem__(CMP.OPEN, i),
        on_opacity=lambda v: st.session_state.__setitem__(CMP.OPACITY, v),
    )
    st.download_button(
        "Download report (HTML)", lambda: compare_report(folder), file_name=f"{safe_stem(folder.name)}_report.html",
        mime="text/html", icon=":material/description:", key="cmp_report", on_click="ignore",
        help="One self-contained file to hand on: both models, the flipped predictions and the largest map shifts "
        "with both maps; opens offline in any browser and prints well.",
    )
    opened = st.session_state.get(CMP.OPEN)
    if isinstance(opened, int) and 0 <= opened < run.table.num_rows:
        _details(run, opened)
