"""Five of the six tabs of "Debug this prediction": Diagnosis, Layer sweep, Methods, Contrast, Inspect a point
(the sixth, Trust, is :mod:`dashboard.views.image.debug.trust_tab`).

Each tab reads its widgets, runs its engine call on a button (cached in the session by
:mod:`dashboard.views.image.debug.session`), and draws the result; the numbers come from ``cam_core``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import partial

import streamlit as st

from cam_core import ExplainResult
from cam_core.analysis.diagnose import (
    CENTRED_RATIO,
    EMPTY_POS_SHARE,
    MOSTLY_NEGATIVE_SHARE,
    Diagnosis,
    PointInspection,
    diagnose,
    inspect_point,
)
from cam_core.analysis.sweep import SWEEP_METHODS, SweepResult, compare_methods, contrast, sweep
from cam_core.engine.methods import METHODS, estimate_cost
from cam_core.errors import CamError
from dashboard.feedback import show_error
from dashboard.figures import MAX_COLUMNS, PLOTLY_CONFIG, Panel, overlay_figure
from dashboard.state import set_layer
from dashboard.text import plain
from dashboard.views.image.debug.cards import (
    BADGES,
    LAYER_NOTE_CODES,
    code_words,
    diagnosis_card,
    layer_notes,
    method_title,
)
from dashboard.views.image.debug.context import Ctx
from dashboard.views.image.debug.figures import (
    point_figure,
    stage_strip,
)
from dashboard.views.image.debug.session import (
    DK,
    asked,
    keep,
    recall,
    run_button,
    run_with_bar,
    run_with_spinner,
)

SLOW = tuple(m for m, spec in METHODS.items() if spec.slow)  # opt-in in the Methods tab: many forwards each
BATCH = 64  # forward batch of the slow methods (compare_methods' default), quoted in the cost line
STAGES_PER_ROW = 7
POINT_STEP = 8  # pixels between the clickable points of the inspection figure
_SHARE_COLUMNS = {
    name: st.column_config.ProgressColumn(format="percent", min_value=0.0, max_value=1.0)
    for name in ("positive mass", "cells > 0")
}


# ---- Diagnosis ---------------------------------------------------------------------------------------------


def diagnosis_tab(ctx: Ctx) -> None:
    st.caption(
        "One card per overlay above, in the same order. *Empty after ReLU*: at most "
        f"{EMPTY_POS_SHARE:.0%} of the map's absolute mass is positive; *mostly negative*: under "
        f"{MOSTLY_NEGATIVE_SHARE:.0%}; *centred on zero*: |mean| ≤ {CENTRED_RATIO:g}·std. Numbers from "
        f"`cam_core.analysis.diagnose` at `{ctx.layer}`."
    )
    signed_shown = "signed" in ctx.display.views
    diags = list(ctx.diags.values())
    layer_notes(diags)
    noted = frozenset(f.code for d in diags for f in d.findings if f.code in LAYER_NOTE_CODES)
    for m in ctx.shown:
        st.markdown(f"##### {method_title(m)}")
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


def sweep_tab(ctx: Ctx) -> None:
    key = (ctx.mk, ctx.item.key, ctx.focus_class)
    found = recall("sweep", key)
    picked = st.multiselect(
        "Also sweep these layers",
        sorted(ctx.bundle.camable),
        key=DK.SWEEP_EXTRA,
        placeholder="Any CAM-able layer, by name",
        help="Added to the stage outputs, in the same single forward and backward. The current layer always is.",
    )
    wanted = [ctx.layer, *picked]
    missing = found is not None and any(name not in found.value.names for name in wanted)
    if asked("sweep") and (found is None or missing):
        before = [la.name for la in found.value.layers if la.added] if found else []
        found = run_with_spinner(
            "sweeping the layers (one forward, one backward)",
            sweep,
            ctx.bundle.model,
            ctx.x,
            ctx.focus_class,
            extra=list(dict.fromkeys([*wanted, *before])),
            methods=SWEEP_METHODS,
        )
        if found is not None:
            keep("sweep", key, found)
        missing = found is not None and any(name not in found.value.names for name in wanted)
    with st.container(horizontal=True, vertical_alignment="center", gap="medium"):
        run_button(
            "sweep",
            "Add the new layers" if missing else "Run the layer sweep",
            ":material/stacks:",
            done=found is not None and not missing,
        )
        st.caption(
            f"Maps of **{plain(ctx.label(ctx.focus_class))}** at every stage output, shallow to deep, from ONE forward "
            "and ONE backward (every gradient method at once)."
        )
    if found is None:
        return
    default = ctx.focus_method if ctx.focus_method in SWEEP_METHODS else "gradcam"
    st.session_state.setdefault(DK.SWEEP_METHOD, default)
    method = st.segmented_control("Method", SWEEP_METHODS, format_func=method_title, key=DK.SWEEP_METHOD, required=True)
    _draw_sweep(ctx, found.value, method or default, found.seconds)


def _draw_sweep(ctx: Ctx, res: SweepResult, method: str, seconds: float) -> None:
    st.caption(
        f"{len(res.layers)} layers · {method_title(method)} · {res.cost.get('forwards', 1)} forward and "
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
                if d.codes and d.codes[0] in BADGES:
                    st.badge(code_words(d.codes[0]), color=BADGES[d.codes[0]])
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
            "findings": ", ".join(code_words(c) for c in la.diagnosis[method].codes) or "none",
        }
        for la in layers
    ]
    st.dataframe(rows, hide_index=True, column_config=_SHARE_COLUMNS, key="dbg_sweep_table")


# ---- Methods -------------------------------------------------------------------------------------------------


def _panels(res: ExplainResult, methods: Sequence[str], diags: dict[str, Diagnosis], share: str = "> 0") -> list[Panel]:
    """One panel per method, titled with the share of the map's mass that is positive (``share`` words it)."""
    return [
        Panel(
            title=f"{method_title(m)}<br><span style='font-size:0.85em'>{diags[m].pos_mass_share:.0%} {share}</span>",
            cam=res.upsampled(m)[0, 0].numpy(),
            name=method_title(m),
        )
        for m in methods
    ]


