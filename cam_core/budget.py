"""What a model *declares* it needs, checked before a weight is allocated.

A model's files say how big it is long before its weights are read: a Hugging Face ``config.json``
declares every layer's width (410 bytes declared a 4.8 B-parameter ViT, and transformers allocated the
missing weights at full size); a state dict declares each tensor's shape (a 36 KB ``torch.save`` of
stride-0 views declared a 1 000 000-class ``fc.weight``, and the loader sized the head from it, +2.6 GB);
a safetensors header lists shapes and dtypes. So the counts here come from shapes and configs, never
from storage, and a breach is one :class:`ModelTooLarge` line that names the limit
(:data:`~cam_core.limits.MAX_MODEL_PARAMS`, :data:`~cam_core.limits.MAX_MODEL_BYTES`,
:data:`~cam_core.limits.MAX_CLASSES`). Image sizes that a ``preprocessor_config.json`` asks for are held
to the bounds of ``--input-size`` (:func:`check_input_side`).

Nothing here loads weights; transformers is imported only by :func:`hf_declared_size` and
:func:`check_hf_model` (optional extra), and the model they build lives on the ``meta`` device (no memory).
"""

from __future__ import annotations

import json
import math
import os
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .errors import CamError
from .limits import (
    MAX_CLASSES,
    MAX_CONFIG_BYTES,
    MAX_INPUT_SIDE,
    MAX_MODEL_BYTES,
    MAX_MODEL_PARAMS,
    MIN_INPUT_SIDE,
)

__all__ = [
    "MAX_SAFETENSORS_HEADER_BYTES",
    "Declared",
    "InputSizeError",
    "ModelTooLarge",
    "TensorSpec",
    "check_declared",
    "check_hf_model",
    "check_input_side",
    "check_num_classes",
    "check_preprocessor_config",
    "check_safetensors",
    "check_state_dict",
    "declared_size",
    "hf_declared_size",
    "read_config",
    "safetensors_header",
]

MAX_SAFETENSORS_HEADER_BYTES = 16 * 2**20
"""Largest safetensors JSON header read (a classifier with 2000 tensors has a header of about 200 KB)."""

# safetensors dtype names → bytes per element (https://github.com/huggingface/safetensors, format spec).
_ST_DTYPE_BYTES = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1, "F8_E8M0": 1, "F4": 1, "F6_E2M3": 1, "F6_E3M2": 1,
    "U16": 2, "I16": 2, "F16": 2, "BF16": 2,
    "U32": 4, "I32": 4, "F32": 4,
    "U64": 8, "I64": 8, "F64": 8, "C64": 8,
}


class ModelTooLarge(CamError):
    """A model whose files declare more parameters, bytes or classes than this server takes (or no classes)."""


class InputSizeError(CamError):
    """An input size (``--input-size``, a ``preprocessor_config.json``) outside the allowed sides."""


@dataclass(frozen=True)
class TensorSpec:
    """A tensor as a file declares it, before anything is read: its shape and bytes per element."""

    shape: tuple[int, ...]
    itemsize: int

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


@dataclass(frozen=True)
class Declared:
    """What a model declares: elements (parameters and buffers) and their bytes."""

    params: int
    nbytes: int


def _amount(nbytes: int) -> str:
    """``16 MB`` or ``1024 GB``: a file size for a message."""
    return f"{nbytes / 2**30:.0f} GB" if nbytes >= 2**30 else f"{nbytes / 2**20:.0f} MB" if nbytes >= 2**20 else (
        f"{nbytes} bytes"
    )


def _exact(n: int) -> str:
    """``1 000 000``: a count shown in full."""
    return f"{n:,}".replace(",", " ")


def _gb(nbytes: int) -> str:
    return f"{nbytes / 1e9:.1f} GB"


def _count(n: int) -> str:
    """``4.8 B``, ``632 M``, ``12 345``."""
    if n >= 1e9:
        return f"{n / 1e9:.1f} B"
    if n >= 1e6:
        return f"{n / 1e6:.0f} M"
    return f"{n:,}".replace(",", " ")


