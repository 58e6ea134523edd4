r"""Events: the times where ``g(t, y(t)) = 0``, located per trajectory and differentiable.

:func:`odeint_event` solves ``dy/dt = f(t, y)`` from ``t0`` towards ``t_end`` and returns, per trajectory, the
times where the event function ``g(t, y) -> (B,)`` changes sign and the states there; a *terminal* event stops
the trajectory at its first event (e.g. a ball reaching the floor), non-terminal events are recorded (up to
``max_events``) while the solve goes on to ``t_end``.

**Location** (no graph). The solve runs with physnode's per-trajectory loop; after every accepted step of a
trajectory its ``g`` is evaluated at the new state, at ``samples`` interior points of the step (Chebyshev points
``θ_j = (1 - cos(π j / (m + 1))) / 2`` of the step's interpolant) and compared with the value at the previous
accepted state. Every sign change (in the requested ``direction``) between two consecutive points brackets an
event, so up to ``samples + 1`` events per step are found (scipy's ``solve_ivp`` and torchdiffeq compare the step's
ends only, where two sign changes within one step cancel). Each bracket is located on the interpolant by the
Illinois variant of regula falsi, vectorised over the batch (superlinear convergence, at most ``max_iter``
iterations, stopping when the bracket is below ``xtol`` or ``g`` is exactly zero). The interpolant is the
solver's continuous extension when it has one (``interpolant="auto"``: dopri5's and tsit5's free fourth-order
ones, dopri8's seventh-order DOP853 one, :mod:`physnode.dense`), otherwise the cubic Hermite interpolant of the
step (end points ``y``, ``f``; fourth-order accurate; ``interpolant="hermite"`` forces it).

*What can still be missed*: two sign changes between the same two consecutive sample points (a pair of roots
closer than about ``h / (samples + 1)``, or a tangential touch of ``g = 0`` between samples) cancel and are not
seen; raise ``samples`` or bound the step with ``max_step`` when events may come in such close pairs. A zero of
``g`` at ``t0`` itself is not an event (so that a restart from an event state does not stop at once).

**Gradient** (implicit-function theorem). The solve is then repeated with the user's gradient method on the
times ``[t0, t*_1, ..., t_end]`` (every event becomes an observation time, so its state ``y*`` is the solver's,
not the interpolant's), and with ``F(θ) = g(t*, y*(θ), θ)``:

.. math::

    t_e = t^* - \frac{F(θ)}{\operatorname{sg}(D)}, \qquad
    D = \frac{∂g}{∂t} + \frac{∂g}{∂y} f(t^*, y^*), \qquad
    y_e = y^* + (t_e - t^*)\, \operatorname{sg}\bigl(f(t^*, y^*)\bigr),

``sg`` meaning detached. The value of ``t_e`` is one Newton step on the accurately solved ``g`` (it removes the
interpolant's error: ``|F| / |D|`` is that error to first order), and its derivative is the implicit-function
theorem's ``dt*/dθ = -(∂g/∂θ + ∂g/∂y dy*/dθ) / D``; ``y_e`` is the state at ``t_e`` to second order in the
correction, with the total derivative ``dy*/dθ + f dt*/dθ``. Gradients reach ``y0``, the parameters of ``f`` and
``g`` and, when ``t0`` requires grad, ``t0`` (:mod:`physnode.time_input`), with every gradient method. Like the
time gradients they are those of the exact flow, to the solve's tolerance. A tangential event (``D = 0``) has no
derivative. The price: the solve runs twice (location, then the differentiable solve), plus ``samples + 1``
evaluations of ``g`` per step, ``~5-10`` per located event, and in the location solve the evaluations of ``f`` the
interpolant needs: none for dopri5 and tsit5, four per step for dopri8's DOP853 extension (``"free5"`` needs none,
:class:`~physnode.solvers.dopri8.Dopri8`), one per step for the Hermite interpolant.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ._validate import check_int, check_real, check_y0, describe
from .dense import evaluate
from .gradients import GradientMethod
from .integrate import CountingRHS, integrate
from .odeint import _KEYWORD_DEFAULTS, _build_problem, solve
from .options import DEFAULT_ATOL, DEFAULT_GRAD, DEFAULT_METHOD, DEFAULT_RTOL, SolveOptions, resolve_options
from .solution import Solution
from .solvers import Solver
from .solvers.base import State

__all__ = ["EventSolution", "hermite", "illinois", "odeint_event", "sample_points"]

EventFn = Callable[[Tensor, Tensor], Tensor]

#: Most interior sample points per step (``samples=``): each costs one ``event_fn`` evaluation per step and a
#: ``(B, samples)`` buffer; closer events are separated by bounding the step (``max_step``) instead.
MAX_SAMPLES = 1000


@dataclass
class EventSolution:
    """The events of a solve and the states there.

    Attributes
    ----------
    t_events
        Event times ``(B, K)`` (``(K,)`` unbatched), in order along each trajectory; NaN where a trajectory has
        fewer than ``K`` events (``K`` the largest number found, at least 1).
    y_events
        States at the events ``(B, K, D)`` (``(K, D)``); NaN where there is no event.
    n_events
        Events found per trajectory ``(B,)`` int64 (``()`` unbatched).
    t_final, y_final
        Where each trajectory stopped: its first event for a terminal event, else ``t_end``; ``(B,)`` and
        ``(B, D)`` (``()`` and ``(D,)`` unbatched). Differentiable like the events.
    solution
        The differentiable solve on ``[t0, events..., t_end]`` (padded with extra times where a trajectory has
        fewer events), with its statistics; the location solve's evaluations are added to ``stats.nfe``.
    """

    t_events: Tensor
    y_events: Tensor
    n_events: Tensor
    t_final: Tensor
    y_final: Tensor
    solution: Solution


# ------------------------------------------------------------------------------------------------ root finding
def hermite(theta: Tensor, h: Tensor, y0: Tensor, f0: Tensor, y1: Tensor, f1: Tensor) -> Tensor:
    """Cubic Hermite interpolant of a step at fractions ``theta`` ``(B,)`` of it: ``(B, D)``.

    Parameters
    ----------
    theta
        Position in the step, ``0`` (start) to ``1`` (end), ``(B,)``.
    h
        Signed step ``(B,)`` (time units).
    y0, f0, y1, f1
        State and derivative at the start and the end of the step, ``(B, D)`` each.
    """
    s = theta.unsqueeze(-1)
    s2, s3 = s * s, s * s * s
    hv = h.unsqueeze(-1)
    return (2 * s3 - 3 * s2 + 1) * y0 + (s3 - 2 * s2 + s) * hv * f0 + (3 * s2 - 2 * s3) * y1 + (s3 - s2) * hv * f1


def illinois(
    fn: Callable[[Tensor], Tensor], a: Tensor, b: Tensor, fa: Tensor, fb: Tensor, xtol: Tensor, max_iter: int
) -> Tensor:
    """A root of ``fn`` in each bracket ``[a, b]`` by the Illinois algorithm (regula falsi that halves the value
    kept at a retained end point), vectorised over rows.

    Parameters
    ----------
    fn
        ``fn(x (B,)) -> (B,)``; rows are independent.
    a, b, fa, fb
        Brackets and the values there, ``(B,)`` each, with ``fa * fb <= 0`` on the rows that matter (other rows
        are iterated harmlessly and their result is meaningless).
    xtol
        Width ``(B,)`` below which a bracket counts as converged.
    max_iter
        Bound on the iterations (each evaluates ``fn`` once for the whole batch).

    Returns
    -------
    Tensor
        ``(B,)``: the last iterate of each row (an end point with ``fn == 0`` when one was hit).
    """
    x = torch.where(fb == 0, b, a)
    done = (fa == 0) | (fb == 0) | ((b - a).abs() <= xtol)
    for _ in range(max_iter):
        if bool(done.all()):  # one host read per iteration: event location is rare work
            break
        denom = fb - fa
        x_new = torch.where(denom != 0, b - fb * (b - a) / torch.where(denom != 0, denom, 1.0), 0.5 * (a + b))
        x_new = torch.minimum(torch.maximum(x_new, torch.minimum(a, b)), torch.maximum(a, b))
        fx = fn(x_new)
        moving = ~done
        x = torch.where(moving, x_new, x)
        flip = (fx * fb) < 0  # the root lies between b and x: b becomes the retained end a
        a_next = torch.where(flip, b, a)
        fa_next = torch.where(flip, fb, fa * 0.5)  # Illinois: halve the retained end's value when it stays
        a = torch.where(moving, a_next, a)
        fa = torch.where(moving, fa_next, fa)
        b = torch.where(moving, x_new, b)
        fb = torch.where(moving, fx, fb)
        done = done | (fx == 0) | ((b - a).abs() <= xtol)
    return x


# ------------------------------------------------------------------------------------------------ location
def sample_points(samples: int) -> np.ndarray:
    """``samples`` interior Chebyshev points ``θ_j = (1 - cos(π j / (samples + 1))) / 2`` of a step, increasing."""
    return (1.0 - np.cos(np.pi * np.arange(1, samples + 1) / (samples + 1))) / 2.0


class _Locator:
    """The loop's monitor (``Problem.monitor``): watches ``g`` after every accepted step and locates events."""

    def __init__(
        self,
        rhs: CountingRHS,
        g: EventFn,
        t0: np.ndarray,
        y0: Tensor,
        terminal: bool,
        direction: int,
        max_events: int,
        max_iter: int,
        sdtype: torch.dtype,
        solver: Solver,
        samples: int,
        interpolant: str,
    ) -> None:
        self.rhs, self.g, self.terminal, self.direction = rhs, g, terminal, direction
        self.max_events, self.max_iter, self.sdtype = max_events, max_iter, sdtype
        self.solver = solver
        #: Locate on the solver's continuous extension (``dense_terms``) or on the cubic Hermite interpolant.
        self.dense = interpolant == "auto" and getattr(solver, "dense_order", None) is not None
        B = y0.shape[0]
        self.t_prev = t0.astype(np.float64).copy()
        self.y_prev = y0.detach().clone()
        self.g_prev = self._g(self.t_prev, self.y_prev)
        self.theta = sample_points(samples)
        # Hermite with interior samples needs f at both ends of every step: the end's value is kept for the next.
        self.f_prev: Tensor | None = None
        self._f_new: Tensor | None = None  # f at the end of the last step (Hermite)
        self._theta_dev: Tensor | None = None
        if samples and not self.dense:
            self.f_prev = rhs(self._t(self.t_prev), self.y_prev)
        self.times: list[list[float]] = [[] for _ in range(B)]
        self.nfe_g = 1

    def _t(self, t: np.ndarray) -> Tensor:
        return torch.from_numpy(np.ascontiguousarray(t)).to(device=self.y_prev.device, dtype=self.sdtype)

    def _g(self, t: np.ndarray | Tensor, y: Tensor) -> Tensor:
        tt = self._t(t) if isinstance(t, np.ndarray) else t
        out = self.g(tt, y)
        if not isinstance(out, Tensor) or out.shape != (y.shape[0],):
            got = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
            raise ValueError(
                f"event_fn(t, y) must return one value per trajectory, shape ({y.shape[0]},) for y of shape "
                f"{tuple(y.shape)} (a 0-d tensor for an unbatched y0); got {got}."
            )
        if not out.is_floating_point():
            raise TypeError(
                f"event_fn(t, y) must return real floating-point values whose sign changes at an event, got "
                f"{out.dtype}. Return a distance to the event surface, e.g. y[:, 0] - h, not a comparison such "
                "as y[:, 0] > h."
            )
        return out.detach()

    def _interpolant(self, ta: Tensor, h: Tensor, t_new: np.ndarray, y_new: Tensor) -> Callable[[Tensor], Tensor]:
        """``theta (B, M) -> y (B, M, D)`` on the last step of every row (meaningful on accepted rows)."""
        if self.dense:
            y_n, h_n, R = self.solver.dense_terms(self.rhs)  # type: ignore[attr-defined]  # dense_order checked

            def on_extension(theta: Tensor) -> Tensor:
                return evaluate(y_n, h_n, R, theta)

            return on_extension
        y_a = self.y_prev
        f_a = self.rhs(ta, y_a) if self.f_prev is None else self.f_prev
        f_b = self.rhs(self._t(t_new), y_new)
        self._f_new = f_b
        hv = h.view(-1, 1, 1)
        ends = (y_a.unsqueeze(1), hv * f_a.unsqueeze(1), y_new.unsqueeze(1), hv * f_b.unsqueeze(1))

        def on_hermite(theta: Tensor) -> Tensor:  # the cubic Hermite basis, as in :func:`hermite`
            s = theta.unsqueeze(-1)
            s2 = s * s
            s3 = s2 * s
            return (
                (2 * s3 - 3 * s2 + 1) * ends[0]
                + (s3 - 2 * s2 + s) * ends[1]
                + (3 * s2 - 2 * s3) * ends[2]
                + (s3 - s2) * ends[3]
            )

        return on_hermite

    def _fractions(self, like: Tensor) -> Tensor:
        """``(samples + 2,)``: ``0``, the interior sample points, ``1``, on ``like``'s device and dtype (cached)."""
        cached = self._theta_dev
        if cached is None or cached.device != like.device or cached.dtype != like.dtype:
            full = np.concatenate([[0.0], self.theta, [1.0]])
            cached = torch.from_numpy(full).to(device=like.device, dtype=like.dtype)
            self._theta_dev = cached
        return cached

    def __call__(self, t_new: np.ndarray, accept: np.ndarray, state: State) -> np.ndarray:
        y_new = state[0].detach()
        g_new = self._g(t_new, y_new)
        self.nfe_g += 1
        dev = y_new.device
        B = y_new.shape[0]
        acc = torch.from_numpy(accept).to(dev)
        h_host = t_new - self.t_prev
        ta, h = self._t(self.t_prev), self._t(h_host)
        fractions = self._fractions(g_new)  # (M + 2,): 0, interior points, 1
        M = len(self.theta)
        interp = None
        if M:  # g on the interpolant at the interior points (one evaluation of the interpolant, M of g)
            interp = self._interpolant(ta, h, t_new, y_new)
            inner = fractions[1:-1].expand(B, M)
            ys = interp(inner)
            ts = ta.unsqueeze(1) + inner * h.unsqueeze(1)
            sampled = [self._g(ts[:, k].contiguous(), ys[:, k]) for k in range(M)]
            self.nfe_g += M
            values = torch.stack([self.g_prev, *sampled, g_new], dim=1)  # (B, M + 2)
        else:
            values = torch.stack([self.g_prev, g_new], dim=1)
        # Sign changes between consecutive points; a zero is kept as the sign before it (a touching zero is one
        # event, not two): ``kept[:, k]`` is the last nonzero value among points 0..k, the bracket's left value.
        idx = torch.arange(values.shape[1], device=dev).expand_as(values)
        kept = values.gather(1, torch.where(values != 0, idx, 0).cummax(dim=1).values)
        left, right = kept[:, :-1], values[:, 1:]
        cross = (left * right < 0) | ((right == 0) & (left != 0))
        if self.direction > 0:
            cross &= left < 0
        elif self.direction < 0:
            cross &= left > 0
        room = torch.from_numpy(np.array([len(ts) < self.max_events for ts in self.times])).to(dev)
        cross &= (acc & room).unsqueeze(1)
        # A row whose g is NaN or Inf on an accepted step has no sign to read: its events would be missed.
        nonfinite = (acc & ~torch.isfinite(values).all(dim=1)).unsqueeze(1)
        read = torch.cat([cross, nonfinite], dim=1).cpu().numpy()  # (B, M + 2): one host read per step
        hit_k = read[:, :-1]
        if read[:, -1].any():
            bad = int(np.flatnonzero(read[:, -1])[0])
            raise ValueError(
                f"event_fn(t, y) returned NaN or Inf for trajectory {bad} on the step [{self.t_prev[bad]:.6g}, "
                f"{t_new[bad]:.6g}]; events are sign changes of a finite g, so none could be located there. Make "
                "event_fn finite along the solution (guard divisions, logarithms and square roots)."
            )
        hit = hit_k.any(axis=1)
        if hit.any():
            if interp is None:
                interp = self._interpolant(ta, h, t_new, y_new)
            for k in np.flatnonzero(hit_k.any(axis=0)):
                a, b = fractions[k].expand(B), fractions[k + 1].expand(B)
                frac = self._locate(interp, ta, h, h_host, t_new, a, b, left[:, k], right[:, k])
                t_event = self.t_prev + frac * h_host
                for row in np.flatnonzero(hit_k[:, k]):
                    if len(self.times[row]) < self.max_events:
                        self.times[row].append(float(t_event[row]))
        self.g_prev = torch.where(acc, kept[:, -1], self.g_prev)
        self.y_prev = torch.where(acc.unsqueeze(-1), y_new, self.y_prev)
        if self.f_prev is not None and self._f_new is not None:
            self.f_prev = torch.where(acc.unsqueeze(-1), self._f_new, self.f_prev)
        self.t_prev = np.where(accept, t_new, self.t_prev)
        return np.asarray(hit if self.terminal else np.zeros_like(hit), dtype=bool)

    def _locate(
        self,
        interp: Callable[[Tensor], Tensor],
        ta: Tensor,
        h: Tensor,
        h_host: np.ndarray,
        t_new: np.ndarray,
        a: Tensor,
        b: Tensor,
        g_a: Tensor,
        g_b: Tensor,
    ) -> np.ndarray:
        """Fractions ``theta`` ``(B,)`` (host float64) of the roots of ``g`` on the interpolant in ``[a, b]``."""

        def g_at(theta: Tensor) -> Tensor:
            self.nfe_g += 1
            return self._g(ta + theta * h, interp(theta.unsqueeze(1))[:, 0])

        eps = float(np.finfo(np.float64).eps if self.sdtype == torch.float64 else np.finfo(np.float32).eps)
        with np.errstate(divide="ignore", over="ignore"):  # rows that did not move (h = 0) get xtol = 1
            scale = np.maximum(np.abs(t_new), 1.0) / np.abs(h_host)
        xtol = self._t(np.minimum(4 * eps * scale, 1.0))
        theta = illinois(g_at, a, b, g_a, g_b, xtol, self.max_iter)
        return theta.cpu().numpy().astype(np.float64)


