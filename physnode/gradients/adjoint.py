r"""Continuous adjoint (Chen, Rubanova, Bettencourt & Duvenaud, NeurIPS 2018), ``grad="adjoint"``.

The forward solve keeps only the outputs. The backward pass solves, backward in time between consecutive
observation times of each trajectory, the augmented system

.. math::

    \frac{dy}{dt} = f(t, y), \qquad
    \frac{da}{dt} = -\Bigl(\frac{∂f}{∂y}\Bigr)^{\!T} a, \qquad
    \frac{dg}{dt} = -\Bigl(\frac{∂f}{∂θ}\Bigr)^{\!T} a,

from ``(y(t_{j+1}), a(t_{j+1}^+) + ∂L/∂y(t_{j+1}), g)`` to ``t_j``: ``y`` is re-solved backward (restarted
from the forward output at every observation), ``a`` is the adjoint of the state (it jumps by ``∂L/∂ys[j]``
at observation ``j``) and ``g`` accumulates ``∂L/∂θ``. At ``t_0``, ``a = ∂L/∂y0`` and ``g = ∂L/∂θ``.

The backward solves use physnode's own per-trajectory loop (:func:`~physnode.integrate.integrate`) with
the forward method's tableau, step-size control on ``[y, a]`` with ``adjoint_rtol``/``adjoint_atol``
(the parameter part ``g`` is a pure quadrature and is left out of the error norm). Every stage costs one
evaluation of ``f`` with a graph and one vector-Jacobian product giving both ``aᵀ∂f/∂y`` and
``aᵀ∂f/∂θ``. Since the trajectories take different steps, the quadrature of ``g`` is accumulated over the
batch with per-trajectory weights ``h_b b_i`` folded into the cotangent; the contributions of rejected
steps are removed again (one extra pass over the stages, only for iterations with a rejection).

The result is the gradient of the exact flow, not of the discrete solve: its error shrinks with the
tolerances of both solves. Memory ``O(L + s·Z)`` plus the outputs.
"""

from __future__ import annotations

from typing import cast

import torch
from torch import Tensor

from ..integrate import CountingRHS, Integration, Problem, integrate
from ..solvers.base import RHS, Solver, State
from ..solvers.controller import PIController, StepController
from ..solvers.rk import ExplicitRK, linear_combination, weighted_sum
from ._replay import ReplayGradient, vjp

__all__ = ["ContinuousAdjoint"]


class _AugmentedRK(Solver):
    """The forward tableau applied to ``z = [y, a]`` (``(B, 2D)``), accumulating ``g`` on the side.

    ``step`` ignores the ``func`` it is handed (the loop's counting wrapper of the augmented dynamics, used
    for the initial step) and evaluates ``f`` itself, so that each stage's product also yields the
    parameter part.
    """

    def __init__(
        self, rk: ExplicitRK, f: RHS, params: tuple[Tensor, ...], controller: StepController, dim: int
    ) -> None:
        self.rk, self.f, self.params, self.controller, self.dim = rk, f, params, controller, dim
        self.order, self.adaptive, self.error_order = rk.order, rk.adaptive, rk.error_order
        self.g_params = [torch.zeros_like(p) for p in params]

    @property
    def name(self) -> str:  # type: ignore[override]  # internal solver, named after the one it wraps
        return f"adjoint({self.rk.name})"

    def init(self, func: RHS, t0: Tensor, y0: Tensor, h0: Tensor) -> State:
        return (y0,)

    def _stage(self, t: Tensor, z: Tensor, h: Tensor, weight: float) -> tuple[Tensor, list[Tensor]]:
        """Augmented derivative ``[f, -aᵀ∂f/∂y]`` at ``z`` and ``Σ_b h_b aᵀ∂f/∂θ`` (empty when ``weight == 0``)."""
        D = self.dim
        y, a = z[:, :D].detach().requires_grad_(), z[:, D:]
        hh = h.unsqueeze(-1)
        active = hh != 0
        w = torch.where(active, hh, 1.0)
        cot = torch.where(active, a * hh, 0.0)
        wrt = [y, *self.params] if weight != 0.0 else [y]
        with torch.enable_grad():
            fy = self.f(t, y)
            grads = vjp([fy], wrt, [cot])
        return torch.cat([fy.detach(), -grads[0] / w], dim=-1), grads[1:]

    def _params_only(self, t: Tensor, z: Tensor, h: Tensor, rows: Tensor) -> list[Tensor]:
        D = self.dim
        y = z[:, :D].detach().requires_grad_()
        cot = torch.where(rows.unsqueeze(-1), z[:, D:] * h.unsqueeze(-1), 0.0)
        with torch.enable_grad():
            return vjp([self.f(t, y)], list(self.params), [cot])

    def step(self, func: RHS, t: Tensor, h: Tensor, state: State) -> tuple[State, Tensor | None]:
        tab = self.rk.tableau
        z = state[0]
        hh = h.unsqueeze(-1)
        ks: list[Tensor] = []
        zs: list[Tensor] = []
        psi: list[Tensor] | None = None  # Σ_i b_i Σ_b h_b a_bᵀ ∂f_b/∂θ over the stages
        for i in range(tab.stages):
            dz = linear_combination(tab.a[i], ks) if i else None
            zi = z if dz is None else torch.addcmul(z, hh, dz)
            ti = t + tab.c[i] * h if i else t
            k, gp = self._stage(ti, zi, h, tab.b[i])
            ks.append(k)
            zs.append(zi)
            if gp:
                psi = (
                    [g * tab.b[i] for g in gp]
                    if psi is None
                    else [p.add_(g, alpha=tab.b[i]) for p, g in zip(psi, gp, strict=True)]
                )
        z_new = torch.addcmul(z, hh, weighted_sum(tab.b, ks))
        err = hh * weighted_sum(tab.b_err, ks) if self.adaptive and tab.b_err is not None else None
        if psi is None or not self.params:
            return (z_new,), err
        # The controller's accept rule (the loop's), evaluated here because g is summed over the batch.
        with torch.no_grad():
            ctrl = self.controller
            ok = ctrl.accepts(ctrl.step_norm(None if err is None else err.detach(), z.detach(), z_new.detach()))
            rejected = (h != 0) & ~ok
        if bool(rejected.any()):
            for i in range(tab.stages):
                if tab.b[i] != 0.0:
                    ti = t + tab.c[i] * h if i else t
                    for p, g in zip(psi, self._params_only(ti, zs[i], h, rejected), strict=True):
                        p.sub_(g, alpha=tab.b[i])
        # dg/dt = -aᵀ∂f/∂θ, so g += h Σ_i b_i (-aᵀ∂f/∂θ)_i, with h folded into psi.
        for g, p in zip(self.g_params, psi, strict=True):
            g.sub_(p)
        return (z_new,), err


