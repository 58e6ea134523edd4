"""Kværnø's ESDIRK 3(2): four stages, L-stable, stiffly accurate, embedded second-order solution.

Coefficients from A. Kværnø, "Singly diagonally implicit Runge–Kutta methods with an explicit first stage",
*BIT Numerical Mathematics* 44 (2004) 489–502, where every coefficient is a function of ``γ`` (the root of
the L-stability condition); the formulas as transcribed in diffrax's ``kvaerno3.py``.
"""

from .esdirk import ESDIRK, ImplicitTableau

_G = 0.43586652150
_A2 = (_G, _G)
_A3 = ((-4 * _G**2 + 6 * _G - 1) / (4 * _G), (-2 * _G + 1) / (4 * _G), _G)
_A4 = ((6 * _G - 1) / (12 * _G), -1 / ((24 * _G - 12) * _G), (-6 * _G**2 + 6 * _G - 1) / (6 * _G - 3), _G)

TABLEAU = ImplicitTableau(
    name="kvaerno3",
    gamma=_G,
    c=(0.0, 2 * _G, 1.0, 1.0),
    a=((0.0,), _A2, _A3, _A4),
    b=_A4,
    b_hat=(*_A3, 0.0),
    order=3,
    embedded_order=2,
    source="Kværnø (2004), BIT 44, 489–502",
)


class Kvaerno3(ESDIRK):
    """Adaptive L-stable ESDIRK 3(2) of Kværnø (4 stages, 3 implicit)."""

    tableau = TABLEAU
