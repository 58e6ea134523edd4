"""The classical fourth-order Runge–Kutta method, fixed step."""

from .rk import ExplicitRK
from .tableau import Tableau

TABLEAU = Tableau(
    name="rk4",
    c=(0.0, 0.5, 0.5, 1.0),
    a=((), (0.5,), (0.0, 0.5), (0.0, 0.0, 1.0)),
    b=(1 / 6, 1 / 3, 1 / 3, 1 / 6),
    order=4,
)


class RK4(ExplicitRK):
    """Classical RK4 (fixed step)."""

    tableau = TABLEAU
