"""The main area: header, image switcher, layer tree, classes, overlays, scores, downloads.

``*_ui`` functions read widgets and return plain values; ``show_*`` functions draw
values (figures come from :mod:`dashboard.figures`). Widget callbacks only write
session state through :mod:`dashboard.state`.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from functools import partial

import numpy as np
import plotly.graph_objects as go
import streamlit as st
import torch

from cam_core.analysis.diagnose import blank_after_relu
from cam_core.engine import match_classes, resolve_classes
from cam_core.engine.methods import METHODS
from cam_core.errors import CamError
from cam_core.limits import MAX_CLASSES_PER_REQUEST
from dashboard.caches import figure_cache
from dashboard.display import Display, sync_opacity
from dashboard.figures import (
    PLOTLY_CONFIG,
    Panel,
    columns_for,
    format_prob,
    overlay_figure,
    panel_height,
    scores_figure,
)
from dashboard.model import Bundle, ImageItem
from dashboard.state import K, UrlView, classes_cut_note, set_classes, toggle_class
from dashboard.text import plain
from dashboard.views.image import exports
from dashboard.views.image.compute import ViewResult
from dashboard.views.image.debug import open_debug
from dashboard.views.image.report_export import report_html
from dashboard.views.image.still import STILL_CSS, still_html

__all__ = [
    "HOW_TO_READ",
    "blank_maps_note",
    "class_messages_ui",
    "classes_ui",
    "find_classes_ui",
    "image_ui",
    "overlay_figure_for",
    "show_exports",
    "show_header",
    "show_model_info",
    "show_overlays",
    "show_scores",
    "topk_ui",
]

HOW_TO_READ = (
    "Each panel is the photo as the model saw it (resized as the *Fit* in the sidebar says) under a class "
    "activation map: where the chosen layer's features raised that class's score. *ReLU'd* shows positive "
    "evidence only, each map scaled to its own maximum (empty = no positive evidence). *Signed* shows the raw "
    "map around zero: warm for the class, cool against it. The bar under each panel gives the map's raw "
    "values; hover for a point's value; the slider under a figure fades the maps in the browser."
)
SCORE_ROWS = 10  # top classes in the scores chart (selected ones are added)


_CSS = """
<style>
/* Less empty space above the title (the first overlay should be visible without scrolling), but not under
   Streamlit's header bar (3.75rem high), which hid the top of the title at 2rem. */
[data-testid="stMainBlockContainer"] { padding-top: 4rem; }
/* Narrow screens (a 1024-px projector): the right rail (scores, layer tree) goes under the overlays,
   which keep the whole width. */