def _grid(ctx: Ctx, panels: Sequence[Panel], key: str, views: Sequence[str]) -> None:
    """Panels in rows as even as can be (6 → 3 + 3, not 4 + 2), every panel the same size (a short last row
    keeps the others' width)."""
    rows = math.ceil(len(panels) / MAX_COLUMNS)
    per_row = math.ceil(len(panels) / rows)
    for start in range(0, len(panels), per_row):
        chunk = panels[start : start + per_row]
        where = st.columns([len(chunk), per_row - len(chunk)])[0] if len(chunk) < per_row else st.container()
        fig = overlay_figure(
            ctx.view.background,
            chunk,
            views=views,
            cmap=ctx.display.cmap,
            signed_cmap=ctx.display.signed_cmap,
            opacity=ctx.display.opacity,
            panel_height=min(300, 720 // max(per_row, 2)),
        )
        where.plotly_chart(fig, config=PLOTLY_CONFIG, key=f"{key}_{start}")


def _cost_words(method: str, channels: int) -> str:
    """``one forward per channel: 1280 images in 20 forward batches`` for the opt-in line and the table."""
    cost = estimate_cost(method, channels, batch_size=BATCH)
    return METHODS[method].cost if cost.words() == "nothing" else f"{METHODS[method].cost}: {cost.words()}"


def methods_tab(ctx: Ctx) -> None:
    activations = ctx.facts.result.activations
    channels = int(activations.shape[1]) if activations is not None else 0
    st.caption(
        f"Every method for **{plain(ctx.label(ctx.focus_class))}** at `{ctx.layer}`. The gradient methods, Eigen-CAM, "
        "KPCA-CAM and Random-CAM share one forward and one backward (Finer-CAM, ShapleyCAM and LeGrad add a few "
        "backwards); the methods below cost far more, so they are opt-in:"
    )
    opted = [
        m
        for m in SLOW
        if st.checkbox(f"{method_title(m)}: {_cost_words(m, channels)}", key=DK.CMP_OPT + m)
    ]
    methods = tuple(m for m in METHODS if m not in SLOW) + tuple(opted)
    key = (ctx.mk, ctx.item.key, ctx.layer, ctx.focus_class, methods)
    found = recall("methods", key)
    if asked("methods") and found is None:
        run = run_with_bar if opted else run_with_spinner
        found = run(
            "comparing the methods", compare_methods, ctx.bundle.model, ctx.x, ctx.layer, ctx.focus_class, list(methods)
        )
        if found is not None:
            keep("methods", key, found)
    run_button("methods", "Compare the methods", ":material/grid_view:", done=found is not None)
    if found is None:
        return
    res, skipped = found.value
    diags = {m: diagnose(res, 0, 0, m, ctx.facts.info, ctx.facts.recommended) for m in res.maps}
    forwards = (res.cost or {}).get("forwards", 0)
    backwards = (res.cost or {}).get("backward_batches", 0)
    st.caption(
        f"Computed in {found.seconds:.2f} s"
        + (f" · {forwards} forward pass{'es' if forwards > 1 else ''}" if forwards else "")
        + (f" · {backwards} backward pass{'es' if backwards > 1 else ''}" if backwards else "")
        + ". Each map is scaled to itself; titles give the share of its mass that is positive."
    )
    _grid(ctx, _panels(res, list(res.maps), diags), "dbg_methods", ctx.display.views)
    for m, why in skipped.items():
        st.caption(f":material/block: {method_title(m)} left out: {why}")
    st.dataframe(
        [
            {
                "method": method_title(m),
                "positive mass": d.pos_mass_share,
                "cells > 0": d.pos_area,
                "findings": ", ".join(code_words(c) for c in d.codes) or "none",
                "cost": _cost_words(m, channels) if channels else METHODS[m].cost,
            }
            for m, d in diags.items()
        ],
        hide_index=True,
        column_config=_SHARE_COLUMNS,
        key="dbg_methods_table",
    )


# ---- Contrast ------------------------------------------------------------------------------------------------


def contrast_tab(ctx: Ctx) -> None:
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
    methods = tuple(
        dict.fromkeys(
            [*(m for m in ctx.shown if METHODS[m].kind == "gradient" and METHODS[m].target is None), "gradcam",
             "hirescam"]
        )
    )
    key = (ctx.mk, ctx.item.key, ctx.layer, a, b, methods)
    found = recall("contrast", key)
    if a != b and asked("contrast") and found is None:
        found = run_with_spinner(
            "computing the contrast", contrast, ctx.bundle.model, ctx.x, a, b, layer=ctx.layer, methods=methods
        )
        if found is not None:
            keep("contrast", key, found)
    with c3:
        run_button("contrast", "Why A, not B?", ":material/compare:", done=found is not None, disabled=a == b)
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


def inspect_tab(ctx: Ctx) -> None:
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
            title=f"{ctx.label(ctx.focus_class)} · {method_title(method)} (signed): click a point",
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
    st.markdown(f"**{method_title(p.method)}** at row {p.row}, column {p.col} · layer cell ({p.cell[0]}, {p.cell[1]})")
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
        st.markdown(f"**{plain(c.class_name)}** ({c.class_id}): {c.value:.4g}")
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
