"""Which layer a CAM is taken at by default: the rule :func:`cam_core.models.layers.recommended_layer`
documents, over the records of the traced forward.
"""

from __future__ import annotations

from .layer_trace import Analysis, Record, Tracer, same_fingerprint

__all__ = ["chosen_layer", "recommend"]


def _several_stages(name: str, records: dict[str, Record]) -> bool:
    """Whether ``name``'s children output maps at more than one resolution (it holds several stages)."""
    prefix = name + "."
    grids = {
        r.layout.grid
        for n, r in records.items()
        if n.startswith(prefix) and "." not in n[len(prefix) :] and r.layout is not None
    }
    return len(grids) > 1


def recommend(tracer: Tracer) -> str | None:
    """The recommended layer (rule in :func:`recommended_layer`)."""
    records = {n: r for n, r in tracer.records.items() if n}
    usable = {
        n: r
        for n, r in records.items()
        if r.layout is not None and r.calls == 1 and not r.no_grad_tokens and not r.in_attention
    }
    if not usable:
        return None
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
    return min(stages, key=lambda n: (records[n].type_name == "Identity", n.count("."), usable[n].exit))


def chosen_layer(model: object, found: Analysis) -> str | None:
    """The loader's own choice (a LoadedModel's ``recommended_layer``) when CAM-able, else the rule's."""
    named = getattr(model, "recommended_layer", None)
    if isinstance(named, str) and named in found.records:
        rec = found.records[named]
        if rec.layout is not None and rec.calls == 1:
            return named
    return found.recommended
