"""Public entry points :func:`odeint` and :func:`solve`."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, cast

import torch
from torch import Tensor, nn

from ._forcing import Forcing, build_forcing, call_explained, solve_with_boluses
from ._validate import check_times, check_y0, describe
from .data.inputs import Boluses, Inputs
from .gradients import GradientMethod
from .integrate import CountingRHS, Problem
from .options import (
    DEFAULT_ATOL,
    DEFAULT_GRAD,
    DEFAULT_METHOD,
    DEFAULT_OUTPUTS,
    DEFAULT_RTOL,
    SolveOptions,
    resolve_options,
)
from .solution import Solution
from .solvers import FixedController, PIController, Solver
from .time_input import observation_time_terms, shifted_initial_state

__all__ = ["odeint", "solve"]

#: The keyword defaults of :func:`solve` and :func:`odeint` (to tell them from given keywords).
_KEYWORD_DEFAULTS: dict[str, Any] = {
    "method": DEFAULT_METHOD,
    "grad": DEFAULT_GRAD,
    "rtol": DEFAULT_RTOL,
    "atol": DEFAULT_ATOL,
    "step_size": None,
    "max_steps": None,
    "min_step": 0.0,
    "max_step": math.inf,
    "norm": None,
    "outputs": DEFAULT_OUTPUTS,
    "dense": False,
}


def _collect_params(func: Callable, params: Sequence[Tensor] | None) -> tuple[Tensor, ...]:
    found: list[Tensor] = []
    if isinstance(func, nn.Module):
        found.extend(p for p in func.parameters() if p.requires_grad)
    if params is not None:
        if isinstance(params, Tensor):
            params = (params,)
        if isinstance(params, (str, bytes, Mapping)) or not isinstance(params, Iterable):
            raise TypeError(
                f"params must be a list of the tensors func closes over (or one tensor), got {describe(params)}."
            )
        params = list(params)
        for i, p in enumerate(params):
            if not isinstance(p, Tensor):
                raise TypeError(f"params[{i}] must be a tensor, got {type(p).__name__}.")
            if not any(p is q for q in found):
                found.append(p)
    return tuple(found)


def _build_problem(
    func: Callable,
    y0: Tensor,
    t: Tensor,
    opts: SolveOptions,
    params: Sequence[Tensor] | None,
    raise_on_failure: bool,
    forcing: Forcing | None = None,
) -> tuple[Problem, GradientMethod, bool]:
    if not callable(func):
        raise TypeError(f"func must be callable as func(t, y), got {type(func).__name__}.")
    check_y0(y0)
    tt = check_times(t, y0)
    if not isinstance(raise_on_failure, bool):
        raise TypeError(f"raise_on_failure must be True or False, got {describe(raise_on_failure)}.")
    solver: Solver = opts.build_solver()
    gm: GradientMethod = opts.build_gradient()
    rtol, atol = opts.tolerances(y0)
    controller: PIController | FixedController
    if solver.adaptive:
        # Tolerances may be (D,) tensors (one per state component); the controller broadcasts them.
        controller = PIController(
            rtol=rtol,  # type: ignore[arg-type]
            atol=atol,
            first_step=opts.step_size,
            min_step=opts.min_step,
            max_step=opts.max_step,
            norm=opts.norm,
        )
        if opts.integral_controller:  # h' = h·clip(safety·e^(-1/k), ...): no memory of the previous error norm
            controller.beta1, controller.beta2 = 1.0, 0.0
    else:
        controller = FixedController(step_size=float(cast(float, opts.step_size)))  # SolveOptions: set when fixed
    max_steps = opts.max_steps
    n_intervals = tt.shape[-1] - 1
    if n_intervals > max_steps:
        raise ValueError(
            f"max_steps = {max_steps} cannot cover the {n_intervals} observation intervals of t: every interval "
            f"takes at least one step. Raise max_steps to at least {n_intervals} (better a few times more)."
        )
    solver.check_compatible(func)
    solver.set_tolerances(rtol, atol)
    unbatched = y0.ndim == 1
    y0b = y0.unsqueeze(0) if unbatched else y0
    B = y0b.shape[0]
    tb = tt.unsqueeze(0).expand(B, -1) if tt.ndim == 1 else tt
    all_params = _collect_params(func, params)
    if forcing is not None:  # input values that require grad (dose optimisation) are differentiated too
        all_params += tuple(p for p in forcing.params if not any(p is q for q in all_params))
    # Methods with their own backward pass (gm.needs_params) find tensors that func uses but that are not in
    # all_params themselves, when they solve (physnode.gradients._guards): a plain function needs no params=.
    rhs = CountingRHS(func, unbatched) if forcing is None else forcing.rhs(func, unbatched, tb)
    with torch.no_grad():  # the check's evaluation is counted in stats.nfe like every other
        if forcing is not None:
            f_try = forcing.first_call(func, tb[:, 0], y0b.detach(), unbatched)
        else:
            f_try = call_explained(
                func,
                (tt[0], y0.detach()) if unbatched else (tb[:, 0], y0b.detach()),
                lambda name: (
                    f"func is called as func(t, y) (t: (B,), y: (B, D)), but {name} does not take two "
                    "positional arguments; write it as f(t, y) -> dy/dt (wrap a network of y alone: "
                    "lambda t, y: net(y))."
                ),
            )
    rhs.nfe = 1
    if not isinstance(f_try, Tensor) or f_try.shape != y0.shape:
        got = tuple(f_try.shape) if isinstance(f_try, Tensor) else type(f_try).__name__
        raise ValueError(
            f"func(t, y) must return dy/dt with the shape of y, {tuple(y0.shape)}; got {got}. "
            "For a batch, func receives t of shape (B,) and y of shape (B, D)."
        )
    if f_try.dtype != y0.dtype:
        raise TypeError(f"func returned {f_try.dtype} for y of dtype {y0.dtype}; keep them equal.")
    if f_try.device != y0.device:
        raise ValueError(
            f"func returned dy/dt on {f_try.device} for y on {y0.device}; create the tensors func uses on y's device "
            "(e.g. torch.zeros_like(y), or move the model with model.to(y0.device))."
        )
    if opts.compile:  # options={"compile": True}: this solve's steps as one compiled function (physnode.compiled)
        from .compiled import compile_step

        compile_step(solver, rhs)
    problem = Problem(
        rhs,
        y0b,
        tb,
        solver,
        controller,
        max_steps,
        all_params,
        raise_on_failure,
        stiffness_check=opts.stiffness_check,
        step_grad=opts.step_grad,
        outputs=opts.outputs,
        dense=opts.dense,
        breakpoints=None if forcing is None else forcing.breakpoints,
    )
    gm.check(problem)
    return problem, gm, unbatched


def solve(
    func: Callable[[Tensor, Tensor], Tensor],
    y0: Tensor,
    t: Tensor,
    *,
    method: str | Solver = DEFAULT_METHOD,
    grad: str | GradientMethod = DEFAULT_GRAD,
    rtol: float | Tensor = DEFAULT_RTOL,
    atol: float | Tensor = DEFAULT_ATOL,
    step_size: float | None = None,
    max_steps: int | None = None,
    params: Sequence[Tensor] | None = None,
    options: Mapping[str, Any] | SolveOptions | None = None,
    raise_on_failure: bool = True,
    min_step: float = 0.0,
    max_step: float = math.inf,
    norm: Callable[[Tensor], Tensor] | None = None,
    outputs: str = DEFAULT_OUTPUTS,
    dense: bool = False,
    inputs: Inputs | None = None,
    boluses: Boluses | None = None,
    breakpoints: Tensor | Sequence[float] | None = None,
) -> Solution:
    """Solve ``dy/dt = func(t, y)`` and return the states at the observation times with statistics.

    Parameters
    ----------
    func
        Right-hand side ``func(t, y) -> dy/dt``. It receives ``t`` of shape ``y.shape[:-1]`` (the current
        time of each trajectory) and ``y`` of shape ``(B, D)`` (or a 0-d ``t`` and ``(D,)`` for an unbatched
        ``y0``); ``t`` comes in the state's dtype, while the solver keeps its own clock (times and step sizes)
        in float64 whatever that dtype, so float32 solves land on their observation times. It must return a
        tensor of ``y``'s shape and dtype on every call.
    y0
        Initial state ``(D,)`` or batch of initial states ``(B, D)``; float32 or float64.
    t
        Observation times ``(T,)`` shared by the batch, or ``(B, T)`` with each trajectory its own times;
        strictly monotonic along the last axis (decreasing integrates backwards); ``t[..., 0]`` is the
        initial time. Converted to ``y0``'s dtype. A ``t`` that requires grad gets the gradient of the exact
        flow, ``dy(t_i)/dt_i = f(t_i, y(t_i))`` and ``dy(t_i)/dt_0 = -dy(t_i)/dy_0 f(t_0, y_0)``, with every
        gradient method (see :mod:`physnode.time_input`; it costs ``T + 1`` extra evaluations of ``func``).
    method
        Solver name or a :class:`~physnode.solvers.Solver`. Adaptive Runge–Kutta: ``"dopri5"``, ``"tsit5"``,
        ``"dopri8"``, ``"bosh3"``, ``"heun_euler"``; fixed-step Runge–Kutta: ``"euler"``, ``"midpoint"``,
        ``"heun"``, ``"rk4"``; reversible: ``"alf"`` (asynchronous leapfrog, option ``eta``, default 1) and
        ``"reversible_heun"`` (both adaptive, or fixed with ``options={"adaptive": False}``); ``"nag"``
        (first-order Nesterov two-step method, option ``mu``, default 0.5, fixed step); structure-preserving
        for separable systems: ``"leapfrog"``, ``"yoshida4"`` (fixed step).
    grad
        Gradient method name or a :class:`~physnode.gradients.GradientMethod` (see :data:`GRADIENTS`):
        ``"direct"`` (backprop through the accepted steps), ``"aca"`` (adaptive checkpoint adjoint, any solver),
        ``"symplectic"`` (symplectic adjoint, explicit Runge–Kutta), ``"adjoint"`` (continuous adjoint, options
        ``adjoint_rtol``/``adjoint_atol``; the only inexact one), ``"mali"`` (with ``method="alf"``),
        ``"reversible_heun"`` (with ``method="reversible_heun"``).
    rtol, atol
        Relative and absolute tolerances of the adaptive methods (per trajectory, RMS norm): non-negative
        floats, not both zero, or tensors of shape ``(D,)`` (one per state component). ``rtol`` below the unit
        roundoff of the dtype raises; about ``10 * eps`` (1.2e-6 in float32, 2.2e-15 in float64) is the
        smallest sensible value.
    step_size
        Step of the fixed-step methods (required there); first step of adaptive methods (torchdiffeq's
        ``first_step``; chosen automatically when ``None``).
    max_steps
        Limit on accepted plus rejected steps per trajectory (default 100 000); at least the number of
        observation intervals.
    params
        Extra tensors to differentiate that ``func`` closes over (for gradient methods with their own
        backward pass).
    options
        Keyword options of the chosen solver or gradient method (e.g. ``{"eta": 0.9}``); unknown keys raise. Or a
        :class:`~physnode.SolveOptions` holding all the options above (``method`` to ``max_steps`` and these); the
        keywords are then left at their defaults. The keywords are validated into such an object either way.
        Every method also takes ``"stiffness_check"`` (default ``True``): adaptive Runge–Kutta solves estimate
        ``h |lambda|`` from two stages of each step and, when the steps stay pinned at the method's stability
        limit and finishing would exceed ``max_steps``, fail after a few dozen steps with
        :class:`~physnode.errors.StiffnessError` instead of running into :class:`~physnode.errors.MaxStepsError`.
    raise_on_failure
        Raise a :class:`~physnode.errors.SolverError` when a trajectory fails (default). With ``False`` the
        per-trajectory status is returned in ``Solution.stats.status`` and failed entries of ``ys`` are NaN.
    min_step, max_step
        Bounds on ``|h|`` of adaptive methods (time units; defaults ``0`` and ``inf``). A rejected step of
        ``min_step`` or shorter fails the trajectory (``StepSizeUnderflowError``, status ``STEP_UNDERFLOW``);
        steps landing on an observation time may be shorter.
    norm
        Error norm of adaptive methods, ``norm(scaled_error (B, D)) -> (B,)``, applied to
        ``err / (atol + rtol max(|y|, |y_new|))``; a step is accepted when it is at most 1. Default: RMS.
    outputs
        ``"land"`` (default): a step ends on every observation time. ``"interpolate"``: steps land only on the
        last time and every observation comes from the continuous extension of the step covering it (explicit
        Runge–Kutta methods; far fewer steps when observations are dense; see the "Dense output" concepts page).
    dense
        Keep the continuous extension of every step: ``Solution.interpolate(t)`` then evaluates the solution at
        any time of the solved interval (differentiable with ``grad="direct"``).
    inputs
        External inputs :class:`~physnode.data.Inputs` (controls, treatments, forcings; one series per trajectory
        or one shared). ``func`` is then called as ``func(t, y, u)`` with ``u`` of shape ``(B, C)`` (``(C,)`` for
        an unbatched ``y0``) evaluated at the stage time; every knot of the inputs is a breakpoint (see
        ``breakpoints``). Input ``values`` that require grad are differentiated with every gradient method (they
        are added to ``params``). Boluses carried by the inputs are applied as with ``boluses``.
    boluses
        Instantaneous jumps of the state (:class:`~physnode.data.Boluses`, e.g. bolus doses), applied exactly at
        their times; the solution is right-continuous there and differentiable w.r.t. the bolus ``amounts``.
    breakpoints
        Known discontinuities of ``func`` (torchdiffeq's ``jump_t``): times ``(K,)`` shared or ``(B, K)`` per
        trajectory (NaN padding). Every step ends on the next breakpoint (fixed-step methods take a shorter step
        there), no output is written there, and ``func`` is evaluated on the side of the step: a stage at a
        step's start or end gets ``t`` moved one unit in the last place into the step, and methods that reuse
        the previous step's last derivative (FSAL) evaluate it again after a breakpoint.

    Returns
    -------
    Solution
        ``ts`` (as given), ``ys`` of shape ``(T, D)`` or ``(B, T, D)``, and ``stats``.

    Raises
    ------
    ValueError, TypeError
        Bad shapes, dtypes, devices, times or options.
    MaxStepsError, StepSizeUnderflowError, NonFiniteError, StiffnessError
        A trajectory failed during the solve (the message names the trajectory, the time and the likely
        cause).
    """
    opts = resolve_options(
        options,
        _KEYWORD_DEFAULTS,
        method=method,
        grad=grad,
        rtol=rtol,
        atol=atol,
        step_size=step_size,
        max_steps=max_steps,
        min_step=min_step,
        max_step=max_step,
        norm=norm,
        outputs=outputs,
        dense=dense,
    )
    forcing: Forcing | None = None
    if inputs is not None or breakpoints is not None or boluses is not None:
        check_y0(y0)
        y0b = y0.unsqueeze(0) if y0.ndim == 1 else y0
        forcing, carried = build_forcing(inputs, breakpoints, y0b, y0.ndim == 1)
        if carried is not None and boluses is not None:
            raise ValueError("boluses given both in inputs.boluses and as boluses=; give them in one place.")
        boluses = boluses if boluses is not None else carried
        if boluses is not None:
            return _solve_boluses(func, y0, t, boluses, inputs, breakpoints, opts, params, raise_on_failure)
    # Gradients with respect to the times (physnode.time_input): the solve itself runs on detached times.
    t_grad = isinstance(t, Tensor) and t.requires_grad and torch.is_grad_enabled()
    problem, gm, unbatched = _build_problem(
        func, y0, t.detach() if t_grad else t, opts, params, raise_on_failure, forcing
    )
    nfe_times = 0  # evaluations of func spent on the time gradients
    if t_grad:
        t_obs = t.to(problem.y0.dtype)
        t_obs = t_obs.unsqueeze(0).expand(problem.y0.shape[0], -1) if t_obs.ndim == 1 else t_obs
        nfe0 = problem.func.nfe
        problem.y0 = shifted_initial_state(problem.func, t_obs[:, 0], problem.y0)
        nfe_times = problem.func.nfe - nfe0
    counters = getattr(problem.solver, "counters", None)  # implicit solvers count Jacobians and factorisations
    work0 = dict(counters) if isinstance(counters, dict) else None
    result = gm.solve(problem)
    result.stats.nfe += 1  # the evaluation that checked func's output shape and dtype
    if work0 is not None and isinstance(counters, dict):
        result.stats.njev = int(counters.get("jacobians", 0) - work0.get("jacobians", 0))
        result.stats.nlu = int(counters.get("factorizations", 0) - work0.get("factorizations", 0))
    if t_grad:
        nfe0 = problem.func.nfe
        result.ys = observation_time_terms(problem.func, t_obs, result.ys)
        result.stats.nfe += nfe_times + problem.func.nfe - nfe0
    ys = result.ys.squeeze(0) if unbatched else result.ys
    return Solution(ts=t, ys=ys, stats=result.stats, dense=result.dense, unbatched=unbatched)


def _solve_boluses(
    func: Callable,
    y0: Tensor,
    t: Tensor,
    boluses: Boluses,
    inputs: Inputs | None,
    breakpoints: Tensor | Sequence[float] | None,
    opts: SolveOptions,
    params: Sequence[Tensor] | None,
    raise_on_failure: bool,
) -> Solution:
    """:func:`solve` with boluses: segments between the bolus times (:func:`physnode._forcing.solve_with_boluses`)."""
    if not isinstance(boluses, Boluses):
        raise TypeError(f"boluses must be a physnode.data.Boluses, got {describe(boluses)}.")
    if isinstance(t, Tensor) and t.requires_grad and torch.is_grad_enabled():
        raise ValueError("gradients with respect to observation times are not supported with boluses; pass t.detach().")
    if opts.dense:
        raise ValueError(
            "dense=True is not supported with boluses (the solve runs in segments between the bolus times); solve "
            "without dense output, or evaluate the segments between two bolus times separately."
        )
    unbatched = y0.ndim == 1
    y0b = y0.unsqueeze(0) if unbatched else y0
    tt = check_times(t, y0)
    B = y0b.shape[0]
    tb = tt.unsqueeze(0).expand(B, -1) if tt.ndim == 1 else tt
    plain = None if inputs is None else inputs._replace(inputs.times, inputs.values, None)
    if plain is not None and not plain.batched:
        plain.batched = True  # y0 is batched inside the segments

    def run(y_start: Tensor, t_seg: Tensor) -> Solution:
        call = func
        if unbatched:  # the segments run batched; func keeps its unbatched signature
            call = _Batched(func, inputs is not None)
        return solve(
            call,
            y_start,
            t_seg,
            options=opts,
            params=params,
            raise_on_failure=raise_on_failure,
            inputs=plain,
            breakpoints=breakpoints,
        )

    sol = solve_with_boluses(run, y0b, tb, boluses)
    if unbatched:
        return Solution(ts=t, ys=sol.ys.squeeze(0), stats=sol.stats)
    return Solution(ts=t, ys=sol.ys, stats=sol.stats)


class _Batched:
    """An unbatched ``func(t, y[, u])`` called on a batch of one."""

    def __init__(self, func: Callable, with_inputs: bool) -> None:
        self.func, self.with_inputs = func, with_inputs

    def __call__(self, t: Tensor, y: Tensor, u: Tensor | None = None) -> Tensor:
        if self.with_inputs:
            return self.func(t[0], y[0], u[0]).unsqueeze(0)  # type: ignore[index]
        return self.func(t[0], y[0]).unsqueeze(0)


def odeint(
    func: Callable[[Tensor, Tensor], Tensor],
    y0: Tensor,
    t: Tensor,
    *,
    method: str | Solver = DEFAULT_METHOD,
    grad: str | GradientMethod = DEFAULT_GRAD,
    rtol: float | Tensor = DEFAULT_RTOL,
    atol: float | Tensor = DEFAULT_ATOL,
    step_size: float | None = None,
    max_steps: int | None = None,
    params: Sequence[Tensor] | None = None,
    options: Mapping[str, Any] | SolveOptions | None = None,
    min_step: float = 0.0,
    max_step: float = math.inf,
    norm: Callable[[Tensor], Tensor] | None = None,
    outputs: str = DEFAULT_OUTPUTS,
    inputs: Inputs | None = None,
    boluses: Boluses | None = None,
    breakpoints: Tensor | Sequence[float] | None = None,
) -> Tensor:
    """Solve ``dy/dt = func(t, y)`` and return the states at the observation times.

    Same arguments as :func:`solve`; returns ``solve(...).ys`` of shape ``(T, D)`` or ``(B, T, D)``, with
    ``ys[..., i, :]`` the state at ``t[..., i]``. Always raises on failure.
    """
    return solve(
        func,
        y0,
        t,
        method=method,
        grad=grad,
        rtol=rtol,
        atol=atol,
        step_size=step_size,
        max_steps=max_steps,
        params=params,
        options=options,
        min_step=min_step,
        max_step=max_step,
        norm=norm,
        outputs=outputs,
        inputs=inputs,
        boluses=boluses,
        breakpoints=breakpoints,
    ).ys
