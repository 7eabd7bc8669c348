"""Interactive calls first: long perturbation runs step aside while a short explain() computes.

A shared dashboard runs every visitor's work in one process. Score-CAM and its kin run hundreds
of masked forwards (a minute on 2 CPU cores); were they to compete with a class toggle for the
cores, that toggle would take several times as long. So every explain() marks its main forward
and backward as *foreground* work, and each batch of a perturbation run first waits (at most
:data:`MAX_WAIT_S`, so that it always progresses) until no foreground work is running.

Waiting between batches is not enough while a batch computes: another visitor's page (figures,
JSON, Python) needs the cores too. So the batches themselves run on a background thread at a
lower CPU priority (:func:`background`; Linux, where a thread has a nice value of its own): the
threads that torch's OpenMP starts for it inherit that priority. Alone, a run is as fast as before.

*Lower* must not mean *never*: at nice 19 (the lowest) Linux gives a thread about 1/70 of a normal
thread's share of a busy core, so Score-CAM next to two busy processes on two cores read "forward 1
of 20" for half a minute and took 9× as long as alone. :data:`BACKGROUND_NICE` is a moderate 5:
about a third of a normal thread's share (:func:`cpu_share`), so a long run always progresses at a
fair pace under load, while interactive work still gets three quarters of a core it shares with it
(and every foreground explain() runs alone between batches: :func:`yield_to_foreground`).
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from typing import TypeVar

import torch

__all__ = ["BACKGROUND_NICE", "MAX_WAIT_S", "MIN_SHARE", "background", "cpu_share", "foreground",
           "yield_to_foreground"]

T = TypeVar("T")
BACKGROUND_NICE = 5  # a moderate priority: about a third of a normal thread's CPU share (see cpu_share)
MIN_SHARE = 0.25  # the least share of a normal thread's CPU a long run may get on a busy core

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


def cpu_share(nice: int) -> float:
    """The CPU a thread at ``nice`` gets on a busy core, as a fraction of a nice-0 thread's: Linux's scheduler
    weighs each nice step by about 1.25 (its weight table: 1024 at 0, 335 at 5, 110 at 10, 15 at 19)."""
    return 1.25 ** (-nice)


def _lower_priority() -> None:
    """Give this thread (and the threads it starts) the background CPU priority, where threads have their own."""
    if sys.platform.startswith("linux"):
        with suppress(OSError):  # not allowed here: the work runs at the normal priority
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), BACKGROUND_NICE)


@contextmanager
def background() -> Iterator[Callable[[Callable[[], T]], T]]:
    """A thread at the background CPU priority (:data:`BACKGROUND_NICE`) for one long run: ``run(fn)`` calls ``fn``
    there and returns its result.

    One thread per run (and its own OpenMP threads, which inherit its priority and take torch's thread count
    of the moment), so that concurrent runs stay concurrent; ``fn`` gets the caller's grad mode.
    """
    with ThreadPoolExecutor(1, thread_name_prefix="cam-background", initializer=_lower_priority) as pool:

        def run(fn: Callable[[], T]) -> T:
            grad = torch.is_grad_enabled()

            def task() -> T:
                with torch.set_grad_enabled(grad):
                    return fn()

            return pool.submit(task).result()

        yield run