@media (max-width: 1279px) {
  .st-key-workspace > [data-testid="stLayoutWrapper"] > [data-testid="stHorizontalBlock"] { flex-wrap: wrap; }
  .st-key-workspace > [data-testid="stLayoutWrapper"] > [data-testid="stHorizontalBlock"] > [data-testid="stColumn"] {
    flex: 1 1 100% !important; min-width: 100% !important; width: 100% !important; }
  /* Under the overlays, the scores and the layer tree side by side: the tree right under the maps' row,
     not at the bottom of a long column. */
  .st-key-workspace [data-testid="stColumn"]:has(.st-key-tree_box) > [data-testid="stVerticalBlock"] {
    flex-direction: row; flex-wrap: wrap; align-items: flex-start; }
  .st-key-workspace [data-testid="stLayoutWrapper"]:has(> .st-key-scores_box),
  .st-key-workspace [data-testid="stLayoutWrapper"]:has(> .st-key-tree_box) { flex: 1 1 340px; min-width: 300px; }
  /* The sidebar takes less of a small screen (it took 30 % of 1024 px), and the page less padding. */
  [data-testid="stSidebar"][data-collapsed="false"] { width: 244px !important; min-width: 244px !important; }
  [data-testid="stMainBlockContainer"] { padding-left: 1.5rem; padding-right: 1.5rem; }
  /* The class picker gets a line of its own; the find box and Top-k go under it. */
  .st-key-class_row { flex-wrap: wrap; }
  .st-key-class_row > div:first-child { flex: 1 1 100% !important; min-width: 100%; }
}
/* Class chips show their whole name (the first was cut: "Egyptian cat · …"). */
.st-key-class_picker [data-baseweb="tag"] { max-width: none; }
.st-key-class_picker [data-baseweb="tag"] span { max-width: none; overflow: visible; text-overflow: clip; }
</style>
"""


def show_header() -> None:
    """Title and the short guide (folded into a popover: the overlays come first)."""
    st.html(_CSS)
    with st.container(horizontal=True, vertical_alignment="center", gap="medium"):
        st.subheader(":material/local_fire_department: Class activation maps", anchor=False, width="content")
        with st.popover("How to read this", icon=":material/help:", type="tertiary"):
            st.markdown(HOW_TO_READ)


def show_model_info(bundle: Bundle, device: str, layer: str | None) -> None:
    """Badges for the model, device and layer; a loud badge for untrained weights; the loader's notes."""
    model = bundle.model
    with st.container(horizontal=True, gap="small", key="model_info"):
        st.badge(model.name, icon=":material/neurology:", color="blue")
        st.badge(f"{len(model.class_names)} classes · input {model.input_size[0]}×{model.input_size[1]}", color="gray")
        st.badge(device, icon=":material/memory:", color="gray")
        if layer:
            st.badge(f"layer {layer}", icon=":material/layers:", color="violet")
        if not model.pretrained:
            st.badge("UNTRAINED WEIGHTS: maps mean nothing", icon=":material/warning:", color="red")
    if model.notes:
        with st.expander("Notes about this model", expanded=not model.pretrained):
            for note in model.notes:
                st.markdown(f"- {plain(note, limit=2000)}")


def image_ui(items: Sequence[ImageItem], url: UrlView) -> ImageItem:
    """Which image to show (the others stay loaded, and their maps stay cached).

    An image that just arrived (an upload, a sample switched on, a new camera snapshot) is
    shown at once: that is what the user added it for, and in a live demo there is no time
    to hunt for it in the switcher.
    """
    labels = [item.label for item in items]
    seen = st.session_state.get(K.IMAGES_SEEN)
    st.session_state[K.IMAGES_SEEN] = {(item.label, item.digest) for item in items}
    arrived = [item.label for item in items if seen is not None and (item.label, item.digest) not in seen]
    handed = st.session_state.pop(K.SHOW, None)  # opened from another page (a dataset's gallery)
    arrived = [item.label for item in items if item.digest == handed] or arrived
    if arrived:
        st.session_state[K.IMAGE] = arrived[0]
    elif st.session_state.get(K.IMAGE) not in labels:
        wanted = url.image if url.image in labels else labels[0]
        st.session_state[K.IMAGE] = wanted
    if len(items) > 1:
        st.segmented_control("Image", labels, key=K.IMAGE, required=True)
    return items[labels.index(st.session_state[K.IMAGE])]


def topk_ui(url: UrlView, num_classes: int, ctx: tuple[str, str], ranking: Callable[[], Sequence[int] | None]) -> int:
    """How many top classes are preselected; changing it resets the selection to the new top-k.

    ``ranking`` gives the image's classes by decreasing probability (``None`` before its first look).
    """
    limit = max(1, min(MAX_CLASSES_PER_REQUEST, num_classes))  # a model of no class still draws the page
    if K.TOPK not in st.session_state:
        st.session_state[K.TOPK] = max(1, min(url.k or 3, limit))
    st.session_state[K.TOPK] = min(st.session_state[K.TOPK], limit)

    def reset() -> None:
        order = ranking()
        if order is not None:
            set_classes(ctx, list(order[: st.session_state[K.TOPK]]))

    return int(
        st.number_input(
            "Top-k",
            1,
            limit,
            key=K.TOPK,
            on_change=reset,
            help="Preselect the k most probable classes (resets the selection).",
        )
    )


