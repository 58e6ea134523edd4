"""The per-trajectory integration loop shared by every solver and gradient method.

Each trajectory of the batch has its own current time, its own step size, its own accept/reject decision
and error norm, and its own next observation time, on which its steps land exactly. Trajectories that have
reached their last observation (or failed) take zero-length steps and their state and statistics are
frozen. Step-size control is cheap bookkeeping on ``(B,)`` vectors: it runs on the host in
NumPy, in float64 whatever the dtype of the state (a float32 time variable drifts by ~1e-4 over 10^4 steps),
while states stay on their device; times and steps go to the device in the state's dtype. Each step moves the
error norms ``(B,)`` to the host (the one synchronisation per step, never one per stage) and sends the next
times, steps, accept mask and output slots back in two small transfers.

Adaptive explicit Runge–Kutta solves also watch for stiffness (Hairer & Wanner, *Solving ODEs II*, IV.2): an
estimate of ``h |lambda|`` from two stages rides along with the error norm in the same transfer, and a
trajectory whose accepted steps are pinned at the stability limit for :data:`STIFF_STEPS` steps in a row, with
more steps still needed than ``max_steps`` allows, fails early with :class:`~physnode.errors.StiffnessError`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ._breakpoints import Cursor, current_window, fresh_rows, land_exactly, nudge, window
from .dense import DenseOutput, evaluate
from .errors import MaxStepsError, NonFiniteError, SolverError, StepSizeUnderflowError, StiffnessError
from .solution import Stats, Status
from .solvers.base import Solver, State
from .solvers.controller import StepController
from .step_grad import ControlTrace
from .step_grad import fraction as step_fraction
from .step_grad import start as start_step_graph

__all__ = ["CountingRHS", "Integration", "Problem", "StepRecord", "integrate"]


class CountingRHS:
    """Wraps a user right-hand side into the batched form ``f(t (B,), y (B, D)) -> (B, D)`` and counts calls.

    Parameters
    ----------
    func
        The user's ``func(t, y)``, or ``func(t, y, u)`` when ``inputs`` is given.
    unbatched
        When true the user passed ``y0`` of shape ``(D,)``: ``func`` receives a 0-d ``t`` and ``y`` of shape
        ``(D,)`` (and ``u`` of shape ``(C,)``).
    inputs
        External inputs: a callable ``inputs(t (B,), window, side) -> u (B, C)`` (a prepared
        :class:`~physnode.data.inputs.Inputs`), evaluated at every call on the side of its breakpoints that the
        current step window (:mod:`physnode._breakpoints`) lies on.
    windowed
        Whether the solve has breakpoints: ``t`` is then nudged one unit in the last place into the current step
        when it sits on the step's start or end (:func:`~physnode._breakpoints.nudge`).
    direction
        ``(B,)`` ``+1.0`` / ``-1.0``, direction of integration: the side of an evaluation outside any step.
    """

    def __init__(
        self,
        func: Callable[..., Tensor],
        unbatched: bool,
        inputs: Callable[[Tensor, Any, Tensor | None], Tensor] | None = None,
        windowed: bool = False,
        direction: Tensor | None = None,
    ) -> None:
        self.func = func
        self.unbatched = unbatched
        self.nfe = 0
        self.inputs = inputs
        self.windowed = windowed or inputs is not None
        self.direction = direction

    def __call__(self, t: Tensor, y: Tensor) -> Tensor:
        self.nfe += 1
        if self.windowed:
            win = current_window()
            t = nudge(t, win)
            if self.inputs is not None:
                u = self.inputs(t, win, self.direction)
                if self.unbatched:
                    y1 = y.squeeze(0)
                    return self._checked(self.func(t.squeeze(0), y1, u.squeeze(0)), y1).unsqueeze(0)
                return self._checked(self.func(t, y, u), y)
        if self.unbatched:
            # B = 1: squeeze/unsqueeze are views both ways, forward and backward (indexing with [0] would add a
            # select whose backward allocates and fills a zero gradient on every call).
            y1 = y.squeeze(0)
            return self._checked(self.func(t.squeeze(0), y1), y1).unsqueeze(0)
        return self._checked(self.func(t, y), y)

    def _checked(self, out: object, y: Tensor) -> Tensor:
        # Shapes and dtypes are host-side metadata: checking them on every call costs no synchronisation, and a
        # right-hand side that changes its output shape would otherwise be broadcast into wrong finite results.
        if not isinstance(out, Tensor) or out.shape != y.shape or out.dtype != y.dtype:
            got = f"{tuple(out.shape)} {out.dtype}" if isinstance(out, Tensor) else type(out).__name__
            raise ValueError(
                f"func(t, y) must return dy/dt with the shape and dtype of y, {tuple(y.shape)} {y.dtype}, on every "
                f"call; evaluation {self.nfe} returned {got}. Make the output shape independent of the call "
                "(e.g. no state kept between calls)."
            )
        return out


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
    #: Fail early with :class:`~physnode.errors.StiffnessError` when the solve is stiff for the method.
    stiffness_check: bool = True
    #: How observations are served: ``"land"`` (a step ends on each observation time) or ``"interpolate"`` (steps
    #: land only on the last one; the others come from the continuous extension of the step covering them).
    outputs: str = "land"
    #: Keep the continuous extension of every step (:class:`~physnode.dense.DenseOutput`) for interpolation.
    dense: bool = False
    #: Known discontinuities, ``(B, K)`` in ``y0``'s dtype (NaN padding), or ``None``: every step ends on the next
    #: one and ``f`` is evaluated on the side of the step (:mod:`physnode._breakpoints`); no output is written there.
    breakpoints: Tensor | None = None
    #: Called after every iteration with the times ``(B,)`` (host, float64), the accept mask ``(B,)`` (host) and the
    #: solver state after it; returns a host bool ``(B,)``: accepted rows to stop there (their status stays
    #: ``SUCCESS``, later outputs stay NaN). Event location (:mod:`physnode.events`) uses it.
    monitor: Callable[[np.ndarray, np.ndarray, State], np.ndarray] | None = None
    #: Differentiate through the step-size controller (:mod:`physnode.step_grad`): steps are the controller's
    #: proposals with a remainder step landing on each target, and ``dh/dθ`` is on the graph.
    step_grad: bool = False

    def replaying(self, t: Tensor, h: Tensor, fresh: Tensor | str | None = "find") -> contextlib.AbstractContextManager:
        """The step window of a recorded step ``[t, t + h]`` (``(B,)`` each) for gradient methods that evaluate
        ``f`` again in their backward pass (a no-op without breakpoints): the same sides, nudged times and fresh
        derivatives as in the forward loop. ``fresh`` (:meth:`fresh`) is found (one host synchronisation) unless
        given."""
        if self.breakpoints is None:
            return contextlib.nullcontext()
        rows = self.fresh(t) if isinstance(fresh, str) else fresh
        return window(t, h, rows, side=self.direction())

    def fresh(self, t: Tensor) -> Tensor | None:
        """``(B,)`` bool: the rows whose step from ``t`` starts on a breakpoint (their carried derivative is
        evaluated again), or ``None`` when there is none (one host synchronisation; ``None`` without breakpoints)."""
        return fresh_rows(t, self.breakpoints)

    def one_sided(self, t: Tensor, side: float) -> contextlib.AbstractContextManager:
        """Evaluations at ``t`` ``(B,)`` on one side (``side * direction``: ``-1.0`` the limit from the time before
        ``t`` in the direction of integration, e.g. the derivative a step ending at ``t`` computed)."""
        if self.breakpoints is None:
            return contextlib.nullcontext()
        zero = torch.zeros_like(t)
        return window(t, zero, None, side=side * self.direction())

    def direction(self) -> Tensor:
        """``(B,)`` ``+1.0`` / ``-1.0``: the direction of integration of each trajectory."""
        return torch.where(self.t[:, -1] < self.t[:, 0], -1.0, 1.0).to(self.t.dtype)


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
    #: With ``outputs="interpolate"``: ``(theta (B, M), slots (B, M))`` of the observations the step's continuous
    #: extension wrote (``ys[b, slots[b, m]]`` at ``t + theta[b, m] h``; slot ``T`` for none), else ``None``.
    interpolated: tuple[Tensor, Tensor] | None = None


class Trace:
    """Compact record of every iteration of the loop: what gradient methods need to replay or invert a solve.

    Per iteration it keeps the time before the step, the step, the accept mask and the output slot of every
    trajectory in host arrays, and (optionally) a detached copy of the solver state before the step. Storage is
    allocated in blocks of :attr:`BLOCK` iterations, so recording adds no per-step allocation that outlives the
    step (many small long-lived allocations interleaved with the solver's temporaries fragment the heap and
    make the resident memory grow far beyond what is stored). Per iteration and trajectory this is two numbers
    of the solve's dtype, one byte and one int32: 13 bytes in float32.

    Indexing returns a :class:`StepRecord` of device tensors built on access; ``len``, iteration and
    ``reversed`` work as for a list.
    """

    BLOCK = 256

    def __init__(self, batch: int, dtype: np.dtype, device: torch.device, keep_states: bool) -> None:
        self.batch, self.dtype, self.device, self.keep_states = batch, dtype, device, keep_states
        self._blocks: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
        self._states: list[tuple[Tensor, ...]] = []
        self._n = 0
        #: Iteration -> ``(theta (B, M), slots (B, M))`` host arrays of the observations it interpolated.
        self.interpolated: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def append(self, t: np.ndarray, h: np.ndarray, accept: np.ndarray, slot: np.ndarray, state: State) -> None:
        """Record one iteration (``state`` is the state before it; copied only when states are kept)."""
        i = self._n % self.BLOCK
        if i == 0:
            B = self.batch
            self._blocks.append(
                (
                    np.empty((self.BLOCK, B), self.dtype),
                    np.empty((self.BLOCK, B), self.dtype),
                    np.empty((self.BLOCK, B), np.bool_),
                    np.empty((self.BLOCK, B), np.int32),
                )
            )
            if self.keep_states:
                self._states.append(tuple(x.new_empty((self.BLOCK, *x.shape)) for x in state))
        bt, bh, ba, bs = self._blocks[-1]
        bt[i], bh[i], ba[i], bs[i] = t, h, accept, slot
        if self.keep_states:
            for buf, x in zip(self._states[-1], state, strict=True):
                buf[i].copy_(x.detach())
        self._n += 1

    def __len__(self) -> int:
        return self._n

    def __bool__(self) -> bool:
        return self._n > 0

    def __getitem__(self, n: int) -> StepRecord:
        if n < 0:
            n += self._n
        if not 0 <= n < self._n:
            raise IndexError(f"iteration {n} out of range for a trace of {self._n} iterations")
        b, i = divmod(n, self.BLOCK)
        bt, bh, ba, bs = self._blocks[b]
        state = tuple(buf[i] for buf in self._states[b]) if self.keep_states else None
        dev = self.device
        written = self.interpolated.get(n)
        interpolated = None if written is None else (_to_device(written[0], dev), _to_device(written[1], dev))
        return StepRecord(
            _to_device(bt[i], dev),
            _to_device(bh[i], dev),
            _to_device(ba[i], dev),
            _to_device(bs[i], dev).long(),
            state,
            interpolated,
        )

    def __iter__(self):
        return (self[n] for n in range(self._n))

    def __reversed__(self):
        return (self[n] for n in range(self._n - 1, -1, -1))

    def any_accepted(self) -> np.ndarray:
        """``(N,)`` bool: whether iteration ``n`` accepted the step of at least one trajectory (no device sync)."""
        if not self._n:
            return np.zeros(0, dtype=bool)
        return np.concatenate([ba.any(axis=1) for _, _, ba, _ in self._blocks])[: self._n]


@dataclass
class Integration:
    """Raw result of :func:`integrate`: ``ys`` ``(B, T, D)``, statistics, optional records, final state, and
    ``h0`` ``(B,)``, the first step handed to ``solver.init`` (``None`` when nothing was integrated)."""

    ys: Tensor
    stats: Stats
    final_state: State
    records: Trace | list[StepRecord] = field(default_factory=list)
    h0: Tensor | None = None
    #: With ``record="landings"``: every solver-state entry at every observation, ``(B, T + 1, ...)`` each (slot
    #: ``T`` is scratch). Reversible gradient methods restart their reconstruction from these exact states.
    landed_states: tuple[Tensor, ...] | None = None
    #: With ``problem.dense``: the continuous extension of every step (``Solution.interpolate``).
    dense: DenseOutput | None = None
    #: With ``problem.step_grad`` and a record: the controller's inputs per iteration (:mod:`physnode.step_grad`).
    control: ControlTrace | None = None


class _Reuse:
    """Answers the first call at exactly ``(t0, y0)`` with an already computed ``f0`` (no graph involved)."""

    def __init__(self, func: CountingRHS, t0: Tensor, y0: Tensor, f0: Tensor) -> None:
        self.func, self.t0, self.y0 = func, t0, y0
        self.f0: Tensor | None = f0

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


def _raise(
    status: np.ndarray, failed: np.ndarray, tc: np.ndarray, detail: Callable[[int, Status], str] | None = None
) -> None:
    idx = int(np.flatnonzero(failed)[0])
    code = Status(int(status[idx]))
    when = float(tc[idx])
    n_failed = int(failed.sum())
    others = f" ({n_failed - 1} other trajectories failed too)" if n_failed > 1 else ""
    extra = detail(idx, code) if detail is not None else ""
    # A diagnosed cause of a non-finite failure replaces the generic advice (which blames the right-hand side).
    if code == Status.NON_FINITE and extra:
        what = f"{extra.strip()}{others}"
    else:
        what = f"{code.message}{others}.{extra}"
    msg = (
        f"solve failed for trajectory {idx} at t = {when:.10g}: {what} "
        "Pass raise_on_failure=False to physnode.solve to get the per-trajectory status instead."
    )
    cls: type[SolverError] = {
        Status.MAX_STEPS: MaxStepsError,
        Status.STEP_UNDERFLOW: StepSizeUnderflowError,
        Status.NON_FINITE: NonFiniteError,
        Status.STIFF: StiffnessError,
    }[code]
    raise cls(msg, trajectory=idx, time=when, status=int(code))


def _nonfinite_cause(problem: Problem, idx: int, trial: Tensor | None, err: Tensor | None) -> str:
    """Why trajectory ``idx`` went non-finite, as a sentence (or ``""``): run only when a solve fails.

    Checks, in order, the parameters of ``func`` (named for an ``nn.Module``), the first evaluation
    ``func(t0, y0)``, and an error norm that overflowed although the trial state was finite (a tolerance too
    small for the dtype).
    """
    with torch.no_grad():
        user = problem.func.func
        named: list[tuple[str, Tensor]] = []
        if isinstance(user, torch.nn.Module):
            named += [(f"parameter {n!r}", p) for n, p in user.named_parameters()]
            named += [(f"buffer {n!r}", b) for n, b in user.named_buffers() if b.is_floating_point()]
        named += [(f"params[{i}]", p) for i, p in enumerate(problem.params) if not any(p is q for _, q in named)]
        for name, p in named:
            if p.is_floating_point() or p.is_complex():
                if not bool(torch.isfinite(p.detach()).all()):
                    return (
                        f" the {name} of func contains NaN or Inf (y0 is finite): fix the parameter (or the "
                        "optimiser step that produced it) first."
                    )
        f0 = problem.func(problem.t[:, 0], problem.y0.detach())
        if not bool(torch.isfinite(f0[idx]).all()):
            return (
                " func(t0, y0) is already NaN or Inf at the first evaluation although y0 is finite: the right-hand "
                "side is undefined at the initial state (e.g. sqrt or log of a negative parameter, a division by "
                "zero); check the parameter values and their domains."
            )
        if trial is not None and err is not None:
            finite_trial = bool(torch.isfinite(trial[idx]).all()) and bool(torch.isfinite(err[idx]).all())
            if finite_trial:
                ctrl = problem.controller
                atol = getattr(ctrl, "atol", None)
                atol_f = float(atol.min()) if isinstance(atol, Tensor) else atol
                finfo = torch.finfo(problem.y0.dtype)
                if getattr(ctrl, "norm", None) is not None:
                    return (
                        " the state and its error estimate stayed finite but the step's error norm is NaN, Inf or "
                        "negative: the norm= function returned a non-finite or negative value for this trajectory "
                        "(check it for a sign error, 0/0, "
                        f"log(0) or sqrt of a negative number), or atol = {atol_f!r} is too small for "
                        f"{problem.y0.dtype}. norm receives the scaled error (B, D) and must return finite, "
                        "non-negative values (B,)."
                    )
                return (
                    f" the state stayed finite but the scaled error norm overflowed {problem.y0.dtype}, not the "
                    f"right-hand side: atol = {atol_f!r} is too small for {problem.y0.dtype} (components near 0 are "
                    f"divided by it; the largest {problem.y0.dtype} is {finfo.max:.1e}). Choose atol around rtol "
                    "times the typical size of the state components."
                )
    return ""


#: Stiffness check: a trajectory is pinned at the stability limit when an accepted step has
#: ``h |lambda| >= STIFF_FRACTION * stability_boundary`` (Hairer's DOPRI5 uses 3.25 of 3.31, i.e. 0.98; the
#: two-stage estimate of ``|lambda|`` is rough, so a little lower). Accepted non-stiff steps are dominated by
#: accuracy and sit far below the limit.
STIFF_FRACTION = 0.9
#: ... for this many accepted steps in a row (15 in Hairer's DOPRI5 and scipy).
STIFF_STEPS = 15
#: The estimate costs a few small device operations: it is taken every STIFF_EVERY iterations, and on every
#: iteration once a pinned step was seen (so a run of STIFF_STEPS is counted exactly).
STIFF_EVERY = 16


#: How far beyond the controller's proposal an adaptive step may be stretched so that an observation interval
#: takes one step fewer (at most STRETCH**(q+1) times the predicted local error, still checked by the estimate).
STRETCH = 1.5


def _to_device(a: np.ndarray, device: torch.device) -> Tensor:
    """Host array to a tensor on ``device`` (zero-copy on CPU: callers never modify ``a`` afterwards)."""
    x = torch.from_numpy(a)
    return x if device.type == "cpu" else x.to(device, non_blocking=True)


def _interpolated_slots(
    th: np.ndarray,
    keys: Tensor,
    direction: np.ndarray,
    j: np.ndarray,
    accept: np.ndarray,
    tc: np.ndarray,
    h: np.ndarray,
    t_new: np.ndarray,
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """The observations that the accepted steps ``[tc, t_new]`` cover, for ``outputs="interpolate"``.

    Parameters
    ----------
    th
        Observation times ``(B, T)`` (host float64); ``keys`` the same times times the ``direction`` of integration
        ``(B,)`` (``+1`` or ``-1``), increasing along each row, as a CPU tensor.
    j
        Index of each trajectory's first observation not yet written, ``(B,)``.
    accept, tc, h, t_new
        Accept mask, start time, step and end time of this iteration's steps, ``(B,)``.

    Returns
    -------
    j_end, theta, slots
        The first observation after the step ``(B,)``; for the ``M`` observations at most that a step covers, the
        fractions ``theta`` ``(B, M)`` of the step and the output slots ``(B, M)`` (``T`` where a row covers fewer),
        or ``None`` when no step covers an observation. One batched binary search on the host, no device work.
    """
    B, T = th.shape
    after = torch.searchsorted(keys, torch.from_numpy(direction * t_new).unsqueeze(1), right=True).numpy()[:, 0]
    j_end = np.where(accept, np.maximum(after, j), j)
    count = j_end - j
    M = int(count.max())
    if M == 0:
        return j_end, None, None
    idx = j[:, None] + np.arange(M)[None, :]
    valid = np.arange(M)[None, :] < count[:, None]
    obs = th[np.arange(B)[:, None], np.minimum(idx, T - 1)]
    with np.errstate(divide="ignore", invalid="ignore"):
        theta = np.where(valid, (obs - tc[:, None]) / h[:, None], 0.0)
    return j_end, np.clip(theta, 0.0, 1.0), np.where(valid, idx, T)


def integrate(problem: Problem, record: str | None = None, state0: State | None = None) -> Integration:
    """Integrate ``problem`` from ``t[:, 0]`` through every observation time.

    Parameters
    ----------
    problem
        The problem to solve.
    record
        ``None`` (nothing), ``"steps"`` (a :class:`StepRecord` per iteration), ``"states"`` (the records
        plus the state before every iteration) or ``"landings"`` (the records plus the full solver state at
        every observation time, ``O(T·Z)`` like the output itself).
    state0
        Initial solver state to use instead of ``solver.init`` (used by gradient methods that re-solve).

    Returns
    -------
    Integration
        ``ys`` of shape ``(B, T, D)`` (NaN after a failure) with statistics and, when asked, the records.
    """
    if record not in (None, "steps", "states", "landings"):
        raise ValueError(f"record must be None, 'steps', 'states' or 'landings', got {record!r}.")
    func, solver, ctrl = problem.func, problem.solver, problem.controller
    interp = problem.outputs == "interpolate"
    if (interp or problem.dense) and solver.dense_order is None:
        raise ValueError(
            f"method={solver.name!r} has no continuous extension (dense output), so it cannot "
            f"{'serve observation times by interpolation' if interp else 'give a dense solution'}; use "
            "outputs='land' and dense=False, or an explicit Runge–Kutta method such as 'dopri5' or 'tsit5'."
        )
    if interp and record == "landings":
        raise ValueError(
            "this gradient method restarts its reconstruction from the exact state at every observation time, which "
            "outputs='interpolate' does not compute; use outputs='land' with it."
        )
    y0, t = problem.y0, problem.t
    B, D = y0.shape
    T = t.shape[1]
    dev = y0.device
    nfe0 = func.nfe

    # Host bookkeeping of times and steps in float64 whatever the state's dtype; the device gets them in the
    # state's dtype (``sdtype``), and the records keep exactly what the device got (replays are exact).
    t_host = t.detach().cpu().numpy()
    sdtype = t_host.dtype
    th = t_host.astype(np.float64)  # (B, T) host copy of the observation times
    rows = np.arange(B)
    span_dev = t[:, -1] - t[:, 0]
    direction = np.where(th[:, -1] < th[:, 0], -1.0, 1.0)
    eps = np.finfo(np.float64).eps
    slack = 64 * eps
    tiny = 4 * eps  # a step below tiny * max(|t|, 1) cannot advance the (float64) time variable: underflow

    out = torch.full((B, T + 1, D), float("nan"), dtype=y0.dtype, device=dev)
    out[:, 0] = y0
    status = np.zeros(B, dtype=np.int64)
    n_acc = np.zeros(B, dtype=np.int64)
    n_rej = np.zeros(B, dtype=np.int64)
    tc = th[:, 0].copy()
    records = Trace(B, sdtype, dev, keep_states=record == "states")

    def stats() -> Stats:
        return Stats(
            func.nfe - nfe0,
            torch.from_numpy(n_acc).to(dev),
            torch.from_numpy(n_rej).to(dev),
            torch.from_numpy(status).to(dev),
            torch.from_numpy(tc).to(device=dev, dtype=y0.dtype),
        )

    if T == 1:
        return Integration(out[:, :1], stats(), (y0,) if state0 is None else state0, records)

    t0_dev = t[:, 0]
    init_func: Callable[[Tensor, Tensor], Tensor] = func
    grad_enabled = torch.is_grad_enabled()
    with torch.no_grad():
        finite0 = torch.isfinite(y0).all(-1)
        if ctrl.adaptive:
            f0 = func(t0_dev, y0)
            finite0 &= torch.isfinite(f0).all(-1)
            h_dev = ctrl.initial_step(func, t0_dev, y0, torch.nan_to_num(f0), span_dev, solver.error_order - 1)
            if not grad_enabled:  # no graph is being built: the first evaluation can be reused
                init_func = _Reuse(func, t0_dev, y0, f0)
        else:
            h_dev = ctrl.initial_step(func, t0_dev, y0, y0, span_dev, solver.error_order - 1)
        h = h_dev.detach().cpu().numpy().astype(np.float64)
        step_size = getattr(ctrl, "step_size", None)
        if not ctrl.adaptive and isinstance(step_size, float):
            h = direction * step_size  # the fixed step exactly, not rounded to the state's dtype
        active = finite0.cpu().numpy()
    state = solver.init(init_func, t0_dev, y0, h_dev) if state0 is None else state0
    landed_states = None
    if record == "landings":
        landed_states = tuple(x.new_zeros((B, T + 1, *x.shape[1:])) for x in state)
        for buf, x in zip(landed_states, state, strict=True):
            buf[:, 0] = x

    new_state: State | None = None
    err: Tensor | None = None
    sg = start_step_graph(problem, h, tc, sdtype, record)  # step sizes on the graph (physnode.step_grad), or None
    dense_out = DenseOutput(th[:, 0], th[:, -1], y0) if problem.dense else None
    keys = torch.from_numpy(np.ascontiguousarray(direction[:, None] * th)) if interp else None
    interp_slots: list[Tensor] = []  # (B, M) output slots and (B, M, D) states of the interpolated observations
    interp_values: list[Tensor] = []
    land_rows: list[np.ndarray] = []  # outputs="land": the rows (L_n,) landed at each iteration, their slots (L_n,)
    land_slots: list[np.ndarray] = []  # and their states (L_n, D), written once after the loop
    land_values: list[Tensor] = []

    def detail(idx: int, code: Status) -> str:
        """What the generic status message cannot know: numbers and the likely cause (failure path only)."""
        if code == Status.NON_FINITE:
            trial = None if new_state is None else new_state[0].detach()
            return _nonfinite_cause(problem, idx, trial, None if err is None else err.detach())
        if code == Status.MAX_STEPS:
            return (
                f" (max_steps = {problem.max_steps} accepted plus rejected steps for {T - 1} observation "
                f"interval{'s' * (T > 2)}; {int(n_acc[idx])} accepted, {int(n_rej[idx])} rejected)"
            )
        if code == Status.STIFF:
            lam = hrho[idx] / max(abs(h_eff[idx]), np.finfo(np.float64).tiny)
            return (
                f" Estimated h·|λ| = {hrho[idx]:.3g} on each of the last {STIFF_STEPS} accepted steps, at the "
                f"stability limit of {solver.name} (≈ {boundary or float('nan'):.3g}), with |λ| ≈ {lam:.3g}; at "
                "that step size "
                f"the remaining {abs(th[idx, -1] - tc[idx]):.4g} time units need ≈ {need[idx]:.3g} more steps, "
                f"max_steps = {problem.max_steps}."
            )
        if code == Status.STEP_UNDERFLOW and ctrl.min_step > 0:
            return (
                f" A step of at most min_step = {ctrl.min_step:.4g} was rejected (error estimate > tolerance): "
                "lower min_step or loosen rtol/atol."
            )
        return ""

    status[~active] = int(Status.NON_FINITE)
    if not active.all() and problem.raise_on_failure:
        _raise(status, ~active, tc, detail)
    j = np.ones(B, dtype=np.int64)
    t_next = th[:, -1].copy() if interp else th[:, 1].copy()  # the next time a step lands on
    prev_err = np.ones(B)
    last_nonfinite = np.zeros(B, dtype=bool)
    retry = np.zeros(B, dtype=bool)  # the row's last step was rejected
    boundary = solver.stability_boundary if ctrl.adaptive and problem.stiffness_check else None
    stiff_run = np.zeros(B, dtype=np.int64)  # accepted steps in a row at the stability limit
    in_run = False  # whether any trajectory is in such a run (then every iteration is probed)
    hrho = np.zeros(B)
    need = np.zeros(B)
    h_eff = np.zeros(B)
    iteration = -1
    # Breakpoints: the next landing target is the next observation or the next breakpoint, whichever comes first.
    cursor = None if problem.breakpoints is None else Cursor(problem.breakpoints, th, direction, sdtype, slack)
    side_dev = _to_device(direction.astype(sdtype), dev)

    while True:
        iteration += 1
        target = t_next if cursor is None else cursor.target(t_next)
        dt_rem = target - tc
        # Land on the next observation when it is within the step, or beyond it only by accumulated
        # round-off of the time variable (which would otherwise leave a step of a few ulps).
        if ctrl.adaptive and sg is not None:  # the proposal, and the remainder to land (physnode.step_grad)
            land, h_eff = sg.landing(dt_rem, h, retry, active, ctrl.max_step)
        elif ctrl.adaptive:
            # Reach the next observation in equal steps: ceil(d / h) of them, or one fewer when that needs steps at
            # most STRETCH times the proposal (instead of ending the interval with a short remainder step). The
            # error estimate still decides; right after a rejection nothing is stretched, so a retry is shorter.
            with np.errstate(divide="ignore", invalid="ignore"):
                n_full = np.maximum(np.ceil(dt_rem / h * (1 - slack)), 1.0)
                n_less = np.maximum(n_full - 1.0, 1.0)
                stretch_ok = ~retry & (dt_rem / n_less <= STRETCH * h * (1 + slack))
                stretch_ok &= np.abs(dt_rem / n_less) <= ctrl.max_step * (1 + slack)  # the bound on |h|
            n_left = np.where(stretch_ok, n_less, n_full)
            land = active & (n_left <= 1)
            h_eff = np.where(active, np.where(land, dt_rem, dt_rem / n_left), 0.0)
        else:
            land = active & (direction * (dt_rem - h) <= slack * (np.abs(target) + np.abs(h)))
            h_eff = np.where(active, np.where(land, dt_rem, h), 0.0)
        if cursor is not None:  # t + h of a landing step equals the target in the state's dtype (sides are exact)
            h_eff = land_exactly(tc, h_eff, target, land, sdtype)
        packed = np.empty((2, B), dtype=sdtype)
        packed[0], packed[1] = tc, h_eff
        th_dev = _to_device(packed, dev)
        tc_dev, h_eff_dev = th_dev[0], th_dev[1]
        if sg is not None:
            tc_dev, h_eff_dev = sg.inputs(tc_dev, h_eff_dev, land, active)
        state_before = state
        if cursor is None:
            new_state, err = solver.step(func, tc_dev, h_eff_dev, state)
        else:
            fresh = cursor.fresh(tc)
            with window(tc_dev, h_eff_dev, _to_device(fresh, dev) if fresh.any() else None, side_dev):
                new_state, err = solver.step(func, tc_dev, h_eff_dev, state)
        if sg is not None:
            sg.observe(err, state[0], new_state[0])
        with torch.no_grad():
            y_new = new_state[0].detach()
            if ctrl.adaptive and err is None:
                raise RuntimeError(f"{solver!r} returned no error estimate but the step size is adaptive.")
            en_dev = ctrl.step_norm(None if err is None else err.detach(), state[0].detach(), y_new)
            # Probe for stiffness every STIFF_EVERY iterations, and on every one while a run of pinned steps goes on.
            probe = boundary is not None and (in_run or iteration % STIFF_EVERY == 0)
            terms = solver.stiffness_terms() if probe else None
            if terms is None:
                en = en_dev.cpu().numpy().astype(np.float64, copy=False)  # the one host synchronisation of the step
            else:  # the stiffness terms ride along in the same transfer
                host = torch.cat((en_dev.unsqueeze(0), terms)).cpu().numpy().astype(np.float64, copy=False)
                en = host[0]
                hrho = np.abs(h_eff) * host[1] / np.maximum(host[2], 1e-300)  # NaN for a non-finite trial
        nonfinite = active & ~np.isfinite(en)
        accept = active & ctrl.accepts(en)
        landed = accept & land if cursor is None else accept & land & (target == t_next)  # on an observation
        slot = np.where(landed & (not interp), j, T)
        # The host knows the decisions: skip the merge when every row accepted, the write when none landed.
        # A step no row accepted keeps the state as it was: the rejected trial stays off the graph (a torch.where
        # would keep all its stages on it, to be differentiated into zeros).
        if accept.all():
            state = new_state
        elif accept.any():
            state = _where_state(_to_device(accept, dev), new_state, state)
        if landed.any() and not interp:
            # The landed states are collected and written once after the loop: a write into the output per step
            # would put a copy of the whole (B, T, D) output gradient on the graph per landing, O(T) each.
            if landed.all():
                land_rows.append(rows)
                land_values.append(state[0])
            else:
                landed_rows = np.flatnonzero(landed)
                land_rows.append(landed_rows)
                land_values.append(state[0][_to_device(landed_rows, dev)])
            land_slots.append(slot[land_rows[-1]])
            if landed_states is not None:
                slot_dev = _to_device(slot, dev)
                for buf, x in zip(landed_states, state, strict=True):
                    index = slot_dev.view((B, 1) + (1,) * (x.ndim - 1)).expand((B, 1, *x.shape[1:]))
                    buf.scatter_(1, index, x.detach().unsqueeze(1))
        t_new = np.where(accept, np.where(land, target, tc + h_eff), tc)
        theta: np.ndarray | None = None
        slots: np.ndarray | None = None
        if interp:
            # Observations in (tc, t_new] of each accepted step, from its continuous extension: evaluated now for
            # the whole batch, written once after the loop (one scatter instead of one per step, also backward).
            assert keys is not None
            j_end, theta, slots = _interpolated_slots(th, keys, direction, j, accept, tc, h_eff, t_new)
        if theta is not None or (dense_out is not None and accept.any()):
            # Only steps whose extension is used (its extra stages, if any, cost evaluations), in the step's window.
            with contextlib.nullcontext() if cursor is None else window(tc_dev, h_eff_dev, None, side_dev):
                y_n, h_n, R_n = solver.dense_terms(func)  # type: ignore[attr-defined]  # dense_order checked above
            if dense_out is not None:
                dense_out.append(tc, h_eff, accept, y_n, R_n)
            if theta is not None and slots is not None:
                theta_dev = _to_device(theta.astype(sdtype), dev)
                if sg is not None and sg.graph:  # theta = (t_obs - t_n) / h_n on the step graph (physnode.step_grad)
                    obs_dev = _to_device(th[rows[:, None], np.minimum(slots, T - 1)].astype(sdtype), dev)
                    theta_dev = step_fraction(theta_dev, obs_dev, tc_dev, h_eff_dev)
                interp_slots.append(_to_device(slots, dev))
                interp_values.append(evaluate(y_n, h_n, R_n, theta_dev))
                if record is not None:
                    records.interpolated[len(records)] = (theta.astype(sdtype), slots)
        if record is not None:
            records.append(packed[0], packed[1], accept, slot, state_before)

        tc = t_new
        if cursor is not None:
            cursor.advance(tc)
        if interp:
            j = j_end
        else:
            j = j + landed
            t_next = th[rows, np.minimum(j, T - 1)]
        finished = j >= T
        if problem.monitor is not None and accept.any():  # e.g. terminal events (physnode.events)
            finished = finished | (accept & problem.monitor(tc, accept, state))
        n_acc += accept
        n_rej += active & ~accept
        retry = active & ~accept
        stiff = None
        if ctrl.adaptive:
            h_new = ctrl.adapt(h_eff, en, prev_err, accept, solver.error_order)
            # After landing on an observation the clipped step says little about the next one.
            keep = landed & (np.abs(h_new) < np.abs(h))
            h = np.where(keep, h, h_new)
            prev_err = np.where(accept, np.maximum(en, 1e-4), prev_err)
            if sg is not None:
                sg.advance(accept, keep, tc, h, prev_err)
            last_nonfinite = np.where(active, nonfinite, last_nonfinite)
            underflow = active & ~finished & (np.abs(h) <= tiny * np.maximum(np.abs(tc), 1.0))
            # A rejected step already at the lower bound on |h| cannot be retried with a shorter one.
            underflow |= active & ~finished & ~accept & (np.abs(h_eff) <= ctrl.min_step * (1 + slack))
            if terms is not None and boundary is not None:
                pinned = hrho >= STIFF_FRACTION * boundary
                stiff_run = np.where(accept, np.where(pinned, stiff_run + 1, 0), stiff_run)
                in_run = bool(stiff_run.any())
                suspect = active & ~finished & (stiff_run >= STIFF_STEPS)
                if suspect.any():
                    # Steps needed to finish at the stability limit, from |lambda| = hrho / |h|.
                    need = np.abs(th[:, -1] - tc) * hrho / np.maximum(np.abs(h_eff), 1e-300) / boundary
                    stiff = suspect & (need > problem.max_steps - (n_acc + n_rej))
        else:
            underflow = nonfinite
        maxed = active & ~finished & ((n_acc + n_rej) >= problem.max_steps)
        failed = underflow | maxed if stiff is None else underflow | maxed | stiff
        active = active & ~(finished | failed)
        if failed.any():
            if ctrl.adaptive:
                code = np.where(last_nonfinite, int(Status.NON_FINITE), int(Status.STEP_UNDERFLOW))
            else:
                code = np.full(B, int(Status.NON_FINITE))
            status = np.where(
                underflow,
                code,
                np.where(
                    False if stiff is None else stiff,
                    int(Status.STIFF),
                    np.where(maxed, int(Status.MAX_STEPS), status),
                ),
            )
            if problem.raise_on_failure:
                _raise(status, failed, tc, detail)
        if not active.any():
            break

    if land_values:
        at = (_to_device(np.concatenate(land_rows), dev), _to_device(np.concatenate(land_slots), dev))
        out = out.index_put(at, torch.cat(land_values))
    if interp_slots:
        slots_all = torch.cat(interp_slots, dim=1)
        out = out.scatter(1, slots_all.unsqueeze(-1).expand(*slots_all.shape, D), torch.cat(interp_values, dim=1))
    return Integration(
        out[:, :T],
        stats(),
        state,
        records,
        h0=h_dev,
        landed_states=landed_states,
        dense=dense_out,
        control=None if sg is None else sg.trace,
    )
