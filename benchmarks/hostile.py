"""The whole hostile corpus (tests/hostile.py) against the dashboard in untrusted mode, as a table.

Per category: cases, passes, and the cases failing each check (tracebacks shown, server paths shown,
visitor markdown/HTML rendered, code run, memory cap passed, time limit, crashes, files left on disk,
harness faults), with the peak RSS of the children against the cap
(baseline + the documented limits of cam_core/limits.py); then one line per failing case and its reasons.
At most ``--jobs`` children (the servers) at once, each playing many cases.

Run: ``PYTHONPATH=. python benchmarks/hostile.py [--jobs 2] [--category url,zip] [--only NAME,...]
[--json out.json]``. Exit status 1 when any case fails.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.hostile import main

if __name__ == "__main__":
    sys.exit(main())
