"""physnode: physics-informed neural ODEs with per-trajectory solvers and exact, memory-lean gradients."""

from __future__ import annotations

from .errors import MaxStepsError, NonFiniteError, SolverError, StepSizeUnderflowError
from .gradients import GRADIENTS, GradientMethod
from .odeint import odeint, solve
from .solution import Solution, Stats, Status
from .solvers import SOLVERS, Solver, Tableau

__version__ = "0.1.0"

__all__ = [
    "GRADIENTS",
    "SOLVERS",
    "GradientMethod",
    "MaxStepsError",
    "NonFiniteError",
    "Solution",
    "Solver",
    "SolverError",
    "Stats",
    "Status",
    "StepSizeUnderflowError",
    "Tableau",
    "__version__",
    "odeint",
    "solve",
]
