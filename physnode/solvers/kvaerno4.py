"""Kværnø's ESDIRK 4(3): five stages, L-stable, stiffly accurate, embedded third-order solution.

Coefficients from A. Kværnø, "Singly diagonally implicit Runge–Kutta methods with an explicit first stage",
*BIT Numerical Mathematics* 44 (2004) 489–502: the 4/3 pair that advances with the fourth-order last stage
(the paper also gives a 3/4 variant with a different ``γ``), every coefficient a polynomial expression in
``γ``; the formulas as transcribed in diffrax's ``kvaerno4.py``.
"""

import numpy as np

from .esdirk import ESDIRK, ImplicitTableau

_G = 0.5728160625


def _p(*coeffs: float) -> float:
    return float(np.polyval(coeffs, _G))


_A2 = (_G, _G)
_A3 = (
    _p(144, -180, 81, -15, 1) * _G / _p(12, -6, 1) ** 2,
    _p(-36, 39, -15, 2) * _G / _p(12, -6, 1) ** 2,
    _G,
)
_A4 = (
    _p(-144, 396, -330, 117, -18, 1) / (12 * _G**2 * _p(12, -9, 2)),
    _p(72, -126, 69, -15, 1) / (12 * _G**2 * _p(3, -1)),
    (_p(-6, 6, -1) * _p(12, -6, 1) ** 2) / (12 * _G**2 * _p(12, -9, 2) * _p(3, -1)),
    _G,
)
_A5 = (
    _p(288, -312, 120, -18, 1) / (48 * _G**2 * _p(12, -9, 2)),
    _p(24, -12, 1) / (48 * _G**2 * _p(3, -1)),
    -(_p(12, -6, 1) ** 3) / (48 * _G**2 * _p(3, -1) * _p(12, -9, 2) * _p(6, -6, 1)),
    _p(-24, 36, -12, 1) / _p(24, -24, 4),
    _G,
)

TABLEAU = ImplicitTableau(
    name="kvaerno4",
    gamma=_G,
    c=(0.0, 2 * _G, sum(_A3), 1.0, 1.0),
    a=((0.0,), _A2, _A3, _A4, _A5),
    b=_A5,
    b_hat=(*_A4, 0.0),
    order=4,
    embedded_order=3,
    source="Kværnø (2004), BIT 44, 489–502",
)


class Kvaerno4(ESDIRK):
    """Adaptive L-stable ESDIRK 4(3) of Kværnø (5 stages, 4 implicit)."""

    tableau = TABLEAU
