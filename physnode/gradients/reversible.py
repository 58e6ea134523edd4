"""Common machinery of the gradient methods that reverse an algebraically reversible solver (MALI, reversible Heun).

The forward pass runs :func:`~physnode.integrate.integrate` without a graph and keeps, per iteration of the loop,
only the time, the step, the accept mask and the output slot (``O(N)`` scalars per trajectory), the final solver
state, and the solver state at each observation time (``O(T·Z)``, the size of the output itself). The
reconstruction restarts from those exact states at every observation, so the round-off of the inverse accumulates
only between two observations, never over the whole solve. The backward pass walks the records from last to first;
for every iteration it adds the output gradients written by that iteration, rebuilds the state before the step with
the solver's exact inverse (rejected and inactive rows are the identity) and pulls the adjoint of the state back
through the step with one vector-Jacobian product of ``f``. Memory is ``O(Z + L)`` (state plus one evaluation
graph), flat in the number of steps (plus the ``O(T·Z)`` observation states).
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable
from typing import Any, ClassVar

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from ..integrate import Integration, Problem, StepRecord, integrate
from ..solvers.base import Solver, State
from .base import GradientMethod

__all__ = ["VJP", "ReversibleGradient"]

VJP = Callable[[Tensor, Tensor, Tensor], Tensor]
"""``vjp(out, leaf, cotangent)``: the gradient of ``<out, cotangent>`` with respect to ``leaf``; the parameter
gradients are accumulated as a side effect."""


class ReversibleGradient(GradientMethod):
    """Base of gradient methods that reconstruct the forward states by inverting the steps of their solver.

    Subclasses set :attr:`solver_class` and implement :meth:`begin`, :meth:`reverse_step` and :meth:`finish`.
    After ``backward()``, ``stats.extra["reconstruction_error"]`` holds, per trajectory ``(B,)``, the max-norm
    of the difference between the initial state rebuilt by the inverse steps and the true ``y0``, and
    ``stats.nfe_backward`` the evaluations plus vector-Jacobian products of ``f`` spent in the backward pass.
    """

    needs_params = True
    exact = True
    solver_class: ClassVar[type[Solver]]

    def check(self, problem: Problem) -> None:
        if not isinstance(problem.solver, self.solver_class):
            raise ValueError(
                f"grad={self.name!r} reverses the steps of method={self.requires_method!r} and cannot "
                f"differentiate method={getattr(problem.solver, 'name', problem.solver)!r}; pass "
                f"method={self.requires_method!r} (or use grad='direct' with this method)."
            )

    def solve(self, problem: Problem) -> Integration:
        if problem.t.shape[1] == 1:
            return integrate(problem)
        box: dict[str, Integration] = {}
        ys = _ReversibleSolve.apply(self, problem, box, problem.y0, *problem.params)
        integ = box["integration"]
        return Integration(ys, integ.stats, integ.final_state)

    @abstractmethod
    def begin(self, problem: Problem, state: State, t: Tensor) -> Any:
        """Prepare the backward pass at the final ``state`` reached at times ``t`` ``(B,)``; returns the
        auxiliary value carried from one :meth:`reverse_step` to the next."""

    @abstractmethod
    def reverse_step(
        self, problem: Problem, rec: StepRecord, state: State, adj: list[Tensor], aux: Any, vjp: VJP
    ) -> tuple[State, list[Tensor], Any]:
        """Undo one iteration: return the state before it, the adjoint of that state and the new ``aux``.

        ``state`` and ``adj`` refer to the state after the iteration (``adj[0]`` already includes the output
        gradient written by it); rows with ``rec.accept`` false must come back unchanged.
        """

    @abstractmethod
    def finish(self, problem: Problem, state: State, adj: list[Tensor], aux: Any, vjp: VJP) -> Tensor:
        """Pull the adjoint of the initial solver state back through ``solver.init``; return the gradient of
        ``y0`` ``(B, D)``."""


def _make_vjp(params: tuple[Tensor, ...], grads: list[Tensor | None], counter: list[int]) -> VJP:
    wanted = [i for i, p in enumerate(params) if p.requires_grad]
    inputs_p = [params[i] for i in wanted]

    def vjp(out: Tensor, leaf: Tensor, cotangent: Tensor) -> Tensor:
        counter[0] += 1
        got = torch.autograd.grad(out, (leaf, *inputs_p), cotangent, allow_unused=True)
        for i, g in zip(wanted, got[1:], strict=True):
            if g is not None:
                grads[i] = g if grads[i] is None else grads[i] + g
        return torch.zeros_like(leaf) if got[0] is None else got[0]

    return vjp


class _ReversibleSolve(torch.autograd.Function):
    @staticmethod
    def forward(ctx, method: ReversibleGradient, problem: Problem, box: dict, y0: Tensor, *params: Tensor) -> Tensor:
        integ = integrate(problem, record="landings")
        box["integration"] = integ
        ctx.method, ctx.problem, ctx.integ = method, problem, integ
        return integ.ys

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_ys: Tensor) -> tuple[Tensor | None, ...]:
        method: ReversibleGradient = ctx.method
        problem: Problem = ctx.problem
        integ: Integration = ctx.integ
        B, _, D = grad_ys.shape
        gy = torch.cat([grad_ys, grad_ys.new_zeros(B, 1, D)], dim=1)
        index = torch.empty(B, 1, D, dtype=torch.long, device=grad_ys.device)
        grads: list[Tensor | None] = [None] * len(problem.params)
        counter = [0]
        vjp = _make_vjp(problem.params, grads, counter)
        nfe0 = problem.func.nfe
        with torch.enable_grad():
            state = tuple(x.detach() for x in integ.final_state)
            adj = [torch.zeros_like(x) for x in state]
            aux = method.begin(problem, state, integ.stats.t_final)
            landed_states = integ.landed_states
            for rec in reversed(integ.records):
                adj[0] = adj[0] + gy.gather(1, index.copy_(rec.slot.view(B, 1, 1))).squeeze(1)
                if landed_states is not None:
                    # Restart the reconstruction from the exact forward state at every observation, so that
                    # round-off of the inverse accumulates only over the steps between two observations.
                    landed = (rec.slot < gy.shape[1] - 1).view(B, 1)
                    state = tuple(
                        torch.where(
                            landed.view((B,) + (1,) * (x.ndim - 1)),
                            buf.gather(
                                1, rec.slot.view((B, 1) + (1,) * (x.ndim - 1)).expand((B, 1, *x.shape[1:]))
                            ).squeeze(1),
                            x,
                        )
                        for x, buf in zip(state, landed_states, strict=True)
                    )
                state, adj, aux = method.reverse_step(problem, rec, state, adj, aux, vjp)
            adj[0] = adj[0] + gy[:, 0]
            y0 = problem.y0.detach()
            recon = (state[0] - y0).abs().amax(dim=-1)
            g_y0 = method.finish(problem, state, adj, aux, vjp)
        stats = integ.stats
        stats.nfe_backward = problem.func.nfe - nfe0 + counter[0]
        stats.extra["reconstruction_error"] = recon
        g_params = [None if g is None else g.to(p.dtype) for g, p in zip(grads, problem.params, strict=True)]
        return (None, None, None, g_y0, *g_params)
