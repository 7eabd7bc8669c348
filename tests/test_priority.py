"""Interactive work first: perturbation batches wait for foreground explain() calls (by order, never by timing)."""

from __future__ import annotations

import os
import sys
import threading

import pytest
import torch

import cam_core
from cam_core.engine import perturb, priority


def test_a_batch_waits_until_foreground_work_ends():
    entered, release, order = threading.Event(), threading.Event(), []

    def visitor() -> None:
        with priority.foreground():
            entered.set()
            release.wait()
            order.append("foreground done")

    t = threading.Thread(target=visitor)
    t.start()
    entered.wait()
    threading.Timer(0.2, release.set).start()
    priority.yield_to_foreground(max_wait_s=60)
    order.append("batch runs")
    t.join()
    assert order == ["foreground done", "batch runs"]


def test_the_wait_is_bounded_so_long_work_always_progresses():
    entered, release = threading.Event(), threading.Event()

    def busy() -> None:
        with priority.foreground():
            entered.set()
            release.wait()

    t = threading.Thread(target=busy)
    t.start()
    entered.wait()
    priority.yield_to_foreground(max_wait_s=0.05)  # returns although the foreground work goes on
    release.set()
    t.join()


def test_every_score_cam_batch_yields_first(monkeypatch):
    from tests.tiny import gapnet

    calls = []
    monkeypatch.setattr(perturb, "yield_to_foreground", lambda: calls.append(1))
    res = cam_core.explain(gapnet(), torch.randn(1, 3, 16, 16), layer="features", classes=[0],
                           methods=["scorecam"], batch_size=3)
    assert len(calls) == res.cost["forwards"] - 1  # every masked batch; the first forward is the explain itself


linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="threads have no nice value of their own")


@linux_only
def test_score_cam_batches_compute_at_the_background_priority():
    """The masked batches run on the background thread (a lower priority: the OS serves other threads first);
    the call's own forward runs at the caller's priority."""
    from tests.tiny import gapnet

    model, seen = gapnet(), []
    model.register_forward_hook(lambda *_: seen.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id())))
    own = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    res = cam_core.explain(model, torch.randn(1, 3, 16, 16), layer="features", classes=[0],
                           methods=["scorecam"], batch_size=3)
    assert own < priority.BACKGROUND_NICE
    assert seen.count(priority.BACKGROUND_NICE) == res.cost["forwards"] - 1  # every masked batch
    assert set(seen) == {own, priority.BACKGROUND_NICE}  # the rest: explain's own forward (and the copy's check)


def test_background_work_keeps_the_callers_grad_mode_and_errors():
    with priority.background() as run:
        with torch.no_grad():
            assert run(torch.is_grad_enabled) is False
        assert run(torch.is_grad_enabled) is True

        def fails() -> None:
            raise ValueError("from the background thread")

        with pytest.raises(ValueError, match="background thread"):
            run(fails)


def test_concurrent_runs_each_get_a_background_thread_of_their_own():
    """Two runs at once (two compute streams of a folder run) are not serialised on one thread."""
    inside, names = threading.Barrier(2, timeout=60), []  # serialised runs would break it, not hang

    def one_run() -> None:
        with priority.background() as run:
            names.append(run(lambda: (inside.wait(), threading.current_thread().name, threading.get_native_id())[1:]))

    runs = [threading.Thread(target=one_run) for _ in range(2)]
    for t in runs:
        t.start()
    for t in runs:
        t.join()
    assert len({tid for _, tid in names}) == 2 and all(n.startswith("cam-background") for n, _ in names)


def test_lowest_priority_does_not_mean_never():
    # At nice 19 a thread got about 1/70 of a normal thread's share of a busy core: Score-CAM next to a busy
    # machine read "forward 1 of 20" for half a minute. The background priority must keep a fair share.
    assert priority.cpu_share(19) < 0.02  # what starved
    assert priority.cpu_share(priority.BACKGROUND_NICE) >= priority.MIN_SHARE
    assert 0 < priority.BACKGROUND_NICE < 19  # still below interactive work
    assert priority.cpu_share(0) == 1.0 and priority.cpu_share(10) == pytest.approx(110 / 1024, rel=0.05)


def test_eta_text_at_the_pace_so_far():
    assert perturb.eta_text(1, 20, 3.0) == ""  # too early to say
    assert perturb.eta_text(2, 20, 4.0) == "about 36 s left"  # 2 s a forward, 18 to go
    assert perturb.eta_text(5, 20, 2.6) == "about 8 s left"  # rounded up
    assert perturb.eta_text(10, 100, 20.0) == "about 3 min left"  # 180 s
    assert perturb.eta_text(20, 20, 40.0) == ""  # done


def test_score_cam_progress_says_how_long_is_left():
    from tests.tiny import gapnet

    seen: list[str] = []
    cam_core.explain(gapnet(), torch.randn(1, 3, 16, 16), layer="features", classes=[0], methods=["scorecam"],
                     batch_size=1, progress=lambda f, text: seen.append(text))
    scorecam = [t for t in seen if t.startswith("Score-CAM: forward")]
    assert len(scorecam) >= 3, seen
    assert "left" not in scorecam[0]  # the first batch alone says nothing about the pace
    assert all(" s left" in t or " min left" in t for t in scorecam[1:-1]), scorecam
