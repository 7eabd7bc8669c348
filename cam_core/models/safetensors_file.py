"""State dicts in the safetensors format: tensors and a JSON header, nothing that can run code.

So a ``.safetensors`` file never needs ``trust_checkpoint``: it is read wherever a state dict is
taken (``--arch``, a factory's ``--checkpoint``, ``timm:NAME --checkpoint``, the page's upload).
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..errors import CamError

__all__ = ["SAFETENSORS_SUFFIX", "is_safetensors", "read_safetensors"]

SAFETENSORS_SUFFIX = ".safetensors"


def is_safetensors(path: Path) -> bool:
    """Whether ``path`` is named as a safetensors file."""
    return path.name.lower().endswith(SAFETENSORS_SUFFIX)


def read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    """The state dict in ``path`` (on the CPU).

    Raises:
        CamError: safetensors is not installed, or the file is not a readable safetensors file.
    """
    try:
        from safetensors import SafetensorError
        from safetensors.torch import load_file
    except ImportError as exc:  # pragma: no cover - a runtime dependency
        raise CamError("reading .safetensors files needs the safetensors package: pip install safetensors") from exc
    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CamError(f"{path} is not a safetensors file that can be read: {first}") from exc
