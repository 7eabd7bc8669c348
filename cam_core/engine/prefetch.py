"""Items made in a background thread while the caller works on the previous ones.

Decoding (PyAV, Pillow) and preprocessing run in C with the GIL released, so a thread overlaps
them with the model's compute at no copying cost (no worker processes, nothing pickled). The queue
is bounded (memory stays flat whatever the input's length), and leaving the consumer's loop
early (an error, a cancel, a rerun) stops the thread at once.

On a small CPU a clip's frames (PyAV decoding, resizing) overlap well with the model; a folder's JPEGs
do not (the thread costs more than it hides: ``benchmarks/bench_batch.py``), so the folder engine decodes
in its compute streams (``cam_core.batch.streams``).
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Generic, TypeVar

__all__ = ["Prefetch", "batched"]

T = TypeVar("T")


class Prefetch(threading.Thread, Generic[T]):
    """Runs ``make()`` in a thread, ``depth`` items ahead; iterate :meth:`items` once. ``waiting``: seconds the
    consumer spent waiting for an item."""

    def __init__(self, make: Callable[[], Iterator[T]], depth: int = 2, name: str = "cam-prefetch") -> None:
        super().__init__(daemon=True, name=name)
        self.make = make
        self.queue: queue.Queue[tuple[str, object]] = queue.Queue(maxsize=depth)
        self.stop = threading.Event()
        self.waiting = 0.0

    def _put(self, kind: str, item: object) -> bool:
        while not self.stop.is_set():
            try:
                self.queue.put((kind, item), timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def run(self) -> None:
        try:
            for item in self.make():
                if not self._put("item", item):
                    return
            self._put("end", None)
        except BaseException as exc:  # handed to the consumer, which raises it in its own thread
            self._put("error", exc)

    def items(self) -> Iterator[T]:
        self.start()
        try:
            while True:
                start = time.perf_counter()
                kind, item = self.queue.get()
                self.waiting += time.perf_counter() - start
                if kind == "end":
                    return
                if kind == "error":
                    raise item  # type: ignore[misc]
                yield item  # type: ignore[misc]
        finally:
            self.stop.set()
            self.join(timeout=10)


def batched(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """Lists of ``size`` items in order (the last may be shorter); ``itertools.batched`` from Python 3.12."""
    batch: list[T] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch
