"""Heun–Euler 2(1): Heun's method with an embedded Euler error estimate.

Dense output: the quadratic through ``y_n``, ``f(t_n, y_n)`` and ``y_(n+1)`` (order 2, the method's order, with
no extra evaluation; a cubic Hermite would need ``f(t_(n+1), y_(n+1))``, which this non-FSAL pair does not have)."""

from .rk import ExplicitRK
from .tableau import Tableau, quadratic_dense

TABLEAU = Tableau(
    name="heun_euler",
    c=(0.0, 1.0),
    a=((), (1.0,)),
    b=(0.5, 0.5),
    order=2,
    b_err=(0.5 - 1.0, 0.5 - 0.0),
    embedded_order=1,
    dense=quadratic_dense((0.5, 0.5)),
    dense_order=2,
)


class HeunEuler(ExplicitRK):
    """Adaptive Heun–Euler 2(1)."""

    tableau = TABLEAU
