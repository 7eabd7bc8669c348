"""Debug this prediction: why a map looks as it does, and whether to trust it.

One section, :func:`debug_section`, under the overlays: a page-level summary when
a map is blank after ReLU (the seed question: a correct prediction whose Grad-CAM
is empty), then six tabs: Diagnosis · Layer sweep · Methods · Contrast · Inspect a
point · Trust. Every number comes from ``cam_core`` (``diagnose``, ``sweep``,
``compare_methods``, ``contrast``, ``inspect_point``, ``deletion_insertion``,
``randomisation_check``); this module reads widgets, calls the engine, caches,
and draws (figures from :mod:`dashboard.debug_figures` and
:func:`dashboard.figures.overlay_figure`).

Cost rules:

- The diagnosis needs the layer's statistics: one ``explain`` (one forward, one
  backward, every gradient method at once, activations kept for point
  inspection) and one forward for the head probe, per (model, image, layer,
  classes), cached in the session.
- The sweep, the method grid, the contrast and the trust checks run only on a
  button, with a progress bar where the engine reports progress; their results
  are cached in the session keyed on their inputs (plain hashable values), so a
  rerun (opacity, class toggles, tab switches) recomputes nothing.
- The tabs are lazy (``st.tabs(..., on_change="rerun")``): only the open one runs.

Session-state keys of this module start with ``dbg_`` (widgets) or ``_dbg_``.
"""

from __future__ import annotations

import html
import math
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

import numpy as np
import streamlit as st
import torch

from cam_core import ExplainResult, explain
from cam_core.diagnose import (
    CENTRED_RATIO,
    EMPTY_POS_SHARE,
    MOSTLY_NEGATIVE_SHARE,
    Diagnosis,
    HeadProbe,
    PointInspection,
    diagnose,
    inspect_point,
    layer_context,
    probe_head,
)
from cam_core.errors import CamError
from cam_core.layers import LayerInfo
from cam_core.methods import METHODS
from cam_core.sweep import SWEEP_METHODS, SweepResult, compare_methods, contrast, sweep
from cam_core.trust import (
    BASELINES,
    SANITY_MAX_CORR,
    PerturbationCurves,
    SanityResult,
    deletion_insertion,
    randomisation_check,
    randomisation_units,
)
from dashboard.compute import Bundle, ImageItem, ViewResult, map_cache, ranking
from dashboard.debug_figures import (
    curves_figure,
    point_figure,
    sanity_figure,
    sanity_maps_figure,
    short_unit,
    stage_strip,
)
from dashboard.feedback import show_error
from dashboard.figures import PLOTLY_CONFIG, Panel, overlay_figure
from dashboard.panels import MAX_COLUMNS
from dashboard.sidebar import Display
from dashboard.state import set_layer

__all__ = [
    "DK",
    "TABS",
    "LayerFacts",
    "debug_section",
    "diagnosis_card",
    "diagnosis_rows",
    "findings_summary",
    "layer_notes",
    "view_diagnoses",
]

TABS = ("Diagnosis", "Layer sweep", "Methods", "Contrast", "Inspect a point", "Trust")
PERTURBATION = ("scorecam", "ablationcam")
BATCH = 64  # forward batch of Score-/Ablation-CAM (compare_methods' default), quoted in the cost line
DELINS_BATCH = 16  # deletion_insertion's default batch, quoted in the cost line
STAGES_PER_ROW = 7
POINT_STEP = 8  # pixels between the clickable points of the inspection figure
SIDEBAR_VIEWS_KEY = "views"  # the sidebar's "Views" pills (dashboard.sidebar.display_ui)

# Findings whose fix is another layer / the signed view / a contrast (codes from cam_core.diagnose).
_LAYER_CODES = frozenset({"empty_after_relu", "mostly_negative", "zero_map", "pre_activation", "residual_branch"})
_SIGNED_CODES = frozenset(
    {"empty_after_relu", "mostly_negative", "pre_activation", "centred_map", "scale_invariant_head"}
)
_CONTRAST_CODES = frozenset({"near_bound", "centred_map", "scale_invariant_head"})
# Findings about the layer or the model, not one map: the same words on every card, so said once above them.
_LAYER_NOTE_CODES = frozenset({"pre_activation", "residual_branch", "scale_invariant_head"})
_BADGES = {"empty_after_relu": "red", "zero_map": "red", "mostly_negative": "orange"}

_SHARE_COLUMNS = {
    name: st.column_config.ProgressColumn(format="percent", min_value=0.0, max_value=1.0)
    for name in ("positive mass", "cells > 0")
}

_CSS = """
<style>
/* Diagnosis cards: compact numbers and findings, so three or four fit under the overlays. */
table.dbg-nums { width: 100%; border-collapse: collapse; font-size: 0.8rem; line-height: 1.3; margin: 0; }
table.dbg-nums td { padding: 0.15rem 0.3rem; border: 0; border-bottom: 1px solid rgba(128, 128, 128, 0.18);
  vertical-align: top; }
table.dbg-nums td:first-child { opacity: 0.7; width: 44%; }
[class*="st-key-dbg_card_"] [data-testid="stAlert"] p,
[class*="st-key-dbg_card_"] [data-testid="stExpander"] p { font-size: 0.85rem; }
/* The current layer in the sweep's filmstrip. */
.st-key-dbg_stage_current { outline: 3px solid #e4572e; outline-offset: 2px; border-radius: 6px; }
</style>
"""


class DK:
    """Session-state keys of the debug section."""

    TAB = "dbg_tab"
    CLASS = "dbg_class"
    METHOD = "dbg_method"
    RESULTS = "_dbg_results"  # kind → OrderedDict(inputs → Timed)
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
    SAN_METHODS = "dbg_san_methods"
    SAN_UNITS = "dbg_san_units"


# ---- session cache ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Timed:
    """An engine result and the seconds it took."""

    value: Any
    seconds: float


def _recall(kind: str, key: Hashable) -> Timed | None:
    store = st.session_state.get(DK.RESULTS, {}).get(kind)
    if store is None or key not in store:
        return None
    store.move_to_end(key)
    return store[key]


