"""``python -m physnode.bench NAME [options]``: run a benchmark (see :func:`physnode.bench.main`)."""

from __future__ import annotations

from . import main

if __name__ == "__main__":
    raise SystemExit(main())
