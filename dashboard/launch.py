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

This module imports neither torch nor Streamlit at the top: ``camdash --help`` (its own options, and where
Streamlit's are) and its option mistakes answer at once; the environment variables' names are repeated here (a
test keeps them equal to :mod:`dashboard.access`'s, :mod:`dashboard.dataroot`'s and
:mod:`dashboard.server.stats`', which import torch).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tomllib
from pathlib import Path

__all__ = ["ENV_DATA_ROOT", "ENV_MODELS", "ENV_QUOTA", "ENV_SHARED_UPLOADS", "ENV_TOKEN", "ENV_TRUST", "main",
           "own_options", "repo_options"]

ENV_TRUST = "CAMDASH_TRUST_VISITORS"  # dashboard.access.ENV_TRUST
ENV_MODELS = "CAMDASH_MODELS"  # dashboard.access.ENV_MODELS
ENV_DATA_ROOT = "CAMDASH_DATA_ROOT"  # dashboard.dataroot.ENV
ENV_QUOTA = "CAMDASH_UPLOAD_QUOTA"  # dashboard.dataroot.ENV_QUOTA
ENV_SHARED_UPLOADS = "CAMDASH_SHARED_UPLOADS"  # dashboard.dataroot.ENV_SHARED_UPLOADS
ENV_TOKEN = "CAMDASH_STATS_TOKEN"  # dashboard.server.stats.ENV_TOKEN
HELP_EPILOG = (
    "Every other option goes to `streamlit run` (e.g. --server.port 8600, --server.address 0.0.0.0); "
    "see `streamlit run --help`."
)

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
    parser = argparse.ArgumentParser(
        prog="camdash", add_help=False, description="Start the class-activation-map dashboard (Streamlit).",
        epilog=HELP_EPILOG,
    )
    parser.add_argument("-h", "--help", action="help", help="show this help and exit")
    parser.add_argument(
        "--trust-visitors", choices=["yes", "no"],
        help="whether visitors may use model sources that run code (default: yes on loopback only)",
    )
    parser.add_argument("--models", metavar="FILE", help="a TOML list of the models visitors may choose (a demo)")
    parser.add_argument("--data-root", metavar="DIR", help="the only folder the Dataset page may read and run")
    parser.add_argument(
        "--upload-quota", metavar="SIZE", help="the most all zip uploads under the data root may hold (500M, 20G)"
    )
    parser.add_argument(
        "--shared-uploads", choices=["yes", "no"], help="whether every visitor sees every zip upload (default: no)"
    )
    parser.add_argument(
        "--stats-token", metavar="TOKEN", help="lets /_camdash/stats answer other machines that carry this token"
    )
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
    env, rest = own_options(sys.argv[1:])  # --help and option mistakes end here, before Streamlit imports
    from streamlit.web import cli

    os.environ.update(env)
    sys.argv = ["streamlit", "run", str(Path(__file__).with_name("app.py")), *repo_options(), *rest]
    sys.exit(cli.main())
