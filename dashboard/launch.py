"""``camdash``: start the dashboard (``streamlit run dashboard/app.py``), passing options through.

Example: ``camdash --server.port 8600``.
"""

from __future__ import annotations

import sys
from pathlib import Path

__all__ = ["main"]


def main() -> None:
    """Run ``streamlit run`` on the app with any extra command-line options."""
    from streamlit.web import cli

    sys.argv = ["streamlit", "run", str(Path(__file__).with_name("app.py")), *sys.argv[1:]]
    sys.exit(cli.main())
