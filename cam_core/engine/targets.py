"""What score a map explains, as one callable interface.

A target maps the model output ``logits`` (N, C) and the explained class ids
(N, K) to the scores (N, K) whose gradients the gradient methods use and whose
changes the perturbation methods measure. "Logit of c" is the default (the
softmax couples every class, which blurs what the map says about c alone);
"softmax of c", "sigmoid of c" (multi-label models, whose classes are independent
yes/no decisions), "logit of c minus logit of b" (why c rather than b?) and
Finer-CAM's "c against its look-alikes" use the same interface, as
pytorch-grad-cam's target callables do.

:func:`probabilities` turns logits into the probabilities shown beside the maps: softmax for a
single-label classifier (the classes compete), sigmoid for a multi-label one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from torch import Tensor

from ..errors import CamError

__all__ = [
    "FINER_ALPHA",
    "FINER_REFERENCES",
    "PROBABILITIES",
    "Contrast",
    "Target",
    "finer",
    "logit",
    "probabilities",
    "resolve_target",
    "sigmoid",
    "softmax",
]

Target = Callable[[Tensor, Tensor], Tensor]
Probabilities = Literal["softmax", "sigmoid"]
PROBABILITIES: tuple[str, ...] = ("softmax", "sigmoid")
FINER_REFERENCES = 3  # pytorch-grad-cam's comparison categories (1, 2, 3): the three nearest classes
FINER_ALPHA = 1.0  # pytorch-grad-cam's default comparison strength


def logit(logits: Tensor, class_ids: Tensor) -> Tensor:
    """The raw score of each explained class."""
    return logits.gather(1, class_ids)


def softmax(logits: Tensor, class_ids: Tensor) -> Tensor:
    """The softmax probability of each explained class."""
    return logits.softmax(dim=1).gather(1, class_ids)


def sigmoid(logits: Tensor, class_ids: Tensor) -> Tensor:
    """The sigmoid probability of each explained class (multi-label models: each class on its own)."""
    return logits.gather(1, class_ids).sigmoid()


def finer(logits: Tensor, class_ids: Tensor) -> Tensor:
    """Finer-CAM's score: class c against the classes the model finds most like it.

    With d_1..d_T the T = :data:`FINER_REFERENCES` classes whose logits are nearest y_c (c itself
    excluded) and p = softmax(y): s_c = Σ_t p_dt (y_c − α y_dt) / (Σ_t p_dt + 1e-9), α =
    :data:`FINER_ALPHA` (pytorch-grad-cam's ``FinerWeightedTarget``). Gradients flow through p too.
    """
    c = logits.shape[1]
    t = min(FINER_REFERENCES, c - 1)
    if t < 1:
        raise CamError("Finer-CAM compares a class with others; the model has one output")
    own = logits.gather(1, class_ids)  # (N, K)
    distance = (logits.detach().unsqueeze(1) - own.detach().unsqueeze(-1)).abs()  # (N, K, C)
    distance.scatter_(2, class_ids.unsqueeze(-1), float("inf"))
    refs = distance.topk(t, dim=2, largest=False).indices  # (N, K, T)
    probs = logits.softmax(dim=1)
    p = probs.gather(1, refs.flatten(1)).view_as(refs)
    y = logits.gather(1, refs.flatten(1)).view_as(refs)
    return (p * (own.unsqueeze(-1) - FINER_ALPHA * y)).sum(-1) / (p.sum(-1) + 1e-9)


@dataclass(frozen=True)
class Contrast:
    """logit(c) − logit(other): the evidence for c *rather than* ``other``.

    Gradient methods that are linear in the gradient (Grad-CAM, HiResCAM, CAM) give
    exactly the difference of the two classes' maps.
    """

    other: int

    def __call__(self, logits: Tensor, class_ids: Tensor) -> Tensor:
        if not 0 <= self.other < logits.shape[1]:
            raise CamError(f"contrast class {self.other} is out of range 0..{logits.shape[1] - 1}")
        return logits.gather(1, class_ids) - logits[:, self.other : self.other + 1]

    def __str__(self) -> str:
        return f"logit − logit[{self.other}]"


_NAMED: dict[str, Target] = {"logit": logit, "softmax": softmax, "sigmoid": sigmoid, "finer": finer}


def resolve_target(target: str | Target) -> Target:
    """A target by name (``logit``, ``softmax``, ``sigmoid``, ``finer``) or any callable of that shape."""
    if callable(target):
        return target
    if target in _NAMED:
        return _NAMED[target]
    raise CamError(f"unknown target {target!r}; choose from: {', '.join(_NAMED)} (or pass a callable)")


def probabilities(logits: Tensor, kind: str = "softmax") -> Tensor:
    """Probabilities (N, C) from logits: ``softmax`` over classes, or ``sigmoid`` per class (multi-label)."""
    if kind == "softmax":
        return logits.float().softmax(dim=-1)
    if kind == "sigmoid":
        return logits.float().sigmoid()
    raise CamError(f"unknown probabilities {kind!r}; choose from: {', '.join(PROBABILITIES)}")
