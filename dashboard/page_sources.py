"""The model sources as the sidebar offers them, read from cam_core's registry.

The built-in sources keep the page's own wording and grouping (one upload takes every checkpoint format:
state dicts, exported programs, TorchScript and pickles are told apart by their contents); any other
registered source (a plug-in, a test's toy) gets an entry of its own from its declaration and a form
drawn from what it asks. Who may use an entry follows the registry: an entry whose every source carries
code is the operator's alone.
"""

from __future__ import annotations

from dataclasses import dataclass

from cam_core.models.registry import Ask, ModelSource, get_source, registered_sources

__all__ = ["PageSource", "asks_for", "page_sources", "registered", "shareable_spec"]


@dataclass(frozen=True)
class PageSource:
    """One choice of the sidebar's "Model source".

    Attributes:
        key: The choice's value (and :attr:`dashboard.model.ModelSpec.source`).
        label: What the radio shows.
        caption: One line under it.
        covers: The registry keys this entry can load.
        weights_only_label: The label where visitors may not run code (``None``: the same label).
        weights_only_caption: The caption there.
    """

    key: str
    label: str
    caption: str
    covers: tuple[str, ...]
    weights_only_label: str | None = None
    weights_only_caption: str | None = None

    @property
    def code_only(self) -> bool:
        """Whether every source behind this entry carries code (so visitors of a shared server never see it)."""
        return all(source.code_bearing for source in _known(self.covers))

    def shown_label(self, trusted: bool) -> str:
        return self.label if trusted else self.weights_only_label or self.label

    def shown_caption(self, trusted: bool) -> str:
        return self.caption if trusted else self.weights_only_caption or self.caption


_BUILT_IN = (
    PageSource("default", "Offline default",
               "EfficientNet-Lite0, ImageNet weights shipped with the package: no download", ("default",)),
    PageSource("torchvision", "torchvision model",
               "any torchvision classifier; pretrained weights need internet once", ("torchvision",)),
    PageSource("timm", "timm model", "any of timm's models: pretrained, random, or your own weights", ("timm",)),
    PageSource("hf", "Hugging Face model",
               "a saved transformers image classifier (config.json, weights, preprocessor)", ("hf",)),
    PageSource(
        "checkpoint", "Upload a checkpoint",
        "safetensors or state dict (+ architecture), exported program (.pt2), TorchScript, pickle",
        ("state_dict", "exported", "torchscript", "pickle"),
        weights_only_label="Upload weights",
        weights_only_caption="a state dict (.safetensors, .pt) for a known architecture (weights only: files that "
        "carry code are refused)",
    ),
    PageSource("factory", "Python factory", "package.module:function returning an nn.Module", ("factory",)),
)


def _known(keys: tuple[str, ...]) -> list[ModelSource]:
    return [source for source in registered_sources() if source.key in keys]


def page_sources(trusted: bool) -> list[PageSource]:
    """The sidebar's choices, in the page's order: the built-in ones whose sources are registered, then every
    other registered source; for visitors who may not run code, only those with a data-only source."""
    covered = {key for entry in _BUILT_IN for key in entry.covers}
    entries = [entry for entry in _BUILT_IN if _known(entry.covers)]
    entries += [
        PageSource(source.key, source.label, source.form, (source.key,))
        for source in registered_sources()
        if source.key not in covered and source.asks
    ]
    return [entry for entry in entries if trusted or not entry.code_only]


def registered(key: str) -> ModelSource | None:
    """The registry's source under ``key`` (``None`` for the page's own groupings: a checkpoint upload, pinned)."""
    try:
        return get_source(key)
    except KeyError:
        return None


def asks_for(key: str, field: str) -> Ask | None:
    """What the source under ``key`` asks for ``field`` (a :func:`~cam_core.load_model` argument), if it asks."""
    source = registered(key)
    return next((ask for ask in source.asks if ask.field == field), None) if source is not None else None


def shareable_spec(source: ModelSource | None) -> bool:
    """Whether a link may name a model of ``source``: data-only, and named by text rather than by a file (an
    upload's path means nothing in another browser, and a folder on the server is not a visitor's to name)."""
    if source is None or source.code_bearing:
        return False
    spec = next((ask for ask in source.asks if ask.field == "spec"), None)
    return spec is not None and spec.kind in ("text", "choice")