# ------------------------------------------------------------------------------------------------ entry point
def _times(name: str, value: object, B: int, like: Tensor) -> Tensor:
    """``value`` (a number, a 0-d tensor or ``(B,)``) as a ``(B,)`` tensor in ``like``'s dtype, keeping its graph."""
    if isinstance(value, Tensor):
        if value.ndim > 1 or (value.ndim == 1 and value.shape[0] not in (1, B)):
            raise ValueError(f"{name} must be a number or a tensor of shape () or ({B},); got {tuple(value.shape)}.")
        if not value.is_floating_point():
            raise TypeError(f"{name} must be a floating-point tensor, got {value.dtype}.")
        if not bool(torch.isfinite(value.detach()).all()):
            raise ValueError(f"{name} must be a finite time, got {value.detach().tolist()}.")
        out = value.to(device=like.device, dtype=like.dtype)
        return out.reshape(-1).expand(B) if out.numel() == 1 else out
    v = check_real(name, value, "a real number or a tensor of shape () or (B,)")
    if not math.isfinite(v):
        raise ValueError(f"{name} must be a finite time, got {v}.")
    return torch.full((B,), v, dtype=like.dtype, device=like.device)


def odeint_event(
    func: Callable[[Tensor, Tensor], Tensor],
    y0: Tensor,
    t0: float | Tensor,
    event_fn: EventFn,
    *,
    t_end: float | Tensor,
    terminal: bool = True,
    direction: int = 0,
    max_events: int | None = None,
    method: str | Solver = DEFAULT_METHOD,
    grad: str | GradientMethod = DEFAULT_GRAD,
    rtol: float | Tensor = DEFAULT_RTOL,
    atol: float | Tensor = DEFAULT_ATOL,
    step_size: float | None = None,
    max_steps: int | None = None,
    params: Sequence[Tensor] | None = None,
    options: Mapping[str, Any] | SolveOptions | None = None,
    max_step: float = math.inf,
    max_iter: int = 60,
    samples: int = 4,
    interpolant: str = "auto",
) -> EventSolution:
    """Solve ``dy/dt = func(t, y)`` from ``t0`` until the events ``event_fn(t, y) = 0``; differentiable.

    Parameters
    ----------
    func
        Right-hand side, as for :func:`physnode.solve`.
    y0
        Initial state ``(D,)`` or ``(B, D)``.
    t0
        Initial time: a number, a 0-d tensor or ``(B,)`` (one per trajectory). May require grad.
    event_fn
        ``g(t (B,), y (B, D)) -> (B,)`` (``g(t (), y (D,)) -> ()`` for an unbatched ``y0``): an event is a sign
        change of ``g`` along the solution. It may close over tensors to differentiate; list those that ``func``
        does not use in ``params`` for the gradient methods with their own backward pass.
    t_end
        Where to stop when no (terminal) event comes first: a number, 0-d or ``(B,)``; ``t_end < t0`` integrates
        backwards.
    terminal
        Stop each trajectory at its first event (default) or record events while solving on to ``t_end``.
    direction
        ``0``: every sign change; ``+1``: only ``g`` going from negative to positive; ``-1``: positive to negative.
    max_events
        Most events recorded per trajectory (default 1 when terminal, 100 otherwise); later ones are ignored.
    method, grad, rtol, atol, step_size, max_steps, params, options
        As for :func:`physnode.solve`.
    max_step
        Bound on ``|h|`` (see :func:`physnode.solve`); use it when two events may fall within one step.
    max_iter
        Bound on the root finder's iterations per event (60: ~1e-16 relative even when convergence is linear).
    samples
        Interior points of every step at which ``g`` is evaluated on the step's interpolant, so that up to
        ``samples + 1`` sign changes within one step are found (default 4; ``0`` compares the step's ends only, as
        scipy and torchdiffeq do; at most ``MAX_SAMPLES`` = 1000). Pairs of roots closer than about
        ``h / (samples + 1)`` can still cancel.
    interpolant
        ``"auto"`` (default): locate on the solver's continuous extension when it has one (:mod:`physnode.dense`),
        else on the cubic Hermite interpolant of the step; ``"hermite"``: always the Hermite interpolant.

    Returns
    -------
    EventSolution
        Event times and states (NaN-padded), event counts, the stopping time and state, the solve.

    Raises
    ------
    TypeError, ValueError
        Bad arguments (as for :func:`physnode.solve`, and for ``event_fn``, ``t0``, ``t_end``, ``direction``).
    SolverError
        A trajectory failed before its terminal event or ``t_end``.
    """
    if not callable(event_fn):
        raise TypeError(f"event_fn must be callable as event_fn(t, y), got {describe(event_fn)}.")
    if direction not in (-1, 0, 1) or isinstance(direction, bool):
        raise ValueError(f"direction must be -1, 0 or +1, got {describe(direction)}.")
    if not isinstance(terminal, bool):
        raise TypeError(f"terminal must be True or False, got {describe(terminal)}.")
    limit = (1 if terminal else 100) if max_events is None else max_events
    limit = check_int("max_events", limit, "a positive integer or None")
    max_iter = check_int("max_iter", max_iter, "a positive integer")
    if limit < 1 or max_iter < 1:
        raise ValueError(f"max_events and max_iter must be positive; got {limit} and {max_iter}.")
    samples = check_int("samples", samples, "a non-negative integer (interior sample points per step)")
    if not 0 <= samples <= MAX_SAMPLES:
        raise ValueError(
            f"samples must be a non-negative integer no larger than {MAX_SAMPLES} (interior sample points per "
            f"step, each evaluating event_fn once per step), got {samples}. To separate close events, bound the "
            "step with max_step instead."
        )
    if interpolant not in ("auto", "hermite"):
        raise ValueError(
            f"interpolant must be 'auto' (the solver's continuous extension, else Hermite) or 'hermite', got "
            f"{describe(interpolant)}."
        )
    opts = resolve_options(
        options,
        _KEYWORD_DEFAULTS,
        method=method,
        grad=grad,
        rtol=rtol,
        atol=atol,
        step_size=step_size,
        max_steps=max_steps,
        max_step=max_step,
    )
    check_y0(y0)
    unbatched = y0.ndim == 1
    y0b = y0.unsqueeze(0) if unbatched else y0
    B, D = y0b.shape
    t0b, t_endb = _times("t0", t0, B, y0b), _times("t_end", t_end, B, y0b)
    if bool((t0b.detach() == t_endb.detach()).any()):
        raise ValueError("t_end must differ from t0 for every trajectory (the interval to search for events).")
    g = _batched_event(event_fn) if unbatched else event_fn
    f_batched = _batched_rhs(func) if unbatched else func

    # 1. Location, without a graph.
    span = torch.stack([t0b.detach(), t_endb.detach()], dim=1)
    with torch.no_grad():
        problem, _, _ = _build_problem(f_batched, y0b.detach(), span, opts.without_gradient(), params, True)
        locator = _Locator(
            problem.func,
            g,
            span[:, 0].cpu().numpy(),
            problem.y0,
            terminal,
            direction,
            limit,
            max_iter,
            y0b.dtype,
            problem.solver,
            samples,
            interpolant,
        )
        problem.monitor = locator
        located = integrate(problem)
    nfe_locate = located.stats.nfe + 1  # + the shape check of _build_problem

    # 2. The differentiable solve through every event time.
    counts = np.array([len(ts) for ts in locator.times], dtype=np.int64)
    K = max(int(counts.max()), 1)
    t_host = span.cpu().numpy().astype(np.float64)
    if terminal:  # one column: the event, or t_end without one (nothing after the event is solved)
        cols = np.array([ts[0] if ts else t_host[b, 1] for b, ts in enumerate(locator.times)])[:, None]
    else:  # the events, padding strictly between the last one (or t0) and t_end, then t_end
        cols = np.empty((B, K + 1))
        for b, ev in enumerate(locator.times):
            start = ev[-1] if ev else t_host[b, 0]
            pad = np.linspace(start, t_host[b, 1], K - len(ev) + 2)[1:-1]
            cols[b] = [*ev, *pad, t_host[b, 1]]
    grid_rest = torch.from_numpy(cols).to(device=y0b.device, dtype=y0b.dtype)
    grid = torch.cat([t0b.unsqueeze(1), grid_rest], dim=1)  # t0's gradient (if any) rides on grid[:, 0]
    sol = solve(f_batched, y0b, grid, options=opts, params=params)
    sol.stats.nfe += nfe_locate

    # 3. Events as functions of the parameters (implicit-function theorem).
    t_events = torch.full((B, K), float("nan"), dtype=y0b.dtype, device=y0b.device)
    y_events = torch.full((B, K, D), float("nan"), dtype=y0b.dtype, device=y0b.device)
    t_cols, y_cols = [], []
    for k in range(K):
        has = torch.from_numpy(counts > k).to(y0b.device)
        t_star = grid[:, k + 1].detach()
        y_star = sol.ys[:, k + 1]
        safe_t = torch.where(has, t_star, t0b.detach())
        safe_y = torch.where(has.unsqueeze(-1), y_star, y0b.detach())
        t_e, y_e = _implicit(f_batched, g, safe_t, safe_y)
        t_cols.append(torch.where(has, t_e, t_events[:, k]))
        y_cols.append(torch.where(has.unsqueeze(-1), y_e, y_events[:, k]))
    t_events = torch.stack(t_cols, dim=1)
    y_events = torch.stack(y_cols, dim=1)
    n_events = torch.from_numpy(counts).to(y0b.device)
    if terminal:
        hit = n_events > 0
        t_final = torch.where(hit, t_events[:, 0], t_endb)
        y_final = torch.where(hit.unsqueeze(-1), y_events[:, 0], sol.ys[:, -1])
    else:
        t_final, y_final = t_endb, sol.ys[:, -1]
    if unbatched:
        return EventSolution(t_events[0], y_events[0], n_events[0], t_final[0], y_final[0], sol)
    return EventSolution(t_events, y_events, n_events, t_final, y_final, sol)


