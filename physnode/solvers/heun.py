"""Heun's method (explicit trapezoidal rule), order 2, fixed step."""

from .rk import ExplicitRK
from .tableau import Tableau

TABLEAU = Tableau(name="heun", c=(0.0, 1.0), a=((), (1.0,)), b=(0.5, 0.5), order=2)


class Heun(ExplicitRK):
    """Heun's method (fixed step)."""

    tableau = TABLEAU
