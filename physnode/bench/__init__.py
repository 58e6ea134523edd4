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
            "observations",
            "physnode.bench.observations",
            "100 to 10,000 observation times (three-body): landing steps vs interpolated outputs vs torchode, "
            "torchdiffeq",
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
            "gpu",
            "physnode.bench.gpu",
            "10,000 three-body trajectories with their own times on one device (CUDA when present): forward and "
            "direct/aca/mali gradients vs torchode, host syncs per step",
        ),
        Benchmark(
            "stiff",
            "physnode.bench.stiff",
            "stiff problems (Robertson, Van der Pol mu=1000, HIRES, OREGO): Kvaerno ESDIRK and Rodas4 vs scipy "
            "Radau/BDF/LSODA",
        ),
        Benchmark(
            "causal",
            "physnode.bench.causal",
            "causal graph recovery (AUROC, AUPRC, SHD) and forecasts under unseen interventions vs baselines",
        ),
        Benchmark(
            "structured",
            "physnode.bench.structured",
            "StructuredODE: d per-variable networks as one batched computation vs a Python loop, d = 10 ... 1000",
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
        Benchmark(
            "lhm",
            "physnode.bench.lhm",
            "latent hybrid model (expert PK/PD ODE in a latent neural ODE) vs expert, neural ODE, residual hybrid",
        ),
    )
}


def main(argv: list[str] | None = None) -> int:
    """``physnode bench`` in-process: the same as :func:`physnode.commands.bench.main` (see there)."""
    from ..commands.bench import main as bench_main

    return bench_main(argv)