def _find(ctx: tuple[str, str], names: Sequence[str], logits: np.ndarray) -> None:
    """Add (or, for a class already shown, remove) what was typed: names, words, indices or topK.

    A word that several classes share ("cat") is not guessed: its matches become suggestions to click.
    """
    text = (st.session_state.get(K.CLASS_FIND) or "").strip()
    st.session_state[K.CLASS_FIND] = ""
    st.session_state[K.CLASS_SUGGEST] = None
    st.session_state[K.CLASS_MSG] = None
    if not text:
        return
    ids = list(st.session_state.setdefault(K.CLASSES, {}).get(ctx, []))
    scores = torch.from_numpy(np.asarray(logits, dtype=np.float32)[None])
    unknown = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        try:
            found = resolve_classes(part, scores, names)[0].tolist()
        except CamError:
            matches = match_classes(part, names, logits)
            if not matches:
                unknown.append(part)
                continue
            if len(matches) > 1 or part.lower() not in names[matches[0]].lower():
                # Several classes share the word, or only the spelling is close: the user picks.
                st.session_state[K.CLASS_SUGGEST] = (part, matches[:10])
                continue
            found = matches
        if len(found) == 1 and found[0] in ids and not part.lower().startswith("top"):
            ids.remove(found[0])  # typing a class that is shown takes it away, like clicking its bar
        else:
            ids += [i for i in found if i not in ids]
    set_classes(ctx, ids)
    if unknown:
        st.session_state[K.CLASS_MSG] = (
            f"No class is called or contains {plain(', '.join(repr(u) for u in unknown))}: try another word, or an "
            f"index 0–{len(names) - 1}."
        )


def classes_ui(ctx: tuple[str, str], names: Sequence[str]) -> list[int]:
    """Selected classes: a picker over every class; typing filters by any part of the name or the index."""
    picked = st.multiselect(
        "Classes (type any part of a name, or an index)",
        list(range(len(names))),
        format_func=lambda i: f"{names[i]} · {i}",
        key=K.CLASS_PICKER,
        on_change=lambda: set_classes(ctx, st.session_state[K.CLASS_PICKER]),
        placeholder="Pick classes to explain",
        max_selections=MAX_CLASSES_PER_REQUEST,
        filter_mode="contains",
        select_all=False,  # Enter takes the highlighted class, never "all matches"
        wrap=True,
    )
    return list(picked)


def find_classes_ui(ctx: tuple[str, str], names: Sequence[str], logits: np.ndarray) -> None:
    """A box that adds (or removes) classes by name, word or index, several comma-separated."""
    st.text_input(
        "Add or remove classes",
        key=K.CLASS_FIND,
        on_change=_find,
        args=(ctx, names, logits),
        placeholder="e.g. tabby, cat, 285 or top5",
        help="A name, a word of a name (cat, dog, cup), an index or topK; several comma-separated. A class "
        "already shown is taken away. A word many classes share lists them to pick from.",
    )


def _take_suggestion(ctx: tuple[str, str]) -> None:
    picked = st.session_state.get(K.CLASS_SUGGEST_PICK)
    if picked is not None:
        ids = list(st.session_state.setdefault(K.CLASSES, {}).get(ctx, []))
        set_classes(ctx, [*ids, int(picked)] if int(picked) not in ids else ids)
    st.session_state[K.CLASS_SUGGEST] = None
    st.session_state[K.CLASS_SUGGEST_PICK] = None


def class_messages_ui(ctx: tuple[str, str], names: Sequence[str], probs: np.ndarray) -> None:
    """What the last search found: classes to pick from when a word matched several; a message when none.

    Shown once: the next change of any kind clears a message (suggestions stay until used or replaced).
    """
    message = st.session_state.pop(K.CLASS_MSG, None)
    if message:
        st.warning(message, icon=":material/search_off:")
    cut = classes_cut_note()
    if cut:
        st.info(cut, icon=":material/filter_list:")
    found = st.session_state.get(K.CLASS_SUGGEST)
    if not found:
        return
    query, ids = found
    st.pills(
        f"Classes matching “{plain(query)}”: pick one to add it",
        ids,
        format_func=lambda i: f"{names[i]} · {format_prob(probs[i])}",
        key=K.CLASS_SUGGEST_PICK,
        on_change=_take_suggestion,
        args=(ctx,),
    )


