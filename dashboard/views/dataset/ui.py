"""The Dataset page's parts: where the images come from, the run, and the results (summary, confusion
matrix, gallery, export). ``*_ui`` functions draw widgets and return plain values; the numbers come
from :mod:`cam_core.batch.query` (DuckDB over the run's Parquet files: only the rows on screen and their
maps leave it), the pictures from :mod:`.thumbs` and :mod:`.figures`; :mod:`.table` takes server paths out.
"""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import streamlit as st

from cam_core.batch import BatchJob, discover, model_identity, run_local
from cam_core.batch.compare_view import is_compare
from cam_core.batch.query import SORTS, Confusion, Filters, ResultsQuery
from cam_core.batch.results import RESULTS, RUN
from cam_core.batch.scan import parquet_files, results_stamp
from cam_core.cache import BoundedCache
from cam_core.engine.methods import METHODS
from cam_core.errors import CamError
from cam_core.limits import QUERY_FOLDERS
from dashboard import dataroot, state, uploads
from dashboard.caches import root_survey
from dashboard.feedback import bounded, guarded, message, show_error
from dashboard.model import Bundle, ImageItem, ModelSpec, decode_image, model_args
from dashboard.model_ui import request_model
from dashboard.text import plain
from dashboard.views.dataset import insight, localisation_ui, truth_ui
from dashboard.views.dataset import table as tb
from dashboard.views.dataset.export_ui import export_ui
from dashboard.views.dataset.figures import confusion_data
from dashboard.views.dataset.items import gallery_items
from dashboard.widgets.gallery import gallery_ui
from dashboard.widgets.matrix import matrix_ui

__all__ = ["DS", "Source", "cell_filters", "goto_requested", "results_ui", "source_ui"]

PAGE_SIZES = (24, 48, 96)
COLUMNS = 6
CLASS_MODES = {"pred": "Prediction", "label": "True class", "pred,label": "Both", "top3": "Top 3"}
FAILED_SHOWN = 1000  # failed files listed on the page (the CSV has them all)
BIG_RUN = 200  # from this many files on, decoding may run in worker processes (their start-up costs seconds)


class DS:
    """Session-state keys of the Dataset page."""

    SOURCE = "ds_source"
    FOLDER = "ds_folder"
    LABELS = "ds_labels"
    CLASSES = "ds_classes"
    METHOD = "ds_method"
    LAYER = "ds_layer"
    RESULTS = "_ds_results"  # the results folder shown (relative to the data root)
    URL_DONE = "_ds_url_done"  # the ?folder= of the link was read
    SORT = "ds_sort"
    TRUE = "ds_true"
    PRED = "ds_pred"
    OUTCOME = "ds_outcome"
    SHOWN = "ds_shown"  # whose map: the prediction's or the true class's
    VIEW = "ds_view"
    MAP_METHOD = "ds_map_method"
    PAGE = "ds_page"
    PAGE_SIZE = "ds_page_size"
    OPACITY = "_ds_opacity"
    CELL = "_ds_cell"  # (row, col) of the confusion cell the gallery is filtered to
    GOTO = "_ds_goto_image"
    LAST_JOB = "_ds_last_job"  # the run folder the controls named last run


@st.cache_resource(show_spinner=False)
def _opened() -> BoundedCache[ResultsQuery]:
    """The results folders open in this process (each a DuckDB database of its light columns), by folder and
    version; two sessions opening the same folder at once scan it once."""
    return BoundedCache(max_entries=QUERY_FOLDERS)


def _holds_results(folder: Path) -> bool:  # a batch run's results, or a comparison of two models' runs
    return ((folder / RUN).is_file() and bool(parquet_files(folder))) or is_compare(folder)


def _listing(root: Path, owner: str | None) -> tuple[list[str], list[str]]:
    """(image folders, results folders) under the root that ``owner``'s session sees (the root walked at most every
    20 s, in the background, for every session)."""
    walked = root_survey().walk
    return dataroot.image_folders(root, owner, walked), dataroot.results_folders(root, owner, walked)


def _owner() -> str | None:
    """Whose zip uploads this session sees and makes (``None``: the operator shares them with everyone)."""
    return None if dataroot.shared_uploads() else uploads.session_owner()


uploads.sweep_also("data root zips", dataroot.uploads_place)  # a session's zips go when the session ends


def show_results_folder(rel: str) -> None:
    """Show ``rel`` (under the data root) from now on, and in the URL, so the view can be shared."""
    st.session_state[DS.RESULTS] = rel
    st.query_params["folder"] = rel
    for key in (DS.TRUE, DS.PRED, DS.PAGE, DS.CELL):
        st.session_state.pop(key, None)


