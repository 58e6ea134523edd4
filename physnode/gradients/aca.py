"""Adaptive Checkpoint Adjoint (Zhuang et al., ICML 2020), ``grad="aca"``.

The forward solve runs without a graph and keeps, for every iteration of the loop, the time ``t_n``, the
step ``h_n`` (held constant: the step-size controller is not differentiated), the per-trajectory accept mask
and the solver state ``S_n`` before the step. The backward pass walks the iterations in reverse with the
adjoint ``Ā_n = dL/dS_n`` of the whole solver state (for FSAL Runge–Kutta methods ``S = (y, f(t, y))``, so
the gradient also flows through the cached derivative; for the asynchronous leapfrog ``S = (y, v)``):

1. add ``dL/dys[b, j]`` to the ``y``-part of ``Ā_(n+1)`` when iteration ``n`` wrote observation ``j`` of
   trajectory ``b``;
2. replay ``S_(n+1) = solver.step(func, t_n, h_n, S_n)`` with a graph and take one vector-Jacobian product
   with the masked cotangent ``accept ⊙ Ā_(n+1)``: it gives ``Ā_n`` for the accepted rows and this step's
   share of ``dL/dθ``; a rejected or inactive row is the identity map, so its adjoint passes through;
3. finally backprop ``Ā_0`` through ``S_0 = solver.init(func, t_0, y_0, h_0)``.

This equals backprop through the same discrete solve up to round-off and works for any :class:`Solver`
(it only calls ``init`` and ``step``). Memory: ``O(N·Z)`` for the states plus ``O(s·L)`` for the graph of
one replayed step.
"""

from __future__ import annotations

from typing import cast

import numpy as np
import torch
from torch import Tensor

from ..integrate import Integration, Problem, Trace
from ._replay import ReplayGradient, output_cotangent, pad_output_gradient, vjp

__all__ = ["ACA"]


def _mask(accept: Tensor, x: Tensor) -> Tensor:
    return accept.view(accept.shape + (1,) * (x.ndim - 1))


class ACA(ReplayGradient):
    """Adaptive Checkpoint Adjoint: replay each accepted step with a graph in reverse order.

    Exact (equal to ``grad="direct"`` on the same discrete solve) for every solver. Memory O(N·Z + s·L) for
    ``N`` iterations, state size ``Z`` and a one-step graph of size ``s·L``; no double backward.
    """

    name = "aca"
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
        for n in range(len(records) - 1, -1, -1):
            if not any_accepted[n]:
                continue  # every row is the identity map and wrote no output
            rec = records[n]
            assert rec.state is not None
            adj[0] = cast(Tensor, adj[0]) + output_cotangent(padded, rec.slot)  # y is floating: never None
            state = tuple(s.detach().requires_grad_() if s.is_floating_point() else s for s in rec.state)
            diff_in = [s for s in state if s.requires_grad]
            with torch.enable_grad():
                new_state, _ = solver.step(func, rec.t, rec.h, state)
                outs, cots = [], []
                for s_new, a in zip(new_state, adj, strict=True):
                    if a is not None:
                        outs.append(s_new)
                        cots.append(torch.where(_mask(rec.accept, a), a, 0.0))
                grads = vjp(outs, diff_in + list(params), cots)
            it = iter(grads[: len(diff_in)])
            adj = [None if a is None else torch.where(_mask(rec.accept, a), next(it), a) for a in adj]
            for g, gp in zip(g_params, grads[len(diff_in) :], strict=True):
                g.add_(gp)
        adj[0] = cast(Tensor, adj[0]) + grad_ys[:, 0]
        # Through the initial state S_0 = init(t_0, y_0, h_0) (e.g. the cached f(t_0, y_0) of FSAL methods).
        y0 = problem.y0.detach().requires_grad_()
        h0 = result.h0 if result.h0 is not None else torch.zeros_like(problem.t[:, 0])
        with torch.enable_grad():
            state0 = problem.solver.init(func, problem.t[:, 0], y0, h0)
            outs = [s for s, a in zip(state0, adj, strict=True) if a is not None]
            cots = [a for a in adj if a is not None]
            grads = vjp(outs, [y0, *params], cots)
        for g, gp in zip(g_params, grads[1:], strict=True):
            g.add_(gp)
        return grads[0], g_params
