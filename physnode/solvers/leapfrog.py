"""Störmer–Verlet leapfrog (kick-drift-kick), order 2, fixed step, symplectic for separable systems.

Also holds :class:`SplitComposition`, the shared stepping rule of compositions of leapfrog steps
(:mod:`physnode.solvers.yoshida4`).

Assumptions (not checked numerically, only through the model's declared ``separable`` flag):

* the state is ``y = [q, p]`` with positions ``q`` the first half and velocities / momenta ``p`` the second
  half of the last axis (``D`` even);
* ``dq/dt`` depends on ``p`` only and ``dp/dt`` on ``q`` only (a separable Hamiltonian ``H = T(p) + V(q)``,
  a Lagrangian ``½ q̇ᵀMq̇ − V(q)`` with constant ``M``, Newtonian N-body gravity).

Each kick and drift evaluates the full ``func(t, y)`` and uses the relevant half. For such systems the map
is symplectic and time-reversible, so the energy error stays bounded over long horizons instead of drifting.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor

from .base import RHS, Solver, State

__all__ = ["Leapfrog", "SplitComposition"]


class SplitComposition(Solver):
    """A composition of kick-drift-kick leapfrog substeps of fractional sizes :attr:`weights` (summing to 1).

    Consecutive half-kicks of neighbouring substeps are merged, so ``m`` substeps cost ``2m + 1``
    evaluations of ``func``. The step is a deterministic function of ``(t, h, state)`` and the state is
    ``(y,)`` only, so any gradient method that replays steps works with it.
    """

    name: ClassVar[str]
    #: Fractional sizes of the leapfrog substeps of one step.
    weights: ClassVar[tuple[float, ...]]
    adaptive = False

    def __init__(self) -> None:
        self.error_order = self.order + 1
        w = self.weights
        self._kicks = [w[0] / 2] + [(w[i - 1] + w[i]) / 2 for i in range(1, len(w))] + [w[-1] / 2]

    def check_compatible(self, func: object) -> None:
        """Raise ``ValueError`` when ``func`` declares itself non-separable or has an odd state dimension.

        Models of :mod:`physnode.physics` expose ``separable``; plain callables are accepted under the
        documented assumption (positions first half, velocities second half, split dependence).
        """
        if getattr(func, "separable", None) is False:
            raise ValueError(
                f"method={self.name!r} needs a separable system (dq/dt depending on the velocities / momenta "
                f"only and dp/dt on the positions only), but {type(func).__name__} declares separable=False "
                "(e.g. a Hamiltonian with mixed q-p terms, explicit time dependence, or a Hybrid model with a "
                "neural residual). Use an explicit Runge–Kutta method such as 'dopri5' or 'rk4' instead."
            )
        dim = getattr(func, "state_dim", None)
        if isinstance(dim, int) and dim % 2:
            raise ValueError(
                f"method={self.name!r} splits the state into positions and velocities (two equal halves), but "
                f"{type(func).__name__} has an odd state dimension {dim}."
            )

    def init(self, func: RHS, t0: Tensor, y0: Tensor, h0: Tensor) -> State:
        D = y0.shape[-1]
        if D % 2:
            raise ValueError(
                f"method={self.name!r} needs the state [positions, velocities] with an even dimension; got "
                f"y0 with D = {D}. Order the state as positions first, then velocities or momenta."
            )
        return (y0,)

    def step(self, func: RHS, t: Tensor, h: Tensor, state: State) -> tuple[State, Tensor | None]:
        y = state[0]
        n = y.shape[-1] // 2
        hh = h.unsqueeze(-1)
        q, p = y[..., :n], y[..., n:]
        tau = 0.0
        for i, c in enumerate(self.weights):
            p = torch.addcmul(p, hh, func(t + tau * h, torch.cat([q, p], -1))[..., n:], value=self._kicks[i])
            q = torch.addcmul(q, hh, func(t + (tau + c / 2) * h, torch.cat([q, p], -1))[..., :n], value=c)
            tau += c
        p = torch.addcmul(p, hh, func(t + h, torch.cat([q, p], -1))[..., n:], value=self._kicks[-1])
        return (torch.cat([q, p], -1),), None

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class Leapfrog(SplitComposition):
    """Störmer–Verlet leapfrog, kick-drift-kick (``method="leapfrog"``): order 2, fixed step, 3 evaluations.

    ``p ← p + h/2 · F(q)``, ``q ← q + h · G(p)``, ``p ← p + h/2 · F(q)`` with ``G = dq/dt`` and ``F = dp/dt``;
    see the module docstring for the separability assumption. Needs ``step_size=``.
    """

    name = "leapfrog"
    order = 2
    weights = (1.0,)
