"""The one list of every solver, gradient method, physics model and dataset the tests run through.

Everything here is read from the package's registries and the classes' own declarations (``Solver.adaptive``,
``Solver.implicit``, ``GradientMethod.exact``, ``GradientMethod.solvers`` / ``requires_method``), so a newly
registered tableau, gradient method, physics model or dataset gets every test that parametrizes over these
lists without editing a test. Tests import it like ``systems`` (``from registries import ALL_SOLVERS``);
``tests/conftest.py`` re-exports it and builds fixtures on it. (A plain module rather than ``conftest.py``
itself: pytest imports each ``conftest.py`` under the same module name, so ``from conftest import ...`` could
pick up ``tests/fuzz/conftest.py`` instead.)
"""

from __future__ import annotations

import inspect

import physnode
import physnode.physics
from physnode.datasets import DATASETS as _DATASETS
from physnode.gradients import GRADIENTS
from physnode.physics import PhysicsModel
from physnode.solvers import SOLVERS, ExplicitRK

__all__ = [
    "ADAPTIVE",
    "ALL_GRADIENTS",
    "ALL_SOLVERS",
    "DATASETS",
    "DEFAULT_METHOD",
    "EXACT_GRADIENTS",
    "EXPLICIT",
    "FIXED",
    "IMPLICIT",
    "OWN_BACKWARD",
    "PHYSICS_MODELS",
    "RK",
    "solver_for",
    "solvers_for",
]

#: The ``method=`` of :func:`physnode.solve` when none is given.
DEFAULT_METHOD: str = inspect.signature(physnode.solve).parameters["method"].default

#: Every registered solver, in registration order.
ALL_SOLVERS: list[str] = SOLVERS.names()
#: Solvers whose default construction adapts its step (returns an error estimate).
ADAPTIVE: list[str] = [n for n in ALL_SOLVERS if SOLVERS.build(n).adaptive]
#: Fixed-step solvers (``step_size=`` required).
FIXED: list[str] = [n for n in ALL_SOLVERS if n not in ADAPTIVE]
#: Solvers that solve nonlinear equations per step (declared ``implicit = True``).
IMPLICIT: list[str] = [n for n in ALL_SOLVERS if SOLVERS.cls(n).implicit]
#: Solvers with explicit steps.
EXPLICIT: list[str] = [n for n in ALL_SOLVERS if n not in IMPLICIT]
#: Explicit Runge–Kutta solvers (a :class:`~physnode.solvers.tableau.Tableau` each).
RK: list[str] = [n for n in ALL_SOLVERS if issubclass(SOLVERS.cls(n), ExplicitRK)]

#: Every registered gradient method.
ALL_GRADIENTS: list[str] = GRADIENTS.names()
#: Gradient methods that reproduce backprop through the same discrete solve (``direct`` excluded: the
#: reference they are compared with).
EXACT_GRADIENTS: list[str] = [n for n in ALL_GRADIENTS if GRADIENTS.cls(n).exact and n != "direct"]
#: Gradient methods with their own backward pass (they need ``params=``).
OWN_BACKWARD: list[str] = [n for n in ALL_GRADIENTS if GRADIENTS.cls(n).needs_params]


def solvers_for(grad: str) -> list[str]:
    """The registered solvers gradient method ``grad`` differentiates (its class's ``solvers`` family)."""
    cls = GRADIENTS.cls(grad)
    return [n for n in ALL_SOLVERS if cls.supports(SOLVERS.cls(n))]


def solver_for(grad: str) -> str:
    """The solver a test of ``grad`` uses: the one it requires, else the default method when it supports it,
    else its first supported adaptive solver."""
    cls = GRADIENTS.cls(grad)
    if cls.requires_method is not None:
        return cls.requires_method
    supported = solvers_for(grad)
    if DEFAULT_METHOD in supported:
        return DEFAULT_METHOD
    return next(n for n in supported if n in ADAPTIVE)


#: Every physics model class exported by :mod:`physnode.physics` (``tests/physics/physics_systems.py`` holds
#: an example system of each, checked by ``tests/physics/test_physics_catalogue.py``).
PHYSICS_MODELS: list[type[PhysicsModel]] = [
    obj
    for name in physnode.physics.__all__
    if isinstance(obj := getattr(physnode.physics, name), type)
    and issubclass(obj, PhysicsModel)
    and obj is not PhysicsModel
]

#: Every dataset of the zoo (``physnode.datasets.DATASETS``).
DATASETS: list[str] = list(_DATASETS)
