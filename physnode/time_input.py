r"""Gradients with respect to the observation times and the initial time of a solve.

For the exact flow ``y(t) = Φ(t; t_0, y_0, θ)`` of ``dy/dt = f(t, y)``:

.. math::

    \frac{∂y(t_i)}{∂t_i} = f(t_i, y(t_i)), \qquad
    \frac{∂y(t_i)}{∂t_0} = -\frac{∂y(t_i)}{∂y_0}\, f(t_0, y_0) \quad (i \ge 1), \qquad
    \frac{∂y(t_0)}{∂t_0} = \frac{∂y_0}{∂t_0} = 0,

the second because moving the start by ``δ`` along the same trajectory changes nothing, so starting at
``t_0 + δ`` from ``y_0`` is starting at ``t_0`` from ``y_0 - δ f(t_0, y_0) + O(δ²)``. Hence for a loss ``L``

.. math::

    \frac{dL}{dt_i} = \Bigl\langle \frac{∂L}{∂y_i}, f(t_i, y_i) \Bigr\rangle \ (i \ge 1), \qquad
    \frac{dL}{dt_0} = \Bigl\langle \frac{∂L}{∂y_0}, f(t_0, y_0) \Bigr\rangle
                     - \Bigl\langle a(t_0), f(t_0, y_0) \Bigr\rangle,

with ``a(t_0) = dL/dy_0`` the total gradient with respect to the initial state (which includes ``∂L/∂y_0`` of the
output ``ys[0] = y_0``; the two ``∂L/∂y_0`` terms cancel, leaving ``-⟨a_flow(t_0), f(t_0, y_0)⟩``).

**How it is attached, for every gradient method.** Both formulas are added to the graph with terms whose value is
exactly zero (``x - x`` of the same tensor is ``0`` in floating point, so the solution is unchanged bit for bit):
the solve starts from ``y_0 - (t_0 - sg(t_0)) f(t_0, y_0)`` (``sg``: detached), so that whatever method
differentiates the solve with respect to ``y_0`` also delivers ``-⟨a(t_0), f_0⟩`` to ``t_0``; and each output
becomes ``y_i + (t_i - sg(t_i)) f(t_i, y_i)``. ``f`` is evaluated detached, once per observation time (``T``
batched evaluations plus one, counted in ``stats.nfe``), only when ``t`` requires grad.

**Exact or not.** These are the derivatives of the exact flow. The numerical solution is a different function of
the times: for instance the last step into ``t_i`` has length ``t_i - t_n``, and the derivative of a Runge–Kutta
step with respect to its length equals ``f(t_i, y_i)`` only up to the local error; and adaptive step choices
depend discontinuously on the times. So for every method, ``direct`` included, the time gradient equals the
derivative of the discrete solve only up to the solve's error (``O(tol)``), like the continuous adjoint's parameter
gradient; it is exact in the limit of vanishing step sizes. The gradients with respect to ``y_0`` and ``θ`` keep
the exactness of the chosen method.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .integrate import CountingRHS

__all__ = ["observation_time_terms", "shifted_initial_state"]


def shifted_initial_state(func: CountingRHS, t0: Tensor, y0: Tensor) -> Tensor:
    """``y0 - (t0 - sg(t0)) f(t0, y0)`` ``(B, D)``: the value of ``y0`` with the initial-time gradient attached.

    Parameters
    ----------
    func
        Batched right-hand side.
    t0
        Initial times ``(B,)``, requiring grad.
    y0
        Initial states ``(B, D)``.
    """
    with torch.no_grad():
        f0 = func(t0.detach(), y0.detach())
    return y0 - (t0 - t0.detach()).unsqueeze(-1) * f0


def observation_time_terms(func: CountingRHS, t: Tensor, ys: Tensor) -> Tensor:
    """``ys + (t - sg(t)) f(t, ys)`` ``(B, T, D)``: the outputs with ``dy_i/dt_i = f(t_i, y_i)`` attached.

    Parameters
    ----------
    func
        Batched right-hand side (one detached evaluation per observation time).
    t
        Observation times ``(B, T)``, requiring grad.
    ys
        States at ``t``, ``(B, T, D)``.
    """
    with torch.no_grad():
        fs = torch.stack([func(t[:, i].detach(), ys[:, i].detach()) for i in range(t.shape[1])], dim=1)
    return ys + (t - t.detach()).unsqueeze(-1) * fs
