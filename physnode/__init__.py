"""physnode: physics-informed neural ODEs with per-trajectory solvers and exact, memory-lean gradients.

The public API is small:

* :func:`odeint`, :func:`solve` — solve ``dy/dt = f(t, y)`` with per-trajectory times (``Solution``, ``Status``),
  their options validated into one :class:`SolveOptions`; :func:`odeint_event` — solve until events
  ``g(t, y) = 0``, with differentiable event times;
* :data:`SOLVERS`, :data:`GRADIENTS` — the ``method=`` and ``grad=`` registries;
* :func:`fit`, :func:`forecast` — recover unknown physics from trajectories and predict (``FitResult``;
  ``result.save(path)`` and :func:`load_result` keep it without pickle);
* :func:`sdeint` — stochastic dynamics through torchsde;
* sub-packages :mod:`physnode.physics` (symbolic physics), :mod:`physnode.data` (trajectories and files),
  :mod:`physnode.datasets` (the dataset zoo), :mod:`physnode.sde`, :mod:`physnode.solvers`,
  :mod:`physnode.gradients`, :mod:`physnode.nn` (neural-ODE design blocks: augmentation, data control,
  depth-variant layers, integral losses), imported on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

from .errors import MaxStepsError, NonFiniteError, SolverError, StepSizeUnderflowError, StiffnessError
from .events import odeint_event

# ``physnode.fit`` is the function; the package that holds it stays importable as ``physnode.fit.<module>``
# through ``from physnode.fit import ...`` (the import system resolves it in ``sys.modules``).
from .fit import FitResult, MultipleShooting, fit, load_result
from .forecast import forecast
from .gradients import GRADIENTS, GradientMethod
from .odeint import odeint, solve
from .options import SolveOptions
from .solution import Solution, Stats, Status
from .solvers import SOLVERS, Solver, Tableau

__version__ = "0.1.0"

_LAZY_MODULES = {"physics", "data", "datasets", "sde", "bench", "plot", "nn", "causal"}
_LAZY_ATTRS = {"sdeint": ("physnode.sde", "sdeint")}


def __getattr__(name: str) -> Any:
    # Heavy dependencies (sympy, xarray, h5py, torchsde) load only when their feature is used.
    if name in _LAZY_MODULES:
        return importlib.import_module(f"physnode.{name}")
    if name in _LAZY_ATTRS:
        module, attr = _LAZY_ATTRS[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'physnode' has no attribute {name!r}")


__all__ = [
    "GRADIENTS",
    "SOLVERS",
    "FitResult",
    "GradientMethod",
    "MaxStepsError",
    "MultipleShooting",
    "NonFiniteError",
    "Solution",
    "SolveOptions",
    "Solver",
    "SolverError",
    "Stats",
    "Status",
    "StepSizeUnderflowError",
    "StiffnessError",
    "Tableau",
    "__version__",
    "fit",
    "forecast",
    "load_result",
    "odeint",
    "odeint_event",
    "sdeint",
    "solve",
]
