"""The warm start's progress, as a waiting page sees it."""

from __future__ import annotations

import threading

import pytest

from dashboard import warmup


def test_a_waiting_page_gets_each_step_as_it_happens(monkeypatch: pytest.MonkeyPatch) -> None:
    """``wait`` returns the new status as soon as the warm start moves on (no polling interval to sit out).

    The step is set only once the page is inside ``wait``, and the page waits with no timeout: were the
    step not announced, the page would still be waiting when the join below gives up.
    """
    monkeypatch.setitem(warmup._state, "status", warmup.Status(0.05, "loading"))
    seen, got = warmup.status(), []
    page = threading.Thread(target=lambda: got.append(warmup.wait(seen, timeout=None)), daemon=True)
    page.start()
    while True:  # until the page waits on the condition (it then sits in the condition's list of waiters)
        with warmup._changed:
            if warmup._changed._waiters:
                break
    warmup._set(0.6, "explaining the sample photo")
    page.join(timeout=30)
    assert not page.is_alive(), "the waiting page was not woken"
    (now,) = got
    assert (now.fraction, now.step, now.done) == (0.6, "explaining the sample photo", False)
    assert warmup.wait(now, timeout=0) == now  # nothing new: the same status, at once


def test_a_finished_warm_start_says_done_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(warmup._state, "status", warmup.Status(1.0, "ready", done=True))
    assert warmup.wait(warmup.Status(0.5, "older"), timeout=None).done
