r"""Differentiating through the step-size controller (loop option ``"step_grad"``).

Without it, the steps of an adaptive solve are constants of the parameters: each observation interval is divided
into an integer number of equal steps, so ``dh/dθ = 0``. With it, the step sizes are differentiable functions of the
error estimates, as the loop computes them:

- the step tried is the controller's proposal ``h`` (not an equal division of the interval); the last step of an
  interval is the remainder ``t_target - t``, with ``t`` carrying the graph of the steps before it (a remainder of
  at most :data:`~physnode.integrate.STRETCH` times the proposal is taken as one step);
- after each step the PI controller's update ``h' = h_eff · factor(e_n, e_(n-1))`` (:func:`adapt`) is on the graph,
  with the error norm ``e_n`` computed from the error estimate on the graph (:func:`error_norm`); the previous
  norm ``e_(n-1)``, the time ``t`` and the proposal ``h`` are carried from step to step;
- every decision (accept or reject, land, keep the proposal after a landing) stays on the host in float64; the
  device tensors get their VALUE from the host decision and their GRADIENT from the graph,
  ``value + (g - g.detach())`` (:func:`graft`), so the solve is the same with and without a graph.

With ``outputs="interpolate"`` no step lands on an observation (only on the end of the span); the fractions
``theta = (t_obs - t_n) / h_n`` at which a step's continuous extension serves observations are differentiated too
(:func:`fraction`: ``t_obs`` constant, ``t_n`` and ``h_n`` on the graph), by ``grad="direct"`` and ``grad="aca"``;
``grad="symplectic"`` refuses that combination.

``grad="direct"`` backpropagates through this graph. ``grad="aca"`` and ``grad="symplectic"`` replay each iteration
(rejected ones included: their error norm shrinks the next step) with the adjoints ``(ā_t, ā_h, ā_e)`` of time,
proposal and previous error norm next to the state's, and stay equal to ``"direct"`` on the same discrete solve.
The forward pass records what the replay needs per iteration in a :class:`ControlTrace`.

The first proposal (Hairer's starting-step rule, from ``y0``, ``f(t0, y0)`` and one more evaluation) is on the graph
too (:func:`first_step`; two evaluations more per solve, and per backward pass of ``aca`` and ``symplectic``); a
``first_step`` given by the user is a constant. A clipped factor (``factor_min``, ``factor_max``, ``min_step``,
``max_step``) has zero derivative, as a clip has.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "STRETCH",
    "ControlRecord",
    "ControlTrace",
    "StepGraph",
    "adapt",
    "advance",
    "error_norm",
    "first_step",
    "fraction",
    "graft",
    "start",
    "step_input",
]


#: With ``step_grad`` a step lands on its target when the rest of the interval is at most STRETCH times the
#: proposal. Measured on the three-body problem (dopri5, rtol = atol = 1e-7): 1.0 (a pure remainder step) gave a
#: 2x smaller gradient error than 1.5 (the stretch of the equal-step landing) at 1.3x the evaluations; 1.2 in
#: between. The gradient is exact for either.
STRETCH = 1.0


def graft(value: Tensor, graph: Tensor) -> Tensor:
    """``value`` with the gradient of ``graph``: ``value + (graph - graph.detach())`` (same shape).

    The value is exactly ``value`` (``g - g`` is ``0`` for finite ``g``); backpropagation sees ``graph``."""
    if not graph.requires_grad:
        return value
    return value + (graph - graph.detach())


def fraction(theta: Tensor, t_obs: Tensor, tc: Tensor, h: Tensor) -> Tensor:
    """The fractions ``theta`` ``(B, M)`` of a step at which observations are interpolated, with the gradient of
    ``(t_obs - t_n) / h_n``: the observation times ``t_obs`` ``(B, M)`` are constants, the step's start ``tc`` and
    size ``h`` ``(B,)`` carry the graph (a row with ``h = 0`` interpolates nothing and gets none)."""
    if not (tc.requires_grad or h.requires_grad):
        return theta
    safe_h = torch.where(h != 0, h, torch.ones_like(h)).unsqueeze(1)
    return graft(theta, (t_obs - tc.unsqueeze(1)) / safe_h)


def error_norm(ctrl: object, err: Tensor, y: Tensor, y_new: Tensor) -> Tensor:
    """The controller's scaled error norm ``(B,)`` of ``err`` ``(B, D)`` on the graph (no in-place operation on a
    tensor that backpropagation needs); same value as ``ctrl.error_norm``."""
    rtol, atol = ctrl.rtol, ctrl.atol  # type: ignore[attr-defined]
    scale = torch.maximum(y.abs(), y_new.abs()) * rtol + atol
    if getattr(ctrl, "_zero_atol", False):
        scale = scale.clamp_min(torch.finfo(scale.dtype).tiny)
    scaled = err / scale
    norm = getattr(ctrl, "norm", None)
    if norm is not None:
        return norm(scaled)
    return torch.linalg.vector_norm(scaled, dim=-1) * err.shape[-1] ** -0.5


def adapt(ctrl: object, h_eff: Tensor, en: Tensor, prev: Tensor, accept: Tensor, error_order: int) -> Tensor:
    """The PI controller's next step ``(B,)`` (:meth:`~physnode.solvers.controller.PIController.adapt`) as a
    differentiable function of the step tried ``h_eff``, the error norm ``en`` and the previous one ``prev``."""
    c = ctrl
    k = float(error_order)
    e = en.clamp_min(1e-10)
    acc = (c.safety * e.pow(-c.beta1 / k) * prev.pow(c.beta2 / k)).clamp(c.factor_min, c.factor_max)  # type: ignore[attr-defined]
    rej = (c.safety * e.pow(-1.0 / k)).clamp(c.factor_min, 1.0)  # type: ignore[attr-defined]
    h_new = h_eff * torch.where(accept, acc, rej)
    lo, hi = getattr(c, "min_step", 0.0), getattr(c, "max_step", math.inf)
    if lo > 0 or hi != math.inf:
        h_new = torch.sign(h_eff) * h_new.abs().clamp(lo, hi)
    return h_new


def first_step(problem: object, y0: Tensor) -> Tensor | None:
    """The first proposal ``(B,)`` as the loop computes it (the controller's ``initial_step``: Hairer's rule from
    ``y0``, ``f(t0, y0)`` and one more evaluation of ``f``), on the graph of ``y0`` ``(B, D)`` and the parameters;
    ``None`` when it is a constant (a ``first_step`` given by the user). Two evaluations of ``f``."""
    ctrl = problem.controller  # type: ignore[attr-defined]
    if getattr(ctrl, "first_step", None) is not None:
        return None
    # The times are constants here, as everywhere in the step graph (their gradients come from physnode.time_input).
    func, t = problem.func, problem.t.detach()  # type: ignore[attr-defined]
    t0 = t[:, 0]
    f0 = func(t0, y0)
    order = problem.solver.error_order - 1  # type: ignore[attr-defined]  # as the loop passes it
    return ctrl.initial_step(func, t0, y0, torch.nan_to_num(f0), t[:, -1] - t0, order)


def step_input(tc: Tensor, h: Tensor, land: Tensor, active: Tensor) -> Tensor:
    """Graph of the step tried ``(B,)``: the proposal ``h``, or ``target - tc`` where the step lands (the target is
    a constant), zero for inactive rows. Only its derivatives are used (:func:`graft` gives the value)."""
    return torch.where(active, torch.where(land, -tc, h), torch.zeros_like(h))


def advance(
    ctrl: object,
    error_order: int,
    tc: Tensor,
    h: Tensor,
    prev: Tensor,
    h_eff: Tensor,
    en: Tensor,
    accept: Tensor,
    land: Tensor,
    keep: Tensor,
) -> tuple[Tensor, Tensor, Tensor]:
    """Graphs ``(B,)`` of the time, proposal and previous error norm after one iteration, as the loop updates them:
    ``t + h_eff`` (accepted), the landing target (a constant) or ``t`` (rejected); the proposal kept after a landing
    or the controller's update; the new error norm (floored at ``1e-4``) where accepted."""
    tc_next = torch.where(accept, torch.where(land, tc.detach(), tc + h_eff), tc)
    h_next = torch.where(keep, h, adapt(ctrl, h_eff, en, prev, accept, error_order))
    prev_next = torch.where(accept, en.clamp_min(1e-4), prev)
    return tc_next, h_next, prev_next


