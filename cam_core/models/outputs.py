"""Models whose forward returns a tuple, a dict or a ``ModelOutput``: which tensor are the logits.

**The rule** (:func:`pick_logits`), in order:

1. an attribute ``logits`` that is a tensor (Hugging Face's ``ModelOutput`` and look-alikes);
2. a key ``"logits"`` of a mapping;
3. the first tensor of shape (N, C) met walking the output depth-first, in order (tuple and
   list items, mapping values), N being the input's batch.

``output=`` overrides it: a key or attribute name (``"logits"``, ``"cls_logits"``), or an index
into a tuple or list (``1``); on the command line ``--output KEY_OR_INDEX``.

:class:`Classifier` applies the rule once, at load time, so everything downstream (the engine,
the layer tracer, the analyses) calls a module that returns a tensor. It *is* the user's model
as far as names go: it shares the model's submodule, parameter and buffer tables, so every layer
keeps the dotted name the user knows (``layer4``, ``vit.layers.11.layernorm_before``), hooks on
those layers are hooks on the user's modules, and a state dict has the model's own keys.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import CamError

__all__ = ["Classifier", "OutputKey", "as_classifier", "describe_output", "parse_output", "pick_logits"]

OutputKey = str | int


def parse_output(text: str | int | None) -> OutputKey | None:
    """``--output`` as given on the command line: digits are a tuple index, anything else a key."""
    if text is None or isinstance(text, int):
        return text
    text = text.strip()
    if not text:
        return None
    return int(text) if text.lstrip("-").isdigit() else text


def describe_output(out: object, depth: int = 0) -> str:
    """A short picture of an output's structure for messages: ``dict(logits: 1×10, hidden: 1×197×768)``."""
    if isinstance(out, Tensor):
        return "×".join(map(str, out.shape)) or "scalar"
    if depth > 1:
        return type(out).__name__
    if isinstance(out, Mapping):
        items = ", ".join(f"{k}: {describe_output(v, depth + 1)}" for k, v in list(out.items())[:6])
        return f"{type(out).__name__}({items})"
    if isinstance(out, list | tuple):
        items = ", ".join(describe_output(v, depth + 1) for v in out[:6])
        return f"{type(out).__name__}({items})"
    return type(out).__name__


def _first_nc(out: object, n: int) -> Tensor | None:
    if isinstance(out, Tensor):
        return out if out.ndim == 2 and out.shape[0] == n and out.is_floating_point() else None
    values = out.values() if isinstance(out, Mapping) else out if isinstance(out, list | tuple) else ()
    for value in values:
        found = _first_nc(value, n)
        if found is not None:
            return found
    return None


def pick_logits(out: object, batch: int, output: OutputKey | None = None) -> Tensor:
    """The logits in a model's output, by the rule in the module docstring (or ``output``).

    Args:
        out: What the model's forward returned.
        batch: N, the input's batch size (the logits are (N, C)).
        output: A key/attribute name or a tuple index that names the logits, overriding the rule.

    Raises:
        CamError: no tensor fits, or ``output`` names nothing in ``out``.
    """
    if output is not None:
        found = _by_key(out, output)
        if not isinstance(found, Tensor):
            raise CamError(
                f"the model's output {describe_output(out)} has no tensor at {output!r}; "
                "give a key, attribute or index that holds the (N, classes) logits"
            )
        return found
    if isinstance(out, Tensor):
        return out
    logits = getattr(out, "logits", None)
    if not isinstance(logits, Tensor) and isinstance(out, Mapping):
        logits = out.get("logits")
    if isinstance(logits, Tensor):
        return logits
    found = _first_nc(out, batch)
    if found is None:
        raise CamError(
            f"the model returns {describe_output(out)}: no 'logits' and no ({batch}, classes) tensor in it; "
            "name the one to explain with --output KEY_OR_INDEX (Python: output=)"
        )
    return found


def _by_key(out: object, key: OutputKey) -> object:
    if isinstance(key, int):
        if isinstance(out, list | tuple) and -len(out) <= key < len(out):
            return out[key]
        return None
    if isinstance(out, Mapping) and key in out:
        return out[key]
    return getattr(out, key, None)


class Classifier(nn.Module):
    """The user's model, returning its logits as an (N, C) tensor (rule: :func:`pick_logits`).

    It shares the wrapped model's ``_modules``, ``_parameters`` and ``_buffers`` tables instead of
    holding the model as a child, so names, hooks, ``.to()`` and state dicts are the model's own.
    """

    def __init__(self, model: nn.Module, output: OutputKey | None = None) -> None:
        super().__init__()
        self.__dict__["wrapped"] = model  # not a child: its children are ours
        self.output = output
        self._modules = model._modules
        self._parameters = model._parameters
        self._buffers = model._buffers
        self._non_persistent_buffers_set = model._non_persistent_buffers_set
        self.training = model.training

    def forward(self, x: Tensor, *args: Any, **kwargs: Any) -> Tensor:
        return pick_logits(self.wrapped(x, *args, **kwargs), x.shape[0], self.output)

    def with_output(self, output: OutputKey | None) -> Classifier:
        """The same adapter aimed at another output (see :func:`pick_logits`)."""
        return Classifier(self.wrapped, output)

    def train(self, mode: bool = True) -> Classifier:
        super().train(mode)
        self.wrapped.training = mode  # the wrapped root is no child of ours: set its own flag too
        return self

    def extra_repr(self) -> str:
        where = f", output={self.output!r}" if self.output is not None else ""
        return f"wraps {type(self.wrapped).__name__}{where}"


def as_classifier(model: nn.Module, output: OutputKey | None = None, probe: Tensor | None = None) -> nn.Module:
    """``model`` itself when its forward returns a tensor, else a :class:`Classifier` around it.

    Args:
        model: Any module whose forward takes an image batch.
        output: Names the logits (see :func:`pick_logits`); then the model is always wrapped.
        probe: An input to try the model on (one forward, no gradient) to see what it returns;
            without it (and without ``output``) the model is wrapped, which is harmless for one
            that returns a tensor.

    Raises:
        CamError: ``output`` names nothing in the probe's output, or no tensor fits the rule.
    """
    if isinstance(model, Classifier):  # already adapted (a source that knows its outputs): only re-aim it
        if output is None or output == model.output:
            return model
        model = model.with_output(output)
        if probe is not None:
            with torch.no_grad():
                model(probe)
        return model
    if output is None and probe is not None:
        try:
            with torch.no_grad():
                out = model(probe)
        except Exception:  # the user's model: the loader reports a failing forward in its own words
            return model
        if isinstance(out, Tensor):
            return model
        pick_logits(out, probe.shape[0])  # fails now, with the structure, rather than at explain time
    elif output is not None and probe is not None:
        with torch.no_grad():
            out = model(probe)
        if isinstance(out, Tensor):
            raise CamError(f"--output {output!r} is for models that return a tuple or dict; this one returns a tensor")
        pick_logits(out, probe.shape[0], output)
    return Classifier(model, output)
