"""Dormand–Prince 5(4), FSAL (Dormand & Prince 1980), with its free fourth-order continuous extension.

The dense output is Shampine's (1986, "Some practical Runge–Kutta formulas", Math. Comp. 46) fourth-order
interpolant built from the seven stages of the step (the seventh is ``f(t + h, y_(n+1))``, FSAL), as used in
Hairer's DOPRI5 code (Hairer, Nørsett & Wanner, *Solving ODEs I*, II.6, and its ``CONTD5`` coefficients ``D``);
rows are the stage weights ``b_i(theta)`` as coefficients of ``theta, theta^2, theta^3, theta^4``."""

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
    dense=(
        (1.0, -8048581381 / 2820520608, 8663915743 / 2820520608, -12715105075 / 11282082432),
        (0.0, 0.0, 0.0, 0.0),
        (0.0, 131558114200 / 32700410799, -68118460800 / 10900136933, 87487479700 / 32700410799),
        (0.0, -1754552775 / 470086768, 14199869525 / 1410260304, -10690763975 / 1880347072),
        (0.0, 127303824393 / 49829197408, -318862633887 / 49829197408, 701980252875 / 199316789632),
        (0.0, -282668133 / 205662961, 2019193451 / 616988883, -1453857185 / 822651844),
        (0.0, 40617522 / 29380423, -110615467 / 29380423, 69997945 / 29380423),
    ),
    dense_order=4,
)


class Dopri5(ExplicitRK):
    """Adaptive Dormand–Prince 5(4)."""

    tableau = TABLEAU