@dataclass
class ControlRecord:
    """What one iteration's replay needs besides its :class:`~physnode.integrate.StepRecord`, ``(B,)`` each on the
    device: the proposal ``h`` and previous error norm ``prev`` before the step (values), the ``land`` and ``keep``
    decisions."""

    h: Tensor
    prev: Tensor
    land: Tensor
    keep: Tensor


@dataclass
class ControlTrace:
    """Host records of the controller's inputs and decisions per iteration (with ``step_grad``)."""

    device: torch.device
    values: list[np.ndarray] = field(default_factory=list)  # (2, B) in the state's dtype: h, prev
    masks: list[np.ndarray] = field(default_factory=list)  # (2, B) bool: land, keep

    def __len__(self) -> int:
        return len(self.values)

    def __getitem__(self, n: int) -> ControlRecord:
        v = torch.from_numpy(self.values[n]).to(self.device)
        m = torch.from_numpy(self.masks[n]).to(self.device)
        return ControlRecord(v[0], v[1], m[0], m[1])


class StepGraph:
    """The integration loop's side of ``step_grad``: carries the graphs of time, proposal and previous error norm
    from iteration to iteration (when a graph is built) and records the controller's inputs (when asked).

    Parameters
    ----------
    ctrl, error_order
        The adaptive controller and the solver's error order.
    tc, h
        Host times and first proposals ``(B,)``; ``sdtype`` the state's dtype, ``device`` its device.
    graph
        Whether to build the graph (``torch.is_grad_enabled()`` in the forward solve of ``grad="direct"``).
    record
        Whether to keep a :class:`ControlTrace` for a replay.
    """

    def __init__(
        self,
        ctrl: object,
        error_order: int,
        tc: np.ndarray,
        h: np.ndarray,
        sdtype: np.dtype,
        device: torch.device,
        graph: bool,
        record: bool,
    ) -> None:
        self.ctrl, self.order, self.sdtype, self.device = ctrl, error_order, sdtype, device
        self.graph = graph
        self.trace = ControlTrace(device) if record else None
        B = tc.shape[0]
        self._h_host = np.asarray(h, dtype=np.float64)
        self._prev_host = np.ones(B)
        if graph:
            self.tc = torch.from_numpy(tc.astype(sdtype)).to(device)
            self.h = torch.from_numpy(self._h_host.astype(sdtype)).to(device)
            self.prev = torch.ones(B, dtype=self.tc.dtype, device=device)
        self._en: Tensor | None = None
        self._h_eff: Tensor | None = None
        self._land = np.zeros(B, dtype=bool)

    @staticmethod
    def landing(
        dt_rem: np.ndarray, h: np.ndarray, retry: np.ndarray, active: np.ndarray, max_step: float
    ) -> tuple[np.ndarray, np.ndarray]:
        """Host ``(land, h_eff)`` ``(B,)``: land when the rest of the interval is at most :data:`STRETCH` times the
        proposal (at most the proposal right after a rejection, at most ``max_step``), else step by the proposal."""
        stretch = STRETCH
        slack = 64 * np.finfo(np.float64).eps
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = dt_rem / h
        limit = np.where(retry, 1.0, stretch) * (1 + slack)
        land = active & ((ratio <= limit) & (np.abs(dt_rem) <= max_step * (1 + slack)) | (ratio <= 1 + slack))
        return land, np.where(active, np.where(land, dt_rem, h), 0.0)

    def inputs(self, tc_dev: Tensor, h_eff_dev: Tensor, land: np.ndarray, active: np.ndarray) -> tuple[Tensor, Tensor]:
        """Time and step of this iteration ``(B,)`` with their graphs grafted on the host values; records the
        controller's inputs."""
        self._land = land
        if self.trace is not None:
            self.trace.values.append(np.stack((self._h_host, self._prev_host)).astype(self.sdtype))
        if not self.graph:
            return tc_dev, h_eff_dev
        masks = torch.from_numpy(np.stack((land, active))).to(self.device)
        self._h_eff = graft(h_eff_dev, step_input(self.tc, self.h, masks[0], masks[1]))
        return graft(tc_dev, self.tc), self._h_eff

    def observe(self, err: Tensor | None, y: Tensor, y_new: Tensor) -> None:
        """The error norm of this iteration's trial step on the graph (when a graph is built)."""
        if self.graph and err is not None:
            self._en = error_norm(self.ctrl, err, y, y_new)

    def advance(self, accept: np.ndarray, keep: np.ndarray, tc: np.ndarray, h: np.ndarray, prev: np.ndarray) -> None:
        """After the host's update: ``tc``, ``h`` and ``prev`` ``(B,)`` are the new host values (float64)."""
        if self.trace is not None:
            self.trace.masks.append(np.stack((self._land, keep)))
        self._h_host, self._prev_host = np.asarray(h, dtype=np.float64), np.asarray(prev, dtype=np.float64)
        if not self.graph or self._en is None or self._h_eff is None:
            return
        masks = torch.from_numpy(np.stack((accept, self._land, keep))).to(self.device)
        values = torch.from_numpy(np.stack((tc, h, prev)).astype(self.sdtype)).to(self.device)
        tc_g, h_g, prev_g = advance(
            self.ctrl, self.order, self.tc, self.h, self.prev, self._h_eff, self._en, masks[0], masks[1], masks[2]
        )
        self.tc, self.h, self.prev = graft(values[0], tc_g), graft(values[1], h_g), graft(values[2], prev_g)
        self._en = self._h_eff = None


