"""Explicit midpoint rule, order 2, fixed step."""

from .rk import ExplicitRK
from .tableau import Tableau

TABLEAU = Tableau(name="midpoint", c=(0.0, 0.5), a=((), (0.5,)), b=(0.0, 1.0), order=2)


class Midpoint(ExplicitRK):
    """Explicit midpoint method (fixed step)."""

    tableau = TABLEAU
