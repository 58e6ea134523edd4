"""Tsitouras 5(4), FSAL (Tsitouras 2011, "Runge–Kutta pairs of order 5(4) satisfying only the first column
simplifying assumption", Comput. Math. Appl. 62), with the paper's fourth-order continuous extension.

The dense-output weights ``b_i(theta)`` are the polynomials of Tsitouras (2011), section 3, kept in the
paper's factored form below and expanded into coefficients of ``theta, theta^2, theta^3, theta^4``."""

import numpy as np

from .rk import ExplicitRK
from .tableau import Tableau

#: ``b_i(theta)`` of Tsitouras (2011) as (scale, roots, quadratic factors): ``scale * theta^2 * prod(theta - r) *
#: prod(theta^2 + p theta + q)`` (``b_1`` has a single factor ``theta`` instead of ``theta^2``).
_DENSE_FACTORS: tuple[tuple[float, int, tuple[float, ...], tuple[tuple[float, float], ...]], ...] = (
    (-1.0530884977290216, 1, (1.3299890189751412,), ((-1.4364028541716351, 0.7139816917074209),)),
    (0.1017, 2, (), ((-2.1966568338249754, 1.2949852507374631),)),
    (2.490627285651252793, 2, (), ((-2.38535645472061657, 1.57803468208092486),)),
    (-16.54810288924490272, 2, (1.21712927295533244, 0.61620406037800089), ()),
    (47.37952196281928122, 2, (1.203071208372362603, 0.658047292653547382), ()),
    (-34.87065786149660974, 2, (1.2, 0.666666666666666667), ()),
    (2.5, 2, (1.0, 0.6), ()),
)


def _expand(scale: float, power: int, roots: tuple[float, ...], quads: tuple[tuple[float, float], ...]) -> tuple:
    poly = np.polynomial.Polynomial([0.0] * power + [scale])
    for r in roots:
        poly = poly * np.polynomial.Polynomial([-r, 1.0])
    for p, q in quads:
        poly = poly * np.polynomial.Polynomial([q, p, 1.0])
    coef = np.zeros(5)
    coef[: len(poly.coef)] = poly.coef
    return tuple(float(x) for x in coef[1:])  # theta^1 .. theta^4 (no constant term)


_A7 = (
    0.09646076681806523,
    0.01,
    0.4798896504144996,
    1.379008574103742,
    -3.290069515436081,
    2.324710524099774,
)

TABLEAU = Tableau(
    name="tsit5",
    c=(0.0, 0.161, 0.327, 0.9, 0.9800255409045097, 1.0, 1.0),
    a=(
        (),
        (0.161,),
        (-0.008480655492356989, 0.335480655492357),
        (2.897153057105493, -6.359448489975075, 4.3622954328695815),
        (5.325864828439257, -11.748883564062828, 7.4955393428898365, -0.09249506636175525),
        (5.86145544294642, -12.92096931784711, 8.159367898576159, -0.071584973281401, -0.028269050394068383),
        _A7,
    ),
    b=(*_A7, 0.0),
    order=5,
    b_err=(
        -0.00178001105222577714,
        -0.0008164344596567469,
        0.007880878010261995,
        -0.1447110071732629,
        0.5823571654525552,
        -0.45808210592918697,
        1 / 66,
    ),
    embedded_order=4,
    dense=tuple(_expand(*f) for f in _DENSE_FACTORS),
    dense_order=4,
)


class Tsit5(ExplicitRK):
    """Adaptive Tsitouras 5(4)."""

    tableau = TABLEAU
