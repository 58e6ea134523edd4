"""Heun–Euler 2(1): Heun's method with an embedded Euler error estimate."""

from .rk import ExplicitRK
from .tableau import Tableau

TABLEAU = Tableau(
    name="heun_euler",
    c=(0.0, 1.0),
    a=((), (1.0,)),
    b=(0.5, 0.5),
    order=2,
    b_err=(0.5 - 1.0, 0.5 - 0.0),
    embedded_order=1,
)


class HeunEuler(ExplicitRK):
    """Adaptive Heun–Euler 2(1)."""

    tableau = TABLEAU
