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

**Reconstruction error.** At every observation the rebuilt state is compared with the exact forward state before
the restart, and at the end with ``y0``; the largest max-norm difference per trajectory is
``stats.extra["reconstruction_error"]``. A gradient computed from states that drifted is wrong without any other
sign, so the backward pass raises ``RuntimeError`` when this error exceeds :func:`reconstruction_bound`, the
solve's own tolerance ``rtol·max|y| + atol`` (and at least ``sqrt(eps)·max|y|``, the bound used for fixed steps).
Methods whose inverse amplifies rounding by a known factor per step (:meth:`ReversibleGradient.growth_per_step`,
e.g. MALI with damping ``eta < 1``) are refused up front, right after the forward solve, when the predicted
amplification over the longest run of steps between two observations already exceeds that bound.
"""

from __future__ import annotations

import math
from abc import abstractmethod
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor

from ..integrate import Integration, Problem, StepRecord, Trace, integrate
from ..solvers.base import Solver, State
from ..solvers.controller import PIController
from ._guards import wants_custom_backward
from ._replay import CustomSolve
from .base import GradientMethod

__all__ = ["VJP", "ReversibleGradient", "reconstruction_bound", "steps_between_observations"]

VJP = Callable[[Tensor, Tensor, Tensor], Tensor]
"""``vjp(out, leaf, cotangent)``: the gradient of ``<out, cotangent>`` with respect to ``leaf``; the parameter
gradients are accumulated as a side effect."""


class ReversibleGradient(GradientMethod):
    """Base of gradient methods that reconstruct the forward states by inverting the steps of their solver.

    Subclasses set :attr:`solvers` (their reversible solver) and implement :meth:`begin`, :meth:`reverse_step`
    and :meth:`finish`.
    After ``backward()``, ``stats.extra["reconstruction_error"]`` holds, per trajectory ``(B,)``, the max-norm
    of the difference between the initial state rebuilt by the inverse steps and the true ``y0``, and
    ``stats.nfe_backward`` the evaluations plus vector-Jacobian products of ``f`` spent in the backward pass.
    """

    needs_params = True
    exact = True
    #: The reversible solver whose steps this method inverts (set by each subclass).
    solvers: ClassVar[type[Solver]]

    def check(self, problem: Problem) -> None:
        if not self.supports(problem.solver):
            raise ValueError(
                f"grad={self.name!r} reverses the steps of method={self.requires_method!r} and cannot "
                f"differentiate method={getattr(problem.solver, 'name', problem.solver)!r}; pass "
                f"method={self.requires_method!r} (or use grad='direct' with this method)."
            )

    def growth_per_step(self, problem: Problem) -> float:
        """Factor by which one inverse step amplifies a rounding error of the state (``1`` when it does not;
        the physical growth of reversing decaying dynamics is checked after the backward pass instead)."""
        return 1.0

    def advice(self, problem: Problem) -> str:
        """What to change when the reconstruction of ``problem`` is unreliable (end of the error messages)."""
        return (
            "add observation times (the reconstruction restarts from the exact state at each), tighten rtol/atol "
            "or reduce step_size, or use grad='aca' (exact, stores the states instead of rebuilding them)."
        )

    def check_growth(self, problem: Problem, integ: Integration) -> None:
        """Refuse, right after the forward solve, a reconstruction whose predicted rounding amplification
        ``growth_per_step ** n`` over the longest run of ``n`` accepted steps between two observations exceeds
        :func:`reconstruction_bound`.

        Raises
        ------
        ValueError
            With the per-step factor, the number of steps, the predicted amplification and the fix.
        """
        growth = self.growth_per_step(problem)
        if growth <= 1.0 or not integ.records:
            return
        steps = steps_between_observations(integ.records, problem.t.shape[1])
        b = int(np.argmax(steps))
        n = int(steps[b])
        eps = torch.finfo(integ.ys.dtype).eps
        scale = integ.ys.detach().abs().amax(dim=(1, 2))
        bound = reconstruction_bound(problem, integ.ys.detach())
        rel = float((bound / scale.clamp_min(torch.finfo(scale.dtype).tiny))[b])
        log_amp = n * math.log10(growth)
        if log_amp + math.log10(eps) <= math.log10(rel):
            return
        raise ValueError(
            f"grad={self.name!r} cannot rebuild this solve backwards: {self.describe_growth(problem)} amplifies "
            f"rounding errors by {growth:.4g} per step, and trajectory {b} takes {n} accepted steps between two "
            f"observations, a predicted amplification of 1e{log_amp:.0f}; rounding errors of {eps:.1e} would "
            f"exceed the solve's tolerance ({rel:.1e} relative) and the gradient would be wrong. Fix: "
            + self.advice(problem)
        )

    def describe_growth(self, problem: Problem) -> str:
        """Names the setting responsible for :meth:`growth_per_step` in messages."""
        return "its inverse step"

    def solve(self, problem: Problem) -> Integration:
        """Solve ``problem``; with grad mode on and ``y0`` or a parameter requiring grad, attach the
        reversible backward pass, otherwise solve plainly.

        Raises
        ------
        ValueError
            When ``f`` uses a tensor that requires grad and is not among ``problem.params``, or when the
            reconstruction is predicted to amplify rounding beyond the tolerance (:meth:`check_growth`).
        """
        if problem.t.shape[1] == 1 or not wants_custom_backward(problem, self.name):
            return integrate(problem)
        box: list[Integration] = []
        ys = CustomSolve.apply(self, problem, box, problem.y0, *problem.params)
        integ = box[0]
        return Integration(ys, integ.stats, integ.final_state)

    def forward_solve(self, problem: Problem) -> Integration:
        """The forward solve of :class:`~physnode.gradients._replay.CustomSolve`: records the steps and the solver
        state at every observation, then refuses a reconstruction predicted to fail (:meth:`check_growth`)."""
        integ = integrate(problem, record="landings")
        self.check_growth(problem, integ)
        return integ

    def backward(
        self, problem: Problem, integ: Integration, grad_ys: Tensor, params: tuple[Tensor, ...]
    ) -> tuple[Tensor, list[Tensor | None]]:
        """Walk the records backwards, rebuilding each state with :meth:`reverse_step`; return ``dL/dy0`` and the
        gradients of ``params`` (``None`` where unused).

        Raises
        ------
        RuntimeError
            When the rebuilt states drifted beyond :func:`reconstruction_bound` (the gradient would be wrong).
        """
        B, _, D = grad_ys.shape
        gy = torch.cat([grad_ys, grad_ys.new_zeros(B, 1, D)], dim=1)
        index = torch.empty(B, 1, D, dtype=torch.long, device=grad_ys.device)
        grads: list[Tensor | None] = [None] * len(params)
        counter = [0]
        vjp = _make_vjp(params, grads, counter)
        with torch.enable_grad():
            state = tuple(x.detach() for x in integ.final_state)
            adj = [torch.zeros_like(x) for x in state]
            with problem.one_sided(integ.stats.t_final, -1.0):  # as the last step evaluated it (left limit)
                aux = self.begin(problem, state, integ.stats.t_final)
            recon = torch.zeros(B, dtype=grad_ys.dtype, device=grad_ys.device)
            landed_states = integ.landed_states
            for rec in reversed(integ.records):
                adj[0] = adj[0] + gy.gather(1, index.copy_(rec.slot.view(B, 1, 1))).squeeze(1)
                if landed_states is not None:
                    # Restart the reconstruction from the exact forward state at every observation, so that
                    # round-off of the inverse accumulates only over the steps between two observations.
                    landed = (rec.slot < gy.shape[1] - 1).view(B, 1)
                    exact = [_at_slot(buf, rec.slot) for buf in landed_states]
                    drift = (state[0] - exact[0]).abs().amax(dim=-1)
                    recon = torch.maximum(recon, torch.where(landed.view(B), drift, torch.zeros_like(drift)))
                    state = tuple(
                        torch.where(landed.view((B,) + (1,) * (x.ndim - 1)), e, x)
                        for x, e in zip(state, exact, strict=True)
                    )
                with problem.replaying(rec.t, rec.h):  # the forward step's sides at breakpoints
                    state, adj, aux = self.reverse_step(problem, rec, state, adj, aux, vjp)
            adj[0] = adj[0] + gy[:, 0]
            y0 = problem.y0.detach()
            recon = torch.maximum(recon, (state[0] - y0).abs().amax(dim=-1))
            g_y0 = self.finish(problem, state, adj, aux, vjp)
        stats = integ.stats
        stats.nfe_backward += counter[0]  # the vector-Jacobian products (CustomSolve adds the evaluations of f)
        stats.extra["reconstruction_error"] = recon
        bound = reconstruction_bound(problem, integ.ys.detach())
        bad = ~(recon <= bound)  # also catches NaN
        if bool(bad.any()):
            b = int(torch.nonzero(bad)[0, 0])
            raise RuntimeError(
                f"grad={self.name!r} rebuilt the forward states with a reconstruction error of "
                f"{float(recon[b]):.3g} (trajectory {b}, max-norm), above the bound {float(bound[b]):.3g} "
                "(the solve's tolerance rtol*max|y| + atol, at least sqrt(eps)*max|y|): the inverse steps drifted "
                "from the forward solve (e.g. dynamics that decay fast between two observations grow when "
                "reversed), so the gradient would be wrong and is not returned. Fix: " + self.advice(problem)
            )
        return g_y0, [None if g is None else g.to(p.dtype) for g, p in zip(grads, params, strict=True)]

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


def steps_between_observations(records: Trace | list[StepRecord], T: int) -> np.ndarray:
    """Longest run of accepted steps between two observations (or from ``t0`` to the first), per trajectory.

    Parameters
    ----------
    records
        The iterations of the forward loop.
    T
        Number of observation times (a record's ``slot`` equals ``T`` when it wrote none).

    Returns
    -------
    numpy.ndarray
        ``(B,)`` int64.
    """
    blocks = getattr(records, "_blocks", None)
    if blocks is not None:
        n = len(records)
        accept = np.concatenate([blk[2] for blk in blocks])[:n]
        slot = np.concatenate([blk[3] for blk in blocks])[:n]
    else:
        accept = np.stack([r.accept.cpu().numpy() for r in records])
        slot = np.stack([r.slot.cpu().numpy() for r in records])
    count = np.cumsum(accept, axis=0, dtype=np.int64)  # accepted steps up to and including iteration n
    landed = slot < T
    at_landing = np.maximum.accumulate(np.where(landed, count, 0), axis=0)
    before = np.concatenate([np.zeros_like(count[:1]), at_landing[:-1]], axis=0)
    return np.where(landed, count - before, 0).max(axis=0)


def reconstruction_bound(problem: Problem, ys: Tensor) -> Tensor:
    """Largest acceptable reconstruction error per trajectory, ``(B,)``: ``rtol·max|y| + atol`` of an adaptive
    solve and at least ``sqrt(eps)·max|y|`` (half the digits), with ``max|y|`` over the outputs ``ys`` ``(B, T, D)``.

    A reconstruction error below the solve's tolerance changes the gradient by no more than solving to that
    tolerance does; fixed-step solves have no tolerance and get the ``sqrt(eps)`` bound only.
    """
    finfo = torch.finfo(ys.dtype)
    scale = ys.abs().amax(dim=(1, 2))
    bound = scale * math.sqrt(finfo.eps)
    ctrl = problem.controller
    if isinstance(ctrl, PIController):
        rtol = torch.as_tensor(ctrl.rtol, dtype=ys.dtype, device=ys.device).max()
        atol = torch.as_tensor(ctrl.atol, dtype=ys.dtype, device=ys.device).max()
        bound = torch.maximum(bound, rtol * scale + atol)
    return bound.clamp_min(finfo.tiny)


def _make_vjp(params: tuple[Tensor, ...], grads: list[Tensor | None], counter: list[int]) -> VJP:
    wanted = [i for i, p in enumerate(params) if p.requires_grad]
    inputs_p = [params[i] for i in wanted]

    def vjp(out: Tensor, leaf: Tensor, cotangent: Tensor) -> Tensor:
        counter[0] += 1
        got = torch.autograd.grad(out, (leaf, *inputs_p), cotangent, allow_unused=True)
        for i, g in zip(wanted, got[1:], strict=True):
            if g is not None:
                prev = grads[i]
                grads[i] = g if prev is None else prev + g
        return torch.zeros_like(leaf) if got[0] is None else got[0]

    return vjp


def _at_slot(buf: Tensor, slot: Tensor) -> Tensor:
    """``buf[b, slot[b]]`` for every row ``b`` of ``buf`` ``(B, T + 1, ...)``."""
    B = buf.shape[0]
    index = slot.view((B, 1) + (1,) * (buf.ndim - 2)).expand((B, 1, *buf.shape[2:]))
    return buf.gather(1, index).squeeze(1)