def _fit_words(view: ViewResult, item: ImageItem) -> str:
    return view.place.describe(*item.image.size)


def show_overlays(
    bundle: Bundle,
    item: ImageItem,
    layer: str,
    view: ViewResult,
    ids: Sequence[int],
    methods: Sequence[str],
    display: Display,
) -> None:
    """One figure per method (classes side by side, views stacked), each with its own opacity slider.

    Figures are built once per (model, input, layer, method, classes, display, kind of probability) and kept for every
    session: a rerun that changes none of these sends the same figure again, which the browser
    already holds (Streamlit's message cache), and builds nothing.
    """
    if not bundle.model.pretrained:
        st.warning("Untrained (random) weights: these maps say nothing about the image.", icon=":material/warning:")
    if not ids:
        st.info("No class selected: pick one above, or click a bar in the scores.", icon=":material/touch_app:")
        return
    # The figures this browser session opened on (its first run with overlays) come with stills: only a fresh page
    # waits for Plotly's script. Figures drawn later come without (the same ones again cost a reference: Streamlit's
    # message cache).
    opening = K.STILLS not in st.session_state
    stills: set[tuple] = st.session_state.setdefault(K.STILLS, set())
    for m in methods:
        title = METHODS[m].title
        st.markdown(f"##### {title}")
        if m in view.errors:
            st.error(f"{title} at this layer: {plain(view.errors[m])}", icon=":material/error:")
            continue
        drawn = [c for c in ids if (m, c) in view.maps]
        per_row = columns_for(view.background.shape[:2], len(drawn))  # fewer for a wide photo: rows, not slivers
        for start in range(0, len(drawn), per_row):
            chunk = tuple(drawn[start : start + per_row])
            key = _figure_key(bundle, item, layer, view, chunk, m, display, per_row)
            if opening:
                stills.add(key)
            fig, still = overlay_figure_for(
                bundle, item, layer, view, chunk, m, display, columns=per_row, still=key in stills
            )
            # A short last row keeps the rows' panel size: its figure takes its share of the width, not all of it.
            place = st.columns([len(chunk), per_row - len(chunk)])[0] if len(chunk) < per_row else nullcontext()
            with place, st.container(key=f"still_{m}_{start}"):  # the still's place, there (empty) on every run
                if still:
                    st.html(still)
                else:
                    st.empty()
                st.plotly_chart(fig, config=PLOTLY_CONFIG, key=f"overlay_{m}_{start}")
    computed = len(view.computed)
    where = f"Maps of the {_fit_words(view, item)}."
    if computed:
        st.caption(f"{where} Computed {computed} map{'s' if computed != 1 else ''} in {view.seconds:.2f} s; the rest "
                   "came from the cache.")
    else:
        st.caption(f"{where} All maps from the cache: nothing was computed for this view.")
    sync_opacity(".st-key-figures [class*='st-key-overlay_'] .js-plotly-plot")


def _figure_key(
    bundle: Bundle,
    item: ImageItem,
    layer: str,
    view: ViewResult,
    chunk: tuple[int, ...],
    method: str,
    display: Display,
    columns: int,
) -> tuple:
    """What an overlay figure is made of: its key in the figure cache (the titles carry p, hence its kind; the
    columns of its rows set its panels' height)."""
    return (bundle.spec.key, item.key, layer, method, chunk, display, view.probs_kind, columns)


def overlay_figure_for(
    bundle: Bundle,
    item: ImageItem,
    layer: str,
    view: ViewResult,
    chunk: tuple[int, ...],
    method: str,
    display: Display,
    *,
    columns: int | None = None,
    still: bool = False,
) -> tuple[go.Figure, str | None]:
    """The overlay figure of ``chunk``'s classes for one method and, with ``still``, its still
    (:mod:`.still`, with its style; else None), both from the process-wide figure cache. ``columns``: the panels a
    row of this method holds (default: the chunk's), which sets their height."""
    columns = columns or len(chunk)
    key = _figure_key(bundle, item, layer, view, chunk, method, display, columns)
    names, title = bundle.model.class_names, METHODS[method].title
    build = partial(_overlay_figure, view, chunk, names, title, method, display, columns)
    fig = figure_cache().get_or_build(key, build)
    if not still:
        return fig, None
    return fig, figure_cache().get_or_build(("still", *key), lambda: STILL_CSS + still_html(fig))


