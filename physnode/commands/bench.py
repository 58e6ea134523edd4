"""``physnode bench``: list the benchmarks, run one, or run them all with the same options.

``main(argv)`` takes the arguments after ``bench``: ``list``, ``all [options]`` or ``NAME [options]`` with NAME a
key of :data:`physnode.bench.BENCHMARKS`. It raises :class:`~physnode.commands._cli.UsageError` for an unknown
name; :func:`physnode.cli.main` prints one line on stderr (exit code 2). ``python -m physnode.bench`` runs the
same command through :func:`physnode.cli.main`.
"""

from __future__ import annotations

import sys

from ..bench import BENCHMARKS
from ._cli import UsageError

__all__ = ["main"]

_USAGE = """usage: physnode bench {list,all,NAME} [options]

Benchmarks of physnode against torchdiffeq, torchode, TorchDiffEqPack and torchsde.

  list             list the benchmarks
  all [options]    run every benchmark with the same options
  NAME [options]   run one benchmark; NAME --help shows its options
"""


def _list() -> str:
    width = max(len(n) for n in BENCHMARKS)
    return "\n".join(f"  {b.name.ljust(width)}  {b.description}" for b in BENCHMARKS.values())


def _run_all(options: list[str]) -> int:
    """Run every benchmark with ``options``; a benchmark that cannot run does not stop the others."""
    status = 0
    for bench in BENCHMARKS.values():
        print(f"\n##### physnode bench {bench.name} {' '.join(options)}".rstrip(), flush=True)
        try:
            code = bench.run(options)
        except ImportError as exc:
            print(f"benchmark {bench.name!r} is not available: {exc}")
            code = 1
        except SystemExit as exc:  # argparse errors of one benchmark do not stop the others
            code = exc.code if isinstance(exc.code, int) else 1
        status = status or code
    return status


def main(argv: list[str] | None = None) -> int:
    """Run ``physnode bench`` with ``argv`` (the arguments after ``bench``); returns the exit code.

    Parameters
    ----------
    argv
        ``[NAME, *options]`` with NAME a benchmark, ``list`` or ``all``; ``sys.argv[1:]`` when ``None``.

    Returns
    -------
    int
        Exit status: 0 on success, 2 without a benchmark name, otherwise the first non-zero status of a benchmark.

    Raises
    ------
    physnode.commands._cli.UsageError
        For an unknown benchmark name (reported by :mod:`physnode.cli` as one line, exit status 2).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_USAGE + "\nbenchmarks:\n" + _list())
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name == "list":
        print(_list())
        return 0
    if name == "all":
        return _run_all(rest)
    if name not in BENCHMARKS:
        raise UsageError(f"unknown benchmark {name!r}; choose one of: list, all, {', '.join(BENCHMARKS)}.")
    return BENCHMARKS[name].run(rest)
