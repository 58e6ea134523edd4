"""Dormand–Prince 5(4), FSAL (Dormand & Prince 1980), with its free fourth-order continuous extension.

The dense output is Shampine's (1986, "Some practical Runge–Kutta formulas", Math. Comp. 46) fourth-order
interpolant built from the seven stages of the step (the seventh is ``f(t + h, y_(n+1))``, FSAL), as used in
Hairer's DOPRI5 code (Hairer, Nørsett & Wanner, *Solving ODEs I*, II.6, and its ``CONTD5`` coefficients ``D``);
rows are the stage weights ``b_i(theta)`` as coefficients of ``theta, theta^2, theta^3, theta^4``.

Two embedded fourth-order solutions, chosen with ``options={"error_estimate": ...}``:

- ``"dormand_prince"`` (default): Dormand & Prince's ``b_hat`` (``b_hat_7 = 1/40``), the error estimate of Hairer's
  DOPRI5 code (its ``E`` coefficients) and of MATLAB's ``ode45``;
- ``"torchdiffeq"``: the ``b_hat`` of torchdiffeq's and torchode's ``dopri5`` (``b_hat_7 = 1/60``; torchdiffeq names
  its tableau after Dormand, Prince and Shampine). Its error weights ``b - b_hat`` are exactly ``2/3`` of the
  default's, so a solve at ``rtol = atol = tol`` takes the steps of the default at ``1.5 tol``: the same steps as
  those libraries at the same tolerances (side-by-side comparisons), nothing more accurate.
"""

import dataclasses

from .rk import ExplicitRK
from .tableau import Tableau

_B = (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84, 0.0)
_B_HAT = (5179 / 57600, 0.0, 7571 / 16695, 393 / 640, -92097 / 339200, 187 / 2100, 1 / 40)
#: The embedded solution of torchdiffeq's and torchode's dopri5 (their ``b_low_order`` / ``c_sol - c_error``).
_B_HAT_TORCHDIFFEQ = (1951 / 21600, 0.0, 22642 / 50085, 451 / 720, -12231 / 42400, 649 / 6300, 1 / 60)

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


#: The same method with the error estimate of torchdiffeq and torchode (``options={"error_estimate": "torchdiffeq"}``).
TABLEAU_TORCHDIFFEQ = dataclasses.replace(
    TABLEAU, b_err=tuple(b - bh for b, bh in zip(_B, _B_HAT_TORCHDIFFEQ, strict=True))
)
#: The tableaux of :class:`Dopri5`'s ``error_estimate`` option.
ERROR_ESTIMATES = {"dormand_prince": TABLEAU, "torchdiffeq": TABLEAU_TORCHDIFFEQ}


class Dopri5(ExplicitRK):
    """Adaptive Dormand–Prince 5(4).

    Parameters
    ----------
    adaptive
        As for :class:`~physnode.solvers.rk.ExplicitRK`.
    error_estimate
        The embedded solution of the error estimate: ``"dormand_prince"`` (default, Hairer's DOPRI5) or
        ``"torchdiffeq"`` (torchdiffeq's and torchode's, ``2/3`` of the default's; see the module docstring).
    """

    tableau = TABLEAU

    def __init__(self, adaptive: bool | None = None, error_estimate: str = "dormand_prince") -> None:
        if error_estimate not in ERROR_ESTIMATES:
            raise ValueError(
                f"error_estimate must be one of {sorted(ERROR_ESTIMATES)}, got {error_estimate!r}; use "
                "'dormand_prince' (the default) or 'torchdiffeq' (the steps of torchdiffeq's and torchode's dopri5)."
            )
        if error_estimate != "dormand_prince":
            self.tableau = ERROR_ESTIMATES[error_estimate]  # type: ignore[misc]  # this instance's tableau
        self.error_estimate = error_estimate
        super().__init__(adaptive)
