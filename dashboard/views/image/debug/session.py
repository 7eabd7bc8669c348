"""The debug section's session state: its keys, the cache of results it computed, and the run buttons.

Engine results are kept per session keyed on plain hashable inputs, so a rerun (opacity,
class toggles, tab switches) recomputes nothing; a button asks for a run, the next
draw does it with a spinner or progress bar and keeps the result.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any

import streamlit as st

from cam_core.cache import BoundedCache
from dashboard.feedback import show_error


class DK:
    """Session-state keys of the debug section."""

    OPEN = "dbg_open"
    TAB = "dbg_tab"
    CLASS = "dbg_class"
    METHOD = "dbg_method"
    RESULTS = "_dbg_results"  # kind → BoundedCache(inputs → Timed)
    SWEEP_METHOD = "dbg_sweep_method"
    SWEEP_EXTRA = "dbg_sweep_extra"
    CMP_OPT = "dbg_cmp_"  # + perturbation method name: opted in
    CON_A = "dbg_contrast_a"
    CON_B = "dbg_contrast_b"
    ROW = "dbg_row"
    COL = "dbg_col"
    POINT_NONCE = "_dbg_point_nonce"
    DI_BASELINE = "dbg_di_baseline"
    DI_STEPS = "dbg_di_steps"
    DI_RANDOM = "dbg_di_random"
    ROAD_RANDOM = "dbg_road_random"
    SAN_METHODS = "dbg_san_methods"
    SAN_UNITS = "dbg_san_units"


# ---- session cache ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Timed:
    """An engine result and the seconds it took."""

    value: Any
    seconds: float


def _store(kind: str, limit: int) -> BoundedCache[Timed]:
    """This session's results of ``kind`` (the ``limit`` most recent: results hold maps)."""
    stores = st.session_state.setdefault(DK.RESULTS, {})
    store = stores.get(kind)
    if store is None:
        store = stores[kind] = BoundedCache(max_entries=limit)
    store.max_entries = limit
    return store


def recall(kind: str, key: Hashable) -> Timed | None:
    store = st.session_state.get(DK.RESULTS, {}).get(kind)
    return None if store is None else store.get(key)


def keep(kind: str, key: Hashable, value: Timed, limit: int = 4) -> Timed:
    """Remember ``value`` for ``key`` (the ``limit`` most recent per kind: results hold maps)."""
    return _store(kind, limit).put(key, value)


# The layer's facts for the diagnosis are the same for every browser session looking at the same
# (model, image, layer, classes): kept once per process too, so a new visitor (or a demo reloading
# the page) does not pay for the extra forward/backward again. Module state survives reruns.
SHARED_LIMIT = 16
_SHARED: BoundedCache[Timed] = BoundedCache(max_entries=SHARED_LIMIT)


def recall_shared(kind: str, key: Hashable) -> Timed | None:
    """A result any session computed for ``key`` (also remembered in this session)."""
    found = _SHARED.get((kind, key))
    return None if found is None else keep(kind, key, found)


def keep_shared(kind: str, key: Hashable, value: Timed, limit: int = 4) -> Timed:
    """Remember ``value`` in this session and for every session (the :data:`SHARED_LIMIT` most recent)."""
    _SHARED.put((kind, key), value)
    return keep(kind, key, value, limit)


def _timed(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Timed:
    start = time.perf_counter()
    value = fn(*args, **kwargs)
    return Timed(value, time.perf_counter() - start)


def run_with_bar(what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Timed | None:
    """Run an engine call that reports progress, with a progress bar; errors become messages."""
    bar = st.progress(0.0, text=f"{what}…")
    try:
        out = _timed(fn, *args, progress=lambda f, msg: bar.progress(min(1.0, max(0.0, f)), text=msg), **kwargs)
    except Exception as exc:  # the page survives anything; CamError is a one-line message
        bar.empty()
        show_error(exc, what)
        return None
    bar.empty()
    return out


def run_with_spinner(what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Timed | None:
    with st.spinner(f"{what[0].upper()}{what[1:]}…"):
        try:
            return _timed(fn, *args, **kwargs)
        except Exception as exc:
            show_error(exc, what)
            return None


def ask(kind: str) -> None:
    st.session_state[f"_dbg_go_{kind}"] = True


def asked(kind: str) -> bool:
    """Whether the run button of ``kind`` was pressed (its callback ran before this rerun)."""
    return bool(st.session_state.pop(f"_dbg_go_{kind}", False))


def run_button(kind: str, label: str, icon: str, *, done: bool, disabled: bool = False) -> None:
    """A run button; its callback flags the run, so the tab computes before drawing (labels stay current).

    Disabled once the result for the current settings is cached: the engine calls are deterministic.
    """
    st.button(
        label,
        key=f"dbg_{kind}_run",
        on_click=ask,
        args=(kind,),
        type="primary",
        icon=icon,
        disabled=done or disabled,
        help="Computed: the result below is for these settings" if done else None,
    )


def pick(key: str, options: Sequence[Any]) -> None:
    """Point a selectbox's state at a valid option before it is drawn (its options change with the view)."""
    if st.session_state.get(key) not in options:
        st.session_state[key] = options[0]