def check_declared(declared: Declared, what: str = "the model") -> None:
    """Refuse a model declaring more than :data:`MAX_MODEL_PARAMS` parameters or :data:`MAX_MODEL_BYTES` bytes.

    Raises:
        ModelTooLarge: One line: what it declares, and this server's limit.
    """
    if declared.params > MAX_MODEL_PARAMS or declared.nbytes > MAX_MODEL_BYTES:
        raise ModelTooLarge(
            f"{what} declares {_count(declared.params)} parameters ({_gb(declared.nbytes)}); this server's limit is "
            f"{_count(MAX_MODEL_PARAMS)} parameters ({_gb(MAX_MODEL_BYTES)})"
        )


def check_num_classes(n: int, what: str = "the model's head") -> None:
    """Refuse a head of no class or of more than :data:`MAX_CLASSES` classes (before it is built).

    Raises:
        ModelTooLarge: ``n`` is below 1 or above the limit.
    """
    if n < 1:
        raise ModelTooLarge(f"{what} has {n} classes: a classifier needs at least one")
    if n > MAX_CLASSES:
        raise ModelTooLarge(f"{what} has {_exact(n)} classes; this server's limit is {_exact(MAX_CLASSES)}")


def _spec(value: object) -> TensorSpec | None:
    if isinstance(value, TensorSpec):
        return value
    if isinstance(value, torch.Tensor):  # by its shape: a stride-0 view of one number may declare gigabytes
        return TensorSpec(tuple(value.shape), value.element_size())
    return None


def declared_size(tensors: Mapping[str, object]) -> Declared:
    """Elements and bytes of a state dict (tensors, possibly stride-0 views) or of a safetensors header's
    :class:`TensorSpec` entries, counted by **shape**, not by storage; other values are ignored."""
    params = nbytes = 0
    for value in tensors.values():
        spec = _spec(value)
        if spec is not None:
            params += spec.numel
            nbytes += spec.numel * spec.itemsize
    return Declared(params, nbytes)


def check_state_dict(
    tensors: Mapping[str, object], head: str | None = None, what: str = "the weights"
) -> int | None:
    """Check a state dict (or a safetensors header) before a model is built from it or it is copied in.

    Args:
        tensors: Key → tensor (views welcome) or :class:`TensorSpec`.
        head: Key of the classifier weight whose first dimension is the class count (``fc.weight``), if known.
        what: How to call the weights in messages (a file *name*, never a server path).

    Returns:
        The head's class count, or ``None`` without ``head`` or when the key is absent.

    Raises:
        ModelTooLarge: Beyond the parameter, byte or class limits, or a head of 0 classes.
    """
    check_declared(declared_size(tensors), what)
    spec = _spec(tensors.get(head)) if head is not None else None
    if spec is None:
        return None
    if not spec.shape:
        raise ModelTooLarge(f"{what}: the head {head} is a single number, not a classifier weight")
    check_num_classes(spec.shape[0], f"{what}: the head {head}")
    return spec.shape[0]


def safetensors_header(path: str | Path, name: str | None = None) -> dict[str, TensorSpec]:
    """The tensors a safetensors file declares, from its JSON header alone (no tensor is read).

    Raises:
        CamError: Not a safetensors file, or a header beyond :data:`MAX_SAFETENSORS_HEADER_BYTES`.
    """
    label = name or Path(path).name
    bad = f"{label} is not a safetensors file that can be read"
    try:
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise CamError(f"{bad}: it is shorter than a header")
            (length,) = struct.unpack("<Q", head)
            if length > os.fstat(f.fileno()).st_size - 8:  # not a length at all: a file of another kind
                raise CamError(f"{bad}: its header would run past the end of the file")
            if length > MAX_SAFETENSORS_HEADER_BYTES:
                limit = _amount(MAX_SAFETENSORS_HEADER_BYTES)
                raise ModelTooLarge(f"{label} has a header of {_amount(length)}; at most {limit} are read")
            text = f.read(length)
    except OSError as exc:
        raise CamError(f"cannot read {label}: {exc.strerror or type(exc).__name__}") from exc
    try:
        header = json.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CamError(f"{bad}: its header is not JSON") from exc
    if len(text) < length or not isinstance(header, dict):
        raise CamError(f"{bad}: its header is truncated or not a JSON object")
    specs: dict[str, TensorSpec] = {}
    for key, entry in header.items():
        if key == "__metadata__":
            continue
        shape = entry.get("shape") if isinstance(entry, dict) else None
        dtype = entry.get("dtype") if isinstance(entry, dict) else None
        if (
            not isinstance(shape, list)
            or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)
            or dtype not in _ST_DTYPE_BYTES
        ):
            raise CamError(f"{bad}: tensor {str(key)[:80]!r} has no valid shape and dtype")
        specs[str(key)] = TensorSpec(tuple(shape), _ST_DTYPE_BYTES[dtype])
    return specs


