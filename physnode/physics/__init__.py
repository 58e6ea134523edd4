"""Symbolic physics compiled into ODE right-hand sides with named, learnable unknowns.

* :class:`Param` — a named physical quantity (known constant or learnable, kept in its domain).
* :class:`SymbolicODE` — plain equations ``dx/dt = expr(x, params, t)``.
* :class:`Hamiltonian` — Hamilton's equations derived from ``H(q, p)``.
* :class:`Lagrangian` — Euler–Lagrange equations in mass-matrix form, solved at run time.
* :class:`NBodyGravity` — vectorised Newtonian gravity with nondimensionalisation factors.
* :class:`Hybrid` — known physics plus a neural residual on chosen components.
* :func:`parse_expression`, :func:`from_config` — safe construction from text (no ``eval``).

Every model is an ``nn.Module`` with ``forward(t, y)`` for any leading batch shape, usable with
:func:`physnode.odeint` and every gradient method; separable models (``model.separable``) also work with the
structure-preserving solvers ``method="leapfrog"`` and ``method="yoshida4"``.
"""

from __future__ import annotations

from .base import PhysicsModel
from .config import from_config
from .hamiltonian import Hamiltonian
from .hybrid import Hybrid
from .lagrangian import Lagrangian
from .nbody import NBodyGravity
from .params import Param
from .parse import parse_expression
from .symbolic import SymbolicODE

__all__ = [
    "Hamiltonian",
    "Hybrid",
    "Lagrangian",
    "NBodyGravity",
    "Param",
    "PhysicsModel",
    "SymbolicODE",
    "from_config",
    "parse_expression",
]