def read_link(root: Path) -> None:
    """``?folder=`` opens a results folder under the data root (once per session; anything else is refused)."""
    wanted = st.query_params.get("folder")
    if st.session_state.get(DS.URL_DONE) == wanted:
        return
    st.session_state[DS.URL_DONE] = wanted
    if not wanted:
        return
    try:
        folder = dataroot.resolve_under(root, wanted)
    except CamError as exc:
        st.error(f"The link's folder is not opened: {plain(str(exc))}.", icon=":material/block:")
        return
    if not dataroot.visible(dataroot.relative(root, folder), _owner()) or not _holds_results(folder):
        st.error(f"The link's folder {plain(wanted)} holds no batch results ({RESULTS}).", icon=":material/folder_off:")
        return
    show_results_folder(dataroot.relative(root, folder))


# ---- source and run ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Source:
    """What the user asked to run: a folder under the data root, with the job's choices."""

    folder: str
    labels: bool
    classes: str
    layer: str
    method: str
    boxes: str | None = None  # ground truth (batch --boxes): an absolute path under the root or an upload


def _layer_ui(bundle: Bundle) -> str:
    layers = [n["name"] for n in bundle.nodes if n["camable"]]
    current = state.layer_for(bundle.spec.key, bundle.recommended or "")
    if current not in layers:
        current = bundle.recommended or (layers[0] if layers else "")
    st.session_state[DS.LAYER] = current

    def changed() -> None:
        state.set_layer(bundle.spec.key, st.session_state[DS.LAYER])

    names = {n: f"★ {n}" if n == bundle.recommended else n for n in layers}
    st.selectbox("Layer", layers, format_func=names.get, key=DS.LAYER, on_change=changed,
                 help="The same layer as on the image page (★ recommended).")
    return st.session_state[DS.LAYER]


def _zip_ui(root: Path) -> str | None:
    up = st.file_uploader(
        "Zip of images", type=["zip"], key="ds_zip",
        help="Folders inside become classes (ImageFolder): class names of the model, any case, or indices. "
        f"At most {dataroot.MAX_ZIP_FILES} files and {dataroot.MAX_ZIP_BYTES // 2**30} GB unpacked. "
        + ("Every visitor sees the images." if dataroot.shared_uploads() else
           "Only you see the images; they are deleted when you leave."),
    )
    if up is None:
        return None
    folder = guarded("unpacking the zip", dataroot.extract_zip, up.getvalue(), root, _owner())
    root_survey().clear(root / dataroot.UPLOADS)  # the unpacked folder listed at once (a small walk)
    return dataroot.relative(root, folder) if folder is not None else None


def source_ui(root: Path, bundle: Bundle) -> Source | None:
    """Where the images come from (a folder under the data root, an uploaded zip) and what to compute, with the
    ground truth if any; ``None`` while nothing is chosen. Opening results is here too (it switches what is shown)."""
    images, results = _listing(root, _owner())
    mode = st.segmented_control(
        "Images", ["folder", "zip", "results"], key=DS.SOURCE, required=True, default="folder",
        format_func={"folder": "A folder on the server", "zip": "Upload a zip", "results": "Open results"}.get,
    )
    if mode == "results":
        if not results:
            st.info("No results yet under the data root: run a folder first.", icon=":material/folder_open:")
            return None
        current = st.session_state.get(DS.RESULTS)
        pick = st.selectbox("Results folder", results, index=results.index(current) if current in results else None,
                            placeholder="choose one (newest first)", help=f"Folders under the data root that hold "
                            f"a {RESULTS} or its parts. Nothing opens until you choose: a large one takes a while.")
        if pick is not None and pick != current:
            show_results_folder(pick)
        return None
    if mode == "zip":
        folder = _zip_ui(root)
        if folder is None:
            return None
        st.caption(f":material/folder_zip: Unpacked into {plain(folder)} under the data root.")
    else:
        if not images:
            st.info("No image folders under the data root.", icon=":material/folder_off:")
            return None
        if st.session_state.get(DS.FOLDER) not in images:
            st.session_state[DS.FOLDER] = "samples" if "samples" in images else images[0]
        folder = st.selectbox("Folder", images, key=DS.FOLDER, help="Folders under the server's data root.")
    c1, c2 = st.columns([1.0, 2.0], vertical_alignment="bottom")  # two rows: four in one clipped the pills
    with c1:
        labels = st.toggle("Labels from folders", key=DS.LABELS, value=True,
                           help="Class folders (ImageFolder) give each image's true class: a class name of the "
                           "model (any case, _ for a space) or an index.")
    with c2:
        classes = st.segmented_control(
            "Explain", list(CLASS_MODES), format_func=CLASS_MODES.get, key=DS.CLASSES, default="pred",
            required=True, help="Which classes get a map: the prediction, the true class, both, or the top 3.",
        )
        if "label" in classes and not labels:
            classes = "pred"
    c3, c4 = st.columns(2, vertical_alignment="bottom")
    with c3:
        layer = _layer_ui(bundle)
    with c4:
        st.session_state.setdefault(DS.METHOD, "gradcam")
        method = st.selectbox("Method", list(METHODS), format_func=lambda m: METHODS[m].title, key=DS.METHOD,
                              help="Score-CAM and Ablation-CAM run one forward pass per channel: slow on a CPU.")
    boxes = guarded("choosing the ground truth", truth_ui.truth_ui, root, _owner())
    return None if boxes is None else Source(folder, labels, classes, layer, method, boxes or None)


