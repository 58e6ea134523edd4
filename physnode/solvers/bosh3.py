"""Bogacki–Shampine 3(2), FSAL (Bogacki & Shampine 1989), with the cubic Hermite interpolant as dense output
(order 3, free: the fourth stage is ``f(t_(n+1), y_(n+1))``)."""

from .rk import ExplicitRK
from .tableau import Tableau, hermite_dense

_B = (2 / 9, 1 / 3, 4 / 9, 0.0)
_B_HAT = (7 / 24, 1 / 4, 1 / 3, 1 / 8)

TABLEAU = Tableau(
    name="bosh3",
    c=(0.0, 0.5, 0.75, 1.0),
    a=((), (0.5,), (0.0, 0.75), _B[:3]),
    b=_B,
    order=3,
    b_err=tuple(b - bh for b, bh in zip(_B, _B_HAT, strict=True)),
    embedded_order=2,
    dense=hermite_dense(_B),
    dense_order=3,
)


class Bosh3(ExplicitRK):
    """Adaptive Bogacki–Shampine 3(2)."""

    tableau = TABLEAU
