"""Diagnosis cards and the page-level findings: numbers, plain words and one-click fixes.

Everything shown comes from :class:`cam_core.analysis.diagnose.Diagnosis`; this module formats it and
wires the buttons that apply a fix (the recommended layer, the signed view, a contrast).
"""

from __future__ import annotations

import html
from collections.abc import Callable, Sequence
from typing import Any

import streamlit as st

from cam_core.analysis.diagnose import (
    Diagnosis,
)
from cam_core.engine.methods import METHODS
from dashboard.display import show_signed
from dashboard.state import request_full_rerun, set_layer
from dashboard.text import plain
from dashboard.views.image.debug.session import DK, ask

# Findings whose fix is another layer / the signed view / a contrast (codes from cam_core.analysis.diagnose).
_LAYER_CODES = frozenset({"empty_after_relu", "mostly_negative", "zero_map", "pre_activation", "residual_branch"})
_SIGNED_CODES = frozenset(
    {
        "empty_after_relu",
        "mostly_negative",
        "negative_majority",
        "pre_activation",
        "centred_map",
        "scale_invariant_head",
    }
)
_CONTRAST_CODES = frozenset({"near_bound", "centred_map", "scale_invariant_head"})
# Findings about the layer or the model, not one map: the same words on every card, so said once above them.
LAYER_NOTE_CODES = frozenset({"pre_activation", "residual_branch", "scale_invariant_head"})
BADGES = {
    "not_predicted": "orange", "empty_after_relu": "red", "zero_map": "red", "zero_head": "red",
    "mostly_negative": "orange",
}


# ---- diagnosis cards and the page-level summary --------------------------------------------------------


def method_title(method: str) -> str:
    return METHODS[method].title if method in METHODS else method


def code_words(code: str) -> str:
    return code.replace("_", " ")


def split_finding(text: str) -> tuple[str, str]:
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
        ignored = "scale_invariant_head" in codes
        rows.append(("Doubling the features", f"changes the scores by {d.scale_change:.2%}: the head "
                     + ("ignores their strength" if ignored else "uses their strength (as usual)")))
    return rows


def _rows_html(rows: Sequence[tuple[str, str]]) -> str:
    cells = "".join(f"<tr><td>{html.escape(label)}</td><td>{html.escape(value)}</td></tr>" for label, value in rows)
    return f'<table class="dbg-nums">{cells}</table>'


def _show_signed() -> None:
    show_signed()  # the overlays' "Views" pills (dashboard.display)
    request_full_rerun()  # they live in another fragment


def _open_contrast(a: int, b: int) -> None:
    st.session_state[DK.CON_A] = a
    st.session_state[DK.CON_B] = b
    st.session_state[DK.TAB] = "Contrast"
    ask("contrast")


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
        diag: From :func:`cam_core.analysis.diagnose.diagnose`.
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
        st.markdown(f"**{plain(diag.class_name)}** ({diag.class_id}) · {method_title(diag.method)}")
        if findings:
            first = findings[0]
            st.badge(
                code_words(first.code),
                color=BADGES.get(first.code, "orange" if first.severity == "warning" else "blue"),
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
            headline, rest = split_finding(first.text)
            show = st.warning if first.severity == "warning" else st.info
            show(f"**{headline}.** {rest}\n\n**Fix:** {first.fix}." if headline else f"{rest}\n\n**Fix:** {first.fix}.")
            if len(findings) > 1:
                with st.expander("Also: " + ", ".join(code_words(f.code) for f in findings[1:])):
                    for f in findings[1:]:
                        headline, rest = split_finding(f.text)
                        st.markdown(f"**{headline or code_words(f.code)}.** {rest}\n\n*Fix:* {f.fix}.")
        if noted:
            st.caption("Layer notes above apply: " + ", ".join(code_words(c) for c in noted) + ".")
        _fix_buttons(diag, key, model_key, signed_shown, contrast_with, compact=True)


def layer_notes(diags: Sequence[Diagnosis]) -> None:
    """The findings about the layer or the model (signed activations, residual branch, scale-invariant
    head), said once above the cards; each with its fix."""
    seen: dict[str, Any] = {}
    for d in diags:
        for f in d.findings:
            if f.code in LAYER_NOTE_CODES and f.code not in seen:
                seen[f.code] = f
    if not seen:
        return
    with st.container(key="dbg_layer_notes"):
        for f in seen.values():
            headline, rest = split_finding(f.text)
            show = st.warning if f.severity == "warning" else st.info
            show(f"**{headline or code_words(f.code)}.** {rest}\n\n**Fix:** {f.fix}.", icon=":material/layers:")


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
        headline, rest = split_finding(first.text)
        if len(empty) == 1:
            title = f"**{headline}.**" if headline else "**The ReLU'd map is blank.**"
        else:
            which = ", ".join(f"{plain(x.class_name)} ({method_title(x.method)})" for x in empty)
            title = f"**{len(empty)} ReLU'd maps are blank:** {which}. The first:"
        with st.container(key="dbg_summary"):
            st.warning(f"{title} {rest}\n\n**Fix:** {first.fix}.", icon=":material/visibility_off:")
            versus = contrast_with(d.class_id) if contrast_with else None
            _fix_buttons(d, "summary", model_key, signed_shown, versus, compact=False)
    if weak:
        parts = "; ".join(
            f"{plain(x.class_name)} · {method_title(x.method)}: {x.pos_mass_share:.0%} positive" for x in weak
        )
        st.info(
            f"**Mostly negative maps** ({parts}): the ReLU'd view stretches that small positive part to full "
            "brightness and hides the rest. The *Diagnosis* tab says why and what to try.",
            icon=":material/info:",
        )
