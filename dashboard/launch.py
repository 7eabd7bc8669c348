"""``camdash``: start the dashboard (``streamlit run dashboard/app.py``), passing options through.

Streamlit reads ``.streamlit/config.toml`` only from the folder it is started in; ``camdash``
may be started anywhere, so it passes the repository's settings as flags (options given on
its command line come after them and win). The server listens on 127.0.0.1 unless told otherwise.

Its own options (see :mod:`dashboard.access`), set as environment variables for the server:

- ``--trust-visitors yes|no``: whether visitors may use model sources that run code (Python
  factories, import paths, pickles, TorchScript); default ``yes`` on loopback only, ``no`` otherwise;
- ``--models FILE``: a TOML list of the models visitors may choose (a demo);
- ``--data-root DIR``: the only folder the Dataset page may read and run (``CAMDASH_DATA_ROOT``; default a
  folder of sample photos in the user's cache);
- ``--upload-quota SIZE``: the most all zip uploads under the data root may hold together (``500M``, ``20G``;
  ``CAMDASH_UPLOAD_QUOTA``; default :data:`~cam_core.limits.MAX_DATA_ROOT_UPLOAD_BYTES`);
- ``--shared-uploads yes|no``: whether every visitor sees every zip upload (``CAMDASH_SHARED_UPLOADS``; default
  ``no``: each session's own, deleted when it ends);
- ``--stats-token TOKEN``: lets ``/_camdash/stats`` answer requests from other machines that carry it
  (``Authorization: Bearer TOKEN`` or ``?token=TOKEN``; ``CAMDASH_STATS_TOKEN``); without it, only this machine.

Beyond loopback, visitors never see a traceback (``client.showErrorDetails=none``; the log keeps it).

Examples: ``camdash --server.port 8600``; a demo for the team:
``camdash --server.address 0.0.0.0 --models demo_models.toml``.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tomllib
from pathlib import Path

from dashboard.access import ENV_MODELS, ENV_TRUST
from dashboard.dataroot import ENV as ENV_DATA_ROOT
from dashboard.dataroot import ENV_QUOTA, ENV_SHARED_UPLOADS
from dashboard.server.stats import ENV_TOKEN

__all__ = ["main", "own_options", "repo_options"]

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


def own_options(argv: list[str]) -> tuple[dict[str, str], list[str]]:
    """Split ``camdash``'s own options (as environment variables) from Streamlit's."""
    parser = argparse.ArgumentParser(prog="camdash", add_help=False)
    parser.add_argument("--trust-visitors", choices=["yes", "no"])
    parser.add_argument("--models", metavar="FILE")
    parser.add_argument("--data-root", metavar="DIR")
    parser.add_argument("--upload-quota", metavar="SIZE")
    parser.add_argument("--shared-uploads", choices=["yes", "no"])
    parser.add_argument("--stats-token", metavar="TOKEN")
    own, rest = parser.parse_known_args(argv)
    env = {}
    if own.trust_visitors:
        env[ENV_TRUST] = own.trust_visitors
    if own.models:
        path = Path(own.models).expanduser().resolve()
        if not path.is_file():
            parser.exit(2, f"camdash: error: --models {own.models}: no such file\n")
        env[ENV_MODELS] = str(path)
    if own.data_root:
        folder = Path(own.data_root).expanduser().resolve()
        if not folder.is_dir():
            parser.exit(2, f"camdash: error: --data-root {own.data_root}: no such folder\n")
        env[ENV_DATA_ROOT] = str(folder)
    if own.upload_quota:
        if not re.fullmatch(r"(?i)\d+(\.\d+)?\s*[kmgt]?i?b?", own.upload_quota.strip()):
            parser.exit(2, f"camdash: error: --upload-quota {own.upload_quota}: give bytes, or a size such as 20G\n")
        env[ENV_QUOTA] = own.upload_quota.strip()
    if own.shared_uploads:
        env[ENV_SHARED_UPLOADS] = own.shared_uploads
    if own.stats_token:
        env[ENV_TOKEN] = own.stats_token
    return env, rest


def main() -> None:
    """Run ``streamlit run`` on the app with the repository's settings and any extra command-line options."""
    from streamlit.web import cli

    env, rest = own_options(sys.argv[1:])
    os.environ.update(env)
    sys.argv = ["streamlit", "run", str(Path(__file__).with_name("app.py")), *repo_options(), *rest]
    sys.exit(cli.main())
