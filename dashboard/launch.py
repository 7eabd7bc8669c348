"""``camdash``: start the dashboard (``streamlit run dashboard/app.py``), passing options through.

Streamlit reads ``.streamlit/config.toml`` only from the folder it is started in; ``camdash``
may be started anywhere, so it passes the repository's settings as flags (options given on
its command line come after them and win).

Example: ``camdash --server.port 8600``; ``camdash --data-root /data/photos`` sets the only folder the
Dataset page may read and run (the environment variable ``CAMDASH_DATA_ROOT`` does the same).
"""

from __future__ import annotations

import os
import sys
import tomllib
from pathlib import Path

__all__ = ["main", "repo_options", "take_data_root"]

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


def take_data_root(args: list[str]) -> list[str]:
    """Remove ``--data-root DIR`` (or ``--data-root=DIR``) from ``args`` and export it as ``CAMDASH_DATA_ROOT``.

    Raises:
        SystemExit: The option has no value, or the value is not a folder.
    """
    rest, root = [], None
    it = iter(args)
    for arg in it:
        if arg == "--data-root":
            root = next(it, None)
            if root is None:
                sys.exit("camdash: --data-root needs a folder")
        elif arg.startswith("--data-root="):
            root = arg.split("=", 1)[1]
        else:
            rest.append(arg)
    if root is not None:
        folder = Path(root).expanduser().resolve()
        if not folder.is_dir():
            sys.exit(f"camdash: --data-root {root} is not a folder")
        os.environ["CAMDASH_DATA_ROOT"] = str(folder)
    return rest


def main() -> None:
    """Run ``streamlit run`` on the app with the repository's settings and any extra command-line options."""
    from streamlit.web import cli

    args = take_data_root(sys.argv[1:])
    sys.argv = ["streamlit", "run", str(Path(__file__).with_name("app.py")), *repo_options(), *args]
    sys.exit(cli.main())
