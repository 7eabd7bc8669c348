"""The versions of what produced a result (Python and the packages that shape the numbers), for the records a
run or a report keeps: a number read months later can be traced to the code that made it."""

from __future__ import annotations

import platform
from collections.abc import Sequence
from importlib import metadata

__all__ = ["versions"]

_PACKAGES = ("cam-dashboard", "torch", "torchvision", "pyarrow", "numpy", "pillow")


def versions(extra: Sequence[str] = ()) -> dict[str, str]:
    """Python's version and each installed package's (``extra``: more distribution names); absent ones left out."""
    found = {"python": platform.python_version()}
    for dist in (*_PACKAGES, *extra):
        try:
            found[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return found
