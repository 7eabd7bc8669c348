"""bench_load's floor: the least slow-down CPU-seconds alone force on pages opened together (hand-computed cases)."""

from __future__ import annotations

import pytest

pytest.importorskip("playwright.async_api", reason="playwright is not installed")

from benchmarks.bench_load import open_floor


def test_the_floor_is_the_best_group_s_cpu_over_the_cores_and_its_longest_open() -> None:
    opens = {"a": (3.0, 3.3), "b": (3.0, 3.3), "c": (1.0, 0.2)}
    # all three: (3.3 + 3.3 + 0.2) / 2 = 3.4 s of two CPUs before the last is drawn; the longest alone took 3.0 s
    ratio, group = open_floor(opens, {"a": 0.0, "b": 0.0, "c": 0.0}, cores=2)
    assert ratio == pytest.approx(3.4 / 3.0) and group == ["a", "b", "c"]


def test_a_later_start_is_taken_off_what_the_last_page_waited() -> None:
    opens = {"a": (3.0, 3.3), "b": (3.0, 3.3), "c": (1.0, 0.2)}
    # c began 0.5 s after the others: with c, (3.4 - 0.5) / 3.0 = 0.97; a and b alone give 3.3 / 3.0 = 1.1
    ratio, group = open_floor(opens, {"a": 0.0, "b": 0.0, "c": 0.5}, cores=2)
    assert ratio == pytest.approx(1.1) and group == ["a", "b"]


def test_one_page_on_many_cpus_forces_no_slow_down() -> None:
    ratio, _ = open_floor({"a": (3.0, 3.3)}, {"a": 0.0}, cores=16)
    assert ratio == pytest.approx(3.3 / 16 / 3.0) and ratio < 1  # below 1: nothing forces it slower than alone
