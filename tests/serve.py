"""Start the dashboard for a browser test: the benchmarks' server (``streamlit run dashboard/app.py`` on a free
loopback port), with its output in the test's log."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

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
