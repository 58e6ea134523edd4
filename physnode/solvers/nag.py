"""First-order Nesterov-accelerated-gradient (NAG) solver, after "On Tuning Neural ODE for Stability, Consistency
and Faster Convergence" (arXiv 2312.01657).

The paper's exact update is not reproduced here; this module uses a consistent formulation of a Nesterov step
for ``dy/dt = f(t, y)``. In displacement form, with momentum ``mu`` and ``v`` the last displacement::

    v' = mu v + (1 - mu) h f(t + mu h, y + mu v),        y' = y + v',        v0 = h f(t0, y0).

**As a linear multistep method.** Eliminating ``v = y_n - y_(n-1)`` gives
``y_(n+1) - (1 + mu) y_n + mu y_(n-1) = (1 - mu) h f(t_n + mu h, y_n + mu (y_n - y_(n-1)))``: first
characteristic polynomial ``rho(zeta) = (zeta - 1)(zeta - mu)``, second (for the look-ahead argument)
``sigma(zeta) = (1 - mu)((1 + mu) zeta - mu)``.

* Consistency: ``rho(1) = 0`` and ``rho'(1) = 1 - mu = sigma(1)``.
* Zero-stability: the roots of ``rho`` are ``1`` and ``mu``; root condition holds for ``|mu| < 1``.
* Order exactly 1: the second-order condition would need ``(3 - mu)/2 = 1 - mu^2``, i.e.
  ``2 mu^2 - mu + 1 = 0``, which has no real root. The error constant is
  ``(2 mu^2 - mu + 1) / (2 (1 - mu))``: ``1/2`` (explicit Euler) at ``mu = 0``, ``1`` at ``mu = 1/2``, ``8.6``
  at ``mu = 0.9``.

**Variable steps (velocity form).** ``v`` is a displacement ``~ h f``; when the loop clips a step to land on an
observation time the displacement of the previous step no longer matches the new ``h``. The state therefore
stores the velocity ``w = v / h`` (a derivative, ``w0 = f(t0, y0)``), which amounts to rescaling ``v`` by
``h_new / h_old``::

    k = f(t + mu h, y + mu h w),        w' = mu w + (1 - mu) k,        y' = y + h w'.

With a constant step this is exactly the displacement form above; ``w`` is an exponential moving average of the
look-ahead derivatives.

**Gradients.** Works with ``grad="direct"`` and with generic replay (``grad="aca"``). It is not a Runge–Kutta
tableau (it carries ``w`` between steps), so the symplectic adjoint, which pairs an RK tableau with its
symplectic partner, does not apply; nor do the reversible methods (the step is not algebraically inverted).
Fixed step only (``step_size`` required).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .._breakpoints import fresh_derivative
from .base import RHS, Solver, State

__all__ = ["NAG"]


class NAG(Solver):
    """Nesterov-accelerated first-order solver (``method="nag"``); state ``(y, w)``, one evaluation per step.

    Parameters
    ----------
    mu
        Momentum in ``[0, 1)``. Default ``0.5`` (error constant 1, twice that of explicit Euler; larger values
        smooth more but the error constant ``(2 mu^2 - mu + 1) / (2 (1 - mu))`` grows without bound as
        ``mu -> 1``). ``mu = 0`` is explicit Euler.

    Raises
    ------
    ValueError
        When ``mu`` is not a finite number in ``[0, 1)``.
    """

    name = "nag"
    order = 1
    error_order = 2
    adaptive = False

    def __init__(self, mu: float = 0.5) -> None:
        if isinstance(mu, bool) or not isinstance(mu, (int, float)) or not math.isfinite(mu) or not 0.0 <= mu < 1.0:
            raise ValueError(
                f"mu must be a finite number in [0, 1) (the second root of rho(zeta) = (zeta - 1)(zeta - mu) must lie "
                f"inside the unit circle), got {mu!r}. Use e.g. options={{'mu': 0.5}}."
            )
        self.mu = float(mu)

    def init(self, func: RHS, t0: Tensor, y0: Tensor, h0: Tensor) -> State:
        return (y0, func(t0, y0))

    def step(self, func: RHS, t: Tensor, h: Tensor, state: State) -> tuple[State, Tensor | None]:
        y, w = state
        w = fresh_derivative(func, t, y, w)  # the momentum restarts on a step that starts on a breakpoint
        mu = self.mu
        hh = h.unsqueeze(-1)
        k = func(t + mu * h, torch.addcmul(y, mu * hh, w))
        w_new = mu * w + (1.0 - mu) * k
        return (torch.addcmul(y, hh, w_new), w_new), None

    def __repr__(self) -> str:
        return f"NAG(mu={self.mu})"
