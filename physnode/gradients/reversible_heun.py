"""Exact, memory-lean gradient of the reversible Heun solve (Kidger et al. 2021), ``grad="reversible_heun"``.

The forward pass keeps only the step records and the final state ``(y_N, z_N, g_N)``; the backward pass rebuilds
the states with the exact inverse of :mod:`physnode.solvers.reversible_heun` and back-propagates through each
step. With ``z' = 2 y - z + h g``, ``g' = f(t + h, z')`` and ``y' = y + h/2 (g + g')``, the adjoints
``(a_y', a_z', a_g')`` of the state after a step give::

    c     = a_g' + h/2 a_y'                 (total adjoint of g')
    a_z'' = a_z' + J_f(z')^T c              (one vector-Jacobian product; parameters get (df/dtheta)^T c)
    a_y   = a_y' + 2 a_z''
    a_z   = -a_z''
    a_g   = h/2 a_y' + h a_z''

The product needs ``f(t + h, z')`` with a graph: it is the evaluation ``g = f(t, z)`` made by the inverse of the
following step, so each backward step costs one evaluation and one vector-Jacobian product (plus one evaluation
at the final state and one at ``y0``).
"""

from __future__ import annotations

from typing import Any, cast

import torch
from torch import Tensor

from .._breakpoints import current_window
from ..integrate import Problem, StepRecord
from ..solvers.base import State
from ..solvers.reversible_heun import ReversibleHeun as ReversibleHeunSolver
from .reversible import VJP, ReversibleGradient

__all__ = ["ReversibleHeunGradient"]


class ReversibleHeunGradient(ReversibleGradient):
    """Exact gradient of the reversible Heun solve (``grad="reversible_heun"``, needs
    ``method="reversible_heun"``).

    Memory ``O(Z + L)`` independent of the number of steps; one evaluation and one vector-Jacobian product of
    ``f`` per iteration of the forward loop. The reconstruction error of the initial state is reported per
    trajectory in ``stats.extra["reconstruction_error"]`` after ``backward()``.
    """

    name = "reversible_heun"
    requires_method = "reversible_heun"
    solvers = ReversibleHeunSolver

    def begin(self, problem: Problem, state: State, t: Tensor) -> Any:
        z = state[1].detach().requires_grad_()
        return z, problem.func(t, z)

    def reverse_step(
        self, problem: Problem, rec: StepRecord, state: State, adj: list[Tensor], aux: Any, vjp: VJP
    ) -> tuple[State, list[Tensor], Any]:
        y1, z1 = state[0], state[1]  # g1 enters through the solver's inverse
        a_y1, a_z1, a_g1 = adj[:3]  # adaptive solves carry a 4th entry (the last difference): no adjoint flows
        z1_leaf, g1_graph = aux
        acc = rec.accept.unsqueeze(-1)
        hh = rec.h.unsqueeze(-1)
        half = 0.5 * hh
        c = torch.where(acc, a_g1 + half * a_y1, torch.zeros_like(a_g1))
        a_zz = a_z1 + vjp(g1_graph, z1_leaf, c)
        a_y0 = a_y1 + 2.0 * a_zz
        a_g0 = half * a_y1 + hh * a_zz
        new_adj = [torch.where(acc, a_y0, a_y1), torch.where(acc, -a_zz, a_z1), torch.where(acc, a_g0, a_g1), *adj[3:]]
        # The solver's own inverse step rebuilds the state; its one evaluation g = f(t, z) is taken at a leaf z
        # (kept with its graph for the next vector-Jacobian product). Rejected and inactive rows keep their
        # state, so f is evaluated at the unchanged z for them.
        taken: list[Tensor] = []

        def f_at_leaf(t: Tensor, z: Tensor) -> Tensor:
            leaf = torch.where(acc, z, z1).requires_grad_()
            out = problem.func(t, leaf)
            taken.extend((leaf, out))
            return out.detach()

        y_inv, _, g0, *rest = cast(ReversibleHeunSolver, problem.solver).inverse(f_at_leaf, rec.t, rec.h, state)
        z0, g0_graph = taken
        y0 = torch.where(acc, y_inv, y1)
        win = current_window()
        if win is not None and win.fresh is not None:
            # The step started on a breakpoint and used g = f(t+, z) (the right limit, evaluated again) instead of
            # the carried f(t-, z) of the previous step: its adjoint goes through f into z (and the parameters),
            # the carried g gets none, and the state before the step holds the left limit again.
            # (Rows that rejected the step keep their state, whose g is the left limit too.)
            fr = win.fresh.unsqueeze(-1)
            used = fr & acc
            a_g_used = torch.where(used, new_adj[2], torch.zeros_like(new_adj[2]))
            new_adj[1] = new_adj[1] + vjp(g0_graph, z0, a_g_used)
            new_adj[2] = torch.where(used, torch.zeros_like(new_adj[2]), new_adj[2])
            leaf = z0.detach().requires_grad_()
            g_right = problem.func(rec.t, leaf)
            with problem.one_sided(rec.t, -1.0):
                g_left = problem.func(rec.t, leaf)
            g0_graph = torch.where(fr, g_left, g_right)
            g0 = torch.where(fr, g_left.detach(), g0)
            z0 = leaf
        # The last difference of an adaptive state is not rebuilt (it steers step sizes only): kept as recorded.
        rest = [torch.where(acc, r, x) for r, x in zip(rest, state[3:], strict=True)]
        return (y0, z0.detach(), g0, *rest), new_adj, (z0, g0_graph)

    def finish(self, problem: Problem, state: State, adj: list[Tensor], aux: Any, vjp: VJP) -> Tensor:
        y0 = problem.y0.detach().requires_grad_()
        g0 = problem.func(problem.t[:, 0], y0)
        return adj[0] + adj[1] + vjp(g0, y0, adj[2])
