r"""Symplectic adjoint (Matsubara, Miyatake & Yaguchi, NeurIPS 2021), ``grad="symplectic"``.

The forward solve runs without a graph and keeps only the state before every iteration. The backward pass
recomputes the stages of one step without a graph, then runs the symplectic partner of the forward
Runge–Kutta method on the adjoint system, one vector-Jacobian product per stage. The result is the exact
gradient of the discrete solve (the partner pair conserves the bilinear form ``λᵀδy``), with memory
``O(N·Z + s·Z + L)``.

Derivation
----------
One explicit step of size ``h`` from ``(t, y)`` with tableau ``(a, b, c)`` and ``s`` stages:

.. math::

    Y_i = y + h \sum_{j<i} a_{ij} k_j, \qquad k_i = f(t + c_i h, Y_i), \qquad y' = y + h \sum_i b_i k_i .

Let ``λ' = ∂L/∂y'`` and ``J_i = ∂f/∂y (t + c_i h, Y_i)``. Reverse-mode differentiation of the step gives,
with ``κ_i = ∂L/∂k_i`` and ``μ_i = ∂L/∂Y_i = J_iᵀ κ_i``, for ``i = s, …, 1``:

.. math::

    κ_i = h\,b_i λ' + h \sum_{j>i} a_{ji} μ_j, \qquad
    λ = ∂L/∂y = λ' + \sum_i μ_i, \qquad
    ∂L/∂θ \mathrel{+}= \sum_i (∂f/∂θ)_iᵀ κ_i .

For a stage with ``b_i ≠ 0`` write ``κ_i = h b_i Λ_i`` and ``l_i = J_iᵀ Λ_i`` (so ``μ_i = h b_i l_i``).
Then

.. math::

    Λ_i = λ' + h \sum_{j>i} \frac{b_j a_{ji}}{b_i} l_j = λ - h \sum_j A_{ij} l_j, \qquad
    λ = λ' + h \sum_j b_j l_j, \qquad
    A_{ij} = b_j \Bigl(1 - \frac{a_{ji}}{b_i}\Bigr),

which is one step of size ``-h`` of the Runge–Kutta method ``(A, b)`` applied to the adjoint equation
``dλ/dt = -J(t, y(t))ᵀ λ``, with stage derivatives ``-l_i``: the symplectic partner of ``(a, b)`` (the
pair satisfies ``b_i A_ij + b_j a_ji = b_i b_j``). Because ``A`` is "upper triangular" in the sense
``A_ij = b_j`` for ``j < i`` (``a_ji = 0``), the stages are computed for ``i = s, …, 1``, each needing
``l_j`` of the later stages only: one vector-Jacobian product per stage, the forward stages ``Y_i`` kept
(``O(s·Z)``). This module evaluates it in the equivalent "partner" form
``Λ_i = λ' + h Σ_{j>i} (b_j − A_ij) l_j``.

Stages with ``b_i = 0`` (e.g. the 7th stage of dopri5, and the 2nd) have no ``Λ_i``; for them the rescaled
variable ``κ_i`` itself is propagated, ``κ_i = h Σ_{j>i} a_ji μ_j``, ``μ_i = J_iᵀ κ_i``, which is the
limit of ``h b_i Λ_i`` as ``b_i → 0``. Parameters get ``(∂f/∂θ)_iᵀ κ_i`` from the same product.

FSAL methods (state ``(y, k)`` with ``k = f(t, y)`` cached from the previous step) have a second adjoint
``λ_k = ∂L/∂k``: the cached ``k_s`` of a step receives the ``λ_k'`` of the next state (``κ_s += λ_k'``) and
the first stage, which reads the cache instead of evaluating ``f``, hands its ``κ_1`` back as the ``λ_k`` of
the state before the step; at ``t_0`` it is pulled through ``k = f(t_0, y_0)``. A rejected or inactive row
of the batch is the identity map for its iteration.

With ``options={"step_grad": True}`` (:mod:`physnode.step_grad`) the step size and time are differentiated too:
every iteration is walked (rejected ones included), the last stage and the error estimate ``err = h Σ b̂_i k_i``
are recomputed without a graph (one more evaluation), one small vector-Jacobian product through the controller's
update gives ``ē = ∂L/∂err``, its shares in ``y`` and ``y'`` and in ``h``; ``h b̂_i ē`` joins every ``κ_i``, and
``∂L/∂h = λ'ᵀ Σ b_i k_i + ēᵀ Σ b̂_i k_i + Σ_i (μ_iᵀ Σ_j a_ij k_j + c_i τ_i)``, ``∂L/∂t = Σ_i τ_i`` with
``τ_i = κ_iᵀ ∂f/∂t`` from the same stage products (the time is a leaf of each evaluation).

Interpolated observations (``outputs="interpolate"``) ``y_m = y + h Σ_i b_i(θ_m) k_i`` of a step, with
cotangents ``g_m``, add ``Σ_m g_m`` to ``λ`` and ``h e_i`` with ``e_i = Σ_m b_i(θ_m) g_m`` to every ``κ_i``
(also to stages with ``b_i = 0``, e.g. dopri5's seventh, whose dense weight is not zero). An extension with
extra stages (dopri8's DOP853 one, :attr:`~physnode.solvers.tableau.Tableau.dense_c`) extends the step by them
for that step: stages with ``b_i = 0`` whose ``κ_i`` come from ``e_i`` and the later stages, in the rescaled form.
"""