class ContinuousAdjoint(ReplayGradient):
    """Continuous adjoint method (``grad="adjoint"``): the adjoint ODE solved backward in time.

    Not exact for the discrete solve (``exact = False``); its error is controlled by ``adjoint_rtol`` and
    ``adjoint_atol``. Memory ``O(L + s·Z)`` plus the outputs, independent of the number of steps. Needs an
    explicit Runge–Kutta solver (its tableau is reused backward).

    Parameters
    ----------
    adjoint_rtol, adjoint_atol
        Tolerances of the backward solve; ``None`` (default) uses the forward ``rtol`` / ``atol``.
    """

    name = "adjoint"
    exact = False
    solvers = ExplicitRK
    record = None

    def __init__(self, adjoint_rtol: float | None = None, adjoint_atol: float | None = None) -> None:
        for label, v in (("adjoint_rtol", adjoint_rtol), ("adjoint_atol", adjoint_atol)):
            if v is not None and not (isinstance(v, (int, float)) and v >= 0 and v == v and v != float("inf")):
                raise ValueError(f"{label} must be a non-negative finite number or None, got {v!r}.")
        if adjoint_rtol == 0 and adjoint_atol == 0:
            raise ValueError("adjoint_rtol and adjoint_atol cannot both be zero.")
        self.adjoint_rtol = adjoint_rtol
        self.adjoint_atol = adjoint_atol

    def __repr__(self) -> str:
        return f"ContinuousAdjoint(adjoint_rtol={self.adjoint_rtol}, adjoint_atol={self.adjoint_atol})"

    def check(self, problem: Problem) -> None:
        if not self.supports(problem.solver):
            raise ValueError(
                f"grad='adjoint' solves the adjoint equation with the forward Runge–Kutta tableau and needs an "
                f"explicit Runge–Kutta method (e.g. method='dopri5'); got method={problem.solver.name!r} "
                f"({type(problem.solver).__name__}). Use grad='aca' for other solvers."
            )

    def _controller(self, problem: Problem, D: int) -> StepController:
        ctrl = problem.controller
        if not isinstance(ctrl, PIController):
            return ctrl  # fixed steps: the same step size backward
        rtol = ctrl.rtol if self.adjoint_rtol is None else self.adjoint_rtol
        atol = ctrl.atol if self.adjoint_atol is None else self.adjoint_atol
        if isinstance(atol, Tensor):
            atol = atol.expand(D).repeat(2)
        return PIController(rtol=rtol, atol=atol)

    def backward(
        self, problem: Problem, result: Integration, grad_ys: Tensor, params: tuple[Tensor, ...]
    ) -> tuple[Tensor, list[Tensor]]:
        _, T, D = grad_ys.shape
        ys, t, f = result.ys.detach(), problem.t, problem.func
        ctrl = self._controller(problem, D)
        rk = cast(ExplicitRK, problem.solver)  # checked by check()
        aug_solver = _AugmentedRK(rk, f, params, ctrl, D)

        def augmented(tt: Tensor, z: Tensor) -> Tensor:
            y = z[:, :D].detach().requires_grad_()
            with torch.enable_grad():
                fy = f(tt, y)
                (ja,) = vjp([fy], [y], [z[:, D:]])
            return torch.cat([fy.detach(), -ja], dim=-1)

        a = grad_ys[:, T - 1]
        for j in range(T - 2, -1, -1):
            sub = Problem(
                func=CountingRHS(augmented, False),
                y0=torch.cat([ys[:, j + 1], a], dim=-1),
                t=torch.stack([t[:, j + 1], t[:, j]], dim=1),
                solver=aug_solver,
                controller=ctrl,
                max_steps=problem.max_steps,
                breakpoints=problem.breakpoints,  # the backward solve lands on them too
            )
            a = integrate(sub).ys[:, 1, D:] + grad_ys[:, j]
        return a, aug_solver.g_params