def check_safetensors(path: str | Path, head: str | None = None, name: str | None = None) -> int | None:
    """:func:`check_state_dict` on a safetensors file's header, before its tensors are read.

    Returns:
        The head's class count (``None`` without ``head`` or when absent).
    """
    label = name or Path(path).name
    return check_state_dict(safetensors_header(path, label), head, label)


# ---- Hugging Face (transformers imported lazily: an optional extra) -----------------------------------------
def read_config(path: str | Path, name: str | None = None) -> dict[str, Any]:
    """A JSON object from ``config.json`` / ``preprocessor_config.json``, refusing files beyond
    :data:`MAX_CONFIG_BYTES` before reading them.

    Raises:
        CamError: Too large, unreadable, not JSON, or not an object.
    """
    path = Path(path)
    label = name or path.name
    try:
        size = path.stat().st_size
        if size > MAX_CONFIG_BYTES:
            raise ModelTooLarge(f"{label} is {_amount(size)}; at most {_amount(MAX_CONFIG_BYTES)} are read")
        data = json.loads(path.read_bytes())
    except OSError as exc:
        raise CamError(f"cannot read {label}: {exc.strerror or type(exc).__name__}") from exc
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CamError(f"{label} is not valid JSON") from exc
    if not isinstance(data, dict):
        raise CamError(f"{label} does not hold a JSON object")
    return data


def hf_declared_size(config: Any) -> Declared:
    """Parameters and buffers of the image classifier a transformers config declares, counted on the
    ``meta`` device: the model is built without memory and without initialising a weight.

    Args:
        config: A ``transformers.PretrainedConfig``.

    Raises:
        CamError: transformers cannot build a classifier from this config.
    """
    import transformers  # optional extra; imported only here

    try:
        with torch.device("meta"):
            model = transformers.AutoModelForImageClassification.from_config(config, attn_implementation="eager")
    except Exception as exc:  # a config from a visitor: any failure to build is a message
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise CamError(f"config.json does not describe an image classifier transformers can build: {first}") from exc
    tensors = [*model.parameters(), *model.buffers()]
    return Declared(
        sum(t.numel() for t in tensors),
        sum(t.numel() * t.element_size() for t in tensors),
    )


def _config_path(source: str | Path) -> Path | None:
    folder = Path(source).expanduser()
    if folder.is_dir():
        path = folder / "config.json"
        return path if path.is_file() else None
    try:  # a hub id in the local cache: its config.json, never downloaded
        from transformers.utils import cached_file

        found = cached_file(str(source), "config.json", local_files_only=True)
    except (ImportError, OSError, ValueError):
        return None
    return Path(found) if found else None


