"""The Trust tab of "Debug this prediction": deletion and insertion, ROAD, and the model-randomisation check.

Each check runs on a button (cached in the session by :mod:`dashboard.views.image.debug.session`) and its verdict comes
from :mod:`cam_core.analysis.trust`; this page only draws the curves and shows the verdict.
"""

from __future__ import annotations

import math

import numpy as np
import streamlit as st

from cam_core.analysis.sweep import SWEEP_METHODS
from cam_core.analysis.trust import (
    BASELINES,
    ROAD_FRACTIONS,
    SANITY_MAX_CORR,
    PerturbationCurves,
    RoadResult,
    SanityResult,
    TrustVerdict,
    deletion_insertion,
    randomisation_check,
    randomisation_units,
    road,
    sanity_verdicts,
)
from dashboard.figures import PLOTLY_CONFIG
from dashboard.text import plain
from dashboard.views.image.debug.cards import method_title
from dashboard.views.image.debug.context import Ctx
from dashboard.views.image.debug.figures import (
    curves_figure,
    road_figure,
    sanity_figure,
    sanity_maps_figure,
    short_unit,
)
from dashboard.views.image.debug.session import DK, asked, keep, recall, run_button, run_with_bar

__all__ = ["trust_tab"]

DELINS_BATCH = 16  # deletion_insertion's default batch, quoted in the cost line


def trust_tab(ctx: Ctx) -> None:
    c, m = ctx.focus_class, ctx.focus_method
    st.markdown(f"##### Deletion and insertion · {plain(ctx.label(c))} · {method_title(m)}")
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
    key = (ctx.mk, ctx.item.key, ctx.layer, c, m, baseline, steps, with_random)
    found = recall("delins", key)
    if asked("delins") and found is None:
        found = run_with_bar(
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
            keep("delins", key, found)
    run_button("delins", "Run deletion and insertion", ":material/query_stats:", done=found is not None)
    if found is not None:
        _draw_curves(ctx, found.value, found.seconds)

    _road_section(ctx)

    st.markdown(f"##### Model randomisation · {plain(ctx.label(c))} · `{ctx.layer}`")
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
    chosen = c1.multiselect("Methods", sweepable, format_func=method_title, key=DK.SAN_METHODS)
    # A slider needs two stops; a model of one block just randomises it.
    n_units = int(c2.slider("Blocks to randomise", 1, len(units), key=DK.SAN_UNITS)) if len(units) > 1 else len(units)
    st.caption(f"Cost: one forward and one backward per step: {n_units + 1} passes, on a copy of the model.")
    key = (ctx.mk, ctx.item.key, ctx.layer, c, tuple(chosen), n_units)
    found = recall("sanity", key)
    if chosen and asked("sanity") and found is None:
        found = run_with_bar(
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
            keep("sanity", key, found)
    run_button(
        "sanity", "Run the randomisation check", ":material/shuffle:", done=found is not None, disabled=not chosen
    )
    if found is not None:
        _draw_sanity(ctx, found.value, found.seconds)


def _road_section(ctx: Ctx) -> None:
    c, m = ctx.focus_class, ctx.focus_method
    st.markdown(f"##### ROAD: remove and debias · {plain(ctx.label(c))} · {method_title(m)}")
    st.caption(
        "Deleted pixels leak the map's shape (a grey or blurred blob where the map was bright). ROAD fills the removed "
        "pixels from their neighbours instead (noisy linear imputation), removing the most relevant (MoRF) or the "
        "least relevant (LeRF) fraction first. A good map makes the probability fall when its top pixels go and hold "
        "when its bottom ones do: ROAD = mean (LeRF − MoRF) / 2, higher is better."
    )
    st.session_state.setdefault(DK.ROAD_RANDOM, True)
    with_random = st.toggle(
        "Random-CAM reference", key=DK.ROAD_RANDOM, help="The same layer with random channel weights: what to beat."
    )
    images = 2 * len(ROAD_FRACTIONS) * (2 if with_random else 1)
    st.caption(
        f"Cost: {images} images, each one sparse solve for the imputation, in {math.ceil(images / DELINS_BATCH)} "
        f"forwards of {DELINS_BATCH}."
    )
    key = (ctx.mk, ctx.item.key, ctx.layer, c, m, with_random)
    found = recall("road", key)
    if asked("road") and found is None:
        found = run_with_bar(
            "ROAD", road, ctx.bundle.model, ctx.x, ctx.view.maps[(m, c)].up, c, with_random=with_random,
            layer=ctx.layer,
        )
        if found is not None:
            keep("road", key, found)
    run_button("road", "Run ROAD", ":material/healing:", done=found is not None)
    if found is None:
        return
    res: RoadResult = found.value
    st.plotly_chart(road_figure(res, ctx.names[res.class_id]), config=PLOTLY_CONFIG, key="dbg_road")
    _show_verdict(res.verdict, f"Computed in {found.seconds:.2f} s.")


def _draw_curves(ctx: Ctx, curves: PerturbationCurves, seconds: float) -> None:
    fig = curves_figure(curves, ctx.names[curves.class_id])
    st.plotly_chart(fig, config=PLOTLY_CONFIG, key="dbg_curves")
    _show_verdict(curves.verdict, f"Computed in {seconds:.2f} s ({curves.forwards} forwards).")


_ICONS = {"trusted": ":material/verified:", "doubtful": ":material/gpp_maybe:", "flat": ":material/trending_flat:"}


def _show_verdict(verdict: TrustVerdict, head: str) -> None:
    """A check's verdict as cam_core words it: green when trusted, a warning when doubtful or flat."""
    text = f"{head} {verdict.text}"
    if verdict.outcome == "trusted":
        st.success(text, icon=_ICONS["trusted"])
    elif verdict.outcome in _ICONS:
        st.warning(text, icon=_ICONS[verdict.outcome])
    else:
        st.caption(text)


def _draw_sanity(ctx: Ctx, res: SanityResult, seconds: float) -> None:
    st.plotly_chart(sanity_figure(res), config=PLOTLY_CONFIG, key="dbg_sanity")
    st.caption(f"{len(res.units)} steps in {seconds:.2f} s. Solid: signed maps; dotted: absolute values.")
    for verdict in sanity_verdicts(res).values():
        if verdict.trusted:
            st.success(verdict.text, icon=":material/check:")
        else:
            st.warning(verdict.text, icon=":material/flag:")
    first = res.methods[0]
    maps = res.maps[first]
    picks = sorted(set(np.linspace(0, len(maps) - 1, min(len(maps), 8)).round().astype(int).tolist()))
    labels = ["original" if s == 0 else f"{s}: {short_unit(res.units[s - 1])}" for s in picks]
    st.caption(f"{method_title(first)} map as the model is randomised (signed, each scaled to itself):")
    st.plotly_chart(
        sanity_maps_figure(maps[picks], labels, cmap=ctx.display.signed_cmap),
        config={**PLOTLY_CONFIG, "displayModeBar": False},
        key="dbg_sanity_maps",
    )
