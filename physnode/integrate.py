"""The per-trajectory integration loop shared by every solver and gradient method.

Each trajectory of the batch has its own current time, its own step size, its own accept/reject decision
and error norm, and its own next observation time, on which its steps land exactly. Trajectories that have
reached their last observation (or failed) take zero-length steps and their state and statistics are
frozen. The loop synchronises with the host once per step (to learn whether any trajectory is still active
or has failed), never per stage.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor

from .errors import MaxStepsError, NonFiniteError, SolverError, StepSizeUnderflowError
from .solution import Stats, Status
from .solvers.base import Solver, State
from .solvers.controller import StepController

__all__ = ["CountingRHS", "Integration", "Problem", "StepRecord", "integrate"]


class CountingRHS:
    """Wraps a user right-hand side into the batched form ``f(t (B,), y (B, D)) -> (B, D)`` and counts calls.

    Parameters
    ----------
    func
        The user's ``func(t, y)``.
    unbatched
        When true the user passed ``y0`` of shape ``(D,)``: ``func`` receives a 0-d ``t`` and ``y`` of shape
        ``(D,)``.
    """

    def __init__(self, func: Callable[[Tensor, Tensor], Tensor], unbatched: bool) -> None:
        self.func = func
        self.unbatched = unbatched
        self.nfe = 0

    def __call__(self, t: Tensor, y: Tensor) -> Tensor:
        self.nfe += 1
        if self.unbatched:
            return self.func(t[0], y[0]).unsqueeze(0)
        return self.func(t, y)


@dataclass
class Problem:
    """Everything a gradient method needs to solve (and re-solve) one initial-value problem.

    Attributes
    ----------
    func
        Batched, counting right-hand side.
    y0
        Initial states, ``(B, D)``.
    t
        Observation times, ``(B, T)``, in ``y0``'s dtype; ``t[:, 0]`` is the initial time.
    solver, controller
        The stepping rule and the step-size controller.
    max_steps
        Limit on accepted plus rejected steps per trajectory.
    params
        Tensors other than ``y0`` to differentiate (the module's parameters plus ``params=``).
    """

    func: CountingRHS
    y0: Tensor
    t: Tensor
    solver: Solver
    controller: StepController
    max_steps: int
    params: tuple[Tensor, ...] = ()
    raise_on_failure: bool = True


@dataclass
class StepRecord:
    """One iteration of the loop, as needed to replay or invert it.

    Attributes
    ----------
    t
        Time of each trajectory before the step, ``(B,)``.
    h
        Step tried, ``(B,)`` (zero for inactive trajectories).
    accept
        Whether the step was accepted, ``(B,)`` bool.
    slot
        Index of the observation written by the step, ``(B,)`` int64; ``T`` when none was written.
    state
        The state before the step (only with ``record="states"``).
    """

    t: Tensor
    h: Tensor
    accept: Tensor
    slot: Tensor
    state: State | None = None


@dataclass
class Integration:
    """Raw result of :func:`integrate`: ``ys`` ``(B, T, D)``, statistics, optional records, final state, and
    ``h0`` ``(B,)``, the first step handed to ``solver.init`` (``None`` when nothing was integrated)."""

    ys: Tensor
    stats: Stats
    final_state: State
    records: list[StepRecord] = field(default_factory=list)
    h0: Tensor | None = None


class _Reuse:
    """Answers the first call at exactly ``(t0, y0)`` with an already computed ``f0`` (no graph involved)."""

    def __init__(self, func: CountingRHS, t0: Tensor, y0: Tensor, f0: Tensor) -> None:
        self.func, self.t0, self.y0, self.f0 = func, t0, y0, f0

    def __call__(self, t: Tensor, y: Tensor) -> Tensor:
        if t is self.t0 and y is self.y0 and self.f0 is not None:
            f0, self.f0 = self.f0, None
            return f0
        return self.func(t, y)


def _where_state(accept: Tensor, new: State, old: State) -> State:
    out = []
    for n, o in zip(new, old, strict=True):
        mask = accept.view(accept.shape + (1,) * (n.ndim - 1))
        out.append(torch.where(mask, n, o))
    return tuple(out)


def _raise(status: Tensor, failed: Tensor, tc: Tensor) -> None:
    idx = int(torch.nonzero(failed)[0, 0])
    code = Status(int(status[idx]))
    when = float(tc[idx])
    n_failed = int(failed.sum())
    others = f" ({n_failed - 1} other trajectories failed too)" if n_failed > 1 else ""
    msg = (
        f"solve failed for trajectory {idx} at t = {when:.10g}: {code.message}{others}. "
        "Pass raise_on_failure=False to physnode.solve to get the per-trajectory status instead."
    )
    cls: type[SolverError] = {
        Status.MAX_STEPS: MaxStepsError,
        Status.STEP_UNDERFLOW: StepSizeUnderflowError,
        Status.NON_FINITE: NonFiniteError,
    }[code]
    raise cls(msg, trajectory=idx, time=when, status=int(code))


def integrate(problem: Problem, record: str | None = None, state0: State | None = None) -> Integration:
    """Integrate ``problem`` from ``t[:, 0]`` through every observation time.

    Parameters
    ----------
    problem
        The problem to solve.
    record
        ``None`` (nothing), ``"steps"`` (a :class:`StepRecord` per iteration) or ``"states"`` (the records
        plus the state before every iteration).
    state0
        Initial solver state to use instead of ``solver.init`` (used by gradient methods that re-solve).

    Returns
    -------
    Integration
        ``ys`` of shape ``(B, T, D)`` (NaN after a failure) with statistics and, when asked, the records.
    """
    if record not in (None, "steps", "states"):
        raise ValueError(f"record must be None, 'steps' or 'states', got {record!r}.")
    func, solver, ctrl = problem.func, problem.solver, problem.controller
    y0, t = problem.y0, problem.t
    B, D = y0.shape
    T = t.shape[1]
    dev = y0.device
    nfe0 = func.nfe
    span = t[:, -1] - t[:, 0]
    direction = torch.where(span < 0, -1.0, 1.0).to(t.dtype)
    eps = torch.finfo(t.dtype).eps
    slack = 64 * eps

    out = torch.full((B, T + 1, D), float("nan"), dtype=y0.dtype, device=dev)
    out[:, 0] = y0
    status = torch.zeros(B, dtype=torch.long, device=dev)
    n_acc = torch.zeros(B, dtype=torch.long, device=dev)
    n_rej = torch.zeros(B, dtype=torch.long, device=dev)
    tc = t[:, 0].clone()
    records: list[StepRecord] = []
    if T == 1:
        stats = Stats(0, n_acc, n_rej, status, tc)
        return Integration(out[:, :1], stats, (y0,) if state0 is None else state0, records)

    init_func = func
    grad_enabled = torch.is_grad_enabled()
    with torch.no_grad():
        finite0 = torch.isfinite(y0).all(-1)
        if ctrl.adaptive:
            f0 = func(tc, y0)
            finite0 &= torch.isfinite(f0).all(-1)
            h = ctrl.initial_step(func, tc, y0, torch.nan_to_num(f0), span, solver.error_order - 1)
            if not grad_enabled:  # no graph is being built: the first evaluation can be reused
                init_func = _Reuse(func, tc, y0, f0)
        else:
            h = ctrl.initial_step(func, tc, y0, y0, span, solver.error_order - 1)
    state = solver.init(init_func, tc, y0, h) if state0 is None else state0
    h0 = h

    active = finite0.clone()
    status = torch.where(finite0, status, int(Status.NON_FINITE))
    if not bool(finite0.all()) and problem.raise_on_failure:
        _raise(status, ~finite0, tc)
    j = torch.ones(B, dtype=torch.long, device=dev)
    t_next = t[:, 1]
    prev_err = torch.ones(B, dtype=y0.dtype, device=dev)
    last_nonfinite = torch.zeros(B, dtype=torch.bool, device=dev)

    while True:
        dt_rem = t_next - tc
        # Land on the next observation when it is within the step, or beyond it only by accumulated
        # round-off of the time variable (which would otherwise leave a step of a few ulps).
        land = active & (direction * (dt_rem - h) <= slack * (t_next.abs() + h.abs()))
        h_eff = torch.where(land, dt_rem, h)
        h_eff = torch.where(active, h_eff, torch.zeros_like(h_eff))
        state_before, t_before = state, tc
        new_state, err = solver.step(func, tc, h_eff, state)
        with torch.no_grad():
            y_old, y_new = state[0].detach(), new_state[0].detach()
            if ctrl.adaptive:
                if err is None:
                    raise RuntimeError(f"{solver!r} returned no error estimate but the step size is adaptive.")
                en = ctrl.error_norm(err.detach(), y_old, y_new)
            else:
                en = torch.where(torch.isfinite(y_new).all(-1), 0.0, torch.inf).to(y_new.dtype)
            nonfinite = active & ~torch.isfinite(en)
            accept = active & (en <= 1.0)
        state = _where_state(accept, new_state, state)
        with torch.no_grad():
            landed = accept & land
            tc = torch.where(accept, torch.where(land, t_next, tc + h_eff), tc)
            slot = torch.where(landed, j, T)
        out.scatter_(1, slot.view(B, 1, 1).expand(B, 1, D), state[0].unsqueeze(1))
        with torch.no_grad():
            if record is not None:
                records.append(StepRecord(t_before, h_eff, accept, slot, state_before if record == "states" else None))
            j = j + landed.long()
            finished = j >= T
            t_next = t.gather(1, j.clamp(max=T - 1).unsqueeze(1)).squeeze(1)
            n_acc += accept.long()
            n_rej += (active & ~accept).long()
            if ctrl.adaptive:
                h_new = ctrl.adapt(h_eff, en, prev_err, accept, solver.error_order)
                # After landing on an observation the clipped step says little about the next one.
                keep = landed & (h_new.abs() < h.abs())
                h = torch.where(keep, h, h_new)
                prev_err = torch.where(accept, en.clamp(min=1e-4), prev_err)
                last_nonfinite = torch.where(active, nonfinite, last_nonfinite)
                tiny = h.abs() <= 4 * eps * torch.clamp(tc.abs(), min=1.0)
                underflow = active & ~finished & tiny
                code = torch.where(last_nonfinite, int(Status.NON_FINITE), int(Status.STEP_UNDERFLOW))
            else:
                underflow = nonfinite
                code = torch.full_like(status, int(Status.NON_FINITE))
            maxed = active & ~finished & ((n_acc + n_rej) >= problem.max_steps)
            status = torch.where(underflow, code, torch.where(maxed, int(Status.MAX_STEPS), status))
            failed = underflow | maxed
            active = active & ~finished & ~failed
            any_active, any_failed = torch.stack([active.any(), failed.any()]).tolist()
        if any_failed and problem.raise_on_failure:
            _raise(status, failed, tc)
        if not any_active:
            break

    stats = Stats(func.nfe - nfe0, n_acc, n_rej, status, tc)
    return Integration(out[:, :T], stats, state, records, h0)
