"""MALI: memory-efficient asynchronous leapfrog integrator gradients (Zhuang et al., ICLR 2021).

Exact gradient of the discrete ``method="alf"`` solve with memory ``O(Z + L)``: the forward pass keeps only the
step records and the final state ``(y_N, v_N)``; the backward pass rebuilds ``(y_n, v_n)`` with the exact inverse
of the asynchronous leapfrog step (see :mod:`physnode.solvers.alf`) and back-propagates through it.

Adjoint of one step. With ``s = y + h/2 v``, ``u = f(t + h/2, s)``, ``v' = (1 - 2 eta) v + 2 eta u`` and
``y' = s + h/2 v'``, the adjoints ``(a_y', a_v')`` of the state after the step give::

    a_v'' = a_v' + h/2 a_y'              (total adjoint of v')
    a_u   = 2 eta a_v''
    a_s   = a_y' + J_f(s)^T a_u           (one vector-Jacobian product; parameters get (df/dtheta)^T a_u)
    a_y   = a_s
    a_v   = (1 - 2 eta) a_v'' + h/2 a_s

The inverse step evaluates ``u = f(t + h/2, s)`` at the reconstructed ``s = y' - h/2 v'``; that evaluation is
recorded with a graph and reused for the product, so a backward step costs one evaluation and one
vector-Jacobian product.
"""

from __future__ import annotations

from typing import Any, cast

import torch
from torch import Tensor

from ..integrate import Problem, StepRecord
from ..solvers.alf import ALF
from ..solvers.base import State
from .reversible import VJP, ReversibleGradient

__all__ = ["Mali"]


def _eta(problem: Problem) -> float:
    """The damping of the ALF solve (``check`` has made sure the solver is an :class:`ALF`)."""
    return cast(ALF, problem.solver).eta


class Mali(ReversibleGradient):
    """Exact, memory-lean gradient of the asynchronous leapfrog solve (``grad="mali"``, needs ``method="alf"``).

    Memory ``O(Z + L)`` independent of the number of steps; the backward pass costs one evaluation and one
    vector-Jacobian product of ``f`` per iteration of the forward loop (accepted or rejected). The states are
    rebuilt by the algebraic inverse, so the result equals backprop through the same solve up to the rounding
    errors of the reconstruction, reported per trajectory in ``stats.extra["reconstruction_error"]`` after
    ``backward()``.

    Damping ``eta < 1`` makes the inverse step divide by ``1 - 2 eta``, which amplifies rounding errors by
    ``1 / |1 - 2 eta| > 1`` per step (for ``eta = 1`` the factor is 1: the undamped leapfrog of the MALI paper
    is the setting whose inverse is as well conditioned as the forward step). The reconstruction restarts from
    the exact state at every observation, so ``eta < 1`` is accepted while ``|1 - 2 eta| ** -n`` over the
    longest run of ``n`` steps between two observations keeps rounding below the solve's tolerance; beyond
    that the solve is refused right after the forward pass (``ValueError``), and a measured reconstruction
    error above the tolerance makes ``backward()`` raise ``RuntimeError`` instead of returning a wrong gradient.
    """

    name = "mali"
    requires_method = "alf"
    solvers = ALF

    def growth_per_step(self, problem: Problem) -> float:
        """``1 / |1 - 2 eta|``: how much one inverse step amplifies a rounding error (1 for ``eta = 1``)."""
        return 1.0 / abs(1.0 - 2.0 * _eta(problem))

    def describe_growth(self, problem: Problem) -> str:
        eta = _eta(problem)
        return f"method='alf' with eta={eta!r} has an inverse step that divides by 1 - 2*eta = {1 - 2 * eta:.4g} and"

    def advice(self, problem: Problem) -> str:
        eta = _eta(problem)
        damped = (
            "use eta=1 (options={'eta': 1.0}, the undamped leapfrog, whose inverse does not amplify rounding), "
            if eta != 1.0
            else ""
        )
        return (
            damped + "add observation times (the reconstruction restarts from the exact state at each), or use "
            "grad='aca' or grad='direct' (exact for any eta, storing states instead of rebuilding them)."
        )

    def begin(self, problem: Problem, state: State, t: Tensor) -> Any:
        return None

    def reverse_step(
        self, problem: Problem, rec: StepRecord, state: State, adj: list[Tensor], aux: Any, vjp: VJP
    ) -> tuple[State, list[Tensor], Any]:
        eta = _eta(problem)
        c = 1.0 - 2.0 * eta
        y1, v1 = state[0], state[1]
        a_y1, a_v1 = adj[0], adj[1]
        acc = rec.accept.unsqueeze(-1)
        # Rejected and inactive rows take a zero step so that f is only evaluated at states of the solve.
        h = torch.where(rec.accept, rec.h, torch.zeros_like(rec.h))
        half = (0.5 * h).unsqueeze(-1)
        # The solver's own inverse step rebuilds (y, v); its one evaluation u = f(t + h/2, s) is taken at a leaf
        # s so that its graph gives the vector-Jacobian product below.
        taken: list[Tensor] = []

        def f_at_leaf(t: Tensor, s: Tensor) -> Tensor:
            leaf = s.detach().requires_grad_()
            out = problem.func(t, leaf)
            taken.extend((leaf, out))
            return out.detach()

        y0, v0 = cast(ALF, problem.solver).inverse(f_at_leaf, rec.t, h, state)[:2]
        s, u = taken
        a_vv = a_v1 + half * a_y1
        a_u = torch.where(acc, (2.0 * eta) * a_vv, torch.zeros_like(a_vv))
        a_s = a_y1 + vjp(u, s, a_u)
        a_y0 = a_s
        a_v0 = c * a_vv + half * a_s
        # Entries 2 and 3 of the state (error-control history) carry no gradient and are not reconstructed.
        new_state = (torch.where(acc, y0, y1), torch.where(acc, v0, v1), *state[2:])
        new_adj = [torch.where(acc, a_y0, a_y1), torch.where(acc, a_v0, a_v1), *adj[2:]]
        return new_state, new_adj, None

    def finish(self, problem: Problem, state: State, adj: list[Tensor], aux: Any, vjp: VJP) -> Tensor:
        y0 = problem.y0.detach().requires_grad_()
        v0 = problem.func(problem.t[:, 0], y0)
        return adj[0] + vjp(v0, y0, adj[1])
