"""Start the dashboard for a browser test: the benchmarks' server (``streamlit run dashboard/app.py`` on a free
loopback port), with its output in the test's log."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

import pytest

from benchmarks.bench_ui import ServerDidNotStart, server

ROOT = Path(__file__).resolve().parents[1]


@contextmanager
def dashboard(log_dir: Path, env: dict[str, str] | None = None) -> Iterator[str]:
    """The app's URL while it runs (its output in ``log_dir/streamlit.log``); stopped afterwards."""
    with (log_dir / "streamlit.log").open("w") as log:
        try:
            with server(ROOT, env=env, output=log, start_s=60) as url:
                yield url
        except ServerDidNotStart:
            pytest.fail(f"streamlit did not start (see {log.name})")


def chromium_or_skip() -> tuple[str, ModuleType]:
    """Chromium's path and Playwright's sync API; the calling test module is skipped, saying why, without them."""
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("chromium is not installed (apt-get install -y chromium)", allow_module_level=True)
    return chromium, pytest.importorskip("playwright.sync_api", reason="playwright is not installed")


def idle(page, timeout_ms: int) -> None:
    """Wait until the page's script run has ended (Streamlit's own e2e tests wait for the same attribute)."""
    page.wait_for_timeout(300)
    page.wait_for_selector("[data-testid='stApp'][data-test-script-state='notRunning']", timeout=timeout_ms)
