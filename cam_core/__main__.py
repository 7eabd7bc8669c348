"""``python -m cam_core``: the command-line interface (see cam_core.cli)."""

import sys

from .cli import main

sys.exit(main())