def _progress_text(done: int, total: int, start: float) -> str:
    elapsed = time.perf_counter() - start
    rate = done / elapsed if elapsed > 0 else 0.0
    left = (total - done) / rate if rate > 0 else math.inf
    eta = f"about {left:.0f} s left" if math.isfinite(left) else "estimating…"
    return f"{done} / {total} images · {rate:.1f} images/s · {eta}"


def run_ui(root: Path, bundle: Bundle, src: Source, fit: str) -> None:
    """The Run button and its progress; when done (or when this job ran before) its results are shown."""
    out = dataroot.run_folder(root, src.folder, bundle.model.name, src.layer, src.method, src.classes,
                              Path(src.boxes) if src.boxes else None)
    rel_out = dataroot.relative(root, out) if out.is_relative_to(root) else str(out)
    earlier = (out / RESULTS).is_file()
    c1, c2 = st.columns([1, 4], vertical_alignment="center")
    go = c1.button("Run again (new files only)" if earlier else "Run", type="primary", key="ds_run",
                   icon=":material/play_arrow:")
    c2.caption(f"Results go to {plain(rel_out)} under the data root; a rerun adds only new or changed files.")
    last = st.session_state.get(DS.LAST_JOB)
    changed = last is not None and last != rel_out  # the user changed the folder, layer, method or classes
    st.session_state[DS.LAST_JOB] = rel_out
    shown = st.session_state.get(DS.RESULTS)
    if earlier and not go and shown != rel_out and (shown is None or changed):
        show_results_folder(rel_out)  # this very job ran before: show it at once (a link's results stay until then)
    if not go:
        return
    job = BatchJob(model=model_args(bundle.spec), layer=src.layer, methods=(src.method,), classes=src.classes,
                   labels=src.labels, fit=fit, boxes=src.boxes)
    try:
        folder = dataroot.resolve_under(root, src.folder)
    except CamError as exc:
        show_error(exc, "choosing the folder")
        return
    bar = st.progress(0.0, text="Reading the folder…")
    start = time.perf_counter()

    def progress(done: int, total: int) -> None:
        bar.progress(done / max(total, 1), text=_progress_text(done, total, start))

    try:
        found = discover(folder, within=root)
        summary = run_local(job, found, out, model=bundle.model, progress=progress,
                            workers=None if len(found.files) >= BIG_RUN else 0, mp_context="forkserver",
                            streams=1)  # a shared server: the run must not change the process's thread count
    except Exception as exc:  # CamError: one line; anything else: a message with details
        bar.empty()
        show_error(exc, "running the folder")
        return
    bar.empty()
    st.success(plain(summary.line().replace(str(out / RESULTS), rel_out)), icon=":material/task_alt:")
    truth_ui.ran(out)
    root_survey().clear()  # the new results folder shows under "Open results" at once
    show_results_folder(rel_out)


# ---- results ------------------------------------------------------------------------------------------------


