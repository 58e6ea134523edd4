"""The ``physnode`` command line.

Sub-commands are thin: each hands its arguments to the module that owns the feature. Errors are one clear line
on stderr with a non-zero exit code, never a traceback (``--traceback`` shows it for debugging).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

__all__ = ["main"]


def _delegate(module: str, attr: str = "main") -> Callable[[list[str]], int]:
    def run(argv: list[str]) -> int:
        import importlib

        return int(getattr(importlib.import_module(module), attr)(argv) or 0)

    return run


# name -> (help, handler taking the remaining argv)
_DELEGATED: dict[str, tuple[str, Callable[[list[str]], int]]] = {
    "demo": ("solve and plot the three-body orbit of the ACA paper", _delegate("physnode.demo")),
    "bench": ("run a benchmark against the peer libraries (physnode bench list)", _delegate("physnode.bench")),
    "data": ("list, make and inspect trajectory datasets", _delegate("physnode.data.cli")),
    "fit": ("fit parameters: 'three-body' (ACA paper) or CONFIG.toml", _delegate("physnode.commands.fit")),
    "forecast": ("predict with a fitted model (results folder)", _delegate("physnode.commands.forecast")),
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="physnode",
        description="Physics-informed neural ODEs: solvers, exact gradients, symbolic physics, fitting.",
    )
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    parser.add_argument("--traceback", action="store_true", help="show full tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (help_, _) in _DELEGATED.items():
        sub.add_parser(name, help=help_, add_help=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``physnode`` command; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = _parser()
    # Options before the sub-command belong to physnode itself; the rest goes to the sub-command.
    split = next((i for i, a in enumerate(argv) if not a.startswith("-")), len(argv))
    ns = parser.parse_args(argv[: split + 1])
    if ns.version:
        from . import __version__

        print(__version__)
        return 0
    if ns.command is None:
        parser.print_help()
        return 2
    _, handler = _DELEGATED[ns.command]
    try:
        return handler(argv[split + 1 :])
    except KeyboardInterrupt:
        print("physnode: interrupted", file=sys.stderr)
        return 130
    except (ValueError, TypeError, RuntimeError, OSError, ImportError) as exc:
        if ns.traceback:
            raise
        print(f"physnode {ns.command}: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
