"""Adaptive Checkpoint Adjoint (Zhuang et al., ICML 2020), ``grad="aca"``.

The forward solve runs without a graph and keeps, for every iteration of the loop, the time ``t_n``, the
step ``h_n`` (held constant: the step-size controller is not differentiated), the per-trajectory accept mask
and the solver state ``S_n`` before the step. The backward pass walks the iterations in reverse with the
adjoint ``Ā_n = dL/dS_n`` of the whole solver state (for FSAL Runge–Kutta methods ``S = (y, f(t, y))``, so
the gradient also flows through the cached derivative; for the asynchronous leapfrog ``S = (y, v)``):

1. add ``dL/dys[b, j]`` to the ``y``-part of ``Ā_(n+1)`` when iteration ``n`` wrote observation ``j`` of
   trajectory ``b`` (with ``outputs="interpolate"``, observations written from the step's continuous extension
   ``y_n + h sum_k theta^k R_k(S_n)`` instead enter step 2 as outputs of the replayed step with their own
   cotangents);
2. replay ``S_(n+1) = solver.step(func, t_n, h_n, S_n)`` with a graph and take one vector-Jacobian product
   with the masked cotangent ``accept ⊙ Ā_(n+1)``: it gives ``Ā_n`` for the accepted rows and this step's
   share of ``dL/dθ``; a rejected or inactive row is the identity map, so its adjoint passes through;
3. finally backprop ``Ā_0`` through ``S_0 = solver.init(func, t_0, y_0, h_0)``.

ACA's paper holds the step sizes constant, and so does this method by default. With
``options={"step_grad": True}`` (:mod:`physnode.step_grad`) the steps are differentiable functions of the error
estimates: every iteration is replayed (rejected ones too, whose error norm shrinks the next step) and the
adjoints of time, proposal and previous error norm (:class:`~physnode.step_grad.ControlAdjoint`) ride along with
``Ā_n``, so the result still equals ``grad="direct"`` with the same option. With ``outputs="interpolate"`` the
fractions ``theta = (t_obs - t_n) / h_n`` of the interpolated observations are replayed on the graph of ``t_n`` and
``h_n`` too (their cotangents join the adjoints of time and step).

This equals backprop through the same discrete solve up to round-off and works for any :class:`Solver`
(it only calls ``init`` and ``step``). Memory: ``O(N·Z)`` for the states plus ``O(s·L)`` for the graph of
one replayed step.
"""

from __future__ import annotations

from typing import cast

import numpy as np
import torch
from torch import Tensor

from ..dense import evaluate
from ..integrate import Integration, Problem, Trace
from ..step_grad import ControlAdjoint, fraction
from ._replay import ReplayGradient, interpolated_cotangent, output_cotangent, pad_output_gradient, vjp

__all__ = ["ACA"]


def _mask(accept: Tensor, x: Tensor) -> Tensor:
    return accept.view(accept.shape + (1,) * (x.ndim - 1))