def open_results(root: Path) -> ResultsQuery | None:
    """The results shown now (``None`` when none is chosen); refused when outside the root.

    The first visit to a folder (or a new version of it) scans its rows once, with a progress bar and the
    time left; every later rerun finds it open.
    """
    rel = st.session_state.get(DS.RESULTS)
    if not rel:
        return None
    try:
        folder = dataroot.resolve_under(root, rel)
        if not dataroot.visible(dataroot.relative(root, folder), _owner()):
            raise CamError(f"{rel} is another visitor's upload")
        key = (str(folder), results_stamp(folder))
        opened = _opened()
        if key in opened:
            return opened.get(key)
        bar = st.progress(0.0, text="Reading the results…")
        try:
            return opened.get_or_build(key, lambda: ResultsQuery.open(folder, progress=partial(_scan_progress, bar)))
        finally:
            bar.empty()
    except (CamError, OSError) as exc:
        show_error(exc if isinstance(exc, CamError) else CamError(f"{rel}: {exc}"), "opening the results")
        return None


def _scan_progress(bar, share: float, left: float | None) -> None:
    eta = f"about {left:.0f} s left" if left is not None else "estimating…"
    bar.progress(share, text=f"Reading the results: {share:.0%} · {eta}")


def _run_spec(results: ResultsQuery, bundle: Bundle | None) -> ModelSpec | None:
    """The sidebar's model if it is the run's, else one the sidebar can select for it (``None``: neither)."""
    want = results.run.get("job", {}).get("model", {})
    candidates = [bundle.spec] if bundle is not None else []
    name = want.get("spec", "")
    candidates += [ModelSpec(), ModelSpec(source="torchvision", name=name, weights=want.get("weights"))]
    return next((c for c in candidates if model_identity(model_args(c)) == want), None)


def _describe(results: ResultsQuery, root: Path, bundle: Bundle | None) -> None:
    run = results.run
    rel = dataroot.relative(root, results.folder)
    st.subheader(f"Results · {plain(rel)}", anchor=False)
    when = (run.get("finished") or run.get("started") or "")[:16].replace("T", " ")
    st.caption(
        f"{plain(run.get('model'))} · layer {plain(run.get('layer'))} · "
        f"{', '.join(METHODS[m].title for m in results.methods)} · "
        f"explains: {plain(CLASS_MODES.get(run.get('classes'), run.get('classes')))} · "
        f"{plain(run.get('preprocessing', {}).get('description', ''))} · {plain(when)} UTC"
    )
    spec = _run_spec(results, bundle)
    if spec is None:
        st.warning("These results come from a model the sidebar cannot select again (an upload or a factory): "
                   "load it in the sidebar to open images on the image page with it.", icon=":material/warning:")
    elif bundle is not None and spec != bundle.spec:
        st.info(f"Opening an image switches the sidebar to the run's model, {plain(run.get('model'))}.",
                icon=":material/swap_horiz:")


def _metrics(results: ResultsQuery, method: str) -> None:
    summary = results.summary()
    blank_maps, maps, by_class = results.blank_by_class(method)
    cols = st.columns(4)
    cols[0].metric("Images", f"{summary.images:,}", help="Files with maps; failed files are listed below.")
    cols[1].metric("Failed", f"{summary.failed:,}",
                   help="Files that could not be read (see the list under the gallery).")
    if summary.accuracy is not None:
        cols[2].metric("Accuracy", f"{summary.accuracy:.1%}",
                       help=f"Top-1 over the {summary.labelled:,} labelled images.")
    else:
        cols[2].metric("Accuracy", "–", help="No labels: run with Labels from folders.")
    share = f" ({blank_maps / maps:.0%})" if maps and blank_maps else ""
    cols[3].metric("Blank after ReLU", f"{blank_maps:,}{share}",  # short: a long value is cut ("… m…")
                   help=f"{blank_maps:,} of the {maps:,} maps have a positive part that holds (nearly) nothing: the "
                   "usual ReLU'd view shows them empty. Sort by Blank maps first to see them.")
    if by_class:
        shown = ", ".join(f"{plain(name)} ({n:,})" for name, n in by_class[:8])
        st.caption(f":material/visibility_off: Blank maps after ReLU, by explained class: {shown}"
                   + (" …" if len(by_class) > 8 else ""))


def cell_filters(conf: Confusion, i: int, j: int) -> dict[str, object]:
    """The session state a click on cell (i, j) sets: that true class, the column's predicted class(es), both
    outcomes, the first page, and the cell (outlined)."""
    return {DS.TRUE: [conf.rows[i]], DS.PRED: list(conf.cols[j]), DS.OUTCOME: "all", DS.PAGE: 1, DS.CELL: (i, j)}


def _cell_clicked(conf: Confusion, i: int, j: int) -> None:
    if 0 <= i < len(conf.rows) and 0 <= j < len(conf.cols):
        st.session_state.update(cell_filters(conf, i, j))


