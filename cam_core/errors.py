"""User-facing errors.

Every mistake a user can make (unknown model, layer, class, method; unreadable
image; untrusted checkpoint) raises a subclass of :class:`CamError`. The CLI
turns it into one line and exit status 2, the dashboard into ``st.error``;
anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["CamError", "choices_hint"]


class CamError(ValueError):
    """A problem with what the user asked for, worded for the user."""


def choices_hint(valid: Iterable[str], limit: int = 12) -> str:
    """Format valid choices for an error message, shortened when there are many."""
    items = list(valid)
    shown = ", ".join(items[:limit])
    if len(items) > limit:
        shown += f", … ({len(items)} in all)"
    return shown
