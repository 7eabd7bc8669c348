"""Interactive work first: perturbation batches wait for foreground explain() calls (by order, never by timing)."""

from __future__ import annotations

import threading

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