def _implicit(
    f: Callable[[Tensor, Tensor], Tensor], g: EventFn, t_star: Tensor, y_star: Tensor
) -> tuple[Tensor, Tensor]:
    """``(t_e, y_e)``: one Newton step on ``g(t, y(t)) = 0`` from the solved ``(t*, y*)`` whose derivative is the
    implicit-function theorem's (module docstring)."""
    with torch.no_grad():
        f_star = f(t_star, y_star.detach())
    with torch.enable_grad():
        tt = t_star.detach().requires_grad_()
        yy = y_star.detach().requires_grad_()
        gv = g(tt, yy)
        dg_dt, dg_dy = torch.autograd.grad(gv.sum(), (tt, yy), allow_unused=True)
    dg_dt = torch.zeros_like(t_star) if dg_dt is None else dg_dt
    dg_dy = torch.zeros_like(y_star) if dg_dy is None else dg_dy
    slope = (dg_dt + (dg_dy * f_star).sum(-1)).detach()
    big = torch.where(slope == 0, torch.ones_like(slope), slope)
    F = g(t_star, y_star)  # carries the graph of y* (θ, y0, t0) and of g's own parameters
    t_e = t_star - torch.where(slope == 0, torch.zeros_like(F), F / big)
    y_e = y_star + (t_e - t_star).unsqueeze(-1) * f_star
    return t_e, y_e


def _batched_event(event_fn: EventFn) -> EventFn:
    def g(t: Tensor, y: Tensor) -> Tensor:
        out = event_fn(t[0], y[0])
        return out.reshape(1) if isinstance(out, Tensor) and out.numel() == 1 else out  # else: _g says what is wrong

    return g


def _batched_rhs(func: Callable[[Tensor, Tensor], Tensor]) -> Callable[[Tensor, Tensor], Tensor]:
    def f(t: Tensor, y: Tensor) -> Tensor:
        return func(t[0], y[0]).unsqueeze(0)

    return f
