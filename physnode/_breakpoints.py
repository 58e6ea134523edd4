"""Known discontinuities of the right-hand side: the step window, sides at breakpoints, landing helpers.

A *breakpoint* is a time at which ``f`` (or an external input it reads) is not smooth: a dose switched on, a
forcing with a kink, a ``jump_t`` of torchdiffeq. The integration loop (:mod:`physnode.integrate`) makes every
step of a trajectory end on its next breakpoint (a step never straddles one) and writes no output there. What
this module adds is the knowledge *which side* of a breakpoint an evaluation belongs to:

- while the loop (or a gradient method replaying a recorded step) takes a step ``[t, t + h]``, a
  :class:`Window` for it is current (a context variable, so nested solves, e.g. the backward solve of the
  continuous adjoint, see their own window);
- external inputs pick the piece of their interpolant that contains the step (the right limit at ``t``, the
  left limit at ``t + h``) from the window, not from the stage time, so round-off of ``t + c h`` cannot flip a
  side;
- the time handed to ``func`` is nudged one unit in the last place *into* the step when a stage sits exactly
  on the step's start or end (torchdiffeq's ``jump_t`` / "perturb" convention): a plain ``func`` that writes
  ``1.0 if t >= b else 0.0`` sees the right side of ``b`` as well;
- methods that carry a derivative from one step to the next (FSAL Runge–Kutta pairs, reversible Heun, ESDIRK)
  re-evaluate it on a step that starts on a breakpoint (:attr:`Window.fresh`, :func:`fresh_derivative`),
  instead of reusing the left-limit derivative of the step that ended there.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "Cursor",
    "Window",
    "current_window",
    "fresh_derivative",
    "fresh_rows",
    "host_breakpoints",
    "land_exactly",
    "nudge",
    "window",
]


@dataclass(frozen=True)
class Window:
    """The step ``[t, t + h]`` whose stages are being evaluated.

    Attributes
    ----------
    t
        Start of the step of each trajectory, ``(B,)``, in the state's dtype.
    h
        Signed step, ``(B,)``; ``0`` for a trajectory that does not move (or for a one-sided evaluation at ``t``).
    side
        ``(B,)`` of ``+1.0`` / ``-1.0``: the side of ``t`` the step lies on (``sign(h)``; for ``h == 0`` the
        side asked for, by default the direction of integration).
    fresh
        ``(B,)`` bool, or ``None`` when no row is fresh: the step starts on a breakpoint, so a derivative cached
        by the previous step (its left limit there) must be evaluated again.
    """

    t: Tensor
    h: Tensor
    side: Tensor
    fresh: Tensor | None = None


_CURRENT: contextvars.ContextVar[Window | None] = contextvars.ContextVar("physnode_step_window", default=None)


def current_window() -> Window | None:
    """The window of the step being taken, or ``None`` outside a step (initial evaluations, user calls)."""
    return _CURRENT.get()


@contextlib.contextmanager
def window(t: Tensor, h: Tensor, fresh: Tensor | None = None, side: float | Tensor | None = None) -> Iterator[Window]:
    """Make the step ``[t, t + h]`` current for the evaluations inside the ``with`` block.

    Parameters
    ----------
    t, h
        Start and signed length of the step of each trajectory, ``(B,)``.
    fresh
        ``(B,)`` bool: rows whose step starts on a breakpoint (``None``: none).
    side
        Side of ``t`` for rows with ``h == 0`` (``+1`` right, ``-1`` left); default ``+1``.
    """
    default = torch.ones_like(t) if side is None else torch.as_tensor(side, dtype=t.dtype, device=t.device)
    s = torch.where(h > 0, 1.0, torch.where(h < 0, -1.0, default.expand_as(t))).to(t.dtype)
    token = _CURRENT.set(Window(t, h, s, fresh))
    try:
        yield _CURRENT.get()  # type: ignore[misc]
    finally:
        _CURRENT.reset(token)


def nudge(t: Tensor, win: Window | None) -> Tensor:
    """The time handed to ``func`` for a stage at ``t`` ``(B,)``: one unit in the last place into the step when
    ``t`` is exactly its start or its end (for ``h == 0``, towards :attr:`Window.side`); otherwise ``t``."""
    if win is None:
        return t
    t_end = win.t + win.h
    inf = torch.full_like(t, float("inf"))
    toward_end = torch.where(win.side > 0, inf, -inf)
    at_start = t == win.t
    at_end = (t == t_end) & (win.h != 0)
    out = torch.where(at_start, torch.nextafter(t, toward_end), t)
    return torch.where(at_end, torch.nextafter(t, -toward_end), out)


def fresh_derivative(func: Callable[[Tensor, Tensor], Tensor], t: Tensor, y: Tensor, cached: Tensor) -> Tensor:
    """The derivative at the start of a step: ``cached`` (from the previous step), re-evaluated as ``func(t, y)``
    on the rows whose step starts on a breakpoint (:attr:`Window.fresh`). Costs one evaluation only when some
    row is fresh (decided on the host, no synchronisation). Inside a compiled step (:mod:`physnode.compiled`, only
    taken when no row is fresh) it is ``cached`` without reading the window (TorchDynamo cannot trace a
    ``ContextVar`` and would split the step's graph there)."""
    if torch.compiler.is_compiling():
        return cached
    win = current_window()
    if win is None or win.fresh is None:
        return cached
    return torch.where(win.fresh.unsqueeze(-1), func(t, y), cached)


def fresh_rows(t: Tensor, breakpoints: Tensor | None) -> Tensor | None:
    """``(B,)`` bool: rows whose time ``t`` ``(B,)`` equals one of their ``breakpoints`` ``(B, K)`` (same dtype;
    NaN padding never matches), or ``None`` when there is none. One host synchronisation (used by gradient
    methods replaying recorded steps; the loop knows the answer on the host)."""
    if breakpoints is None or breakpoints.shape[-1] == 0:
        return None
    hit = (breakpoints == t.unsqueeze(-1)).any(-1)
    return hit if bool(hit.any()) else None


def host_breakpoints(bp: Tensor, t_host: np.ndarray, direction: np.ndarray) -> np.ndarray:
    """Breakpoints as the loop uses them: ``(B, K)`` float64, each row in the direction of integration, only those
    at or after the initial time, padded with ``direction * inf``.

    Parameters
    ----------
    bp
        ``(B, K)`` breakpoints in the state's dtype, NaN where a row has fewer.
    t_host
        ``(B, T)`` float64 observation times (``t_host[:, 0]`` the initial time).
    direction
        ``(B,)`` ``+1.0`` or ``-1.0``.
    """
    b = bp.detach().cpu().numpy().astype(np.float64)
    d = direction[:, None]
    keep = np.isfinite(b) & (d * (b - t_host[:, :1]) >= 0)
    key = np.where(keep, d * b, np.inf)
    key = np.sort(key, axis=1)
    out = d * key  # +-inf padding in the direction of integration
    return out


def land_exactly(tc: np.ndarray, h: np.ndarray, target: np.ndarray, land: np.ndarray, sdtype: np.dtype) -> np.ndarray:
    """Steps ``h`` ``(B,)`` adjusted on the landing rows so that ``t + h`` computed in the state's dtype (as the
    solver's last stage computes it) equals the target in that dtype exactly; other rows unchanged."""
    if not land.any():
        return h
    ts = tc.astype(sdtype)
    goal = target.astype(sdtype)
    hs = (goal - ts).astype(sdtype)
    for _ in range(4):  # at most a few units in the last place off
        got = (ts + hs).astype(sdtype)
        off = land & (got != goal)
        if not off.any():
            break
        hs = np.where(off, np.nextafter(hs, np.where(got < goal, np.inf, -np.inf).astype(sdtype)), hs)
    return np.where(land, hs.astype(np.float64), h)


class Cursor:
    """Each trajectory's next breakpoint, for the integration loop (host arrays, float64).

    Parameters
    ----------
    bp
        ``(B, K)`` breakpoints in the state's dtype, NaN where a row has fewer.
    t_host
        ``(B, T)`` float64 observation times.
    direction
        ``(B,)`` ``+1.0`` or ``-1.0``.
    sdtype
        NumPy dtype of the state: a trajectory stands on a breakpoint when its time equals it in that dtype (the
        rule :func:`fresh_rows` applies on the device, so replays see the same fresh steps).
    slack
        Relative distance below which a breakpoint and an observation time count as one landing.
    """

    def __init__(self, bp: Tensor, t_host: np.ndarray, direction: np.ndarray, sdtype: np.dtype, slack: float) -> None:
        self.bp = host_breakpoints(bp, t_host, direction)
        self.bp_s = np.where(np.isfinite(self.bp), self.bp, np.nan).astype(sdtype)
        self.direction, self.sdtype, self.slack = direction, sdtype, slack
        self.rows = np.arange(self.bp.shape[0])
        self.k = np.zeros(self.bp.shape[0], dtype=np.int64)
        self.K = self.bp.shape[1]
        self.advance(t_host[:, 0])

    def next(self) -> np.ndarray:
        """``(B,)``: the next breakpoint of each row (``direction * inf`` when none is left)."""
        if self.K == 0:
            return self.direction * np.inf
        return np.where(self.k < self.K, self.bp[self.rows, np.minimum(self.k, self.K - 1)], self.direction * np.inf)

    def target(self, t_next: np.ndarray) -> np.ndarray:
        """The next landing time: the next breakpoint when it comes (clearly) before the next observation
        ``t_next`` ``(B,)``, else ``t_next``."""
        b = self.next()
        d = self.direction
        before = d * (t_next - b) > self.slack * (np.abs(t_next) + 1.0)
        return np.where(before, b, t_next)

    def advance(self, tc: np.ndarray) -> None:
        """Move past the breakpoints at or before ``tc`` ``(B,)`` (within the slack)."""
        d = self.direction
        for _ in range(self.K + 1):
            b = self.next()
            passed = (self.k < self.K) & (d * (b - tc) <= self.slack * (np.abs(tc) + 1.0))
            if not passed.any():
                break
            self.k = self.k + passed

    def fresh(self, tc: np.ndarray) -> np.ndarray:
        """``(B,)`` bool: the row's time equals (in the state's dtype) the breakpoint it passed last."""
        if self.K == 0:
            return np.zeros(len(tc), dtype=bool)
        prev = self.bp_s[self.rows, np.clip(self.k - 1, 0, self.K - 1)]
        return (self.k > 0) & (prev == tc.astype(self.sdtype))
