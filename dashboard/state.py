"""Session state and the shareable URL.

Everything the page remembers between reruns lives under a few keys of
``st.session_state`` (named here, so the rest of the code never spells a raw key),
and the view that matters for sharing (model, layer, methods, classes, image, k)
is mirrored into ``st.query_params``: reading them once when a session starts,
writing them after every run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import streamlit as st
from streamlit.runtime.scriptrunner import get_script_run_ctx

from cam_core.limits import MAX_CLASSES_PER_REQUEST

if TYPE_CHECKING:
    from dashboard.model import ImageItem

__all__ = [
    "OPENED_KEEP",
    "K",
    "UrlView",
    "class_selection",
    "classes_cut_note",
    "honour_full_rerun",
    "layer_for",
    "open_image",
    "pretrained_unavailable",
    "read_url_once",
    "request_full_rerun",
    "set_classes",
    "set_layer",
    "toggle_class",
    "write_url",
    "write_url_compare",
]


class K:
    """Session-state keys."""

    URL_READ = "_url_read"
    URL = "_url_view"
    URL_LAYER_USED = "_url_layer_used"  # the URL's layer and classes apply once, on the first view
    URL_CLASSES_USED = "_url_classes_used"
    LAYERS = "_layer_by_model"  # model key → selected layer
    CLASSES = "_classes_by_view"  # (model key, image digest) → [class ids]
    CLASS_CTX = "_class_ctx"  # the (model, image) the class picker currently shows
    CLASS_PICKER = "class_picker"
    CLASS_FIND = "class_find"
    CLASS_MSG = "_class_msg"
    CLASS_CUT = "_class_cut"  # how many classes the last request asked for, when it was cut to the limit
    CLASS_SUGGEST = "_class_suggest"  # (query, [class ids]) when a typed word matched several classes
    CLASS_SUGGEST_PICK = "class_suggest_pick"
    TOPK = "top_k"
    METHODS = "methods"
    SOURCE = "model_source"
    PINNED = "pinned_model"
    TV_NAME = "tv_name"
    TV_PRETRAINED = "tv_pretrained"
    TV_PRETRAINED_OFF = "_tv_pretrained_off"  # set when the weights cannot be had: the toggle goes off next run
    TV_OFFLINE_NOTE = "_tv_offline_note"
    TIMM_NAME = "timm_name"
    TIMM_PRETRAINED = "timm_pretrained"
    TIMM_PRETRAINED_OFF = "_timm_pretrained_off"
    PROBS = "probs_kind"  # softmax or sigmoid, for the scores and the overlay titles
    FIT = "fit"
    FULL_RERUN = "_full_rerun"  # a callback inside a fragment changed something the whole page depends on
    SAMPLES = "samples"
    IMAGE = "current_image"
    IMAGES_SEEN = "_images_seen"
    OPENED = "_opened_images"  # ImageItems opened from another page (a dataset's image, a video frame), newest last
    SHOW = "_show_digest"  # the image (digest) the image page shows next, once
    CHART_NONCE = "_scores_nonce"
    STILLS = "_stills"  # the overlay figures this session opened on: shown as stills until Plotly draws them
    # The video page
    VIDEO_CLIP = "video_clip"  # sample or upload
    VIDEO_UPLOAD = "video_upload"
    VIDEO_MODEL = "video_model"  # the sidebar's model, or a video (3-D) model
    VIDEO_ARCH = "video_arch"
    VIDEO_PRETRAINED = "video_pretrained"
    VIDEO_PRETRAINED_OFF = "_video_pretrained_off"
    VIDEO_OFFLINE_NOTE = "_video_offline_note"
    VIDEO_CLASSES = "video_classes"  # clip / frame / fixed
    VIDEO_K = "video_k"
    VIDEO_FIXED = "video_fixed"
    VIDEO_METHODS = "video_methods"
    VIDEO_EVERY = "video_every"
    VIDEO_MAX_FRAMES = "video_max_frames"
    VIDEO_SMOOTH = "video_smooth"
    VIDEO_RUN = "video_run"  # the Run button
    VIDEO_CANCEL = "video_cancel"
    VIDEO_SHOWN = "_video_shown"  # the run key whose results the page shows
    VIDEO_PROGRESS = "_video_progress"  # (frames done, planned) of the run in progress
    VIDEO_JUST_RAN = "_video_just_ran"  # the key of the run this session computed a moment ago
    VIDEO_FILM = "video_film"  # which (method, slot) film plays
    VIDEO_FRAME = "video_frame"  # the scrubber's frame
    VIDEO_PLAYING = "_video_playing"
    VIDEO_TIMELINE_NONCE = "_video_timeline_nonce"
    VIDEO_SENT = "_video_sent"  # the frame last sent to the image page (when a link must take the user there)
    # The image page's comparison with a second model (its model form's keys start with B_PREFIX)
    COMPARE = "compare_on"
    B_PREFIX = "b_"
    B_LAYER = "compare_layer_b"  # model B's layer picker (one per model: the key gets B's model key)
    URL_LAYER_B_USED = "_url_layer_b_used"
    COMPARE_SHARED = "compare_shared_scale"
    COMPARE_METHOD = "compare_method"


@dataclass(frozen=True)
class UrlView:
    """What a shared link asks for (each field ``None`` when absent)."""

    model: str | None = None
    weights: str | None = None
    layer: str | None = None
    methods: tuple[str, ...] | None = None
    classes: tuple[int, ...] | None = None
    image: str | None = None
    k: int | None = None
    fit: str | None = None
    model_b: str | None = None  # the second model of a comparison, its weights and layer
    weights_b: str | None = None
    layer_b: str | None = None


def _ints(text: str) -> tuple[int, ...] | None:
    try:
        return tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        return None


def _capped(ids: Sequence[int]) -> list[int]:
    """``ids`` without repeats, cut to :data:`~cam_core.limits.MAX_CLASSES_PER_REQUEST` (the cut noted for the page)."""
    ids = list(dict.fromkeys(int(i) for i in ids))
    if len(ids) > MAX_CLASSES_PER_REQUEST:
        st.session_state[K.CLASS_CUT] = len(ids)
        ids = ids[:MAX_CLASSES_PER_REQUEST]
    return ids


def _url_classes(text: str) -> tuple[int, ...] | None:
    """``?classes=``, cut to :data:`~cam_core.limits.MAX_CLASSES_PER_REQUEST` (a link asked for 300: 88 s of CPU)."""
    ids = _ints(text)
    return tuple(_capped(ids)) if ids else None


def classes_cut_note() -> str | None:
    """The one-line notice when the last request for classes was cut to the limit (once)."""
    asked = st.session_state.pop(K.CLASS_CUT, None)
    if not asked:
        return None
    return (f"{asked} classes were asked for; the first {MAX_CLASSES_PER_REQUEST} are explained (at most "
            f"{MAX_CLASSES_PER_REQUEST} in one request).")


def read_url_once() -> UrlView:
    """The view in the URL when this session started (read on the first run only)."""
    if K.URL_READ not in st.session_state:
        qp = st.query_params
        k = qp.get("k")
        view = UrlView(
            model=qp.get("model") or None,
            weights=qp.get("weights") or None,
            layer=qp.get("layer") or None,
            methods=tuple(m for m in (qp.get("method") or "").split(",") if m) or None,
            classes=_url_classes(qp.get("classes") or ""),
            image=qp.get("image") or None,
            k=int(k) if k and k.isdigit() else None,
            fit=qp.get("fit") or None,
            model_b=qp.get("model_b") or None,
            weights_b=qp.get("weights_b") or None,
            layer_b=qp.get("layer_b") or None,
        )
        st.session_state[K.URL] = view
        st.session_state[K.URL_READ] = True
    return st.session_state[K.URL]


def write_url(
    *,
    model: str | None,
    weights: str | None,
    layer: str | None,
    methods: Sequence[str],
    classes: Sequence[int],
    image: str | None,
    k: int,
    fit: str | None = None,
) -> None:
    """Mirror the current view into the URL (fields that cannot be shared are left out)."""
    wanted = {
        "model": model,
        "weights": weights,
        "layer": layer,
        "method": ",".join(methods) or None,
        "classes": ",".join(str(c) for c in classes) or None,
        "image": image,
        "k": str(k),
        "fit": fit,
    }
    _mirror(wanted)


def write_url_compare(model_b: tuple[str, str | None] | None, layer_b: str | None) -> None:
    """Mirror the compared model into the URL: its (model, weights) when a link can name it, and its layer; all
    three left out when nothing is compared (or the model is an upload)."""
    _mirror({
        "model_b": model_b[0] if model_b else None,
        "weights_b": model_b[1] if model_b else None,
        "layer_b": layer_b if model_b else None,
    })


def _mirror(wanted: dict[str, str | None]) -> None:
    """Set the URL's ``wanted`` fields (``None``: remove it), touching only those that changed."""
    current = st.query_params.to_dict()
    for name, value in wanted.items():
        if value is None:
            if name in current:
                del st.query_params[name]
        elif current.get(name) != value:
            st.query_params[name] = value


