"""Output folders the user names (``--out``): created, or one clear line why not."""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import CamError

__all__ = ["output_folder"]


def output_folder(path: str | os.PathLike[str]) -> Path:
    """The folder ``path``, created if needed.

    Raises:
        CamError: ``path`` is a file, or the folder cannot be made.
    """
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise CamError(f"--out {os.fspath(path)} is a file; give a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CamError(f"cannot create the output folder {os.fspath(path)}: {exc.strerror or exc}") from exc
    return out
