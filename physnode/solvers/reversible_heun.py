"""Reversible Heun (Kidger, Foster, Li & Lyons, "Efficient and accurate gradients for neural SDEs", 2021) as an
ODE solver.

The state is ``(y, z, g)``: the solution ``y``, an auxiliary point ``z`` that tracks ``y`` and the cached
derivative ``g = f(t, z)``; ``z0 = y0``, ``g0 = f(t0, y0)``. One step of size ``h`` costs one evaluation::

    z' = 2 y - z + h g,        g' = f(t + h, z'),        y' = y + h/2 (g + g').

**Inverse.** From ``(y', z', g')`` and ``h``: substituting ``y = y' - h/2 (g + g')`` into the first line gives
``z = 2 y' - z' - h g'`` (explicit), then ``g = f(t, z)`` (one evaluation) and ``y = y' - h/2 (g + g')``.

The method is second order (Heun's trapezoidal update with ``z`` in place of ``y``; ``z - y`` alternates in sign
and stays ``O(h^2)``). On ``f = lambda y`` its step matrix has determinant ``-1``, like the undamped leapfrog:
the inverse is as well conditioned as the forward step, and the parasitic root has modulus above 1 on decaying
dynamics.

**Error estimate (adaptive).** The update is the trapezoidal (Heun) combination of the two derivatives; an
explicit Euler step with the first one would give ``y + h g``. Their difference
``err = y' - (y + h g) = h/2 (g' - g)`` is ``O(h^2)`` and is the local error estimate (error order 2, as for the
embedded Heun–Euler 2(1) pair).
"""

from __future__ import annotations

import torch
from torch import Tensor

from .._breakpoints import fresh_derivative
from .base import RHS, Solver, State

__all__ = ["ReversibleHeun"]


class ReversibleHeun(Solver):
    """Reversible Heun method (``method="reversible_heun"``); state ``(y, z, f(t, z))``, one evaluation per step.

    Parameters
    ----------
    adaptive
        ``True`` (default): adaptive steps with the Heun–Euler difference ``h/2 (g' - g)`` as error estimate.
        ``False``: fixed steps of ``step_size`` (required).
    """

    name = "reversible_heun"
    order = 2
    error_order = 2

    def __init__(self, adaptive: bool = True) -> None:
        self.adaptive = bool(adaptive)

    def init(self, func: RHS, t0: Tensor, y0: Tensor, h0: Tensor) -> State:
        return (y0, y0, func(t0, y0))

    def step(self, func: RHS, t: Tensor, h: Tensor, state: State) -> tuple[State, Tensor | None]:
        y, z, g = state
        g = fresh_derivative(func, t, z, g)  # re-evaluated on a step that starts on a breakpoint
        hh = h.unsqueeze(-1)
        z_new = torch.addcmul(2.0 * y - z, hh, g)
        g_new = func(t + h, z_new)
        half = 0.5 * hh
        y_new = torch.addcmul(y, half, g + g_new)
        err = half * (g_new - g) if self.adaptive else None
        return (y_new, z_new, g_new), err

    def inverse(self, func: RHS, t: Tensor, h: Tensor, state: State) -> State:
        """Recover the state before a step of size ``h`` taken at time ``t`` from the state ``(y', z', g')`` after
        it (one evaluation of ``func``); shapes as in :meth:`step`."""
        y1, z1, g1 = state
        hh = h.unsqueeze(-1)
        z = 2.0 * y1 - z1 - hh * g1
        g = func(t, z)
        return (y1 - 0.5 * hh * (g + g1), z, g)

    def __repr__(self) -> str:
        return f"ReversibleHeun(adaptive={self.adaptive})"
