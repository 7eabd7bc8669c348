"""``camdash``: start the dashboard (``streamlit run dashboard/app.py``), passing options through.

Streamlit reads ``.streamlit/config.toml`` only from the folder it is started in; ``camdash``
may be started anywhere, so it passes the repository's settings as flags (options given on
its command line come after them and win).

Example: ``camdash --server.port 8600``.
"""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

__all__ = ["main", "repo_options"]

CONFIG = Path(__file__).resolve().parents[1] / ".streamlit" / "config.toml"


def repo_options(config: Path = CONFIG) -> list[str]:
    """The repository's Streamlit settings as ``--section.option=value`` flags (none if the file is absent)."""
    if not config.is_file():
        return []
    settings = tomllib.loads(config.read_text(encoding="utf-8"))
    return [
        f"--{section}.{name}={str(value).lower() if isinstance(value, bool) else value}"
        for section, options in settings.items()
        for name, value in options.items()
    ]


def main() -> None:
    """Run ``streamlit run`` on the app with the repository's settings and any extra command-line options."""
    from streamlit.web import cli

    sys.argv = ["streamlit", "run", str(Path(__file__).with_name("app.py")), *repo_options(), *sys.argv[1:]]
    sys.exit(cli.main())
