"""Three people on one dashboard at once (the CI version of benchmarks/bench_load.py, which runs six):
every session's maps are bit-identical to its run alone, and no hook is left on the shared model."""

from __future__ import annotations

import json
import shutil

import pytest

pytestmark = pytest.mark.e2e

if shutil.which("chromium") is None:
    pytest.skip("chromium is not installed (apt-get install -y chromium)", allow_module_level=True)
pytest.importorskip("playwright.async_api", reason="playwright is not installed")


def test_three_sessions_at_once_get_their_own_correct_maps() -> None:
    from benchmarks.bench_load import run

    report = run(3)
    print("\n" + json.dumps(report, indent=1))  # latencies alone and under load, for the record
    assert [s["same_maps"] for s in report["sessions"]] == [True, True, True]
    assert all(len(s["loaded"]) == len(s["alone"]) >= 3 for s in report["sessions"])  # every action completed
    assert report["hooks_on_models"] == 0
