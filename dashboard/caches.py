"""Bounded, thread-safe caches shared by every session: least recently used out, by bytes or by count.

The dashboard keeps what is costly to rebuild (models, decoded images, figures) once per process
for all sessions, and each of these caches has a bound (see :mod:`cam_core.limits`), so memory
stays flat however many images and models visitors go through. A value is built once even when
several sessions ask for it at the same moment (one lock per key); building happens outside the
cache's own lock, so a slow build never blocks a hit.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

__all__ = ["BoundedCache"]

V = TypeVar("V")


class BoundedCache(Generic[V]):
    """An LRU bounded by ``max_bytes`` (with ``sizeof``) and/or ``max_entries``; the newest entry always stays.

    Args:
        max_bytes: Total size allowed, as measured by ``sizeof`` (``None``: no byte bound).
        max_entries: Entries allowed (``None``: no count bound).
        sizeof: Bytes of a value (default 0: count-bounded only).
    """

    def __init__(
        self,
        *,
        max_bytes: int | None = None,
        max_entries: int | None = None,
        sizeof: Callable[[V], int] = lambda _v: 0,
    ) -> None:
        self.max_bytes, self.max_entries, self._sizeof = max_bytes, max_entries, sizeof
        self._items: OrderedDict[Hashable, tuple[V, int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self._building: dict[Hashable, threading.Lock] = {}

    @property
    def nbytes(self) -> int:
        """Bytes held now (as ``sizeof`` counts them)."""
        return self._bytes

    def __len__(self) -> int:
        return len(self._items)

    def values(self) -> list[V]:
        """The values kept, least recently used first."""
        with self._lock:
            return [v for v, _ in self._items.values()]

    def get(self, key: Hashable) -> V | None:
        """The value for ``key`` (marked as just used), or ``None``."""
        with self._lock:
            found = self._items.get(key)
            if found is None:
                return None
            self._items.move_to_end(key)
            return found[0]

    def put(self, key: Hashable, value: V) -> V:
        """Keep ``value`` for ``key``, dropping the least recently used beyond the bounds."""
        size = self._sizeof(value)
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._bytes -= old[1]
            self._items[key] = (value, size)
            self._bytes += size
            while len(self._items) > 1 and (
                (self.max_bytes is not None and self._bytes > self.max_bytes)
                or (self.max_entries is not None and len(self._items) > self.max_entries)
            ):
                _, (_, dropped) = self._items.popitem(last=False)
                self._bytes -= dropped
        return value

    def get_or_build(self, key: Hashable, build: Callable[[], V]) -> V:
        """The value for ``key``, built once (other callers of the same key wait for it) if not kept."""
        found = self.get(key)
        if found is not None:
            return found
        with self._lock:
            lock = self._building.setdefault(key, threading.Lock())
        with lock:
            found = self.get(key)
            if found is None:
                try:
                    found = self.put(key, build())
                finally:
                    with self._lock:
                        self._building.pop(key, None)
        return found

    def clear(self) -> None:
        """Drop everything."""
        with self._lock:
            self._items.clear()
            self._bytes = 0