def _confusion_ui(results: ResultsQuery, method: str, whose: str) -> None:
    conf = results.confusion()
    if conf is None:
        return
    left, right = st.columns([1.35, 1], gap="medium")
    with left:
        st.markdown("**Confusion matrix** · click a cell to show its images")
        matrix_ui(confusion_data(conf, st.session_state.get(DS.CELL)), on_cell=partial(_cell_clicked, conf),
                  key="ds_confusion")
        if conf.hidden_rows:
            st.caption(f"The {len(conf.rows)} most frequent true classes are shown ({conf.hidden_rows} more).")
    with right:
        st.markdown("**Per class**")
        st.dataframe(
            results.per_class(method, whose), hide_index=True, width="stretch",
            column_config=PER_CLASS_COLUMNS,
        )


# Short headers that fit the narrow column (the long ones were cut: "blank m…"); each says the rest on hover.
PER_CLASS_COLUMNS = {
    "class": st.column_config.TextColumn("Class", width="medium", help="The true class (its folder)."),
    "images": st.column_config.NumberColumn("Images", width="small", help="Images of this class."),
    "accuracy": st.column_config.ProgressColumn(
        "Right", format="percent", min_value=0, max_value=1, width="small",
        help="Accuracy: the share of this class's images whose top class is right.",
    ),
    "mean p(true)": st.column_config.NumberColumn(
        "p(true)", format="%.2f", width="small", help="The mean probability the model gives the true class.",
    ),
    "blank maps": st.column_config.NumberColumn(
        "Blank", width="small", help="Blank maps: images whose map is empty (no positive evidence) for the class.",
    ),
}


def _reset_page() -> None:
    st.session_state[DS.PAGE] = 1
    st.session_state.pop(DS.CELL, None)


def _controls(results: ResultsQuery) -> tuple[str, Filters, str, str, str]:
    """Sort, filters and what each thumbnail shows: (sort, filters, method, whose map, view)."""
    names = results.class_names
    labelled = results.has_labels
    sorts = results.sorts()
    if st.session_state.get(DS.SORT) not in sorts:
        st.session_state[DS.SORT] = sorts[0]
    c = st.columns([1.1, 1.5, 1.5], vertical_alignment="bottom")
    sort = c[0].selectbox("Sort", sorts, format_func=lambda k: SORTS[k].title, key=DS.SORT, on_change=_reset_page,
                          help="Wrong first puts the confident mistakes on top; blank maps first, the maps that "
                          "show nothing after ReLU.")

    def name(i: int) -> str:
        return names[i] if 0 <= i < len(names) else str(i)

    true = c[1].multiselect("True class", results.class_options("label"), format_func=name, key=DS.TRUE,
                            on_change=_reset_page, disabled=not labelled, placeholder="any")
    pred = c[2].multiselect("Predicted class", results.class_options("pred"), format_func=name, key=DS.PRED,
                            on_change=_reset_page, placeholder="any")
    c = st.columns([1.1, 1.1, 1.0, 1.3], vertical_alignment="bottom")
    st.session_state.setdefault(DS.OUTCOME, "all")  # not a default too: a cell click sets it (one source of value)
    outcome = c[0].segmented_control(
        "Show", ["all", "correct", "wrong"], key=DS.OUTCOME, required=True, on_change=_reset_page,
        format_func=str.capitalize, disabled=not labelled,
    )
    whose = "pred"
    if labelled and "label" in str(results.run.get("classes")):
        whose = c[1].segmented_control("Map of", ["pred", "label"], key=DS.SHOWN, default="pred", required=True,
                                       format_func={"pred": "Prediction", "label": "True class"}.get,
                                       help="Whose map the thumbnails show: the predicted class's or the true one's.")
    view = c[2].segmented_control("View", ["relu", "signed"], key=DS.VIEW, default="relu", required=True,
                                  format_func={"relu": "ReLU'd", "signed": "Signed"}.get,
                                  help="ReLU'd: positive evidence only (jet). Signed: for and against (blue-red).")
    method = results.methods[0]
    if len(results.methods) > 1:
        method = c[3].selectbox("Method shown", results.methods, format_func=lambda m: METHODS[m].title,
                                key=DS.MAP_METHOD)
    flags = localisation_ui.filters_ui(results, st, _reset_page)
    filters = Filters(tuple(true or ()), tuple(pred or ()), outcome if labelled else "all", flags)
    return sort, filters, method, whose, view


def _pager(n: int) -> tuple[int, int]:
    """(first row, last row + 1) of the page shown."""
    size = st.session_state.get(DS.PAGE_SIZE, PAGE_SIZES[0])
    pages = max(1, math.ceil(n / size))
    page = min(max(1, int(st.session_state.get(DS.PAGE, 1))), pages)
    st.session_state[DS.PAGE] = page
    c = st.columns([0.9, 0.9, 3], vertical_alignment="bottom")
    c[0].number_input(f"Page (of {pages})", 1, pages, key=DS.PAGE)
    c[1].selectbox("Per page", PAGE_SIZES, key=DS.PAGE_SIZE, on_change=_reset_page)
    first = (page - 1) * size
    c[2].caption(f"Images {first + 1 if n else 0}–{min(n, first + size)} of {n:,} shown by the filters.")
    return first, min(n, first + size)


def _open_row(results: ResultsQuery, root: Path, bundle: Bundle | None, rid: int) -> None:
    """Hand the clicked image to the image page, with the run's model, layer, fit, method and classes."""
    row = results.row(rid)
    if row is None:
        st.session_state[DS.GOTO] = "that row is no longer in the results"
        return
    path = row["path"]
    try:
        file = _reachable(root, path)
        data = file.read_bytes()
        digest = hashlib.sha1(data).hexdigest()
        image = decode_image(digest, data, file.name)
    except (CamError, OSError) as exc:
        st.session_state[DS.GOTO] = str(exc)
        return
    spec = _run_spec(results, bundle)
    if spec is not None and (bundle is None or spec != bundle.spec):
        request_model(spec)
    key = (spec or bundle.spec).key if (spec or bundle) else None
    state.open_image(ImageItem(file.name, image, digest, fit=results.fit))
    st.session_state[state.K.FIT] = results.fit
    if key is not None:
        state.set_layer(key, results.run["layer"])
        ids = row["class_ids"]
        if ids is not None:
            state.set_classes((key, digest), [int(i) for i in ids])
    st.session_state[state.K.METHODS] = list(results.methods)
    st.session_state[DS.GOTO] = True


def _reachable(root: Path, path: str) -> Path:
    """A file a results table names, if this session may read it: under the root, and no other session's upload."""
    file = dataroot.resolve_under(root, path)
    if not dataroot.visible(dataroot.relative(root, file), _owner()):
        raise CamError(f"{Path(path).name} is another visitor's upload")
    return file


def goto_requested() -> bool | str:
    """True when a thumbnail asked for the image page (a string: why it could not be opened)."""
    return st.session_state.pop(DS.GOTO, False)


@st.fragment
@bounded("showing the results")
def results_ui(root: Path, results: ResultsQuery, bundle: Bundle | None, image_page) -> None:
    """Summary, confusion matrix, the gallery with its controls, the export and the failed files."""
    state.honour_full_rerun()
    goto = goto_requested()
    if goto is True:
        st.switch_page(image_page)
    elif goto:
        st.error(f"That image cannot be opened: {plain(message(goto, trusted=False))}", icon=":material/broken_image:")
    _describe(results, root, bundle)
    with st.container(key="ds_controls"):
        sort, filters, method, whose, view = _controls(results)
    numbers = st.container()  # filled after the gallery: a browser then draws the thumbnails before the charts
    opacity = float(st.session_state.get(DS.OPACITY, 0.6))
    filters = insight.sections(results, partial(_reachable, root), bundle, _run_spec(results, bundle), sort, filters,
                               method, whose, opacity)  # a confusion cell's contrast, the atlas and its cluster filter
    n = results.count(filters, method, whose)
    first, last = _pager(n)
    page = results.page(sort, filters, first, last - first, method, whose)
    items = gallery_items(results, page, method, whose, view, partial(_reachable, root))
    gallery_ui(
        items, opacity=opacity, columns=COLUMNS,
        on_open=partial(_open_row, results, root, bundle),
        on_opacity=lambda v: st.session_state.__setitem__(DS.OPACITY, v),
    )
    export_ui(n, lambda: results.table(sort, filters, method, whose), root)
    with numbers:
        _metrics(results, method)
        _confusion_ui(results, method, whose)
        localisation_ui.truth_ui(results, method)
    failed = results.summary().failed
    if failed:
        with st.expander(f"{failed:,} file(s) could not be read"):
            st.dataframe(tb.failed_files(results.failed(FAILED_SHOWN), root), hide_index=True, width="stretch")
            if failed > FAILED_SHOWN:
                st.caption(f"The first {FAILED_SHOWN:,} by path; the CSV export lists every row.")
