"""``python -m cam_core``: the command-line interface (see cam_core.cli)."""

import sys

try:
    from .cli import main

    sys.exit(main())
except KeyboardInterrupt:  # Ctrl-C while torch imports, before main() can catch it
    print("interrupted", file=sys.stderr)
    sys.exit(130)