def check_hf_model(source: str | Path, name: str | None = None) -> Declared:
    """Check a Hugging Face model folder (or cached hub id) by its ``config.json`` alone, before
    ``from_pretrained`` allocates anything: the file's size, its class count, and the parameters and bytes
    the classifier it declares would take (:func:`hf_declared_size`).

    Args:
        source: The folder (or hub id) ``hf:PATH`` names.
        name: How to call the model in messages (never the server's path).

    Returns:
        What the config declares (within the limits).

    Raises:
        ModelTooLarge: Beyond :data:`MAX_MODEL_PARAMS`, :data:`MAX_MODEL_BYTES` or :data:`MAX_CLASSES`, or no class.
        CamError: No readable config.json, or one transformers cannot build (remote code is never run).
    """
    label = name or Path(str(source)).name or str(source)
    path = _config_path(source)
    if path is None:
        raise CamError(f"{label} is not a Hugging Face model folder: it has no config.json")
    raw = read_config(path, f"{label}/config.json")
    id2label = raw.get("id2label")
    declared_classes = raw.get("num_labels", len(id2label) if isinstance(id2label, dict) else None)
    if isinstance(declared_classes, int) and not isinstance(declared_classes, bool):
        check_num_classes(declared_classes, label)  # before transformers builds a dict per label
    try:
        import transformers
    except ImportError as exc:
        raise CamError("transformers is not installed: pip install 'cam-dashboard[hf]'") from exc
    try:
        config = transformers.AutoConfig.from_pretrained(str(path.parent), local_files_only=True)
    except Exception as exc:  # unknown model_type, remote code asked for, bad values: one line
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        first = first.replace(str(path.parent), label).replace(str(path), f"{label}/config.json")  # no server paths
        if "trust_remote_code" in str(exc):
            first = "the model needs custom code from the folder (trust_remote_code), which is never run here"
        raise CamError(f"cannot read the config of {label}: {first}") from exc
    check_num_classes(int(getattr(config, "num_labels", 0) or 0), label)
    declared = hf_declared_size(config)
    check_declared(declared, label)
    return declared


def check_input_side(height: int, width: int | None = None, what: str = "input size") -> None:
    """Hold an input size to :data:`MIN_INPUT_SIDE`..:data:`MAX_INPUT_SIDE` a side (``--input-size``'s bounds).

    Raises:
        InputSizeError: A side outside the bounds, or not a whole number.
    """
    for side in (height,) if width is None else (height, width):
        whole = isinstance(side, int) and not isinstance(side, bool)
        if not whole or not MIN_INPUT_SIDE <= side <= MAX_INPUT_SIDE:
            shown = f"{height}×{width}" if width is not None else f"{height}"
            raise InputSizeError(
                f"{what} {shown} is outside {MIN_INPUT_SIDE}..{MAX_INPUT_SIDE} pixels a side"
            )


def _whole(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value != int(value):
        raise InputSizeError(f"preprocessor_config.json: {what} must be a whole number, got {str(value)[:40]!r}")
    return int(value)


def check_preprocessor_config(cfg: Mapping[str, Any]) -> None:
    """Hold the sizes a ``preprocessor_config.json`` asks for to the bounds of ``--input-size``: ``size`` and
    ``crop_size`` (an int, or ``height``/``width``/``shortest_edge``/``longest_edge``), and the resize a
    ``crop_pct`` implies (``shortest_edge / crop_pct``), before any preprocessing is built from them.

    Raises:
        InputSizeError: A size outside :data:`MIN_INPUT_SIDE`..:data:`MAX_INPUT_SIDE`, or not a number.
    """
    for key in ("size", "crop_size"):
        value = cfg.get(key)
        if value is None:
            continue
        items = value.items() if isinstance(value, Mapping) else [(key, value)]
        for part, side in items:
            if part in ("height", "width", "shortest_edge", "longest_edge", key):
                what = f"preprocessor_config.json: {key}" + (f".{part}" if part != key else "")
                check_input_side(_whole(side, what), what=what)
    size = cfg.get("size")
    short = size.get("shortest_edge") if isinstance(size, Mapping) else None
    pct = cfg.get("crop_pct")
    if short is not None and pct is not None:
        if isinstance(pct, bool) or not isinstance(pct, int | float) or not 0.05 <= pct <= 1.0:
            raise InputSizeError(f"preprocessor_config.json: crop_pct must be between 0.05 and 1, got {str(pct)[:40]}")
        check_input_side(int(short / pct), what="preprocessor_config.json: the resize shortest_edge / crop_pct")
