"""Asynchronous leapfrog (ALF) with damping, the reversible solver behind MALI (Zhuang et al., ICLR 2021).

The state is ``(y, v)`` with ``v`` an approximation of ``dy/dt`` carried between steps, ``v0 = f(t0, y0)``.
One step of size ``h`` from ``(y, v)`` at time ``t`` costs one evaluation::

    s  = y + h/2 v,        u = f(t + h/2, s),
    v' = v + 2 eta (u - v) = (1 - 2 eta) v + 2 eta u,
    y' = s + h/2 v'.

**Inverse.** Given ``(y', v')`` and ``h``: ``s = y' - h/2 v'`` (exact), ``u = f(t + h/2, s)`` (one evaluation),
``v = (v' - 2 eta u) / (1 - 2 eta)``, ``y = s - h/2 v``. It exists for ``eta != 1/2`` (for ``eta = 1/2`` the
step forgets ``v``). On ``f = lambda y`` with ``z = h lambda`` the step matrix acting on ``(y, h v)`` is
``[[1 + eta z, 1 - eta + eta z / 2], [2 eta z, 1 - 2 eta + eta z]]`` with determinant ``1 - 2 eta``: a
"physical" root ``1 + z + (1 - 1/(2 eta)) z^2 + O(z^3)`` and a "parasitic" root ``1 - 2 eta + O(z)``.

* ``eta = 1`` (the authors' choice): ``|det| = 1``, the method is second order and the inverse is as well
  conditioned as the forward step, but the parasitic root is ``z - sqrt(z^2 + 1)`` whose modulus exceeds 1 for
  every real ``z < 0``: on dissipative (decaying) dynamics the forward solve grows like ``exp(|lambda| t)``.
* ``0 < eta < 1`` (damped): the parasitic root ``1 - 2 eta`` has modulus below 1, so the forward solve is
  stable on dissipative dynamics for small ``|z|``; the price is order 1 (the ``z^2`` coefficient is ``1/2`` only
  for ``eta = 1``) and an inverse that amplifies rounding errors by ``1 / |1 - 2 eta|`` per step, so the exact
  reconstruction used by ``grad="mali"`` degrades geometrically with the number of steps (``grad="mali"``
  reports the reconstruction error in ``stats.extra``; prefer ``grad="direct"`` or ``"aca"`` for long damped
  solves).

**Error estimate (adaptive).** The state also keeps, for step-size control only, the last midpoint
derivative ``u_prev`` and the half step ``h_prev/2`` (both ``f(t0, y0)`` and ``0`` initially); they never
influence ``y`` or ``v``. The local error is estimated like the Heun–Euler pair, as the difference between a
second-order step and an Euler step, ``h^2/2 y''``, with ``y''`` from the divided difference of the two latest
evaluations at their midpoints::

    err = h^2/2 (u - u_prev) / (h_prev/2 + h/2)          (error order 2)

On the first step this is ``h (u - v0)``. The simpler ``h eta (u - v)`` (and ``h (v' - v)`` of the authors' code)
is polluted by the parasitic component ``v - f(t, y)``, which the undamped method never damps: after the
step size drops it keeps the estimate large and forces steps far smaller than needed (three times as many steps
on the three-body benchmark).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .base import RHS, Solver, State

__all__ = ["ALF"]


class ALF(Solver):
    """Damped asynchronous leapfrog (``method="alf"``); state ``(y, v)``, one evaluation per step.

    Parameters
    ----------
    eta
        Damping ``eta`` in ``(0, 1]``, ``eta != 1/2``. Default ``1.0`` (undamped, second order, the value of the
        MALI paper and the only one whose exact inverse does not amplify rounding errors). ``eta < 1`` damps
        the parasitic mode (stable on dissipative systems) but is first order and its inverse amplifies
        rounding by ``1 / |1 - 2 eta|`` per step.
    adaptive
        ``True`` (default): adaptive steps with the error estimate of the module docstring (the change of the
        midpoint derivative ``u`` between steps, Heun–Euler-like, error order 2). ``False``: fixed steps of
        ``step_size`` (required).

    Raises
    ------
    ValueError
        When ``eta`` is not a finite number in ``(0, 1]`` or equals ``1/2``.
    """

    name = "alf"

    def __init__(self, eta: float = 1.0, adaptive: bool = True) -> None:
        if isinstance(eta, bool) or not isinstance(eta, (int, float)) or not math.isfinite(eta):
            raise ValueError(f"eta must be a finite number in (0, 1] other than 1/2, got {eta!r}.")
        eta = float(eta)
        if not 0.0 < eta <= 1.0:
            raise ValueError(
                f"eta must lie in (0, 1], got {eta!r}: eta = 1 is the undamped leapfrog, 0 < eta < 1 damps it, "
                "eta > 1 amplifies the parasitic mode and eta <= 0 is inconsistent. Use e.g. options={'eta': 0.8}."
            )
        if abs(1.0 - 2.0 * eta) < 1e-6:
            raise ValueError(
                f"eta = {eta!r} is (too close to) 1/2: the inverse step divides by 1 - 2*eta = {1 - 2 * eta:.3g}, so "
                "the step cannot be reversed. Choose eta away from 1/2, e.g. 1.0 or 0.8."
            )
        self.eta = eta
        self.adaptive = bool(adaptive)
        self.order = 2 if eta == 1.0 else 1
        self.error_order = 2

    def init(self, func: RHS, t0: Tensor, y0: Tensor, h0: Tensor) -> State:
        v0 = func(t0, y0)
        return (y0, v0, v0, torch.zeros_like(t0).unsqueeze(-1))

    def step(self, func: RHS, t: Tensor, h: Tensor, state: State) -> tuple[State, Tensor | None]:
        y, v, u_prev, d_prev = state
        half = (0.5 * h).unsqueeze(-1)
        s = torch.addcmul(y, half, v)
        u = func(t + 0.5 * h, s)
        eta = self.eta
        v_new = v + (2.0 * eta) * (u - v)
        y_new = torch.addcmul(s, half, v_new)
        err = None
        if self.adaptive:
            with torch.no_grad():
                # Second difference of the solution from the last two evaluation points (see module docstring).
                gap = d_prev + half
                gap = torch.where(gap == 0, torch.ones_like(gap), gap)
                err = (2.0 * half * half / gap) * (u.detach() - u_prev)
        return (y_new, v_new, u.detach(), half.detach()), err

    def inverse(self, func: RHS, t: Tensor, h: Tensor, state: State) -> State:
        """Recover the state before a step of size ``h`` taken at time ``t`` from the state ``(y', v')`` after it.

        Parameters
        ----------
        func
            Batched right-hand side.
        t
            Time of each trajectory before the step, ``(B,)``.
        h
            The step that was taken, ``(B,)``.
        state
            The state ``(y', v', u, h/2)`` after the step.

        Returns
        -------
        State
            ``(y, v)`` before the step (one evaluation of ``func``) followed by the error-control history entries
            as given (they do not influence ``y`` and ``v``, and are not reconstructed).
        """
        y1, v1, u1, d1 = state
        half = (0.5 * h).unsqueeze(-1)
        s = y1 - half * v1
        u = func(t + 0.5 * h, s)
        v = (v1 - (2.0 * self.eta) * u) / (1.0 - 2.0 * self.eta)
        return (s - half * v, v, u1, d1)

    def __repr__(self) -> str:
        return f"ALF(eta={self.eta}, adaptive={self.adaptive})"