def pretrained_unavailable(name: str, source: str = "torchvision", prefix: str = "") -> None:
    """The pretrained weights of ``name`` cannot be had: turn the source's toggle off on the next run, and say why
    (``prefix``: of the model form whose toggle it is)."""
    st.session_state[prefix + (K.TIMM_PRETRAINED_OFF if source == "timm" else K.TV_PRETRAINED_OFF)] = True
    st.session_state[K.TV_OFFLINE_NOTE] = f"timm:{name}" if source == "timm" else name


OPENED_KEEP = 8  # images opened from other pages that stay in the image switcher


def open_image(item: ImageItem) -> None:
    """Hand an image to the image page: it joins the images there and is the one shown next."""
    opened = [i for i in st.session_state.get(K.OPENED, []) if i.digest != item.digest]
    st.session_state[K.OPENED] = [*opened, item][-OPENED_KEEP:]
    st.session_state[K.SHOW] = item.digest


# ---- layer ---------------------------------------------------------------------------------


def request_full_rerun() -> None:
    """Ask for the whole page to rerun (from a widget callback inside a fragment, which reruns only itself)."""
    st.session_state[K.FULL_RERUN] = True


def honour_full_rerun() -> None:
    """First line of every fragment: turn a fragment rerun into a full one when a callback asked for it."""
    if st.session_state.pop(K.FULL_RERUN, False):
        ctx = get_script_run_ctx()
        if ctx is not None and ctx.fragment_ids_this_run:
            st.rerun(scope="app")


