"""Interactive calls first: long perturbation runs step aside while a short explain() computes.

A shared dashboard runs every visitor's work in one process. Score-CAM and its kin run hundreds
of masked forwards (a minute on 2 CPU cores); were they to compete with a class toggle for the
cores, that toggle would take several times as long. So every explain() marks its main forward
and backward as *foreground* work, and each batch of a perturbation run first waits (at most
:data:`MAX_WAIT_S`, so that it always progresses) until no foreground work is running.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["MAX_WAIT_S", "foreground", "yield_to_foreground"]

MAX_WAIT_S = 2.0

_busy = 0
_changed = threading.Condition()


@contextmanager
def foreground() -> Iterator[None]:
    """Mark the block as foreground work (re-entrant, any thread)."""
    global _busy
    with _changed:
        _busy += 1
    try:
        yield
    finally:
        with _changed:
            _busy -= 1
            _changed.notify_all()


def yield_to_foreground(max_wait_s: float = MAX_WAIT_S) -> None:
    """Wait until no foreground work runs, or ``max_wait_s`` at most; call between the batches of long work."""
    with _changed:
        _changed.wait_for(lambda: _busy == 0, timeout=max_wait_s)
