"""The classical fourth-order Runge–Kutta method, fixed step, with its third-order continuous extension
(Hairer, Nørsett & Wanner, *Solving ODEs I*, II.6: ``b_1 = theta - 3 theta^2/2 + 2 theta^3/3``,
``b_2 = b_3 = theta^2 - 2 theta^3/3``, ``b_4 = -theta^2/2 + 2 theta^3/3``)."""

from .rk import ExplicitRK
from .tableau import Tableau

TABLEAU = Tableau(
    name="rk4",
    c=(0.0, 0.5, 0.5, 1.0),
    a=((), (0.5,), (0.0, 0.5), (0.0, 0.0, 1.0)),
    b=(1 / 6, 1 / 3, 1 / 3, 1 / 6),
    order=4,
    dense=((1.0, -1.5, 2 / 3), (0.0, 1.0, -2 / 3), (0.0, 1.0, -2 / 3), (0.0, -0.5, 2 / 3)),
    dense_order=3,
)


class RK4(ExplicitRK):
    """Classical RK4 (fixed step)."""

    tableau = TABLEAU