def _keep(kind: str, key: Hashable, value: Timed, limit: int = 4) -> Timed:
    """Remember ``value`` for ``key`` (the ``limit`` most recent per kind: results hold maps)."""
    store = st.session_state.setdefault(DK.RESULTS, {}).setdefault(kind, OrderedDict())
    store[key] = value
    store.move_to_end(key)
    while len(store) > limit:
        store.popitem(last=False)
    return value


def _timed(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Timed:
    start = time.perf_counter()
    value = fn(*args, **kwargs)
    return Timed(value, time.perf_counter() - start)


def _run_with_bar(what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Timed | None:
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


def _run_with_spinner(what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Timed | None:
    with st.spinner(f"{what[0].upper()}{what[1:]}…"):
        try:
            return _timed(fn, *args, **kwargs)
        except Exception as exc:
            show_error(exc, what)
            return None


def _ask(kind: str) -> None:
    st.session_state[f"_dbg_go_{kind}"] = True


def _asked(kind: str) -> bool:
    """Whether the run button of ``kind`` was pressed (its callback ran before this rerun)."""
    return bool(st.session_state.pop(f"_dbg_go_{kind}", False))


def _run_button(kind: str, label: str, icon: str, *, done: bool, disabled: bool = False) -> None:
    """A run button; its callback flags the run, so the tab computes before drawing (labels stay current).

    Disabled once the result for the current settings is cached: the engine calls are deterministic.
    """
    st.button(
        label,
        key=f"dbg_{kind}_run",
        on_click=_ask,
        args=(kind,),
        type="primary",
        icon=icon,
        disabled=done or disabled,
        help="Computed: the result below is for these settings" if done else None,
    )


# ---- what the diagnosis needs --------------------------------------------------------------------------


@dataclass(frozen=True)
class LayerFacts:
    """The layer's statistics for one (model, image, layer, classes).

    Attributes:
        result: Every gradient method and Eigen-CAM for the classes, with the layer's
            statistics, Grad-CAM's channel weights and the activations (for point inspection).
        info: The layer's entry in the layer tree (for its hints).
        recommended: The recommended layer.
        head: Whether the head ignores the scale of the recommended layer (None if it could not be probed).
    """

    result: ExplainResult
    info: LayerInfo | None
    recommended: str | None
    head: HeadProbe | None


def _layer_facts(bundle: Bundle, item: ImageItem, layer: str, ids: tuple[int, ...]) -> Timed:
    """One explain (all gradient methods share one backward) and one head probe; cached per inputs."""
    key = (bundle.spec.key, item.digest, layer, ids)
    found = _recall("facts", key)
    if found is not None:
        return found
    x, _ = map_cache().model_input(bundle, item)
    start = time.perf_counter()
    res = explain(bundle.model, x, layer=layer, classes=list(ids), methods=SWEEP_METHODS, keep_activations=True)
    info, rec = layer_context(bundle.model, layer)
    try:
        head = probe_head(bundle.model, x)
    except (CamError, RuntimeError):  # optional: a head that cannot be probed just gets no scale finding
        head = None
    facts = LayerFacts(result=res, info=info, recommended=rec, head=head)
    return _keep("facts", key, Timed(facts, time.perf_counter() - start), limit=8)


def _with_view_maps(res: ExplainResult, view: ViewResult, ids: Sequence[int], methods: Sequence[str]) -> ExplainResult:
    """``res`` plus the view's maps of the methods it lacks (CAM, Score-CAM, Ablation-CAM), as one result."""
    maps = dict(res.maps)
    for m in methods:
        if m not in maps:
            maps[m] = torch.from_numpy(np.stack([view.maps[(m, c)].raw for c in ids]))[None]
    return replace(res, maps=maps, methods=tuple(maps))


def _shown(view: ViewResult, ids: Sequence[int], methods: Sequence[str]) -> tuple[str, ...]:
    """The methods with a map for every class (a method the engine rejected at this layer has none)."""
    return tuple(m for m in methods if m not in view.errors and all((m, c) in view.maps for c in ids))


def _prepare(
    bundle: Bundle, item: ImageItem, layer: str, view: ViewResult, ids: tuple[int, ...], shown: tuple[str, ...]
) -> tuple[LayerFacts, ExplainResult, dict[tuple[str, int], Diagnosis]]:
    """The layer's facts, one result holding every shown map, and a diagnosis per (method, class); cached."""
    facts = _layer_facts(bundle, item, layer, ids).value
    result = _with_view_maps(facts.result, view, ids, shown)
    key = (bundle.spec.key, item.digest, layer, ids, shown)
    found = _recall("diagnoses", key)
    if found is None:
        diags = {
            (m, c): diagnose(result, 0, k, m, facts.info, facts.recommended, facts.head)
            for m in shown
            for k, c in enumerate(ids)
        }
        found = _keep("diagnoses", key, Timed(diags, 0.0), limit=8)
    return facts, result, found.value


def view_diagnoses(
    bundle: Bundle, item: ImageItem, layer: str, view: ViewResult, ids: Sequence[int], methods: Sequence[str]
) -> dict[tuple[str, int], Diagnosis]:
    """A :class:`~cam_core.diagnose.Diagnosis` per overlay of the view, keyed ``(method, class id)``.

    For a caller that places :func:`diagnosis_card` under each overlay. Costs one
    ``explain`` and one head probe per (model, image, layer, classes), cached in the session.

    Raises:
        CamError: the engine cannot take the layer's statistics (the overlays would fail too).
    """
    ids = tuple(int(c) for c in ids)
    return _prepare(bundle, item, layer, view, ids, _shown(view, ids, methods))[2]


# ---- diagnosis cards and the page-level summary --------------------------------------------------------


def _title(method: str) -> str:
    return METHODS[method].title if method in METHODS else method


def _words(code: str) -> str:
    return code.replace("_", " ")


def _head(text: str) -> tuple[str, str]:
    """A finding's text as (headline, the rest, capitalised): the engine writes "Headline: explanation"."""
    first, sep, rest = text.partition(": ")
    if not sep or len(first) >= 40:
        return "", text
    return first, rest[:1].upper() + rest[1:]


def diagnosis_rows(d: Diagnosis) -> list[tuple[str, str]]:
    """The diagnosis's numbers as (label, value) lines for a card (formatting only)."""
    codes = set(d.codes)
    rows = [
        ("Positive / negative mass", f"{d.pos_mass_share:.0%} / {d.neg_mass_share:.0%}"),
        ("Left after ReLU", f"{d.pos_mass_share:.0%} of the mass, {d.pos_area:.0%} of the cells"),
    ]
    if d.act_neg_frac is not None and d.act_min is not None and d.act_max is not None:
        signed = "yes" if "pre_activation" in codes else "no"
        rows.append(("Activations signed?", f"{signed}: {d.act_neg_frac:.0%} < 0, {d.act_min:.3g} … {d.act_max:.3g}"))
    elif "pre_activation" in d.hints:
        rows.append(("Activations signed?", "yes (the layer tree measured it)"))
    if d.grad_pos_frac is not None and d.method in METHODS and METHODS[d.method].kind == "gradient":
        rows.append(("Gradient sign", f"{d.grad_pos_frac:.0%} of entries positive"))
    if d.weight_pos_frac is not None and d.method == "gradcam":
        rows.append(("Channel weights", f"{d.weight_pos_frac:.0%} positive"))
    if d.centred_ratio is not None:
        verdict = "centred on zero" if "centred_map" in codes else "not centred"
        rows.append(("Mean ÷ spread", f"{d.centred_ratio:.2f} ({verdict})"))
    rows.append(("Logit", f"{d.logit:.4g} · rank {d.rank} · p {d.prob:.1%}"))
    if d.output_range is not None:
        lo, hi = d.output_range
        where = "at a bound" if d.near_bound else "not near a bound"
        rows.append(("Output range", f"[{lo:g}, {hi:g}]: {where}"))
    else:
        rows.append(("Output range", "unbounded" if "unbounded" in d.range_rule else "not inferred"))
    if d.scale_change is not None:
        verdict = "yes" if "scale_invariant_head" in codes else "no"
        rows.append(("Scale-invariant head?", f"{verdict}: output ×2 moves the logits {d.scale_change:.2%}"))
    return rows


def _rows_html(rows: Sequence[tuple[str, str]]) -> str:
    cells = "".join(f"<tr><td>{html.escape(label)}</td><td>{html.escape(value)}</td></tr>" for label, value in rows)
    return f'<table class="dbg-nums">{cells}</table>'


def _show_signed() -> None:
    views = list(st.session_state.get(SIDEBAR_VIEWS_KEY) or ["relu"])
    st.session_state[SIDEBAR_VIEWS_KEY] = [*views, "signed"] if "signed" not in views else views


def _open_contrast(a: int, b: int) -> None:
    st.session_state[DK.CON_A] = a
    st.session_state[DK.CON_B] = b
    st.session_state[DK.TAB] = "Contrast"
    _ask("contrast")


def _fix_buttons(
    d: Diagnosis,
    key: str,
    model_key: str | None,
    signed_shown: bool,
    contrast_with: tuple[int, str] | None,
    *,
    compact: bool,
) -> None:
    """The buttons that apply a finding's fix: the recommended layer, the signed view, a contrast.

    ``compact``: short labels stacked at full width (a card), else a row of full labels.
    """
    codes = set(d.codes)
    layer = model_key is not None and d.recommended and d.recommended != d.layer and codes & _LAYER_CODES
    signed = not signed_shown and codes & _SIGNED_CODES
    versus = contrast_with is not None and codes & _CONTRAST_CODES
    if not (layer or signed or versus):
        return
    width = "stretch" if compact else "content"
    with st.container(horizontal=not compact, gap="small"):
        if layer:
            st.button(
                "Recommended layer" if compact else f"Use the recommended layer `{d.recommended}`",
                key=f"dbg_fix_layer_{key}",
                on_click=set_layer,
                args=(model_key, d.recommended),
                icon=":material/star:",
                type="primary",
                help=f"Switch to `{d.recommended}` (the block output the network passes on)",
                width=width,
            )
        if signed:
            st.button(
                "Signed view" if compact else "Show the signed view",
                key=f"dbg_fix_signed_{key}",
                on_click=_show_signed,
                icon=":material/exposure:",
                help="Add the signed row to the overlays: the map around zero, negative evidence included",
                width=width,
            )
        if versus:
            other, name = contrast_with
            st.button(
                f"Contrast with {name}",
                key=f"dbg_fix_contrast_{key}",
                on_click=_open_contrast,
                args=(d.class_id, other),
                icon=":material/compare:",
                help="Open the Contrast tab with the map of logit(this class) − logit(that class)",
                width=width,
            )


def diagnosis_card(
    diag: Diagnosis,
    key: str,
    *,
    model_key: str | None = None,
    signed_shown: bool = True,
    contrast_with: tuple[int, str] | None = None,
    layer_notes: frozenset[str] = frozenset(),
) -> None:
    """A compact card for one overlay: the numbers, the findings in plain words, and buttons applying the fix.

    Args:
        diag: From :func:`cam_core.diagnose.diagnose`.
        key: Unique among the cards on the page (letters, digits, ``_``), e.g. ``gradcam_281``.
        model_key: The model's cache key; with it, a finding that a better layer fixes gets a
            button that selects the recommended layer.
        signed_shown: Whether the overlays show the signed view already (else a button turns it on).
        contrast_with: (class id, label) of the class to contrast with, for findings a contrast answers.
        layer_notes: Codes of findings already said once above the cards (see :func:`layer_notes`):
            the card names them instead of repeating them.
    """
    findings = [f for f in diag.findings if f.code not in layer_notes]
    noted = [f.code for f in diag.findings if f.code in layer_notes]
    with st.container(border=True, key=f"dbg_card_{key}"):
        st.markdown(f"**{diag.class_name}** ({diag.class_id}) · {_title(diag.method)}")
        if findings:
            first = findings[0]
            st.badge(
                _words(first.code), color=_BADGES.get(first.code, "orange" if first.severity == "warning" else "blue")
            )
        elif noted:
            st.badge("map sound · layer notes", icon=":material/check:", color="green")
        else:
            st.badge("looks sound", icon=":material/check:", color="green")
        st.html(_rows_html(diagnosis_rows(diag)))
        if not findings:
            st.success(
                f"{diag.pos_mass_share:.0%} of the map is positive; nothing wrong with the map itself.",
                icon=":material/check_circle:",
            )
        else:
            first = findings[0]
            headline, rest = _head(first.text)
            show = st.warning if first.severity == "warning" else st.info
            show(f"**{headline}.** {rest}\n\n**Fix:** {first.fix}." if headline else f"{rest}\n\n**Fix:** {first.fix}.")
            if len(findings) > 1:
                with st.expander("Also: " + ", ".join(_words(f.code) for f in findings[1:])):
                    for f in findings[1:]:
                        headline, rest = _head(f.text)
                        st.markdown(f"**{headline or _words(f.code)}.** {rest}\n\n*Fix:* {f.fix}.")
        if noted:
            st.caption("Layer notes above apply: " + ", ".join(_words(c) for c in noted) + ".")
        _fix_buttons(diag, key, model_key, signed_shown, contrast_with, compact=True)


def layer_notes(diags: Sequence[Diagnosis]) -> None:
    """The findings about the layer or the model (signed activations, residual branch, scale-invariant
    head), said once above the cards; each with its fix."""
    seen: dict[str, Any] = {}
    for d in diags:
        for f in d.findings:
            if f.code in _LAYER_NOTE_CODES and f.code not in seen:
                seen[f.code] = f
    if not seen:
        return
    with st.container(key="dbg_layer_notes"):
        for f in seen.values():
            headline, rest = _head(f.text)
            show = st.warning if f.severity == "warning" else st.info
            show(f"**{headline or _words(f.code)}.** {rest}\n\n**Fix:** {f.fix}.", icon=":material/layers:")


def findings_summary(
    diags: Sequence[Diagnosis],
    *,
    model_key: str | None = None,
    signed_shown: bool = True,
    contrast_with: Callable[[int], tuple[int, str] | None] | None = None,
) -> None:
    """The page-level findings: why a map is blank after ReLU and how to get a sound one.

    A warning (with buttons applying the fix) when any map is empty after ReLU, a note
    for maps that are mostly negative; nothing when every map is fine.
    """
    empty = [d for d in diags if d.empty_after_relu]
    weak = [d for d in diags if "mostly_negative" in d.codes]
    if empty:
        d = empty[0]
        first = d.findings[0]
        headline, rest = _head(first.text)
        if len(empty) == 1:
            title = f"**{headline}.**" if headline else "**The ReLU'd map is blank.**"
        else:
            which = ", ".join(f"{x.class_name} ({_title(x.method)})" for x in empty)
            title = f"**{len(empty)} ReLU'd maps are blank:** {which}. The first:"
        with st.container(key="dbg_summary"):
            st.warning(f"{title} {rest}\n\n**Fix:** {first.fix}.", icon=":material/visibility_off:")
            versus = contrast_with(d.class_id) if contrast_with else None
            _fix_buttons(d, "summary", model_key, signed_shown, versus, compact=False)
    if weak:
        parts = "; ".join(f"{x.class_name} · {_title(x.method)}: {x.pos_mass_share:.0%} positive" for x in weak)
        st.info(
            f"**Mostly negative maps** ({parts}): the ReLU'd view stretches that small positive part to full "
            "brightness and hides the rest. The *Diagnosis* tab says why and what to try.",
            icon=":material/info:",
        )


# ---- the section -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Ctx:
    """Everything the tabs need, as plain values."""

    bundle: Bundle
    item: ImageItem
    layer: str
    view: ViewResult
    ids: tuple[int, ...]
    shown: tuple[str, ...]
    display: Display
    facts: LayerFacts
    result: ExplainResult
    diags: dict[tuple[str, int], Diagnosis]
    x: torch.Tensor
    focus_class: int
    focus_method: str

    @property
    def mk(self) -> str:
        return self.bundle.spec.key

    @property
    def names(self) -> list[str]:
        return self.bundle.model.class_names

    def label(self, c: int) -> str:
        return f"{self.names[c]} ({c})"

    def runner_up(self, c: int) -> tuple[int, str] | None:
        """The most probable other class, as (id, label)."""
        order = ranking(self.mk, self.item.digest) or []
        other = next((o for o in order if o != c), None)
        return None if other is None else (other, self.label(other))


def _pick(key: str, options: Sequence[Any]) -> None:
    """Point a selectbox's state at a valid option before it is drawn (its options change with the view)."""
    if st.session_state.get(key) not in options:
        st.session_state[key] = options[0]


def debug_section(
    bundle: Bundle,
    item: ImageItem,
    layer: str,
    view: ViewResult,
    ids: Sequence[int],
    methods: Sequence[str],
    display: Display,
) -> None:
    """The "Debug this prediction" section: summary of blank maps, then the six tabs.

    Args:
        bundle: The loaded model (from :func:`dashboard.compute.load_bundle`).
        item: The image shown.
        layer: The selected layer.
        view: The overlays' maps (from :func:`dashboard.compute.compute_view`).
        ids: The explained classes, in the overlays' order.
        methods: The selected methods, in the overlays' order.
        display: How the overlays are drawn (views, colormaps, opacity).
    """
    with st.container(key="dbg_section"):
        _section(bundle, item, layer, view, tuple(int(c) for c in ids), methods, display)


def _section(
    bundle: Bundle,
    item: ImageItem,
    layer: str,
    view: ViewResult,
    ids: tuple[int, ...],
    methods: Sequence[str],
    display: Display,
) -> None:
    st.html(_CSS)
    st.subheader(":material/troubleshoot: Debug this prediction", anchor=False)
    shown = _shown(view, ids, methods)
    if not ids or not shown:
        st.info("Pick a class and a method above to debug their maps.", icon=":material/touch_app:")
        return
    try:
        with st.spinner("Measuring the layer for the diagnosis (one forward and one backward)…"):
            facts, result, diags = _prepare(bundle, item, layer, view, ids, shown)
    except Exception as exc:
        show_error(exc, "measuring the layer for the diagnosis")
        return
    signed_shown = "signed" in display.views
    x, _ = map_cache().model_input(bundle, item)

    _pick(DK.CLASS, ids)
    _pick(DK.METHOD, shown)
    ctx_partial = partial(_Ctx, bundle, item, layer, view, ids, shown, display, facts, result, diags, x)
    ctx0 = ctx_partial(ids[0], shown[0])
    findings_summary(
        [diags[(m, c)] for m in shown for c in ids],
        model_key=bundle.spec.key,
        signed_shown=signed_shown,
        contrast_with=ctx0.runner_up,
    )
    c1, c2 = st.columns(2)
    focus_class = c1.selectbox(
        "Class to debug",
        ids,
        format_func=ctx0.label,
        key=DK.CLASS,
        help="Used by the layer sweep, the method grid, the contrast (as A) and the trust checks.",
    )
    focus_method = c2.selectbox(
        "Method to debug",
        shown,
        format_func=_title,
        key=DK.METHOD,
        help="The map that point inspection reads and the trust checks test.",
    )
    ctx = ctx_partial(int(focus_class), focus_method)
    tabs = st.tabs(TABS, key=DK.TAB, on_change="rerun")
    for tab, draw in zip(
        tabs, (_diagnosis_tab, _sweep_tab, _methods_tab, _contrast_tab, _inspect_tab, _trust_tab), strict=True
    ):
        if tab.open is False:  # lazy tabs: only the open one runs (None: state tracking off, draw all)
            continue
        with tab:
            draw(ctx)


# ---- Diagnosis ---------------------------------------------------------------------------------------------


def _diagnosis_tab(ctx: _Ctx) -> None:
    st.caption(
        "One card per overlay above, in the same order. *Empty after ReLU*: at most "
        f"{EMPTY_POS_SHARE:.0%} of the map's absolute mass is positive; *mostly negative*: under "
        f"{MOSTLY_NEGATIVE_SHARE:.0%}; *centred on zero*: |mean| ≤ {CENTRED_RATIO:g}·std. Numbers from "
        f"`cam_core.diagnose` at `{ctx.layer}`."
    )
    signed_shown = "signed" in ctx.display.views
    diags = list(ctx.diags.values())
    layer_notes(diags)
    noted = frozenset(f.code for d in diags for f in d.findings if f.code in _LAYER_NOTE_CODES)
    for m in ctx.shown:
        st.markdown(f"##### {_title(m)}")
        for start in range(0, len(ctx.ids), MAX_COLUMNS):
            chunk = ctx.ids[start : start + MAX_COLUMNS]
            for col, c in zip(st.columns(len(chunk)), chunk, strict=True):
                with col:
                    diagnosis_card(
                        ctx.diags[(m, c)],
                        f"{m}_{c}",
                        model_key=ctx.mk,
                        signed_shown=signed_shown,
                        contrast_with=ctx.runner_up(c),
                        layer_notes=noted,
                    )


# ---- Layer sweep --------------------------------------------------------------------------------------------


def _breakable(name: str) -> str:
    """A dotted name that may wrap after its dots in a narrow column."""
    return name.replace(".", ".\u200b")


def _sweep_tab(ctx: _Ctx) -> None:
    key = (ctx.mk, ctx.item.digest, ctx.focus_class)
    found = _recall("sweep", key)
    picked = st.multiselect(
        "Also sweep these layers",
        sorted(ctx.bundle.camable),
        key=DK.SWEEP_EXTRA,
        placeholder="Any CAM-able layer, by name",
        help="Added to the stage outputs, in the same single forward and backward. The current layer always is.",
    )
    wanted = [ctx.layer, *picked]
    missing = found is not None and any(name not in found.value.names for name in wanted)
    if _asked("sweep") and (found is None or missing):
        before = [la.name for la in found.value.layers if la.added] if found else []
        found = _run_with_spinner(
            "sweeping the layers (one forward, one backward)",
            sweep,
            ctx.bundle.model,
            ctx.x,
            ctx.focus_class,
            extra=list(dict.fromkeys([*wanted, *before])),
            methods=SWEEP_METHODS,
        )
        if found is not None:
            _keep("sweep", key, found)
        missing = found is not None and any(name not in found.value.names for name in wanted)
    with st.container(horizontal=True, vertical_alignment="center", gap="medium"):
        _run_button(
            "sweep",
            "Add the new layers" if missing else "Run the layer sweep",
            ":material/stacks:",
            done=found is not None and not missing,
        )
        st.caption(
            f"Maps of **{ctx.label(ctx.focus_class)}** at every stage output, shallow to deep, from ONE forward "
            "and ONE backward (every gradient method at once)."
        )
    if found is None:
        return
    default = ctx.focus_method if ctx.focus_method in SWEEP_METHODS else "gradcam"
    st.session_state.setdefault(DK.SWEEP_METHOD, default)
    method = st.segmented_control("Method", SWEEP_METHODS, format_func=_title, key=DK.SWEEP_METHOD, required=True)
    _draw_sweep(ctx, found.value, method or default, found.seconds)


def _draw_sweep(ctx: _Ctx, res: SweepResult, method: str, seconds: float) -> None:
    st.caption(
        f"{len(res.layers)} layers · {_title(method)} · {res.cost.get('forwards', 1)} forward and "
        f"{res.cost.get('backwards', 1)} backward in {seconds:.2f} s · in each stage the ReLU'd map is above the "
        "signed one · ★ recommended · *Use this layer* selects a stage for the whole page."
    )
    background = ctx.view.background
    layers = res.layers
    per_row = min(len(layers), STAGES_PER_ROW)
    for start in range(0, len(layers), per_row):
        cols = st.columns(per_row, gap="small")
        for j, la in enumerate(layers[start : start + per_row], start=start):
            current = la.name == ctx.layer
            d = la.diagnosis[method]
            with cols[j - start], st.container(key="dbg_stage_current" if current else f"dbg_stage_{j}"):
                head = f"{j + 1} · {la.grid[0]}×{la.grid[1]}" + (" ★" if la.name == res.recommended else "")
                st.markdown(f":orange[**{head}**]" if current else f"**{head}**")
                strip = stage_strip(
                    background,
                    la.result.upsampled(method)[0, 0].numpy(),
                    cmap=ctx.display.cmap,
                    signed_cmap=ctx.display.signed_cmap,
                    opacity=ctx.display.opacity,
                )
                st.image(strip, width="stretch", output_format="JPEG")
                shape = "×".join(str(v) for v in la.out_shape) if la.out_shape else "?"
                st.caption(f"`{_breakable(la.name)}`  \n{la.type} · {shape}  \n**{d.pos_mass_share:.0%}** positive")
                if d.codes and d.codes[0] in _BADGES:
                    st.badge(_words(d.codes[0]), color=_BADGES[d.codes[0]])
                if current:
                    st.badge("current layer", icon=":material/my_location:", color="orange")
                else:
                    st.button(
                        "Use this layer",
                        key=f"dbg_use_{j}",
                        on_click=set_layer,
                        args=(ctx.mk, la.name),
                        disabled=la.name not in ctx.bundle.camable,
                        width="stretch",
                    )
    rows = [
        {
            "layer": la.name,
            "": " ".join(
                [*(["current"] if la.name == ctx.layer else []), *(["★"] if la.name == res.recommended else [])]
            ),
            "type": la.type,
            "positive mass": la.diagnosis[method].pos_mass_share,
            "cells > 0": la.diagnosis[method].pos_area,
            "findings": ", ".join(_words(c) for c in la.diagnosis[method].codes) or "none",
        }
        for la in layers
    ]
    st.dataframe(rows, hide_index=True, column_config=_SHARE_COLUMNS, key="dbg_sweep_table")


# ---- Methods -------------------------------------------------------------------------------------------------


def _panels(res: ExplainResult, methods: Sequence[str], diags: dict[str, Diagnosis], share: str = "> 0") -> list[Panel]:
    """One panel per method, titled with the share of the map's mass that is positive (``share`` words it)."""
    return [
        Panel(
            title=f"{_title(m)} · {diags[m].pos_mass_share:.0%} {share}",
            cam=res.upsampled(m)[0, 0].numpy(),
            name=_title(m),
        )
        for m in methods
    ]


def _grid(ctx: _Ctx, panels: Sequence[Panel], key: str, views: Sequence[str]) -> None:
    """Panels in rows of equal length (6 → 3 + 3, not 4 + 2), every panel the same size."""
    rows = math.ceil(len(panels) / MAX_COLUMNS)
    per_row = math.ceil(len(panels) / rows)
    for start in range(0, len(panels), per_row):
        fig = overlay_figure(
            ctx.view.background,
            panels[start : start + per_row],
            views=views,
            cmap=ctx.display.cmap,
            signed_cmap=ctx.display.signed_cmap,
            opacity=ctx.display.opacity,
            panel_height=min(300, 720 // max(per_row, 2)),
        )
        st.plotly_chart(fig, config=PLOTLY_CONFIG, key=f"{key}_{start}")


def _methods_tab(ctx: _Ctx) -> None:
    activations = ctx.facts.result.activations
    channels = int(activations.shape[1]) if activations is not None else 0
    batches = math.ceil(channels / BATCH) if channels else 0
    st.caption(
        f"Every method for **{ctx.label(ctx.focus_class)}** at `{ctx.layer}`. The gradient methods and Eigen-CAM "
        "share one forward and one backward; the perturbation methods cost far more, so they are opt-in:"
    )
    opted = [
        m
        for m in PERTURBATION
        if st.checkbox(
            f"{_title(m)}: one forward per channel: {channels} forwards ({batches} batches of {BATCH})",
            key=DK.CMP_OPT + m,
        )
    ]
    methods = tuple(m for m in METHODS if m not in PERTURBATION) + tuple(opted)
    key = (ctx.mk, ctx.item.digest, ctx.layer, ctx.focus_class, methods)
    found = _recall("methods", key)
    if _asked("methods") and found is None:
        run = _run_with_bar if opted else _run_with_spinner
        found = run(
            "comparing the methods", compare_methods, ctx.bundle.model, ctx.x, ctx.layer, ctx.focus_class, list(methods)
        )
        if found is not None:
            _keep("methods", key, found)
    _run_button("methods", "Compare the methods", ":material/grid_view:", done=found is not None)
    if found is None:
        return
    res, skipped = found.value
    diags = {m: diagnose(res, 0, 0, m, ctx.facts.info, ctx.facts.recommended) for m in res.maps}
    forwards = (res.cost or {}).get("forwards", 0)
    st.caption(
        f"Computed in {found.seconds:.2f} s"
        + (f" · {forwards} forward pass{'es' if forwards > 1 else ''}" if forwards else "")
        + ". Each map is scaled to itself; titles give the share of its mass that is positive."
    )
    _grid(ctx, _panels(res, list(res.maps), diags), "dbg_methods", ctx.display.views)
    for m, why in skipped.items():
        st.caption(f":material/block: {_title(m)} left out: {why}")
    st.dataframe(
        [
            {
                "method": _title(m),
                "positive mass": d.pos_mass_share,
                "cells > 0": d.pos_area,
                "findings": ", ".join(_words(c) for c in d.codes) or "none",
            }
            for m, d in diags.items()
        ],
        hide_index=True,
        column_config=_SHARE_COLUMNS,
        key="dbg_methods_table",
    )


# ---- Contrast ------------------------------------------------------------------------------------------------


def _contrast_tab(ctx: _Ctx) -> None:
    names = ctx.names
    options = list(range(len(names)))
    if DK.CON_A not in st.session_state or st.session_state[DK.CON_A] not in options:
        st.session_state[DK.CON_A] = ctx.focus_class
    if DK.CON_B not in st.session_state or st.session_state[DK.CON_B] not in options:
        other = ctx.runner_up(st.session_state[DK.CON_A])
        st.session_state[DK.CON_B] = other[0] if other else options[-1]
    st.caption(
        "Why **A rather than B**: the map of logit(A) − logit(B) at the current layer. Warm: where the layer's "
        "features favour A over B; cool: B over A. The ReLU'd row keeps only where A wins."
    )
    c1, c2, c3 = st.columns([2, 2, 1.3], vertical_alignment="bottom")
    a = c1.selectbox("A: the class explained", options, format_func=ctx.label, key=DK.CON_A)
    b = c2.selectbox("B: the class it is set against", options, format_func=ctx.label, key=DK.CON_B)
    # The overlays' gradient methods, and always Grad-CAM and HiResCAM: all from one backward.
    methods = tuple(dict.fromkeys([*(m for m in ctx.shown if METHODS[m].kind == "gradient"), "gradcam", "hirescam"]))
    key = (ctx.mk, ctx.item.digest, ctx.layer, a, b, methods)
    found = _recall("contrast", key)
    if a != b and _asked("contrast") and found is None:
        found = _run_with_spinner(
            "computing the contrast", contrast, ctx.bundle.model, ctx.x, a, b, layer=ctx.layer, methods=methods
        )
        if found is not None:
            _keep("contrast", key, found)
    with c3:
        _run_button("contrast", "Why A, not B?", ":material/compare:", done=found is not None, disabled=a == b)
    if a == b:
        st.info("Pick two different classes.", icon=":material/compare:")
        return
    if found is None:
        return
    res = found.value
    diags = {m: diagnose(res, 0, 0, m, ctx.facts.info, ctx.facts.recommended) for m in res.maps}
    logits = ctx.view.logits
    st.caption(
        f"logit(A) = {logits[a]:.4g}, logit(B) = {logits[b]:.4g} · computed in {found.seconds:.2f} s. "
        "Titles give the share of the map's mass that favours A."
    )
    panels = _panels(res, list(res.maps), diags, f"for {names[a]}")
    _grid(ctx, panels, "dbg_contrast", ("signed", "relu"))


# ---- Inspect a point -----------------------------------------------------------------------------------------


def _point_clicked(chart_key: str) -> None:
    event = st.session_state.get(chart_key) or {}
    points = (event.get("selection") or {}).get("points") or []
    # Grid points sit at pixel positions: x is the column, y the row.
    picked = next(
        (p for p in points if isinstance(p.get("x"), int | float) and isinstance(p.get("y"), int | float)), None
    )
    if picked is not None:
        st.session_state[DK.ROW], st.session_state[DK.COL] = int(picked["y"]), int(picked["x"])
    # A fresh chart next run: no lingering selection, so the same point can be clicked again.
    st.session_state[DK.POINT_NONCE] = st.session_state.get(DK.POINT_NONCE, 0) + 1


def _inspect_tab(ctx: _Ctx) -> None:
    height, width = ctx.view.background.shape[:2]
    st.session_state.setdefault(DK.ROW, height // 2)
    st.session_state.setdefault(DK.COL, width // 2)
    st.session_state[DK.ROW] = min(st.session_state[DK.ROW], height - 1)
    st.session_state[DK.COL] = min(st.session_state[DK.COL], width - 1)
    method = ctx.focus_method
    left, right = st.columns([1, 1.25], gap="medium")
    with right:
        c1, c2 = st.columns(2)
        row = int(c1.number_input("Row (pixels from the top)", 0, height - 1, key=DK.ROW))
        col = int(c2.number_input("Column (pixels from the left)", 0, width - 1, key=DK.COL))
    with left:
        chart_key = f"dbg_point_{st.session_state.get(DK.POINT_NONCE, 0)}"
        fig = point_figure(
            ctx.view.background,
            ctx.view.maps[(method, ctx.focus_class)].up,
            point=(row, col),
            step=POINT_STEP,
            cmap=ctx.display.signed_cmap,
            opacity=ctx.display.opacity,
            title=f"{ctx.label(ctx.focus_class)} · {_title(method)} (signed): click a point",
        )
        st.plotly_chart(
            fig,
            key=chart_key,
            on_select=partial(_point_clicked, chart_key),
            selection_mode="points",
            config={**PLOTLY_CONFIG, "displayModeBar": False},
        )
    try:
        point = inspect_point(ctx.result, 0, row, col, method)
    except CamError as exc:
        with right:
            show_error(exc, "inspecting the point")
        return
    with right:
        _draw_point(point)


def _draw_point(p: PointInspection) -> None:
    st.markdown(f"**{_title(p.method)}** at row {p.row}, column {p.col} · layer cell ({p.cell[0]}, {p.cell[1]})")
    st.dataframe(
        [
            {
                "class": f"{c.class_name} ({c.class_id})",
                "map value": c.value,
                "reads as": "for the class" if c.value > 0 else "against it" if c.value < 0 else "neutral",
            }
            for c in p.classes
        ],
        hide_index=True,
        column_config={"map value": st.column_config.NumberColumn(format="%.4g")},
        key="dbg_point_values",
    )
    if p.note:
        st.caption(f":material/info: No channel breakdown: {p.note}.")
        return
    st.caption("Channels contributing most there: contribution = channel weight × activation at the point.")
    numbers = {k: st.column_config.NumberColumn(format="%.3g") for k in ("contribution", "weight", "activation")}
    for c in p.classes:
        st.markdown(f"**{c.class_name}** ({c.class_id}): {c.value:.4g}")
        st.dataframe(
            [
                {
                    "channel": ch.channel,
                    "contribution": ch.contribution,
                    "weight": ch.weight,
                    "activation": ch.activation,
                }
                for ch in c.channels
            ],
            hide_index=True,
            column_config={"channel": st.column_config.NumberColumn(format="%d"), **numbers},
            key=f"dbg_point_channels_{c.class_id}",
        )
        st.caption(f"All other channels together: {c.rest:.3g}")


# ---- Trust ---------------------------------------------------------------------------------------------------


def _trust_tab(ctx: _Ctx) -> None:
    c, m = ctx.focus_class, ctx.focus_method
    st.markdown(f"##### Deletion and insertion · {ctx.label(c)} · {_title(m)}")
    st.caption(
        "Pixels are ranked by the map (most positive first), deleted from the image (replaced by the baseline) "
        "or inserted into the baseline, and the class's probability is tracked. A map that found the evidence "
        "makes deletion fall faster and insertion rise faster than a random map as coarse as a CAM."
    )
    c1, c2, c3 = st.columns([1.3, 1.6, 1.2], vertical_alignment="bottom")
    st.session_state.setdefault(DK.DI_BASELINE, BASELINES[0])
    st.session_state.setdefault(DK.DI_STEPS, 24)
    st.session_state.setdefault(DK.DI_RANDOM, True)
    baseline = c1.segmented_control(
        "Baseline",
        BASELINES,
        key=DK.DI_BASELINE,
        required=True,
        help="blur: a Gaussian blur of the image; mean: its mean colour; zero: the dataset's mean colour",
    )
    steps = int(c2.select_slider("Steps", [8, 12, 16, 24, 32, 48], key=DK.DI_STEPS))
    with_random = c3.toggle("Random reference", key=DK.DI_RANDOM)
    images = 2 * (steps + 1) * (2 if with_random else 1)
    st.caption(f"Cost: {images} perturbed images in {math.ceil(images / DELINS_BATCH)} forwards of {DELINS_BATCH}.")
    key = (ctx.mk, ctx.item.digest, ctx.layer, c, m, baseline, steps, with_random)
    found = _recall("delins", key)
    if _asked("delins") and found is None:
        found = _run_with_bar(
            "deletion and insertion",
            deletion_insertion,
            ctx.bundle.model,
            ctx.x,
            ctx.view.maps[(m, c)].up,
            c,
            steps=steps,
            baseline=baseline,
            with_random=with_random,
        )
        if found is not None:
            _keep("delins", key, found)
    _run_button("delins", "Run deletion and insertion", ":material/query_stats:", done=found is not None)
    if found is not None:
        _draw_curves(ctx, found.value, found.seconds)

    st.markdown(f"##### Model randomisation · {ctx.label(c)} · `{ctx.layer}`")
    st.caption(
        "On a copy of the model, the weights are re-initialised from the head down, one block at a time, and the "
        "map is recomputed after each step. A map that barely changes does not depend on what the model learnt: "
        f"a method whose median Spearman correlation with the original stays above {SANITY_MAX_CORR:g} is flagged."
    )
    units = randomisation_units(ctx.bundle.model.module)
    sweepable = list(SWEEP_METHODS)
    st.session_state.setdefault(DK.SAN_METHODS, [m if m in sweepable else "gradcam"])
    st.session_state.setdefault(DK.SAN_UNITS, len(units))
    st.session_state[DK.SAN_UNITS] = min(st.session_state[DK.SAN_UNITS], len(units))
    c1, c2 = st.columns([2, 1.4], vertical_alignment="bottom")
    chosen = c1.multiselect("Methods", sweepable, format_func=_title, key=DK.SAN_METHODS)
    # A slider needs two stops; a model of one block just randomises it.
    n_units = int(c2.slider("Blocks to randomise", 1, len(units), key=DK.SAN_UNITS)) if len(units) > 1 else len(units)
    st.caption(f"Cost: one forward and one backward per step: {n_units + 1} passes, on a copy of the model.")
    key = (ctx.mk, ctx.item.digest, ctx.layer, c, tuple(chosen), n_units)
    found = _recall("sanity", key)
    if chosen and _asked("sanity") and found is None:
        found = _run_with_bar(
            "the randomisation check",
            randomisation_check,
            ctx.bundle.model,
            ctx.x,
            ctx.layer,
            c,
            chosen,
            max_units=n_units,
        )
        if found is not None:
            _keep("sanity", key, found)
    _run_button(
        "sanity", "Run the randomisation check", ":material/shuffle:", done=found is not None, disabled=not chosen
    )
    if found is not None:
        _draw_sanity(ctx, found.value, found.seconds)


def _draw_curves(ctx: _Ctx, curves: PerturbationCurves, seconds: float) -> None:
    fig = curves_figure(curves, ctx.names[curves.class_id])
    st.plotly_chart(fig, config=PLOTLY_CONFIG, key="dbg_curves")
    verdicts = [f"Computed in {seconds:.2f} s ({curves.forwards} forwards)."]
    if curves.random_deletion is not None and curves.random_insertion is not None:
        dele = curves.deletion.auc < curves.random_deletion.auc
        ins = curves.insertion.auc > curves.random_insertion.auc
        verdicts.append(
            f"Deletion AUC {curves.deletion.auc:.3f} vs random {curves.random_deletion.auc:.3f} "
            f"({'better' if dele else 'no better'}); insertion AUC {curves.insertion.auc:.3f} vs random "
            f"{curves.random_insertion.auc:.3f} ({'better' if ins else 'no better'})."
        )
        if dele and ins:
            st.success(
                " ".join(verdicts) + " The map ranks the evidence better than chance.", icon=":material/verified:"
            )
        else:
            st.warning(
                " ".join(verdicts) + " The map does not beat a random one on both curves: do not read much into it.",
                icon=":material/gpp_maybe:",
            )
    else:
        st.caption(" ".join(verdicts))


def _draw_sanity(ctx: _Ctx, res: SanityResult, seconds: float) -> None:
    st.plotly_chart(sanity_figure(res), config=PLOTLY_CONFIG, key="dbg_sanity")
    st.caption(f"{len(res.units)} steps in {seconds:.2f} s. Solid: signed maps; dotted: absolute values.")
    for m in res.methods:
        if res.flagged.get(m):
            st.warning(
                f"**{_title(m)} is flagged:** its map stays similar to the original as the weights are randomised, "
                "so it shows the image's structure more than what the model learnt.",
                icon=":material/flag:",
            )
        else:
            st.success(
                f"**{_title(m)} passes:** its map changes as the weights are randomised.", icon=":material/check:"
            )
    first = res.methods[0]
    maps = res.maps[first]
    picks = sorted(set(np.linspace(0, len(maps) - 1, min(len(maps), 8)).round().astype(int).tolist()))
    labels = ["original" if s == 0 else f"{s}: {short_unit(res.units[s - 1])}" for s in picks]
    st.caption(f"{_title(first)} map as the model is randomised (signed, each scaled to itself):")
    st.plotly_chart(
        sanity_maps_figure(maps[picks], labels, cmap=ctx.display.signed_cmap),
        config={**PLOTLY_CONFIG, "displayModeBar": False},
        key="dbg_sanity_maps",
    )
