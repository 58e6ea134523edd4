"""Dormand–Prince 5(4), FSAL (Dormand & Prince 1980)."""

from .rk import ExplicitRK
from .tableau import Tableau

_B = (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84, 0.0)
_B_HAT = (5179 / 57600, 0.0, 7571 / 16695, 393 / 640, -92097 / 339200, 187 / 2100, 1 / 40)

TABLEAU = Tableau(
    name="dopri5",
    c=(0.0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1.0, 1.0),
    a=(
        (),
        (1 / 5,),
        (3 / 40, 9 / 40),
        (44 / 45, -56 / 15, 32 / 9),
        (19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729),
        (9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656),
        _B[:6],
    ),
    b=_B,
    order=5,
    b_err=tuple(b - bh for b, bh in zip(_B, _B_HAT, strict=True)),
    embedded_order=4,
)


class Dopri5(ExplicitRK):
    """Adaptive Dormand–Prince 5(4)."""

    tableau = TABLEAU
