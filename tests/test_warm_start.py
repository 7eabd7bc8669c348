"""The warm start's progress, as a waiting page sees it."""

from __future__ import annotations

import threading

import pytest

from dashboard import warmup


def test_a_waiting_page_gets_each_step_as_it_happens(monkeypatch: pytest.MonkeyPatch) -> None:
    """``wait`` returns the new status as soon as the warm start moves on (no polling interval to sit out)."""
    monkeypatch.setitem(warmup._state, "status", warmup.Status(0.05, "loading"))
    seen = warmup.status()
    go = threading.Event()

    def warm_start() -> None:
        go.wait()
        warmup._set(0.6, "explaining the sample photo")

    thread = threading.Thread(target=warm_start)
    thread.start()
    go.set()
    now = warmup.wait(seen, timeout=None)
    thread.join()
    assert (now.fraction, now.step, now.done) == (0.6, "explaining the sample photo", False)
    assert warmup.wait(now, timeout=0) == now  # nothing new: the same status, at once


def test_a_finished_warm_start_says_done_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(warmup._state, "status", warmup.Status(1.0, "ready", done=True))
    assert warmup.wait(warmup.Status(0.5, "older"), timeout=None).done