def start(problem: object, h: np.ndarray, tc: np.ndarray, sdtype: np.dtype, record: str | None) -> StepGraph | None:
    """The :class:`StepGraph` of a solve of ``problem`` (``None`` without ``step_grad`` or for fixed steps).

    With ``outputs="interpolate"`` the loop also differentiates the interpolation fractions (:func:`fraction`).
    """
    ctrl = problem.controller  # type: ignore[attr-defined]
    if not (getattr(problem, "step_grad", False) and ctrl.adaptive):
        return None
    y0 = problem.y0  # type: ignore[attr-defined]
    graph = torch.is_grad_enabled() and (y0.requires_grad or any(p.requires_grad for p in problem.params))  # type: ignore[attr-defined]
    sg = StepGraph(ctrl, problem.solver.error_order, tc, h, sdtype, y0.device, graph, record is not None)  # type: ignore[attr-defined]
    if graph:  # the first proposal on the graph of y0 and the parameters
        h0 = first_step(problem, y0)
        if h0 is not None:
            sg.h = graft(sg.h, h0)
    return sg


class ControlAdjoint:
    """The replay side of ``step_grad`` for the custom-backward methods: the adjoints ``(ā_t, ā_h, ā_e)`` ``(B,)``
    of each iteration's time, proposal and previous error norm, carried backwards next to the state's.

    Per iteration (walked in reverse): :meth:`inputs` makes leaves of the recorded time, proposal and previous
    norm and returns the time and step to replay the step with (graphs grafted on the recorded values, as in the
    forward loop); :meth:`outputs` gives the graphs of the controller's update from the replayed step's error
    estimate and their cotangents; after one vector-Jacobian product over both, :meth:`take` stores the gradients
    of the leaves as the adjoints of the iteration before.
    """

    def __init__(self, problem: object, trace: ControlTrace, batch: int, like: Tensor) -> None:
        self.ctrl = problem.controller  # type: ignore[attr-defined]
        self.order = problem.solver.error_order  # type: ignore[attr-defined]
        self.trace = trace
        self.adj = [torch.zeros(batch, dtype=like.dtype, device=like.device) for _ in range(3)]
        self.leaves: list[Tensor] = []
        self._partial: list[Tensor] = []
        self._active: Tensor | None = None
        self._rec: ControlRecord | None = None
        self._h_eff: Tensor | None = None

    @classmethod
    def of(cls, problem: object, result: object) -> ControlAdjoint | None:
        """The adjoint of a solve recorded with ``step_grad``, else ``None``."""
        trace = getattr(result, "control", None)
        if trace is None:
            return None
        y = result.final_state[0]  # type: ignore[attr-defined]
        return cls(problem, trace, y.shape[0], y)

    def inputs(self, n: int, t: Tensor, h_eff: Tensor) -> tuple[Tensor, Tensor]:
        """Leaves of iteration ``n`` (recorded time ``t`` and step ``h_eff`` ``(B,)``); the time and step to replay
        with."""
        rec = self._rec = self.trace[n]
        tc = t.detach().clone().requires_grad_()
        h = rec.h.detach().clone().requires_grad_()
        prev = rec.prev.detach().clone().requires_grad_()
        self.leaves = [tc, h, prev]
        self._h_eff = graft(h_eff, step_input(tc, h, rec.land, h_eff != 0))
        return tc, self._h_eff

    def outputs(
        self, err: Tensor | None, y: Tensor, y_new: Tensor, accept: Tensor
    ) -> tuple[list[Tensor], list[Tensor]]:
        """Graphs of time, proposal and previous norm after the replayed step, and their cotangents."""
        if err is None or self._rec is None or self._h_eff is None:
            return [], []
        tc, h, prev = self.leaves
        en = error_norm(self.ctrl, err, y, y_new)
        rec = self._rec
        outs = advance(self.ctrl, self.order, tc, h, prev, self._h_eff, en, accept, rec.land, rec.keep)
        return list(outs), list(self.adj)

    def initial(self, problem: object, y0: Tensor) -> tuple[list[Tensor], list[Tensor]]:
        """After the first iteration: the graph of the first proposal on ``y0`` ``(B, D)`` (a leaf) and the
        parameters (:func:`first_step`) and its cotangent ``ā_h``, to join the replay's last vector-Jacobian
        product; empty lists when the first step is a constant. Call with gradients enabled."""
        h0 = first_step(problem, y0)
        if h0 is None:
            return [], []
        return [h0], [self.adj[1]]

    def take(self, grads: list[Tensor]) -> None:
        """The gradients of the three leaves: the adjoints of the iteration before."""
        self.adj = list(grads)

    def controller_vjp(
        self, n: int, t: Tensor, h_eff: Tensor, err: Tensor, y: Tensor, y_new: Tensor, accept: Tensor
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """For methods that differentiate the step itself by hand (the symplectic adjoint): one vector-Jacobian
        product of the controller's update of iteration ``n`` with the adjoints after it.

        Returns ``(dL/d err, dL/d y, dL/d y_new)`` ``(B, D)`` through the error norm and ``dL/d h_eff`` ``(B,)``
        through the update; the shares of time, proposal and previous norm are kept for :meth:`finish_step`.
        """
        rec = self._rec = self.trace[n]
        self._active = h_eff != 0
        leaves = [x.detach().clone().requires_grad_() for x in (t, rec.h, rec.prev, h_eff, err, y, y_new)]
        tc, h, prev, he, e, yl, ynl = leaves
        with torch.enable_grad():
            en = error_norm(self.ctrl, e, yl, ynl)
            outs = advance(self.ctrl, self.order, tc, h, prev, he, en, accept, rec.land, rec.keep)
            grads = torch.autograd.grad(outs, leaves, self.adj, allow_unused=True)
        g = [torch.zeros_like(x) if gx is None else gx for gx, x in zip(grads, leaves, strict=True)]
        self.leaves = [tc, h]
        self._partial = g[:3]
        return g[4], g[5], g[6], g[3]

    def finish_step(self, g_h_eff: Tensor, g_t: Tensor) -> None:
        """Close iteration ``n`` of :meth:`controller_vjp`: ``g_h_eff`` ``(B,)`` is ``dL/d h_eff`` in total (the
        update's share plus the step's), ``g_t`` ``(B,)`` the step's ``dL/dt`` through ``f(t, y)``."""
        tc, h = self.leaves
        rec, active = self._rec, self._active
        assert rec is not None and active is not None  # set by controller_vjp
        with torch.enable_grad():
            he = step_input(tc, h, rec.land, active)
            g = torch.autograd.grad(he, [tc, h], g_h_eff, allow_unused=True)
        g_tc, g_h = (torch.zeros_like(tc) if x is None else x for x in g)
        p_tc, p_h, p_prev = self._partial
        self.adj = [p_tc + g_tc + g_t, p_h + g_h, p_prev]
