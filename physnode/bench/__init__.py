"""Benchmarks of physnode against its peers (torchdiffeq, torchode, TorchDiffEqPack, torchsde).

Each benchmark prints a table with physnode and the peers side by side; they are not tests (nothing is
asserted about time). Run them with ``python -m physnode.bench NAME [options]`` (or ``physnode bench NAME``):

- ``physnode bench list`` lists the benchmarks;
- ``physnode bench NAME --help`` shows the options of one;
- ``physnode bench all [options]`` runs every benchmark with the same options.

Peers are optional: a missing one prints a "not installed" row. Install them with the ``bench`` extra.
"""

from __future__ import annotations

import importlib
import sys
from dataclasses import dataclass

__all__ = ["BENCHMARKS", "Benchmark", "main"]


@dataclass(frozen=True)
class Benchmark:
    """A registered benchmark: a module exposing ``run(argv: list[str] | None) -> int``, imported lazily.

    Attributes
    ----------
    name
        Command-line name.
    module
        Absolute module path of the benchmark.
    description
        One line for ``physnode bench list``.
    """

    name: str
    module: str
    description: str

    def run(self, argv: list[str]) -> int:
        """Import the module and run it with ``argv`` (options only, without the benchmark name)."""
        mod = importlib.import_module(self.module)
        return int(mod.run(argv) or 0)


BENCHMARKS: dict[str, Benchmark] = {
    b.name: b
    for b in (
        Benchmark(
            "solvers",
            "physnode.bench.solvers",
            "forward-solve time, NFE, time per step and error of physnode.odeint vs torchdiffeq and torchode",
        ),
        Benchmark(
            "gradients",
            "physnode.bench.gradients",
            "time, NFE and gradient error per gradient method (three-body problem) vs the peers' same methods",
        ),
        Benchmark(
            "memory",
            "physnode.bench.memory",
            "peak memory of one gradient vs the number of steps, per gradient method (fresh process per point)",
        ),
        Benchmark(
            "physics-rhs",
            "physnode.bench.physics_rhs",
            "cost of the generated physics right-hand sides",
        ),
        Benchmark(
            "stiff",
            "physnode.bench.stiff",
            "stiff problems (Robertson, Van der Pol mu=1000, HIRES, OREGO): Kvaerno ESDIRK vs scipy Radau/BDF/LSODA",
        ),
        Benchmark(
            "causal",
            "physnode.bench.causal",
            "causal graph recovery (AUROC, AUPRC, SHD) and forecasts under unseen interventions vs baselines",
        ),
        Benchmark(
            "augmentation",
            "physnode.bench.augmentation",
            "annuli / nested spheres: accuracy, NFE and time of plain, Galerkin, augmented and data-controlled ODEs",
        ),
        Benchmark(
            "sde",
            "physnode.bench.sde",
            "neural SDEs on irregular OU data: SDE-GAN clipping vs gradient penalty, latent SDE; adjoint time/memory",
        ),
    )
}

_USAGE = """usage: physnode bench {list,all,NAME} [options]

Benchmarks of physnode against torchdiffeq, torchode, TorchDiffEqPack and torchsde.

  list             list the benchmarks
  all [options]    run every benchmark with the same options
  NAME [options]   run one benchmark; NAME --help shows its options
"""


def _list() -> str:
    width = max(len(n) for n in BENCHMARKS)
    return "\n".join(f"  {b.name.ljust(width)}  {b.description}" for b in BENCHMARKS.values())


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m physnode.bench`` and ``physnode bench``.

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
        status = 0
        for bench in BENCHMARKS.values():
            print(f"\n##### physnode bench {bench.name} {' '.join(rest)}".rstrip(), flush=True)
            try:
                code = bench.run(rest)
            except ImportError as exc:
                print(f"benchmark {bench.name!r} is not available: {exc}")
                code = 1
            except SystemExit as exc:  # argparse errors of one benchmark do not stop the others
                code = exc.code if isinstance(exc.code, int) else 1
            status = status or code
        return status
    if name not in BENCHMARKS:
        from ..commands._cli import UsageError

        raise UsageError(f"unknown benchmark {name!r}; choose one of: list, all, {', '.join(BENCHMARKS)}.")
    return BENCHMARKS[name].run(rest)