class ACA(ReplayGradient):
    """Adaptive Checkpoint Adjoint: replay each accepted step with a graph in reverse order.

    Exact (equal to ``grad="direct"`` on the same discrete solve) for every solver. Memory O(N·Z + s·L) for
    ``N`` iterations, state size ``Z`` and a one-step graph of size ``s·L``; no double backward.
    """

    name = "aca"
    step_grad = True
    record = "states"

    def backward(
        self, problem: Problem, result: Integration, grad_ys: Tensor, params: tuple[Tensor, ...]
    ) -> tuple[Tensor, list[Tensor]]:
        solver, func = problem.solver, problem.func
        records = cast(Trace, result.records)  # record = "states": the forward solve kept a Trace
        padded = pad_output_gradient(grad_ys)
        any_accepted: np.ndarray | list[bool] = records.any_accepted() if records else []
        adj: list[Tensor | None] = [torch.zeros_like(s) if s.is_floating_point() else None for s in result.final_state]
        g_params = [torch.zeros_like(p) for p in params]
        control = ControlAdjoint.of(problem, result)  # step sizes on the graph (physnode.step_grad), or None
        t_obs_all = problem.t.detach()
        padded_t = torch.cat([t_obs_all, t_obs_all[:, -1:]], dim=1)  # (B, T + 1): slot T is never interpolated
        for n in range(len(records) - 1, -1, -1):
            if control is None and not any_accepted[n]:
                continue  # every row is the identity map and wrote no output
            rec = records[n]
            assert rec.state is not None
            adj[0] = cast(Tensor, adj[0]) + output_cotangent(padded, rec.slot)  # y is floating: never None
            state = tuple(s.detach().requires_grad_() if s.is_floating_point() else s for s in rec.state)
            diff_in = [s for s in state if s.requires_grad]
            with torch.enable_grad(), problem.replaying(rec.t, rec.h):  # the forward step's sides at breakpoints
                t_n, h_n = (rec.t, rec.h) if control is None else control.inputs(n, rec.t, rec.h)
                new_state, err = solver.step(func, t_n, h_n, state)
                outs, cots = [], []
                for s_new, a in zip(new_state, adj, strict=True):
                    if a is not None:
                        outs.append(s_new)
                        cots.append(torch.where(_mask(rec.accept, a), a, 0.0))
                if rec.interpolated is not None:  # observations written by this step's continuous extension
                    theta, slots = rec.interpolated
                    y_n, h_d, R = solver.dense_terms(func)  # type: ignore[attr-defined]  # interpolating solvers have it
                    if control is not None:  # theta = (t_obs - t_n) / h_n differentiated too, as in the forward
                        t_obs = padded_t.gather(1, slots)
                        theta = fraction(theta, t_obs, t_n, h_n)
                    outs.append(evaluate(y_n, h_d, R, theta))
                    cots.append(interpolated_cotangent(padded, slots))
                leaves: list[Tensor] = []
                if control is not None:  # the controller's update from this step's error estimate
                    c_outs, c_cots = control.outputs(err, state[0], new_state[0], rec.accept)
                    outs, cots, leaves = outs + c_outs, cots + c_cots, control.leaves
                grads = vjp(outs, diff_in + leaves + list(params), cots)
            it = iter(grads[: len(diff_in)])
            if control is None:
                adj = [None if a is None else torch.where(_mask(rec.accept, a), next(it), a) for a in adj]
            else:  # a rejected row passes its adjoint through and adds the error estimate's share
                adj = [None if a is None else next(it) + torch.where(_mask(rec.accept, a), 0.0, a) for a in adj]
                control.take(grads[len(diff_in) : len(diff_in) + len(leaves)])
            for g, gp in zip(g_params, grads[len(diff_in) + len(leaves) :], strict=True):
                g.add_(gp)
        adj[0] = cast(Tensor, adj[0]) + grad_ys[:, 0]
        # Through the initial state S_0 = init(t_0, y_0, h_0) (e.g. the cached f(t_0, y_0) of FSAL methods).
        y0 = problem.y0.detach().requires_grad_()
        h0 = result.h0 if result.h0 is not None else torch.zeros_like(problem.t[:, 0])
        with torch.enable_grad():
            state0 = problem.solver.init(func, problem.t[:, 0], y0, h0)
            outs = [s for s, a in zip(state0, adj, strict=True) if a is not None]
            cots = [a for a in adj if a is not None]
            if control is not None:  # and through the first proposal h_0(y_0, θ) (physnode.step_grad.first_step)
                h_outs, h_cots = control.initial(problem, y0)
                outs, cots = outs + h_outs, cots + h_cots
            grads = vjp(outs, [y0, *params], cots)
        for g, gp in zip(g_params, grads[1:], strict=True):
            g.add_(gp)
        return grads[0], g_params
