"""The one bounded cache (cam_core.cache.BoundedCache): LRU order, both bounds, single-flight builds, failures."""

from __future__ import annotations

import threading
import time

import pytest

from cam_core.cache import BoundedCache


def test_the_least_recently_used_goes_first() -> None:
    cache: BoundedCache[int] = BoundedCache(max_entries=3)
    for k in "abc":
        cache.put(k, ord(k))
    assert cache.get("a") == ord("a")  # a is now the most recent: b is the oldest
    cache.put("d", 4)
    assert "b" not in cache
    assert [cache.get(k) for k in "acd"] == [ord("a"), ord("c"), 4]
    cache.put("e", 5)  # the get above made a, c, d recent in that order: a goes
    assert "a" not in cache and len(cache) == 3
    assert cache.values() == [ord("c"), 4, 5] and cache.keys() == ["c", "d", "e"]


def test_the_byte_bound_counts_sizeof_and_the_newest_always_stays() -> None:
    cache: BoundedCache[bytes] = BoundedCache(max_bytes=10, sizeof=len)
    cache.put("a", b"1234")
    cache.put("b", b"5678")
    assert cache.nbytes == 8
    cache.put("c", b"90")  # exactly 10: nothing goes
    assert len(cache) == 3 and cache.nbytes == 10
    cache.put("d", b"x")  # 11: the oldest (4 bytes) goes
    assert "a" not in cache and cache.nbytes == 7
    cache.put("b", b"")  # replacing an entry replaces its size
    assert cache.nbytes == 3
    cache.put("big", b"y" * 50)  # larger than the bound: everything else goes, it stays
    assert cache.values() == [b"y" * 50] and cache.nbytes == 50
    assert cache.pop("big") == b"y" * 50 and cache.nbytes == 0 and len(cache) == 0


def test_both_bounds_at_once_and_clear() -> None:
    cache: BoundedCache[bytes] = BoundedCache(max_bytes=100, max_entries=2, sizeof=len)
    for k in "abc":
        cache.put(k, b"z")
    assert len(cache) == 2 and "a" not in cache
    cache.clear()
    assert len(cache) == 0 and cache.nbytes == 0 and cache.get("b") is None


def test_a_falsy_value_is_a_hit() -> None:
    cache: BoundedCache[int] = BoundedCache(max_entries=4)
    calls = []
    assert cache.get_or_build("zero", lambda: calls.append(1) or 0) == 0
    assert cache.get_or_build("zero", lambda: calls.append(1) or 0) == 0
    assert calls == [1] and cache.get("missing", -1) == -1


def test_concurrent_callers_build_once() -> None:
    cache: BoundedCache[str] = BoundedCache(max_entries=4)
    started, release = threading.Event(), threading.Event()
    builds: list[int] = []

    def build() -> str:
        builds.append(1)
        started.set()
        assert release.wait(5)
        return "value"

    results: list[str] = []
    threads = [threading.Thread(target=lambda: results.append(cache.get_or_build("k", build))) for _ in range(8)]
    threads[0].start()
    assert started.wait(5)  # the first caller is building; the others arrive while it builds
    for t in threads[1:]:
        t.start()
    other = cache.get_or_build("other", lambda: "fast")  # another key is not blocked by that build
    time.sleep(0.2)  # let the others reach the flight: without single flight each would build
    release.set()
    for t in threads:
        t.join(5)
    assert other == "fast"
    assert builds == [1] and results == ["value"] * 8


def test_a_failed_build_is_not_cached_and_releases_its_waiters() -> None:
    cache: BoundedCache[str] = BoundedCache(max_entries=4)
    started, release = threading.Event(), threading.Event()

    def failing() -> str:
        started.set()
        assert release.wait(5)
        raise ValueError("no")

    errors: list[BaseException] = []

    def call() -> None:
        try:
            cache.get_or_build("k", failing)
        except ValueError as exc:
            errors.append(exc)

    first = threading.Thread(target=call)
    first.start()
    assert started.wait(5)
    waiters = [threading.Thread(target=call) for _ in range(3)]
    for t in waiters:
        t.start()
    time.sleep(0.2)
    release.set()
    for t in (first, *waiters):
        t.join(5)
        assert not t.is_alive()  # nobody is left waiting
    assert len(errors) == 4 and "k" not in cache and len(cache) == 0
    assert cache.get_or_build("k", lambda: "later") == "later"  # the next call builds again


def test_a_build_error_propagates_to_the_caller() -> None:
    cache: BoundedCache[int] = BoundedCache(max_entries=1)
    with pytest.raises(KeyError):
        cache.get_or_build("k", lambda: {}["missing"])
    assert cache.get_or_build("k", lambda: 1) == 1
