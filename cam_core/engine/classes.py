"""Which classes to explain: a spec ("top3", ids, names, per-image ids) turned into ids, and name search.

Its own module because the CLI, the pages and the clip engine resolve and search classes without
running a model.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import Tensor

from ..errors import CamError, choices_hint

__all__ = ["ClassSpec", "match_classes", "resolve_classes"]

_TOPK = re.compile(r"^top(\d+)$")


ClassSpec = str | int | Sequence[int | str] | Tensor | Callable[[Tensor], Tensor]


def resolve_classes(spec: ClassSpec, logits: Tensor, class_names: Sequence[str]) -> Tensor:
    """Turn a class spec into ids (N, K).

    ``"top3"`` takes each image's own top classes; ints, names or a comma-separated
    string (``"281,285"``, ``"tabby,Egyptian cat"``) give every image the same K. Per-image
    classes (a dataset's labels, each image's prediction and its label) come as an (N, K)
    integer tensor, or as a function of the logits (N, C) giving one, so they cost no extra forward.
    """
    n, c = logits.shape
    if callable(spec) and not isinstance(spec, Tensor | np.ndarray):
        return _check_class_tensor(torch.as_tensor(spec(logits), device=logits.device), n, c)
    if isinstance(spec, Tensor | np.ndarray):
        if spec.ndim == 2 and spec.shape[0] == n > 1:  # a row of classes per image (a dataset's labels)
            return _check_class_tensor(torch.as_tensor(spec), n, c)
        spec = spec.reshape(-1).tolist()  # np.argsort(...)[:3], logits.topk(3).indices: the same for every image
    if isinstance(spec, str):
        match = _TOPK.match(spec.strip().lower())
        if match:
            k = int(match.group(1))
            if not 1 <= k <= c:
                raise CamError(f"{spec!r}: k must be between 1 and {c}")
            return logits.topk(k, dim=1).indices
        spec = [s.strip() for s in spec.split(",") if s.strip()]
    elif not isinstance(spec, Sequence):
        spec = [spec]
    if not spec:
        raise CamError("no class given; use e.g. top3, 281,285 or a class name")
    lower = {name.lower(): i for i, name in reversed(list(enumerate(class_names)))}
    ids: list[int] = []
    for item in spec:
        item = _class_item(item)
        if isinstance(item, int):
            if not 0 <= item < c:
                raise CamError(f"class index {item} is out of range: the model has classes 0..{c - 1}")
            ids.append(item)
        elif item.lower() in lower:
            ids.append(lower[item.lower()])
        else:
            near = [class_names[i] for i in match_classes(item, class_names, limit=6)]
            hint = f"; did you mean: {choices_hint(near)}" if near else "; give a class index or an exact name"
            raise CamError(f"unknown class {item!r}{hint}")
    return torch.tensor(ids, dtype=torch.long).expand(n, -1).clone()


def _check_class_tensor(ids: Tensor, n: int, c: int) -> Tensor:
    """Per-image class ids as (N, K) long on the logits' device, each in 0..C-1."""
    if ids.ndim != 2 or ids.shape[0] != n or ids.shape[1] < 1 or ids.dtype.is_floating_point or ids.is_complex():
        raise CamError(f"per-image classes must be an (N={n}, K) integer tensor, got {tuple(ids.shape)} {ids.dtype}")
    if bool((ids < 0).any()) or bool((ids >= c).any()):
        raise CamError(f"a class index is out of range: the model has classes 0..{c - 1}")
    return ids.long()


def _class_item(item: object) -> int | str:
    """One class of a spec as an index or a name: NumPy and integral floats become ints; bools and the rest fail."""
    if isinstance(item, bool | np.bool_):
        raise CamError(f"a class is an index, a name or topK, not {item!r}")
    if isinstance(item, int | np.integer):
        return int(item)
    if isinstance(item, float | np.floating):
        if float(item).is_integer():
            return int(item)
        raise CamError(f"class {item!r} is not an index: give a whole number, a name or topK")
    if isinstance(item, str):
        return int(item) if item.lstrip("-").isdigit() else item
    raise CamError(f"a class is an index, a name or topK, not a {type(item).__name__}")


def match_classes(
    query: str, class_names: Sequence[str], scores: Sequence[float] | None = None, limit: int = 12
) -> list[int]:
    """Class ids whose name matches ``query``, best first: by name, words, then spelling.

    Ranks an exact name (any case) first, then names with ``query`` as a whole word ("cat" →
    "Egyptian cat", "tiger cat"), then names with a word starting with it ("cat" → "catamaran"),
    then names containing it ("polecat"); close spellings (difflib) only when none of these match.
    Within a rank, by ``scores`` (e.g. the image's probabilities) when given, else by index.
    """
    q = " ".join(query.lower().split())
    if not q:
        return []
    ranked: dict[int, int] = {}
    for i, name in enumerate(class_names):
        low = name.lower()
        words = re.findall(r"[a-z0-9]+", low)
        if low == q:
            ranked[i] = 0
        elif re.search(rf"(?<![a-z0-9]){re.escape(q)}(?![a-z0-9])", low):
            ranked[i] = 1
        elif any(w.startswith(q) for w in words):
            ranked[i] = 2
        elif q in low:
            ranked[i] = 3
    if not ranked:  # spelling only when nothing matches by name: "cat" must not suggest "cab"
        lower = [n.lower() for n in class_names]
        for name in difflib.get_close_matches(q, lower, n=limit, cutoff=0.6):
            ranked.setdefault(lower.index(name), 4)

    def order(i: int) -> tuple[int, float, int]:
        return ranked[i], -float(scores[i]) if scores is not None else 0.0, i

    return sorted(ranked, key=order)[:limit]
