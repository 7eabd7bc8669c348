"""The Run form's optional ground truth: what ``batch --boxes`` takes, chosen on the page.

A file or folder under the data root (listed like the image folders: only what this session may see, never a path
outside the root) or an uploaded COCO JSON / CSV (its size checked before it is read, stored in this session's upload
folder). The page hands the path to the same job the CLI runs (``BatchJob(boxes=...)``); the job reads and matches
it, so a bad file is one line from the run, as on the command line.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from cam_core.batch.results import read_run
from cam_core.batch.truth import GroundTruth
from cam_core.errors import CamError
from cam_core.limits import MAX_BOXES_FILE_BYTES, mb
from dashboard import dataroot, uploads
from dashboard.caches import root_survey
from dashboard.text import plain

__all__ = ["NONE", "ran", "truth_ui"]

NONE = ""  # the choice "no ground truth"
UPLOAD_TYPES = ["json", "csv"]


def _uploaded(up) -> str:  # up: UploadedFile
    """The upload saved in this session's folder; refused before it is read when it is too big."""
    if up.size > MAX_BOXES_FILE_BYTES:
        raise CamError(f"{up.name} is {mb(up.size)}, more than the {mb(MAX_BOXES_FILE_BYTES)} a boxes file may be")
    return uploads.save_upload(up.getvalue(), up.name, tuple(f".{t}" for t in UPLOAD_TYPES))


def truth_ui(root: Path, owner: str | None) -> str:
    """The ground truth chosen for the run: an absolute path, or :data:`NONE`.

    Raises:
        CamError: An upload too big, or a choice that is no longer under the root.
    """
    c1, c2 = st.columns([1.0, 1.0], vertical_alignment="bottom")
    with c1:
        listed = dataroot.truth_sources(root, owner, root_survey().walk)
        pick = st.selectbox(
            "Ground truth (boxes or masks)", [NONE, *listed], key="ds_truth",
            format_func=lambda rel: rel or "none", help="Optional: a COCO *.json, a *.csv (path,x0,y0,x1,y1[,label]), "
            "a folder of Pascal VOC *.xml or of mask *.png under the data root. Each map then gets the pointing game "
            "and the energy in the box.",
        )
    with c2:
        up = st.file_uploader("…or upload a COCO JSON / CSV", type=UPLOAD_TYPES, key="ds_truth_upload",
                              help="Paths in it: relative to the chosen folder, or file names.")
    if up is not None:
        if pick != NONE:
            st.caption(f":material/info: The upload is used, not {plain(pick)}.")
        return _uploaded(up)
    if pick == NONE:
        return NONE
    source = dataroot.resolve_under(root, pick)
    if not dataroot.visible(dataroot.relative(root, source), owner) or not source.exists():
        raise CamError(f"{pick} is no longer a ground truth this page can open")
    return str(source)


def ran(out: Path) -> None:
    """Below a finished run with ground truth: how much of it matched, as the CLI prints it."""
    described = read_run(out).get("boxes")
    if described:
        st.caption(f":material/crop_free: {plain(uploads.redact(GroundTruth.line(described)))}")
