"""What score a map explains, as one callable interface.

A target maps the model output ``logits`` (N, C) and the explained class ids
(N, K) to the scores (N, K) whose gradients the gradient methods use and whose
changes the perturbation methods measure. "Logit of c" is the default (the
softmax couples every class, which blurs what the map says about c alone);
"softmax of c" and "logit of c minus logit of b" (why c rather than b?) use the
same interface, as pytorch-grad-cam's target callables do.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import Tensor

from ..errors import CamError

__all__ = ["Contrast", "Target", "logit", "resolve_target", "softmax"]

Target = Callable[[Tensor, Tensor], Tensor]


def logit(logits: Tensor, class_ids: Tensor) -> Tensor:
    """The raw score of each explained class."""
    return logits.gather(1, class_ids)


def softmax(logits: Tensor, class_ids: Tensor) -> Tensor:
    """The softmax probability of each explained class."""
    return logits.softmax(dim=1).gather(1, class_ids)


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


_NAMED: dict[str, Target] = {"logit": logit, "softmax": softmax}


def resolve_target(target: str | Target) -> Target:
    """A target by name (``logit``, ``softmax``) or any callable of that shape."""
    if callable(target):
        return target
    if target in _NAMED:
        return _NAMED[target]
    raise CamError(f"unknown target {target!r}; choose from: logit, softmax (or pass a callable)")
