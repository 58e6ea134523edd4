"""Explicit midpoint rule, order 2, fixed step; dense output: the quadratic through
``y_n``, ``f(t_n, y_n)`` and ``y_(n+1)`` (order 2, no extra evaluation)."""

from .rk import ExplicitRK
from .tableau import Tableau, quadratic_dense

_B = (0.0, 1.0)

TABLEAU = Tableau(
    name="midpoint",
    c=(0.0, 0.5),
    a=((), (0.5,)),
    b=_B,
    order=2,
    dense=quadratic_dense(_B),
    dense_order=2,
)


class Midpoint(ExplicitRK):
    """Explicit midpoint method (fixed step)."""

    tableau = TABLEAU
