"""Kværnø's ESDIRK 5(4): seven stages, L-stable, stiffly accurate, embedded fourth-order solution.

Coefficients from A. Kværnø, "Singly diagonally implicit Runge–Kutta methods with an explicit first stage",
*BIT Numerical Mathematics* 44 (2004) 489–502 (``γ = 0.26``; 17-digit decimals as transcribed in diffrax's
``kvaerno5.py``). Stage 2 lies beyond the step (``c_2 ≈ 1.23``): the right-hand side is evaluated slightly
past the end of each step.
"""

from .esdirk import ESDIRK, ImplicitTableau

_G = 0.26
_A = (
    (0.0,),
    (_G, _G),
    (0.13, 0.84033320996790809, _G),
    (0.22371961478320505, 0.47675532319799699, -0.06470895363112615, _G),
    (0.16648564323248321, 0.10450018841591720, 0.03631482272098715, -0.13090704451073998, _G),
    (0.13855640231268224, 0.0, -0.04245337201752043, 0.02446657898003141, 0.61943039072480676, _G),
    (
        0.13659751177640291,
        0.0,
        -0.05496908796538376,
        -0.04118626728321046,
        0.62993304899016403,
        0.06962479448202728,
        _G,
    ),
)

TABLEAU = ImplicitTableau(
    name="kvaerno5",
    gamma=_G,
    c=(0.0, 0.52, 1.230333209967908, 0.8957659843500759, 0.43639360985864756, 1.0, 1.0),
    a=_A,
    b=_A[-1],
    b_hat=(*_A[-2], 0.0),
    order=5,
    embedded_order=4,
    source="Kværnø (2004), BIT 44, 489–502",
)


class Kvaerno5(ESDIRK):
    """Adaptive L-stable ESDIRK 5(4) of Kværnø (7 stages, 6 implicit)."""

    tableau = TABLEAU
