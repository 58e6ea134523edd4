"""``python -m physnode.bench NAME [options]``: the same as ``physnode bench NAME [options]``.

Routed through :func:`physnode.cli.main` so that errors follow the command line's convention (one line on stderr,
exit 2 for a usage error and 1 for a failed run, ``--traceback`` for the full traceback).
"""

from __future__ import annotations

import sys

from ..cli import main

if __name__ == "__main__":
    raise SystemExit(main(["bench", *sys.argv[1:]]))
