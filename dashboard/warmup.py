"""Warm start: the offline default model, its layer tree and the first view's maps, ready as the server starts.

Started once per process when the server imports ``dashboard/app.py``, before anyone visits,
so the first visitor does not pay for loading the model, tracing its layers and the first maps.
It fills the same process-wide caches the page reads
(:func:`dashboard.model.load_bundle`, the map cache, the figure cache), with exactly the
first view's keys. A visitor who arrives earlier sees its progress (:func:`status`).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, replace

__all__ = ["Status", "start", "status", "wait"]

_LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class Status:
    """Where the warm start is: ``fraction`` of the way, ``step`` in words, ``done`` (also after a failure)."""

    fraction: float = 0.0
    step: str = "starting"
    done: bool = False
    seconds: float = 0.0


_state = {"status": Status(done=True, step="not started")}
_changed = threading.Condition()
_started = threading.Event()


def status() -> Status:
    """The warm start's progress (``done`` when it never started: nothing to wait for)."""
    with _changed:
        return _state["status"]


def wait(seen: Status, timeout: float | None) -> Status:
    """The status once it differs from ``seen`` (or after ``timeout`` seconds): a waiting page moves on at once."""
    with _changed:
        _changed.wait_for(lambda: _state["status"] != seen, timeout)
        return _state["status"]


def _set(fraction: float, step: str, *, done: bool = False, since: float = 0.0) -> None:
    with _changed:
        _state["status"] = Status(fraction, step, done, time.perf_counter() - since if since else 0.0)
        _changed.notify_all()


def start() -> None:
    """Begin the warm start in a background thread (once per process)."""
    if _started.is_set():
        return
    _started.set()
    _import_what_sessions_race_on()
    _set(0.0, "starting")
    threading.Thread(target=_run, name="camdash-warmup", daemon=True).start()


def _import_what_sessions_race_on() -> None:
    """Import pandas now, in the server's thread, before any session runs.

    Plotly and Streamlit import pandas lazily, at a session's first figure, and Plotly's validators
    look it up in ``sys.modules`` without the import lock: a second session drawing its first figure
    meanwhile gets the half-imported module ("partially initialized module 'pandas' has no attribute
    'Series'"), a traceback in place of its scores. Three visitors at once hit it.
    """
    import pandas  # noqa: F401


def _first_run_imports() -> None:
    """What a session's first run would otherwise import or decode itself (part of its page open).

    Streamlit's emoji and icon catalogues (``set_page_config``'s icon, the pages' icons) and every sample
    photo (the sidebar's thumbnails).
    """
    import streamlit.emojis
    import streamlit.material_icon_names  # noqa: F401

    from cam_core.io.samples import SAMPLE_NAMES, load_sample

    for name in SAMPLE_NAMES:
        load_sample(name)


def _run() -> None:
    begin = time.perf_counter()
    try:
        from dashboard.display import Display
        from dashboard.model import ModelSpec, load_bundle
        from dashboard.views.image.compute import compute_view
        from dashboard.views.image.panels import overlay_figure_for
        from dashboard.views.image.sidebar import sample_item

        _set(0.05, "loading EfficientNet-Lite0 and tracing its layers", since=begin)
        _first_run_imports()
        bundle = load_bundle(ModelSpec())
        layer = bundle.recommended
        item = replace(sample_item("chelsea"), fit=bundle.model.fit)
        _set(0.6, "explaining the sample photo", since=begin)
        view, ids = compute_view(bundle, item, layer=layer, methods=["gradcam"], classes=None, k=3)
        _set(0.85, "drawing the first overlays", since=begin)
        overlay_figure_for(bundle, item, layer, view, tuple(ids), "gradcam", Display(), still=True)
        _set(1.0, "ready", done=True, since=begin)
        _LOG.info("warm start done in %.1f s", time.perf_counter() - begin)
    except Exception:  # a warm start is an optimisation: the page loads the same things itself
        _LOG.exception("warm start failed; the first visitor will load the model")
        _set(1.0, "failed", done=True, since=begin)
