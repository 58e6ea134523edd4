"""The ``physnode`` command line.

Sub-commands are thin: each hands its arguments to the module that owns the feature and raises on error; this
module reports every error the same way: one line on stderr, ``physnode COMMAND: error: MESSAGE``, exit code 2
for a usage error (bad or missing arguments) and 1 when the command could not run (bad input file or config,
failed solve, unwritable output, interrupted: 130). ``--traceback`` anywhere on the command line (before or
after the sub-command) shows the full traceback instead, for debugging.
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
    "demo": ("solve and plot the three-body orbit of the ACA paper", _delegate("physnode.commands.demo")),
    "bench": ("run a benchmark against the peer libraries (physnode bench list)", _delegate("physnode.commands.bench")),
    "data": ("list, make and inspect trajectory datasets", _delegate("physnode.commands.data")),
    "fit": ("fit parameters: 'three-body' (ACA paper) or CONFIG.toml", _delegate("physnode.commands.fit")),
    "forecast": ("predict with a fitted model (results folder)", _delegate("physnode.commands.forecast")),
}


def _parser() -> argparse.ArgumentParser:
    from .commands._cli import ArgumentParser

    parser = ArgumentParser(
        prog="physnode",
        description="Physics-informed neural ODEs: solvers, exact gradients, symbolic physics, fitting.",
    )
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    parser.add_argument("--traceback", action="store_true", help="show full tracebacks on errors (any position)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (help_, _) in _DELEGATED.items():
        sub.add_parser(name, help=help_, add_help=False)
    return parser


def _one_line(exc: BaseException) -> str:
    """The message of ``exc`` on one line (whitespace runs collapsed; the type name when the message is empty)."""
    msg = " ".join(str(exc).split())
    if isinstance(exc, KeyError) and len(exc.args) == 1:
        msg = f"missing key {exc.args[0]!r}"
    msg = msg or type(exc).__name__
    return msg.encode("utf-8", "backslashreplace").decode("utf-8")  # undecodable file names stay printable


def _run(argv: list[str], traceback: bool) -> int:
    from .commands._cli import UsageError

    parser = _parser()
    # Options before the sub-command belong to physnode itself; the rest goes to the sub-command.
    split = next((i for i, a in enumerate(argv) if not a.startswith("-")), len(argv))
    command = "physnode"
    try:
        try:
            ns = parser.parse_args(argv[: split + 1])
        except SystemExit as exit_:  # --help
            return exit_.code if isinstance(exit_.code, int) else 0
        if ns.version:
            from . import __version__

            print(__version__)
            return 0
        if ns.command is None:
            parser.print_help()
            return 2
        command = f"physnode {ns.command}"
        _, handler = _DELEGATED[ns.command]
        try:
            return handler(argv[split + 1 :])
        except SystemExit as exit_:  # --help of a sub-command, or a command that exits by itself
            if isinstance(exit_.code, int) or exit_.code is None:
                return 0 if exit_.code is None else exit_.code
            # SystemExit("message"): the command's explanation of a bad option; say it, as Python itself would
            print(f"physnode {ns.command}: {_one_line(exit_)}", file=sys.stderr)
            return 1
    except KeyboardInterrupt:
        if traceback:
            raise
        print(f"{command}: interrupted", file=sys.stderr)
        return 130
    except UsageError as exc:
        if traceback:
            raise
        print(f"{command}: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except Exception as exc:
        if traceback:
            raise
        known = (ValueError, TypeError, RuntimeError, OSError, ImportError, KeyError, MemoryError, IndexError)
        if isinstance(exc, known):
            print(f"{command}: error: {_one_line(exc)}", file=sys.stderr)
        else:  # a bug, not a user error: still one line, with a pointer to the traceback
            print(
                f"{command}: error: internal error {type(exc).__name__}: {_one_line(exc)} (rerun with --traceback "
                "and report it)",
                file=sys.stderr,
            )
        return 1


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``physnode`` command; returns the exit code (errors are one line on stderr)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    traceback = "--traceback" in argv
    argv = [a for a in argv if a != "--traceback"]
    return _run(argv, traceback)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
