"""A reproducible zoo of trajectory datasets generated with a high-accuracy solve.

``DATASETS`` maps names to generator functions; :func:`make` builds one by name. Every generator is deterministic
by ``seed`` and returns :class:`physnode.data.Trajectories` whose metadata carries the initial state and the true
parameters. The reference files and cards live in the repository's ``datasets/`` folder; regenerate them with
``python -m physnode.datasets.regenerate``.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable
from typing import Any

from ..data.trajectories import Trajectories
from .generators import (
    SPECS,
    damped_oscillator,
    double_pendulum,
    kepler,
    lotka_volterra,
    mass_spring_chain,
    n_body,
    pendulum,
    three_body,
)
from .networks import SPECS as _NETWORK_SPECS
from .networks import glv, linear_sparse, spring_network

SPECS.update(_NETWORK_SPECS)

__all__ = [
    "DATASETS",
    "SPECS",
    "damped_oscillator",
    "double_pendulum",
    "glv",
    "kepler",
    "linear_sparse",
    "lotka_volterra",
    "make",
    "mass_spring_chain",
    "n_body",
    "pendulum",
    "spring_network",
    "three_body",
]

#: Registry name -> generator.
DATASETS: dict[str, Callable[..., Trajectories]] = {
    "three_body": three_body,
    "n_body": n_body,
    "kepler": kepler,
    "pendulum": pendulum,
    "double_pendulum": double_pendulum,
    "mass_spring_chain": mass_spring_chain,
    "damped_oscillator": damped_oscillator,
    "lotka_volterra": lotka_volterra,
    "linear_sparse": linear_sparse,
    "glv": glv,
    "spring_network": spring_network,
}


def make(name: str, **options: Any) -> Trajectories:
    """Generate the dataset ``name`` (a key of :data:`DATASETS`) with the generator's keyword ``options``.

    Raises
    ------
    ValueError
        Unknown name or option (the message lists what is accepted).
    """
    if name not in DATASETS:
        close = difflib.get_close_matches(str(name), DATASETS, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}.{hint}")
    gen = DATASETS[name]
    accepted = list(inspect.signature(gen).parameters)
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ValueError(f"unknown option(s) {unknown} for dataset {name!r}; accepted: {', '.join(accepted)}.")
    return gen(**options)
