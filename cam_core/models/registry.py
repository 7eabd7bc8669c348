"""The model-source registry: which source a spec names, and what each source needs.

A source is declared as plain data (:class:`ModelSource`) by one module of
:mod:`cam_core.models.sources`, so adding a source is one new module: its spec form, whether it
carries code, how it loads and what a page must ask for it. This module imports neither torch
nor any source, so everything may import it (the sources register themselves through
:mod:`cam_core.models.sources`).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, Literal

__all__ = [
    "Ask",
    "ModelRequest",
    "ModelSource",
    "get_source",
    "register",
    "registered_sources",
    "source_for",
    "spec_forms",
    "unregister",
]

AskKind = Literal["text", "choice", "file", "files", "flag"]


@dataclass(frozen=True)
class Ask:
    """One thing a page asks for a source: plain data, so any UI (or a test) can render it.

    Attributes:
        field: The :func:`~cam_core.load_model` argument it fills: ``spec``, ``weights``, ``arch``,
            ``checkpoint``, ``labels``, ``trust_checkpoint``, ``import_paths`` or ``output``.
        kind: ``text``, ``choice`` (one of ``choices``), ``file`` (an upload with one of ``suffixes``),
            ``files`` (several uploads, e.g. a model folder) or ``flag`` (a checkbox).
        label: What the page shows.
        required: Whether loading needs it.
        choices: For ``choice``: the values offered (empty: the page fills them, e.g. model names).
        suffixes: For ``file``/``files``: accepted file endings, without the dot.
        help: One sentence on what it is for.
    """

    field: str
    kind: AskKind
    label: str
    required: bool = False
    choices: tuple[str, ...] = ()
    suffixes: tuple[str, ...] = ()
    help: str = ""


@dataclass(frozen=True)
class ModelRequest:
    """Everything :func:`~cam_core.load_model` was asked that a source's loader may use."""

    spec: str
    weights: str | Enum | None = "DEFAULT"
    arch: str | None = None
    checkpoint: Path | None = None
    trust: bool = False
    import_paths: tuple[str | os.PathLike[str], ...] = ()
    allow_code: bool = True


@dataclass(frozen=True)
class ModelSource:
    """A way to name and load a model.

    A spec is recognised by ``prefix`` (checked before anything else), else by ``suffixes``
    (case-insensitive) or ``recognise``, in registry order (see :func:`source_for`); a source with
    none of them is reached only from another source's loader (a pickled module in a ``.pt`` file).

    Attributes:
        key: Stable id (``timm``, ``state_dict``, …), for pages and caches.
        label: Human name of the source.
        form: How a spec of this source is written, for help and error messages.
        code_bearing: True when loading can run code from the user (a factory, an import path, a
            pickle, a TorchScript graph, an exported program): refused where code is not allowed.
        load: The loader; it returns the shared built-model record (:class:`cam_core.models.built.Built`).
        asks: What a page needs to ask for this source, in order.
        prefix: Spec prefix such as ``timm:``, or ``None``.
        suffixes: File endings such as ``.pt2``.
        recognise: Predicate over the spec text, for specs with neither prefix nor suffix.
    """

    key: str
    label: str
    form: str
    code_bearing: bool
    load: Callable[[ModelRequest], Any]
    asks: tuple[Ask, ...] = ()
    prefix: str | None = None
    suffixes: tuple[str, ...] = ()
    recognise: Callable[[str], bool] | None = field(default=None, compare=False)

    def matches_prefix(self, spec: str) -> bool:
        """Whether ``spec`` starts with this source's prefix."""
        return self.prefix is not None and spec.startswith(self.prefix)

    def matches_suffix(self, spec: str) -> bool:
        """Whether ``spec`` ends with one of this source's file endings."""
        return bool(self.suffixes) and spec.lower().endswith(self.suffixes)


_SOURCES: list[ModelSource] = []


def register(source: ModelSource) -> ModelSource:
    """Add ``source`` at the end of the list (or replace the one with its key, keeping its place)."""
    for i, known in enumerate(_SOURCES):
        if known.key == source.key:
            _SOURCES[i] = source
            return source
    _SOURCES.append(source)
    return source


def unregister(key: str) -> ModelSource:
    """Remove the source registered under ``key`` and return it (a test's toy source, a plug-in unloaded).

    Raises:
        KeyError: no such source.
    """
    source = get_source(key)
    _SOURCES.remove(source)
    return source


def registered_sources() -> tuple[ModelSource, ...]:
    """Every registered source, in the order specs are tried (a page may show them in its own order)."""
    return tuple(_SOURCES)


def get_source(key: str) -> ModelSource:
    """The source registered under ``key``.

    Raises:
        KeyError: no such source, with the valid keys.
    """
    for source in _SOURCES:
        if source.key == key:
            return source
    raise KeyError(f"no model source {key!r}; known: {', '.join(s.key for s in _SOURCES)}")


def source_for(spec: str | os.PathLike[str]) -> ModelSource | None:
    """The source that ``spec`` names, or ``None``.

    Prefixes are tried first, over every source (an explicit ``name:`` wins over the shape of a factory
    path); then, in registry order, each source's file endings or predicate (so a TorchScript ``.pt``,
    recognised by its contents, is taken before the state-dict source claims every ``.pt``).
    """
    text = os.fspath(spec).strip()
    for source in _SOURCES:
        if source.matches_prefix(text):
            return source
    for source in _SOURCES:
        if source.prefix is None and (
            source.matches_suffix(text) or (source.recognise is not None and source.recognise(text))
        ):
            return source
    return None


def spec_forms() -> str:
    """The spec forms of every source that a spec can name, as one phrase for help and errors."""
    forms = [s.form for s in _SOURCES if s.prefix or s.suffixes or s.recognise]
    return ", ".join(forms[:-1]) + (f", or {forms[-1]}" if len(forms) > 1 else "".join(forms))
