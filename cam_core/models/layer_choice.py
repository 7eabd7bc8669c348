"""Which layer a CAM is taken at by default: the rule :func:`cam_core.models.layers.recommended_layer`
documents, over the records of the traced forward, and the one line that says why.
"""

from __future__ import annotations

import re

from .layer_trace import Analysis, Record, Tracer, same_fingerprint

__all__ = ["chosen_layer", "chosen_why", "recommend", "skip_reason"]

# Names of the modules that hold a classifier: nothing in or under them is the backbone's output.
HEAD_NAMES = frozenset(
    {"head", "heads", "head_dist", "dist_head", "aux_head", "classifier", "fc", "last_linear", "pre_logits", "logits"}
)
# Pools that resample to a fixed size (VGG's and AlexNet's 7×7 / 6×6 ``avgpool``): not a map of the input.
_RESAMPLING_POOL = re.compile(r"^Adaptive.*Pool|AdaptivePool|AdaptiveAvgMax", re.IGNORECASE)


def _several_stages(name: str, records: dict[str, Record]) -> bool:
    """Whether ``name``'s children output maps at more than one resolution (it holds several stages)."""
    prefix = name + "."
    grids = {
        r.layout.grid
        for n, r in records.items()
        if n.startswith(prefix) and "." not in n[len(prefix) :] and r.layout is not None
    }
    return len(grids) > 1


def skip_reason(name: str, rec: Record) -> str | None:
    """Why a CAM-able layer is not one a person would choose as the backbone's output, or ``None`` when it is."""
    if rec.in_attention:
        return "inside an attention block"
    if HEAD_NAMES & set(name.lower().split(".")):
        return "inside the classifier head"
    if _RESAMPLING_POOL.search(rec.type_name):
        return "an adaptive pool that resamples the map to a fixed size"
    if rec.class_scores:
        return "a map of class scores (pooled, it is the logits)"
    return None


def _class_score_run(usable: dict[str, Record], outputs: int | None) -> set[str]:
    """The last maps of the forward whose channels are the classes, when one of them pools to the logits
    (SqueezeNet's final conv and its ReLU): class-score maps, not features."""
    run: list[str] = []
    for name in sorted(usable, key=lambda n: -usable[n].exit):
        if outputs is None or usable[name].channels != outputs:
            break
        run.append(name)
    return set(run) if any(usable[n].class_scores for n in run) else set()


def recommend(tracer: Tracer) -> tuple[str | None, str]:
    """The recommended layer (rule in :func:`recommended_layer`) and the one line that says why."""
    records = {n: r for n, r in tracer.records.items() if n}
    camable = {
        n: r for n, r in records.items() if r.layout is not None and r.calls == 1 and not r.no_grad_tokens
    }
    skipped = {n: why for n, r in camable.items() if (why := skip_reason(n, r)) is not None}
    for name in _class_score_run(camable, tracer.outputs):
        skipped.setdefault(name, "a map of class scores (one channel per class)")
    usable = {n: r for n, r in camable.items() if n not in skipped}
    if not usable:  # only a head's or class-score maps (a model that is all head): better those than none
        usable = {n: r for n, r in camable.items() if not r.in_attention}
        skipped = {}
    if not usable:
        return None, ""
    last = max(usable, key=lambda n: usable[n].exit)
    same = [n for n, r in usable.items() if same_fingerprint(r.fingerprint, usable[last].fingerprint)] or [last]
    # A container fed the model's input, or holding maps of several resolutions, holds the whole trunk (or
    # several stages of it): name the stage inside it instead.
    stages = [
        n
        for n in same
        if not (records[n].has_children and (records[n].takes_model_input or _several_stages(n, records)))
    ] or same
    # An Identity (timm's norm_pre) outputs the same map as the stage before it: name the stage.
    chosen = min(stages, key=lambda n: (records[n].type_name == "Identity", n.count("."), usable[n].exit))
    return chosen, _why(chosen, records, camable, skipped)


def _why(chosen: str, records: dict[str, Record], camable: dict[str, Record], skipped: dict[str, str]) -> str:
    """One line: what the chosen layer is, and the nearest later map passed over (and why)."""
    rec = records[chosen]
    assert rec.layout is not None
    h, w = rec.layout.grid
    later_tokens = any(
        r.no_grad_tokens for r in records.values() if r.exit > rec.exit and r.layout is not None and r.calls == 1
    )
    if rec.layout.kind.endswith("tokens"):
        tokens = "the last block's normalised tokens" if "Norm" in rec.type_name else "the last tokens"
        where = "whose patches still reach the head" if later_tokens else "before pooling and the head"
        what = f"{tokens} ({h}×{w}) {where}"
    else:
        what = f"the last spatial map ({h}×{w}) before pooling and the head: the backbone's output"
    after = [n for n in skipped if camable[n].exit > rec.exit]
    if not after:
        return what
    nearest = min(after, key=lambda n: camable[n].exit)
    return f"{what}; later `{nearest}` is {skipped[nearest]}"


def chosen_layer(model: object, found: Analysis) -> str | None:
    """The loader's own choice (a LoadedModel's ``recommended_layer``) when CAM-able, else the rule's."""
    named = getattr(model, "recommended_layer", None)
    if isinstance(named, str) and named in found.records:
        rec = found.records[named]
        if rec.layout is not None and rec.calls == 1:
            return named
    return found.recommended


def chosen_why(model: object, found: Analysis) -> str:
    """The one-line why of :func:`chosen_layer`'s choice."""
    chosen = chosen_layer(model, found)
    if chosen is None:
        return ""
    if chosen != found.recommended:
        return "chosen for this architecture by its loader (the general rule picks another layer here)"
    return found.why
