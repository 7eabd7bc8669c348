"""One bounded, thread-safe cache: least recently used out, by bytes and/or by count.

Why one: the engine (fused copies), the dashboard's process-wide caches (models, images, maps, figures,
thumbnails) and a session's results all keep what is costly to rebuild, and each needs the same three
things: a bound so memory stays flat, a lock so threads (browser sessions) can share it, and one build
per entry when several callers ask for it at the same moment. It sits at the bottom of ``cam_core``
(nothing of torch or Streamlit) so every layer above can use it.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

__all__ = ["BoundedCache"]

V = TypeVar("V")
_MISSING = object()


class _Flight:
    """One build in progress: its waiters block on ``done``; ``error`` is the build's exception, if any."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.value: object = None
        self.error: BaseException | None = None


class BoundedCache(Generic[V]):
    """An LRU bounded by ``max_bytes`` (as ``sizeof`` counts) and/or ``max_entries``; the newest entry always stays.

    Builds run outside the cache's lock, so a slow build never blocks a hit on another key.

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
        self._flights: dict[Hashable, _Flight] = {}

    @property
    def nbytes(self) -> int:
        """Bytes held now (as ``sizeof`` counts them)."""
        return self._bytes

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: Hashable) -> bool:
        with self._lock:
            return key in self._items

    def keys(self) -> list[Hashable]:
        """The keys kept, least recently used first."""
        with self._lock:
            return list(self._items)

    def values(self) -> list[V]:
        """The values kept, least recently used first."""
        with self._lock:
            return [v for v, _ in self._items.values()]

    def get(self, key: Hashable, default: V | None = None) -> V | None:
        """The value for ``key`` (marked as just used), or ``default``."""
        with self._lock:
            found = self._items.get(key, _MISSING)
            if found is _MISSING:
                return default
            self._items.move_to_end(key)
            return found[0]  # type: ignore[index]

    def put(self, key: Hashable, value: V) -> V:
        """Keep ``value`` for ``key``, dropping the least recently used beyond the bounds; returns ``value``."""
        size = self._sizeof(value)
        with self._lock:
            self._put(key, value, size)
        return value

    def _put(self, key: Hashable, value: V, size: int) -> None:
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

    def pop(self, key: Hashable) -> V | None:
        """Forget ``key``; its value, or ``None``."""
        with self._lock:
            old = self._items.pop(key, None)
            if old is None:
                return None
            self._bytes -= old[1]
            return old[0]

    def get_or_build(self, key: Hashable, build: Callable[[], V]) -> V:
        """The value for ``key``, calling ``build`` once if it is not kept (single flight).

        Callers asking for a key while it is being built wait for that build and get its value. A build
        that raises caches nothing: its waiters get the same exception, and the next call builds again.
        """
        with self._lock:
            found = self._items.get(key, _MISSING)
            if found is not _MISSING:
                self._items.move_to_end(key)
                return found[0]  # type: ignore[index]
            flight = self._flights.get(key)
            owner = flight is None
            if owner:
                flight = self._flights[key] = _Flight()
        assert flight is not None
        if not owner:
            flight.done.wait()
            if flight.error is not None:
                raise flight.error
            return flight.value  # type: ignore[return-value]
        try:
            value = build()
            size = self._sizeof(value)
        except BaseException as exc:
            with self._lock:
                del self._flights[key]
            flight.error = exc
            flight.done.set()
            raise
        with self._lock:
            self._put(key, value, size)
            del self._flights[key]
        flight.value = value
        flight.done.set()
        return value

    def clear(self) -> None:
        """Drop everything (builds in progress still finish and are kept)."""
        with self._lock:
            self._items.clear()
            self._bytes = 0
