"""ODE solvers: Butcher tableaux held as data, one file per method, and the ``method=`` registry.

Adding a solver touches its own file and the :data:`SOLVERS` registration below.
"""

from __future__ import annotations

from .._registry import Registry
from .alf import ALF
from .base import RHS, Solver, State
from .bosh3 import Bosh3
from .controller import FixedController, PIController, StepController
from .dopri5 import Dopri5
from .dopri8 import Dopri8
from .euler import Euler
from .heun import Heun
from .heun_euler import HeunEuler
from .midpoint import Midpoint
from .nag import NAG
from .reversible_heun import ReversibleHeun
from .rk import ExplicitRK
from .rk4 import RK4
from .tableau import Tableau
from .tsit5 import Tsit5

__all__ = [
    "RHS",
    "SOLVERS",
    "ExplicitRK",
    "FixedController",
    "PIController",
    "Solver",
    "State",
    "StepController",
    "Tableau",
]

SOLVERS: Registry[Solver] = Registry("method", Solver)
_cls: type[Solver]
for _cls in (Euler, Midpoint, Heun, RK4, HeunEuler, Bosh3, Dopri5, Tsit5, Dopri8, ALF):
    SOLVERS.register(_cls)

from .leapfrog import Leapfrog  # noqa: E402
from .yoshida4 import Yoshida4  # noqa: E402

for _cls in (Leapfrog, Yoshida4, ReversibleHeun, NAG):
    SOLVERS.register(_cls)

from .esdirk import ESDIRK, ImplicitTableau  # noqa: E402
from .kvaerno3 import Kvaerno3  # noqa: E402
from .kvaerno4 import Kvaerno4  # noqa: E402
from .kvaerno5 import Kvaerno5  # noqa: E402
from .rodas4 import Rodas4  # noqa: E402
from .rosenbrock import Rosenbrock, RosenbrockTableau  # noqa: E402

for _cls in (Kvaerno3, Kvaerno4, Kvaerno5, Rodas4):
    SOLVERS.register(_cls)
__all__ += [
    "ESDIRK",
    "ImplicitTableau",
    "Kvaerno3",
    "Kvaerno4",
    "Kvaerno5",
    "Rodas4",
    "Rosenbrock",
    "RosenbrockTableau",
]