from __future__ import annotations

from typing import cast

import numpy as np
import torch
from torch import Tensor

from .._breakpoints import fresh_derivative
from ..integrate import Integration, Problem, Trace
from ..solvers.base import State
from ..solvers.rk import ExplicitRK, linear_combination, weighted_sum
from ..solvers.tableau import Tableau
from ..step_grad import ControlAdjoint
from ._replay import ReplayGradient, interpolated_cotangent, output_cotangent, pad_output_gradient, vjp

__all__ = ["SymplecticAdjoint", "partner_tableau"]


def partner_tableau(tab: Tableau) -> list[list[float | None]]:
    """Coefficients ``A_ij = b_j (1 - a_ji / b_i)`` of the symplectic partner (``None`` on rows with
    ``b_i = 0``, where the rescaled form is used instead)."""
    s = tab.stages

    def a(i: int, j: int) -> float:
        return tab.a[i][j] if j < i else 0.0

    return [[tab.b[j] * (1.0 - a(j, i) / tab.b[i]) if tab.b[i] != 0.0 else None for j in range(s)] for i in range(s)]


class SymplecticAdjoint(ReplayGradient):
    """Symplectic adjoint of an explicit Runge–Kutta solve (``grad="symplectic"``).

    Exact for the discrete solve (equal to ``grad="direct"`` up to round-off). Backward cost per accepted
    step: ``s - 1`` stage evaluations without a graph plus ``s`` (``s - 1`` for FSAL) evaluations with a
    one-evaluation graph and their vector-Jacobian products. Memory O(N·Z + s·Z + L). Needs a solver that is
    an :class:`~physnode.solvers.rk.ExplicitRK` (a Butcher tableau).
    """

    name = "symplectic"
    step_grad = True
    solvers = ExplicitRK
    record = "states"

    def check(self, problem: Problem) -> None:
        if not self.supports(problem.solver):
            raise ValueError(
                f"grad='symplectic' needs an explicit Runge–Kutta solver defined by a Butcher tableau "
                f"(e.g. method='dopri5', 'tsit5', 'rk4'); got method={problem.solver.name!r} "
                f"({type(problem.solver).__name__}). Use grad='aca' for other solvers."
            )

    def backward(
        self, problem: Problem, result: Integration, grad_ys: Tensor, params: tuple[Tensor, ...]
    ) -> tuple[Tensor, list[Tensor]]:
        solver = cast(ExplicitRK, problem.solver)  # checked by check()
        records = cast(Trace, result.records)  # record = "states": the forward solve kept a Trace
        tab, func = solver.tableau, problem.func
        s, fsal = tab.stages, tab.fsal
        b, c = tab.b, tab.c
        b_err = tab.b_err if tab.b_err is not None else (0.0,) * s
        # Partner coefficients b_j - A_ij = b_j a_ji / b_i for b_i != 0 (the form used below).
        partner = partner_tableau(tab)
        c_all, a_all = (*c, *tab.dense_c), (*tab.a, *tab.dense_a)  # with the extension's extra stages
        padded = pad_output_gradient(grad_ys)
        any_accepted: np.ndarray | list[bool] = records.any_accepted() if records else []
        lam = torch.zeros_like(result.final_state[0])
        lam_k = torch.zeros_like(lam)  # adjoint of the cached derivative k_s (used by FSAL tableaux only)
        g_params = [torch.zeros_like(p) for p in params]
        control = ControlAdjoint.of(problem, result)  # step sizes on the graph (physnode.step_grad), or None
        for n in range(len(records) - 1, -1, -1):
            if control is None and not any_accepted[n]:
                continue
            rec = records[n]
            lam = lam + output_cotangent(padded, rec.slot)
            acc = rec.accept.unsqueeze(-1)
            lam_out = torch.where(acc, lam, 0.0)  # λ' (zero on rows that are the identity)
            t, h = rec.t, rec.h
            hh = h.unsqueeze(-1)
            state = cast(State, rec.state)  # kept: record = "states"
            y = state[0]
            fresh = problem.fresh(t)  # rows whose step starts on a breakpoint: their first stage evaluates f
            # A step that interpolated observations also walks its extension's extra stages (tableau.dense_c).
            S = s if rec.interpolated is None else tab.dense_stages
            # Forward stages without a graph; only Y_1..Y_S are needed (k_S never enters a later stage).
            with torch.no_grad(), problem.replaying(t, h, fresh):
                ks = [fresh_derivative(func, t, y, state[1]) if fsal else func(t, y)]
                Ys = [y]
                for i in range(1, S):
                    dy = linear_combination(a_all[i], ks)
                    Ys.append(y if dy is None else torch.addcmul(y, hh, dy))
                    # The controller needs the trial step and its error estimate: k_s too.
                    if i < S - 1 or (control is not None and i == s - 1):
                        ks.append(func(t + c_all[i] * h, Ys[i]))
                if control is not None:
                    y_new = torch.addcmul(y, hh, weighted_sum(b, ks))
                    err = hh * weighted_sum(b_err, ks)
                else:
                    del ks
            g_t = g_h = e_bar = None
            if control is not None:
                # dL/d err, dL/dy and dL/dy_new through the error norm, dL/dh through the controller's update.
                e_bar, g_y_en, g_ynew_en, g_h = control.controller_vjp(n, t, h, err, y, y_new, rec.accept)
                lam_out = lam_out + g_ynew_en
                g_h = g_h + (lam_out * weighted_sum(b, ks)).sum(-1) + (e_bar * weighted_sum(b_err, ks)).sum(-1)
                g_t = torch.zeros_like(g_h)
            # Adjoint stages i = s..1, each from the μ_j = J_jᵀ κ_j of the later stages.
            mus: list[Tensor | None] = [None] * S
            lam_in = lam_out
            e: Tensor | None = None  # (s, B, D): e_i = Σ_m b_i(θ_m) g_m of the interpolated observations
            if rec.interpolated is not None:
                theta, slots = rec.interpolated
                g = interpolated_cotangent(padded, slots)
                e = torch.einsum("bms,bmd->sbd", solver.dense_weights(theta), g)
                lam_in = lam_in + g.sum(dim=1)
            lam_k_in = None
            for i in range(S - 1, -1, -1):
                kappa: Tensor | None
                if i < s and b[i] != 0.0:
                    # Partner stage Λ_i = λ' + h Σ_{j>i} (b_j - A_ij) l_j with h b_j l_j = μ_j; κ_i = h b_i Λ_i.
                    lam_i = lam_out
                    for j in range(i + 1, S):
                        p_ij = partner[i][j] if j < s else None
                        if j < s and b[j] != 0.0 and p_ij is not None:
                            coef = (b[j] - p_ij) / b[j]
                        else:  # a stage with b_j = 0 (extra stages of the extension included)
                            coef = a_all[j][i] / b[i]
                        mu = mus[j]
                        if coef != 0.0 and mu is not None:
                            lam_i = lam_i.add(mu, alpha=coef)
                    kappa = lam_i * (hh * b[i])
                else:
                    # Rescaled form for b_i = 0: κ_i = h Σ_{j>i} a_ji μ_j.
                    kappa = None
                    for j in range(i + 1, S):
                        coef = a_all[j][i]
                        mu = mus[j]
                        if coef != 0.0 and mu is not None:
                            kappa = mu * coef if kappa is None else kappa.add(mu, alpha=coef)
                    if kappa is not None:
                        kappa = kappa * hh
                if e is not None:
                    kappa = hh * e[i] if kappa is None else kappa + hh * e[i]
                if e_bar is not None and b_err[i] != 0.0:  # the error estimate err = h Σ_i b_err_i k_i
                    kappa = e_bar * (hh * b_err[i]) if kappa is None else kappa + e_bar * (hh * b_err[i])
                if fsal and i == s - 1:
                    # The cached derivative k_s of the new state receives the next step's λ_k.
                    extra = torch.where(acc, lam_k, 0.0)
                    kappa = extra if kappa is None else kappa + extra
                if kappa is None:
                    continue
                if fsal and i == 0:
                    lam_k_in = kappa  # the first stage read the cache: its κ is the adjoint of the cache
                    if fresh is None:
                        continue
                    # ... except on rows that evaluated f(t, y) after a breakpoint: κ goes through f there.
                    lam_k_in = torch.where(fresh.unsqueeze(-1), 0.0, kappa)
                    kappa = torch.where(fresh.unsqueeze(-1), kappa, 0.0)
                Yi = Ys[i].detach().requires_grad_()
                ti = (t + c_all[i] * h if i else t).detach().requires_grad_(control is not None)
                time_in = [ti] if control is not None else []
                with torch.enable_grad(), problem.replaying(t, h, fresh):
                    k = func(ti, Yi)
                    grads = vjp([k], [Yi, *time_in, *params], [kappa])
                mus[i] = grads[0]
                lam_in = lam_in + grads[0]
                if g_t is not None and g_h is not None:  # Y_i = y + h Σ_j a_ij k_j at time t + c_i h
                    tau = grads[1]
                    g_t = g_t + tau
                    dy = linear_combination(a_all[i], ks)
                    g_h = g_h + c_all[i] * tau + (0.0 if dy is None else (grads[0] * dy).sum(-1))
                for g, gp in zip(g_params, grads[1 + len(time_in) :], strict=True):
                    g.add_(gp)
            if control is not None and g_t is not None and g_h is not None:
                control.finish_step(g_h, g_t)
                # A rejected row passes its adjoints through and adds the error estimate's share.
                lam = lam_in + g_y_en + torch.where(acc, 0.0, lam)
                if fsal:
                    lam_k = (torch.zeros_like(lam) if lam_k_in is None else lam_k_in) + torch.where(acc, 0.0, lam_k)
                continue
            lam = torch.where(acc, lam_in, lam)
            if fsal:
                lam_k = torch.where(acc, lam_k_in if lam_k_in is not None else torch.zeros_like(lam), lam_k)
        lam = lam + grad_ys[:, 0]
        if not fsal and control is None:
            return lam, g_params
        y0 = problem.y0.detach().requires_grad_()
        with torch.enable_grad():
            outs, cots = ([func(problem.t[:, 0], y0)], [lam_k]) if fsal else ([], [])
            if control is not None:  # through the first proposal h_0(y_0, θ) (physnode.step_grad.first_step)
                h_outs, h_cots = control.initial(problem, y0)
                outs, cots = outs + h_outs, cots + h_cots
            if not outs:
                return lam, g_params
            grads = vjp(outs, [y0, *params], cots)
        for g, gp in zip(g_params, grads[1:], strict=True):
            g.add_(gp)
        return lam + grads[0], g_params