def _overlay_figure(
    view: ViewResult,
    chunk: Sequence[int],
    names: Sequence[str],
    title: str,
    method: str,
    display: Display,
    columns: int,
) -> go.Figure:
    panels = [
        Panel(
            # Two lines, so side-by-side titles do not run into each other on a narrow screen. The name is text,
            # not markup (a model's own class names can hold anything), in the figure and in its still alike.
            title=f"{html.escape(names[c])} ({c})<br>"
            f"<span style='font-size:0.85em'>p = {format_prob(view.probs[c])}</span>",
            cam=view.maps[(method, c)].up,
            name=f"{names[c]} · {title}",
            cells=min(view.maps[(method, c)].raw.shape[-2:]),
        )
        for c in chunk
    ]
    return overlay_figure(
        view.background,
        panels,
        views=display.views,
        cmap=display.cmap,
        signed_cmap=display.signed_cmap,
        opacity=display.opacity,
        panel_height=panel_height(view.background.shape[:2], columns),
    )


def blank_maps_note(view: ViewResult, ids: Sequence[int], names: Sequence[str], methods: Sequence[str]) -> None:
    """Say at once, without opening the debug section, when a shown map is blank after ReLU (the seed case)."""
    blank = [(m, c) for m in methods for c in ids if (m, c) in view.maps and blank_after_relu(view.maps[(m, c)].raw)]
    if not blank:
        return
    which = ", ".join(f"{plain(names[c])} ({METHODS[m].title})" for m, c in blank[:4])
    which += " …" if len(blank) > 4 else ""
    with st.container(key="blank_note"):
        st.warning(
            f"**{len(blank)} ReLU'd map{'s are' if len(blank) > 1 else ' is'} blank:** {which}: no positive evidence "
            "at this layer, although the class may well be predicted. *Debug this prediction* says why and what "
            "to try.",
            icon=":material/visibility_off:",
        )
        st.button("Explain why", key="blank_explain", on_click=open_debug, icon=":material/troubleshoot:")


def _bar_clicked(ctx: tuple[str, str], chart_key: str) -> None:
    event = st.session_state.get(chart_key) or {}
    points = (event.get("selection") or {}).get("points") or []
    clicked = []
    for point in points:
        data = point.get("customdata")
        data = data[0] if isinstance(data, list) and data else data
        if isinstance(data, int | float) and int(data) not in clicked:
            clicked.append(int(data))
    for cid in clicked:
        toggle_class(ctx, cid)
    # A fresh chart next run: no lingering selection, so the same bar can be clicked again.
    st.session_state[K.CHART_NONCE] = st.session_state.get(K.CHART_NONCE, 0) + 1


PROBS_WORDS = {"softmax": "softmax", "sigmoid": "sigmoid (multi-label)"}
PROBS_HELP = (
    "How logits become probabilities. Softmax: the classes compete and sum to 1 (one label per image). "
    "Sigmoid: each class on its own, yes or no (multi-label models, trained with a sigmoid per class). "
    "The maps explain the logit either way."
)