def layer_for(model_key: str, default: str) -> str:
    """The layer selected for this model (the recommended one until the user picks another)."""
    return st.session_state.setdefault(K.LAYERS, {}).get(model_key, default)


def set_layer(model_key: str, layer: str) -> None:
    """Remember ``layer`` as this model's selection (the whole page follows, even from inside a fragment)."""
    st.session_state.setdefault(K.LAYERS, {})[model_key] = layer
    request_full_rerun()


# ---- classes ------------------------------------------------------------------------------


def class_selection(ctx: tuple[str, str], default: Sequence[int]) -> list[int]:
    """The classes selected for (model, image), initialised to ``default``.

    Also points the class picker widget at this selection when the (model, image)
    changed since the last run or the widget's state was dropped.
    """
    store = st.session_state.setdefault(K.CLASSES, {})
    if ctx not in store:
        store[ctx] = _capped(default)
    if st.session_state.get(K.CLASS_CTX) != ctx or K.CLASS_PICKER not in st.session_state:
        st.session_state[K.CLASS_PICKER] = list(store[ctx])
        st.session_state[K.CLASS_CTX] = ctx
    return list(store[ctx])


def set_classes(ctx: tuple[str, str], ids: Sequence[int]) -> None:
    """Replace the selection for (model, image), at most :data:`~cam_core.limits.MAX_CLASSES_PER_REQUEST` classes
    (the first ones; :func:`classes_cut_note` says so); safe to call from widget callbacks."""
    ids = _capped(ids)
    st.session_state.setdefault(K.CLASSES, {})[ctx] = ids
    if st.session_state.get(K.CLASS_CTX) == ctx:
        st.session_state[K.CLASS_PICKER] = ids


def toggle_class(ctx: tuple[str, str], class_id: int) -> None:
    """Add ``class_id`` to the selection, or remove it if it is there."""
    ids = list(st.session_state.setdefault(K.CLASSES, {}).get(ctx, []))
    if class_id in ids:
        ids.remove(class_id)
    else:
        ids.append(class_id)
    set_classes(ctx, ids)