def show_scores(
    ctx: tuple[str, str], item: ImageItem, view: ViewResult, ids: Sequence[int], names: Sequence[str]
) -> None:
    """Probability and logit of the top classes (and any selected below them); a click toggles a class."""
    with st.container(horizontal=True, vertical_alignment="center"):
        st.markdown("##### Scores")
        st.session_state.setdefault(K.PROBS, "softmax")
        st.segmented_control(
            "Probabilities", list(PROBS_WORDS), format_func=PROBS_WORDS.get, key=K.PROBS, required=True,
            help=PROBS_HELP, label_visibility="collapsed",
        )
    top = np.argsort(-view.probs, kind="stable")[:SCORE_ROWS].tolist()
    shown = top + [c for c in ids if c not in top]
    key = ("scores", ctx[0], item.key, view.probs_kind, tuple(shown), tuple(ids))  # built once, like the overlays
    fig = figure_cache().get_or_build(
        key, partial(scores_figure, shown, names, view.probs, view.logits, ids, probs_kind=view.probs_kind)
    )
    chart_key = f"scores_{st.session_state.get(K.CHART_NONCE, 0)}"
    st.plotly_chart(
        fig,
        config={**PLOTLY_CONFIG, "displayModeBar": False},
        key=chart_key,
        on_select=partial(_bar_clicked, ctx, chart_key),
        selection_mode="points",
    )
    st.caption(
        f"Highlighted: explained classes. Click a bar to add or remove its class. Scores of the "
        f"{_fit_words(view, item)}."
    )


def show_exports(
    bundle: Bundle,
    item: ImageItem,
    view: ViewResult,
    ids: Sequence[int],
    names: Sequence[str],
    methods: Sequence[str],
    layer: str,
    display: Display,
) -> None:
    """Download buttons for what is on screen (views, colormaps, opacity); files are built only when clicked."""
    stem = exports.safe_stem(item.label.rsplit(".", 1)[0])
    methods = [m for m in methods if m not in view.errors]
    ups = {key: entry.up for key, entry in view.maps.items() if key[1] in ids and key[0] in methods}
    raws = {key: entry.raw for key, entry in view.maps.items() if key[1] in ids and key[0] in methods}
    meta = {
        "model": bundle.model.name,
        "pretrained": bool(bundle.model.pretrained),
        "fit": view.place.fit,
        "input": _fit_words(view, item),
        "image": item.label,
        "probabilities": view.probs_kind,
        "layer": layer,
        "methods": list(methods),
        "selected_classes": list(ids),
        "views": list(display.views),
        "cmap": display.cmap,
        "signed_cmap": display.signed_cmap,
        "opacity": display.opacity,
    }
    with st.container(horizontal=True, gap="small", key="downloads"):
        st.download_button(
            "Overlays (PNG, zip)",
            partial(exports.overlays_zip, view.background, ups, names, stem=stem, display=display, meta=meta,
                    photo=item.image, place=view.place),
            file_name=f"{stem}_overlays.zip",
            mime="application/zip",
            icon=":material/image:",
            on_click="ignore",
            disabled=not ids,
        )
        st.download_button(
            "Maps (.npz)",
            partial(
                exports.maps_npz,
                logits=view.logits,
                probs=view.probs,
                class_ids=list(ids),
                class_names=names,
                layer=layer,
                methods=list(methods),
                raw=raws,
                up=ups,
                meta=meta,
            ),
            file_name=f"{stem}_maps.npz",
            mime="application/octet-stream",
            icon=":material/grid_on:",
            on_click="ignore",
            disabled=not ids or not methods,
        )
        st.download_button(
            "Scores (JSON)",
            partial(exports.scores_json, names, view.logits, view.probs, list(ids), meta=meta),
            file_name=f"{stem}_scores.json",
            mime="application/json",
            icon=":material/data_object:",
            on_click="ignore",
        )
        st.download_button(
            "Scores (CSV)",
            partial(exports.scores_csv, names, view.logits, view.probs, list(ids)),
            file_name=f"{stem}_scores.csv",
            mime="text/csv",
            icon=":material/table:",
            on_click="ignore",
        )
        st.download_button(
            "Report (HTML)",
            partial(report_html, bundle, item, view, list(ids), list(methods), layer, display),
            file_name=f"{stem}_report.html",
            mime="text/html",
            icon=":material/description:",
            on_click="ignore",
            disabled=not ids or not methods,
            help="One self-contained file to hand on: the photo, these maps, the scores and the debug section's "
            "findings in plain words; opens offline in any browser and prints well.",
        )
